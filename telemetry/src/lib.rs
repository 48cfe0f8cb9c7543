//! Metrics, logs and traces, the same way in every process of the cluster.
//!
//! # Layout
//! - [`metrics`]: every Prometheus metric the gateway and the workers export
//!   ([`Metrics`]), in one registry whose series carry `role` and `node` labels so a
//!   dashboard can tell nodes apart; and the text exposition for `/metrics`.
//! - [`logs`]: the `tracing` subscriber: text or JSON logs, plus OpenTelemetry export over
//!   OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
//! - [`propagation`]: W3C trace context in and out of `traceparent` strings, so a trace
//!   follows a tool call from the HTTP request through the job to the worker.

pub mod logs;
pub mod metrics;
pub mod propagation;

pub use logs::{LogFormat, TelemetryGuard, init};
pub use metrics::{DeliveryKind, Metrics, Role};
