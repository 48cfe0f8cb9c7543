//! Audit: one record per tool call, prompt get and resource read, refused ones included.
//!
//! A record is written to the log under the tracing target [`TARGET`] (one JSON line per
//! record with `--log-format json`), and, when configured, appended to the bus's audit log
//! (`mcp_bus::Bus::audit_append`; on Redis a stream bounded with `XADD ... MAXLEN ~`,
//! which every gateway of the cluster appends to).
//! Exactly one record per call: a [`CallTicket`] writes it when the call's outcome is
//! known, or when it is dropped without one (the client went away first).

use mcp_bus::Bus;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::mpsc;

/// The tracing target of audit records.
pub const TARGET: &str = "mcpgw::audit";

/// How a call ended, as the audit record says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A result.
    Ok,
    /// A tool result with `isError: true`.
    ToolError,
    /// A JSON-RPC error from the worker (or the gateway's deadline).
    Error,
    /// Refused by the policy: the caller may not use it (never reached a worker).
    Denied,
    /// Refused by a quota (never reached a worker).
    Quota,
    /// Could not be handed to a worker (bus unavailable, queue full).
    Unavailable,
    /// Cancelled by the client (`notifications/cancelled`): no response.
    Cancelled,
    /// The client's connection ended before the answer; the call may still have run.
    Disconnected,
}

impl Outcome {
    /// The value of the record's `outcome` field (and of the metric's label).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::ToolError => "tool_error",
            Outcome::Error => "error",
            Outcome::Denied => "denied",
            Outcome::Quota => "quota",
            Outcome::Unavailable => "unavailable",
            Outcome::Cancelled => "cancelled",
            Outcome::Disconnected => "disconnected",
        }
    }

    /// The outcome a JSON-RPC response shows.
    pub fn of_response(response: &Value) -> (Self, Option<i64>) {
        if let Some(code) = response.get("error").map(|e| e["code"].as_i64()) {
            return (Outcome::Error, code);
        }
        if response["result"]["isError"] == Value::Bool(true) {
            return (Outcome::ToolError, None);
        }
        (Outcome::Ok, None)
    }
}

/// Where records go, besides the log.
pub struct AuditSink {
    /// Whether records carry the arguments themselves (else only their hash).
    pub include_arguments: bool,
    /// The bus audit log's writer, if one is configured.
    stream: Option<mpsc::Sender<Vec<(&'static str, String)>>>,
    node: String,
}

impl AuditSink {
    /// A sink writing to the log only.
    pub fn log_only(include_arguments: bool, node: &str) -> Self {
        Self {
            include_arguments,
            stream: None,
            node: node.to_owned(),
        }
    }

