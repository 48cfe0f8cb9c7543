//! What every handler shares.

use crate::config::Config;
use mcp_bus::Bus;
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

    /// The SSE `retry` hint.
    pub fn sse_retry(&self) -> Duration {
        Duration::from_millis(self.config.sse_retry_ms)
    }
}
