//! The policy's metrics. A process has one policy, so they are process-wide; `serve`
//! registers [`collectors`] in the gateway's registry.

use prometheus::{IntCounter, IntCounterVec, Opts};
use std::sync::LazyLock;

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("invalid metric definition: {e}"))
}

/// Requests refused because the policy does not let the caller use what they name.
pub static DENIALS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "mcpgw_policy_denials_total",
        "Calls refused by the policy (the caller may not use the tool, prompt or resource)",
        &["method"],
    )
});
/// Policy (re)loads by result: `ok`, `error` (the old policy stays in force), `unchanged`.
pub static RELOADS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "mcpgw_policy_reloads_total",
        "Policy file reloads by result (error: malformed, the previous policy stays in force)",
        &["result"],
    )
});
/// Calls refused by a quota, by quota name and limit (`rate`, `concurrent`, `unavailable`).
pub static QUOTA_REJECTIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "mcpgw_quota_rejections_total",
        "Calls refused by a quota, by quota and limit (rate, concurrent, unavailable)",
        &["quota", "limit"],
    )
});
/// Calls admitted under at least one quota, by quota name.
pub static QUOTA_ADMITTED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "mcpgw_quota_admitted_total",
        "Calls admitted by a quota, by quota",
        &["quota"],
    )
});
/// Audit records written, by outcome.
pub static AUDIT_RECORDS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "mcpgw_audit_records_total",
        "Audit records written, by outcome",
        &["outcome"],
    )
});
/// Audit records that could not be appended to the Redis stream (they are in the log).
pub static AUDIT_STREAM_ERRORS: LazyLock<IntCounter> = LazyLock::new(|| {
    IntCounter::new(
        "mcpgw_audit_stream_errors_total",
        "Audit records (or batches) not appended to the Redis stream (queue full or Redis error)",
    )
    .unwrap_or_else(|e| panic!("invalid metric definition: {e}"))
});

/// The metrics, for registering in a metrics registry.
pub fn collectors() -> Vec<Box<dyn prometheus::core::Collector>> {
    vec![
        Box::new(DENIALS.clone()),
        Box::new(RELOADS.clone()),
        Box::new(QUOTA_REJECTIONS.clone()),
        Box::new(QUOTA_ADMITTED.clone()),
        Box::new(AUDIT_RECORDS.clone()),
        Box::new(AUDIT_STREAM_ERRORS.clone()),
    ]
}
