//! What every handler shares.

use crate::config::Config;
use crate::mcp::stateless::MirroredParam;
use mcp_bus::Bus;
use mcp_telemetry::Metrics;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Shared gateway state. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The bus to workers and other gateways.
    pub bus: Arc<dyn Bus>,
    /// The configuration.
    pub config: Arc<Config>,
    /// The node's metrics.
    pub metrics: Arc<Metrics>,
    /// The limits and what sessions hold on this gateway.
    pub limits: Arc<crate::http::limits::Limits>,
    /// Verifies bearer tokens (a no-op when authentication is off).
    pub auth: Arc<crate::http::auth::Authenticator>,
    /// The policy in force (if any), quotas and the audit sink.
    pub policies: Arc<crate::policy::Policies>,
    /// The tools workers serve, refreshed in the background, each with the arguments its
    /// schema mirrors into `Mcp-Param-*` headers: a metrics label names a tool only if it
    /// is one of these.
    pub tool_names: Arc<std::sync::RwLock<HashMap<String, Vec<MirroredParam>>>>,
    /// Cancelled when shutdown starts: no new work, standalone streams close so clients
    /// reconnect elsewhere.
    pub draining: CancellationToken,
    /// Cancelled when the drain timeout is over: request streams still open close too
    /// (their clients resume elsewhere with `Last-Event-ID`).
    pub closing: CancellationToken,
}

impl AppState {
    /// How often a stream holder refreshes its session's idle timer.
    pub fn touch_interval(&self) -> Duration {
        (self.config.session_idle_ttl() / 3)
            .clamp(Duration::from_millis(100), Duration::from_secs(60))
    }

    /// The tool a `tools/call` names, if workers serve it; `unknown` otherwise.
    pub fn known_tool(&self, params: Option<&serde_json::Value>) -> String {
        let name = params.and_then(|p| p.get("name")).and_then(|n| n.as_str());
        let names = self.tool_names.read().unwrap_or_else(|p| p.into_inner());
        match name {
            Some(name) if names.contains_key(name) => name.to_owned(),
            _ => "unknown".to_owned(),
        }
    }

    /// The arguments tool `name` mirrors into headers, if the cache knows the tool.
    pub fn mirrored_params(&self, name: &str) -> Option<Vec<MirroredParam>> {
        let names = self.tool_names.read().unwrap_or_else(|p| p.into_inner());
        names.get(name).cloned()
    }

    /// Counts one JSON-RPC request by method and outcome. `known` says whether the method
    /// is one the protocol defines: a metrics label must not be a client's free text.
    pub fn count_request(&self, method: &str, known: bool, outcome: &str) {
        let label = if known { method } else { "unknown" };
        self.metrics
            .jsonrpc_requests
            .with_label_values(&[label, outcome])
            .inc();
    }

    /// The SSE `retry` hint.
    pub fn sse_retry(&self) -> Duration {
        Duration::from_millis(self.config.sse_retry_ms)
    }
}
