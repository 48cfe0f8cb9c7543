//! The Prometheus metrics of gateways and workers (names follow Prometheus conventions:
//! prefix `mcpgw_`, base units, `_total` counters, `_seconds` histograms). Every metric
//! is registered in every process, and each role moves its own; a labelled series
//! (by method, tool, kind) appears with its first event, so alerts use `or vector(0)`
//! (the five `kind`s of delivered messages appear together, with the first delivery).

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::collections::HashMap;

/// Which kind of process exports the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `mcp-gateway`.
    Gateway,
    /// `mcp-worker`.
    Worker,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Self::Gateway => "gateway",
            Self::Worker => "worker",
        }
    }
}

/// What kind of message a client was sent (the `kind` label of
/// `mcpgw_notifications_delivered_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryKind {
    /// `notifications/progress`.
    Progress,
    /// `notifications/message` (logging).
    Message,
    /// A server-to-client request.
    Request,
    /// A response to the client's request.
    Response,
    /// Any other notification.
    Other,
}

impl DeliveryKind {
    /// Every kind, in discriminant order.
    pub const ALL: [DeliveryKind; 5] = [
        Self::Progress,
        Self::Message,
        Self::Request,
        Self::Response,
        Self::Other,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Progress => "progress",
            Self::Message => "message",
            Self::Request => "request",
            Self::Response => "response",
            Self::Other => "other",
        }
    }
}

/// Every metric, registered in one registry.
pub struct Metrics {
    registry: Registry,
    /// Build information (always 1).
    pub build_info: IntGaugeVec,
    /// 1 while the node is ready (bus reachable, not draining).
    pub ready: IntGauge,
    /// Live sessions in the cluster, as this node sees them.
    pub sessions_open: IntGauge,
    /// Open SSE streams on this node, by kind (`post`, `get`).
    pub sse_streams_open: IntGaugeVec,
    /// HTTP requests by method and status.
    pub http_requests: IntCounterVec,
    /// JSON-RPC requests by method and outcome (`ok`, `error`).
    pub jsonrpc_requests: IntCounterVec,
    /// Messages written to clients by kind (`progress`, `message`, `request`, `response`, `other`).
    /// Count with [`Metrics::delivered`], which resolves each kind's series once.
    pub notifications_delivered: IntCounterVec,
    delivered_by_kind: std::sync::OnceLock<[IntCounter; DeliveryKind::ALL.len()]>,
    /// From a worker emitting a message to a gateway writing it.
    pub delivery_latency: Histogram,
    /// Events sent again on resumption (`Last-Event-ID`) or to a new standalone stream.
    pub events_replayed: IntCounter,
    /// Streams closed because their client read too slowly.
    pub slow_client_disconnects: IntCounter,
    /// Standalone streams on this node that one broadcast reached.
    pub broadcast_fanout: Histogram,
    /// Requests refused by a limit, by limit (`rate`, `sessions_per_principal`,
    /// `requests_per_session`, `streams_per_session`, `body_size`).
    pub limit_rejections: IntCounterVec,
    /// Requests refused by authentication, by reason (`missing`, `invalid`, `scope`).
    pub auth_failures: IntCounterVec,
    /// Jobs enqueued by tool (gateway).
    pub jobs_enqueued: IntCounterVec,
    /// Jobs running now (worker).
    pub jobs_running: IntGauge,
    /// Jobs finished by tool and outcome (`ok`, `tool_error`, `error`, `cancelled`, `timeout`).
    pub jobs_completed: IntCounterVec,
    /// Job run time by tool.
    pub job_duration: HistogramVec,
}

/// Latency buckets from 1 ms to 30 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0,
];

