//! Counters of Redis traffic. A process has one Redis bus, so they are process-wide; the
//! binaries register [`collectors`] in their metrics registry.

use prometheus::IntCounter;
use std::sync::LazyLock;

fn counter(name: &str, help: &str) -> IntCounter {
    IntCounter::new(name, help).unwrap_or_else(|e| panic!("invalid metric definition: {e}"))
}

/// Round trips to Redis (a command, a pipeline or a script each count once).
pub static COMMANDS: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "mcpgw_redis_commands_total",
        "Redis round trips (commands, pipelines, scripts)",
    )
});
/// Round trips that failed (including timeouts during an outage).
pub static ERRORS: LazyLock<IntCounter> =
    LazyLock::new(|| counter("mcpgw_redis_errors_total", "Redis round trips that failed"));
/// Pub/sub disconnections (each is followed by a reconnect and a catch-up from the logs).
pub static RECONNECTS: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "mcpgw_redis_reconnects_total",
        "Redis pub/sub connections lost and re-established",
    )
});

/// The counters, for registering in a metrics registry.
pub fn collectors() -> Vec<Box<dyn prometheus::core::Collector>> {
    vec![
        Box::new(COMMANDS.clone()),
        Box::new(ERRORS.clone()),
        Box::new(RECONNECTS.clone()),
    ]
}