    /// A sink that also appends to the bus's audit log, which keeps about `max_len`
    /// records. Records wait in a bounded queue; when the bus is slower than the calls,
    /// the excess is dropped from the audit log (never from the process log) and counted.
    pub fn with_bus(
        include_arguments: bool,
        node: &str,
        bus: Arc<dyn Bus>,
        max_len: usize,
    ) -> Self {
        let (tx, mut rx) = mpsc::channel::<Vec<(&'static str, String)>>(4096);
        tokio::spawn(async move {
            let mut batch = Vec::new();
            while rx.recv_many(&mut batch, 256).await > 0 {
                let records = batch
                    .drain(..)
                    .map(|fields| {
                        fields
                            .into_iter()
                            .map(|(field, value)| (field.to_owned(), value))
                            .collect()
                    })
                    .collect();
                if let Err(e) = bus.audit_append(records, max_len).await {
                    crate::policy::metrics::AUDIT_STREAM_ERRORS.inc();
                    tracing::warn!(error = %e, "could not append audit records to the bus's audit log");
                }
            }
        });
        Self {
            include_arguments,
            stream: Some(tx),
            node: node.to_owned(),
        }
    }

    fn write(&self, record: &Record, outcome: Outcome, code: Option<i64>) {
        let duration_ms = record.started.elapsed().as_secs_f64() * 1000.0;
        let time = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(record.time_ms as i64)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_default();
        let code_text = code.map(|c| c.to_string()).unwrap_or_default();
        let arguments = record.arguments.as_deref().unwrap_or("");
        tracing::info!(
            target: TARGET,
            time = %time,
            principal = %record.principal,
            session = %record.session,
            method = %record.method,
            name = %record.name,
            outcome = outcome.as_str(),
            error_code = %code_text,
            reason = %record.reason.lock().map(|r| r.clone()).unwrap_or_default(),
            duration_ms = format_args!("{duration_ms:.3}"),
            trace_id = %record.trace_id,
            request_id = %record.request_id,
            arguments_sha256 = %record.arguments_sha256,
            arguments = %arguments,
            gateway = %self.node,
            "audit"
        );
        crate::policy::metrics::AUDIT_RECORDS
            .with_label_values(&[outcome.as_str()])
            .inc();
        if let Some(stream) = &self.stream {
            let mut fields = vec![
                ("time", time),
                ("principal", record.principal.clone()),
                ("session", record.session.clone()),
                ("method", record.method.clone()),
                ("name", record.name.clone()),
                ("outcome", outcome.as_str().to_owned()),
                ("error_code", code_text),
                (
                    "reason",
                    record.reason.lock().map(|r| r.clone()).unwrap_or_default(),
                ),
                ("duration_ms", format!("{duration_ms:.3}")),
                ("trace_id", record.trace_id.clone()),
                ("request_id", record.request_id.clone()),
                ("arguments_sha256", record.arguments_sha256.clone()),
                ("gateway", self.node.clone()),
            ];
            if let Some(arguments) = &record.arguments {
                fields.push(("arguments", arguments.clone()));
            }
            if stream.try_send(fields).is_err() {
                crate::policy::metrics::AUDIT_STREAM_ERRORS.inc();
            }
        }
    }
}

/// What a record says, known when the call arrives.
pub struct Record {
    time_ms: u64,
    started: Instant,
    /// The principal (empty when anonymous).
    pub principal: String,
    /// The MCP session (empty for a 2026-07-28 request, which has none).
    pub session: String,
    /// `tools/call`, `prompts/get` or `resources/read`.
    pub method: String,
    /// The tool or prompt name, or the resource URI.
    pub name: String,
    /// The W3C trace id of the request, when traced.
    pub trace_id: String,
    /// The JSON-RPC request id.
    pub request_id: String,
    /// SHA-256 (hex) of the arguments as JSON (`params.arguments`; `null` when absent).
    pub arguments_sha256: String,
    /// The arguments themselves, when configured.
    pub arguments: Option<String>,
    /// Why a refused call was refused (the quota's name), else empty.
    pub reason: Mutex<String>,
}

impl Record {
    /// A record of a call arriving now.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        include_arguments: bool,
        principal: &str,
        session: &str,
        method: &str,
        name: &str,
        request_id: &str,
        trace_id: Option<&str>,
        arguments: Option<&Value>,
    ) -> Self {
        let arguments = arguments.cloned().unwrap_or(Value::Null).to_string();
        Self {
            time_ms: mcp_bus::now_ms(),
            started: Instant::now(),
            principal: principal.to_owned(),
            session: session.to_owned(),
            method: method.to_owned(),
            name: name.to_owned(),
            trace_id: trace_id.unwrap_or_default().to_owned(),
            request_id: request_id.to_owned(),
            arguments_sha256: hex::encode(Sha256::digest(arguments.as_bytes())),
            arguments: include_arguments.then_some(arguments),
            reason: Mutex::new(String::new()),
        }
    }
}

/// A call in flight: writes its one audit record when finished, or when dropped first
/// (then as [`Outcome::Disconnected`]). Holds the call's quota slots until then.
pub struct CallTicket {
    sink: Option<Arc<AuditSink>>,
    record: Record,
    done: Mutex<bool>,
    /// Calls-running slots, released with the ticket.
    pub slots: Mutex<Option<crate::policy::quota::Slots>>,
}

impl CallTicket {
    /// A ticket for a call; without a sink (audit off) it only holds the call's slots.
    pub fn new(sink: Option<Arc<AuditSink>>, record: Record) -> Self {
        Self {
            sink,
            record,
            done: Mutex::new(false),
            slots: Mutex::new(None),
        }
    }

    /// Writes the record (once; later calls do nothing) and releases the call's slots.
    pub fn finish(&self, outcome: Outcome, code: Option<i64>) {
        {
            let mut done = self.done.lock().unwrap_or_else(|p| p.into_inner());
            if *done {
                return;
            }
            *done = true;
        }
        if let Some(sink) = &self.sink {
            sink.write(&self.record, outcome, code);
        }
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// Writes the record of the JSON-RPC response that ends the call.
    pub fn finish_with(&self, response: &Value) {
        let (outcome, code) = Outcome::of_response(response);
        self.finish(outcome, code);
    }

    /// Notes why a refused call was refused.
    pub fn set_reason(&self, reason: &str) {
        if let Ok(mut r) = self.record.reason.lock() {
            *r = reason.to_owned();
        }
    }
}

impl std::fmt::Debug for CallTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallTicket")
            .field("method", &self.record.method)
            .field("name", &self.record.name)
            .finish_non_exhaustive()
    }
}

impl Drop for CallTicket {
    fn drop(&mut self) {
        self.finish(Outcome::Disconnected, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn outcomes_of_responses() {
        let ok = json!({"jsonrpc": "2.0", "id": 1, "result": {"content": []}});
        assert_eq!(Outcome::of_response(&ok), (Outcome::Ok, None));
        let tool = json!({"jsonrpc": "2.0", "id": 1, "result": {"isError": true}});
        assert_eq!(Outcome::of_response(&tool), (Outcome::ToolError, None));
        let err = json!({"jsonrpc": "2.0", "id": 1, "error": {"code": -32602, "message": "x"}});
        assert_eq!(Outcome::of_response(&err), (Outcome::Error, Some(-32602)));
    }
}