impl Metrics {
    /// Creates and registers every metric for a node of `role` named `node`.
    pub fn new(role: Role, node: &str) -> Self {
        let labels = HashMap::from([
            ("role".to_owned(), role.as_str().to_owned()),
            ("node".to_owned(), node.to_owned()),
        ]);
        let registry = Registry::new_custom(None, Some(labels)).unwrap_or_else(|_| Registry::new());
        let m = Self {
            build_info: IntGaugeVec::new(
                Opts::new("mcpgw_build_info", "Build information"),
                &["version"],
            )
            .unwrap_or_else(unreachable_metric),
            ready: IntGauge::new("mcpgw_ready", "1 while the node is ready")
                .unwrap_or_else(unreachable_metric),
            sessions_open: IntGauge::new(
                "mcpgw_sessions_open",
                "Live sessions in the cluster, as this node sees them",
            )
            .unwrap_or_else(unreachable_metric),
            sse_streams_open: IntGaugeVec::new(
                Opts::new("mcpgw_sse_streams_open", "Open SSE streams on this node"),
                &["kind"],
            )
            .unwrap_or_else(unreachable_metric),
            http_requests: IntCounterVec::new(
                Opts::new(
                    "mcpgw_http_requests_total",
                    "HTTP requests by method and status",
                ),
                &["method", "status"],
            )
            .unwrap_or_else(unreachable_metric),
            jsonrpc_requests: IntCounterVec::new(
                Opts::new(
                    "mcpgw_jsonrpc_requests_total",
                    "JSON-RPC requests by method and outcome",
                ),
                &["method", "outcome"],
            )
            .unwrap_or_else(unreachable_metric),
            notifications_delivered: IntCounterVec::new(
                Opts::new(
                    "mcpgw_notifications_delivered_total",
                    "Messages written to clients, by kind",
                ),
                &["kind"],
            )
            .unwrap_or_else(unreachable_metric),
            delivery_latency: Histogram::with_opts(
                HistogramOpts::new(
                    "mcpgw_delivery_latency_seconds",
                    "From a worker emitting a message to a gateway writing it",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
            )
            .unwrap_or_else(unreachable_metric),
            events_replayed: IntCounter::new(
                "mcpgw_events_replayed_total",
                "Events replayed on resumption",
            )
            .unwrap_or_else(unreachable_metric),
            slow_client_disconnects: IntCounter::new(
                "mcpgw_slow_client_disconnects_total",
                "Streams closed because their client read too slowly",
            )
            .unwrap_or_else(unreachable_metric),
            broadcast_fanout: Histogram::with_opts(
                HistogramOpts::new(
                    "mcpgw_broadcast_fanout",
                    "Standalone streams on this node one broadcast reached",
                )
                .buckets(vec![0.0, 1.0, 10.0, 100.0, 1000.0, 10_000.0, 100_000.0]),
            )
            .unwrap_or_else(unreachable_metric),
            limit_rejections: IntCounterVec::new(
                Opts::new(
                    "mcpgw_limit_rejections_total",
                    "Requests refused by a limit",
                ),
                &["limit"],
            )
            .unwrap_or_else(unreachable_metric),
            auth_failures: IntCounterVec::new(
                Opts::new(
                    "mcpgw_auth_failures_total",
                    "Requests refused by authentication",
                ),
                &["reason"],
            )
            .unwrap_or_else(unreachable_metric),
            jobs_enqueued: IntCounterVec::new(
                Opts::new("mcpgw_jobs_enqueued_total", "Jobs enqueued, by tool"),
                &["tool"],
            )
            .unwrap_or_else(unreachable_metric),
            jobs_running: IntGauge::new("mcpgw_jobs_running", "Jobs running on this worker")
                .unwrap_or_else(unreachable_metric),
            jobs_completed: IntCounterVec::new(
                Opts::new(
                    "mcpgw_jobs_completed_total",
                    "Jobs finished, by tool and outcome",
                ),
                &["tool", "outcome"],
            )
            .unwrap_or_else(unreachable_metric),
            job_duration: HistogramVec::new(
                HistogramOpts::new("mcpgw_job_duration_seconds", "Job run time, by tool")
                    .buckets(LATENCY_BUCKETS.to_vec()),
                &["tool"],
            )
            .unwrap_or_else(unreachable_metric),
            delivered_by_kind: std::sync::OnceLock::new(),
            registry,
        };
        m.register_all();
        m.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        m
    }

    fn register_all(&self) {
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(self.build_info.clone()),
            Box::new(self.ready.clone()),
            Box::new(self.sessions_open.clone()),
            Box::new(self.sse_streams_open.clone()),
            Box::new(self.http_requests.clone()),
            Box::new(self.jsonrpc_requests.clone()),
            Box::new(self.notifications_delivered.clone()),
            Box::new(self.delivery_latency.clone()),
            Box::new(self.events_replayed.clone()),
            Box::new(self.slow_client_disconnects.clone()),
            Box::new(self.broadcast_fanout.clone()),
            Box::new(self.limit_rejections.clone()),
            Box::new(self.auth_failures.clone()),
            Box::new(self.jobs_enqueued.clone()),
            Box::new(self.jobs_running.clone()),
            Box::new(self.jobs_completed.clone()),
            Box::new(self.job_duration.clone()),
        ];
        for c in collectors {
            if let Err(e) = self.registry.register(c) {
                tracing::warn!(error = %e, "metric not registered");
            }
        }
        // Process metrics (memory, CPU, file descriptors) come unprefixed, as is usual.
        #[cfg(target_os = "linux")]
        if let Err(e) = self.registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        )) {
            tracing::warn!(error = %e, "process metrics not registered");
        }
        for kind in ["post", "get"] {
            self.sse_streams_open.with_label_values(&[kind]).set(0);
        }
    }

    /// The `notifications_delivered` series of `kind`. Resolved once: a label lookup per
    /// message hashes the label and takes a lock, on the path every delivery takes.
    pub fn delivered(&self, kind: DeliveryKind) -> &IntCounter {
        let all = self.delivered_by_kind.get_or_init(|| {
            DeliveryKind::ALL.map(|k| {
                self.notifications_delivered
                    .with_label_values(&[k.as_str()])
            })
        });
        &all[kind as usize]
    }

    /// Registers metrics defined elsewhere (the Redis bus's counters).
    pub fn register(&self, collectors: Vec<Box<dyn prometheus::core::Collector>>) {
        for c in collectors {
            if let Err(e) = self.registry.register(c) {
                tracing::warn!(error = %e, "metric not registered");
            }
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::warn!(error = %e, "metrics encoding failed");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }

    /// The content type of [`Metrics::render`].
    pub fn content_type() -> &'static str {
        prometheus::TEXT_FORMAT
    }
}

/// Metric definitions above are constants; an invalid one is a programming error caught
/// by the first test run, never by a request.
fn unreachable_metric<T>(e: prometheus::Error) -> T {
    panic!("invalid metric definition: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_labelled_prefixed_series() {
        let m = Metrics::new(Role::Gateway, "g-1");
        m.http_requests.with_label_values(&["POST", "200"]).inc();
        let text = m.render();
        // Const labels come in no fixed order: check each part of the series.
        let series = text
            .lines()
            .find(|l| l.starts_with("mcpgw_http_requests_total{"))
            .unwrap_or_default();
        for part in [
            r#"method="POST""#,
            r#"status="200""#,
            r#"role="gateway""#,
            r#"node="g-1""#,
        ] {
            assert!(series.contains(part), "{part} in {series}");
        }
        assert!(series.ends_with(" 1"), "{series}");
        assert!(text.contains("mcpgw_build_info{"));
        assert!(text.contains(r#"mcpgw_sse_streams_open{kind="get""#));
    }
}
