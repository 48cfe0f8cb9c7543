//! Per-upstream metrics, process-wide (an upstream's name labels them); the binaries
//! register [`collectors`] in their metrics registry.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts};
use std::sync::LazyLock;

fn expect<T>(m: Result<T, prometheus::Error>) -> T {
    m.unwrap_or_else(|e| panic!("invalid metric definition: {e}"))
}

/// Calls forwarded, by upstream and outcome (`ok`, `tool_error`, `error`, `timeout`,
/// `unavailable`, `cancelled`).
pub static CALLS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    expect(IntCounterVec::new(
        Opts::new(
            "mcpgw_upstream_calls_total",
            "Calls forwarded to an upstream MCP server, by outcome",
        ),
        &["upstream", "outcome"],
    ))
});
/// Time from sending a call upstream to its answer.
pub static LATENCY: LazyLock<HistogramVec> = LazyLock::new(|| {
    expect(HistogramVec::new(
        HistogramOpts::new(
            "mcpgw_upstream_call_seconds",
            "Time an upstream MCP server took to answer a call",
        )
        .buckets(vec![
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            60.0,
        ]),
        &["upstream"],
    ))
});
/// Upstream sessions open on this worker (per-session ones plus the worker's own).
pub static SESSIONS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    expect(IntGaugeVec::new(
        Opts::new(
            "mcpgw_upstream_sessions_open",
            "Upstream sessions (stdio children) open on this worker",
        ),
        &["upstream"],
    ))
});
/// The worker's own upstream session opened again after it failed (for stdio: the child
/// restarted).
pub static RESTARTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    expect(IntCounterVec::new(
        Opts::new(
            "mcpgw_upstream_restarts_total",
            "Upstream sessions (stdio children) started again after the previous one failed",
        ),
        &["upstream"],
    ))
});
/// 1 while the upstream answers its health checks.
pub static UP: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    expect(IntGaugeVec::new(
        Opts::new(
            "mcpgw_upstream_up",
            "1 while the upstream MCP server answers, 0 while it is down",
        ),
        &["upstream"],
    ))
});

/// The metrics, for registering in a metrics registry.
pub fn collectors() -> Vec<Box<dyn prometheus::core::Collector>> {
    vec![
        Box::new(CALLS.clone()),
        Box::new(LATENCY.clone()),
        Box::new(SESSIONS.clone()),
        Box::new(RESTARTS.clone()),
        Box::new(UP.clone()),
    ]
}
