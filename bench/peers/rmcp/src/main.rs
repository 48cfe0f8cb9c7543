#![allow(deprecated)] // logging notifications are deprecated in 2026-07-28, still part of the session protocol
//! Reference peer for `mcp-bench`: the demo tools of `shared/demo-tools.md` on the official
//! Rust SDK (rmcp 3.11), its Streamable HTTP server (sessions in process memory), served
//! by axum with TCP_NODELAY on every accepted socket (without it each streamed call
//! waits ~44 ms: small SSE writes meet delayed ACKs).
//!
//!     rmcp-peer --port 8200
//!
//! Deviations the SDK imposes: notifications that are not progress (send_notification's
//! log message) are routed by rmcp to the session's standalone GET stream, not to the
//! call's own stream; broadcast reaches the sessions that finished initialization in this
//! process (recorded in `on_initialized`, dropped when a send fails).

use axum::serve::ListenerExt;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation, InitializeResult,
    JsonObject, ListToolsResult, LoggingLevel, LoggingMessageNotificationParam, PaginatedRequestParams,
    ProgressNotificationParam, ServerCapabilities, SetLevelRequestParams, Tool,
};
use rmcp::service::{NotificationContext, RequestContext};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData as McpError, Peer, RoleServer, ServerHandler};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Level = Arc<Mutex<LoggingLevel>>;

#[derive(Default)]
struct Shared {
    sessions: Mutex<Vec<(u64, Peer<RoleServer>, Level)>>,
    next_session: AtomicU64,
    next_task: AtomicU64,
    jobs: AtomicI64,
}

/// One handler per session (the service factory makes a new one for each).
#[derive(Clone)]
struct Demo {
    shared: Arc<Shared>,
    level: Level,
}

fn rank(level: LoggingLevel) -> u8 {
    match level {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}

fn parse_level(args: &JsonObject) -> Result<LoggingLevel, McpError> {
    match args.get("level") {
        None => Ok(LoggingLevel::Info),
        Some(v) => serde_json::from_value(v.clone()).map_err(|_| McpError::invalid_params("level: unknown level", None)),
    }
}

fn allows(level: &Level, wanted: LoggingLevel) -> bool {
    rank(wanted) >= rank(*level.lock().unwrap())
}

fn int_arg(args: &JsonObject, name: &str, default: i64, min: i64, max: i64) -> Result<i64, McpError> {
    match args.get(name) {
        None => Ok(default),
        Some(v) => v
            .as_i64()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| McpError::invalid_params(format!("{name}: an integer in {min}..={max}"), None)),
    }
}

fn str_arg(args: &JsonObject, name: &str) -> Result<String, McpError> {
    args.get(name)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| McpError::invalid_params(format!("{name}: a string is required"), None))
}

fn schema(v: Value) -> JsonObject {
    match v {
        Value::Object(o) => o,
        _ => JsonObject::new(),
    }
}

fn tools() -> Vec<Tool> {
    let level = json!({"type": "string", "enum": ["debug","info","notice","warning","error","critical","alert","emergency"], "default": "info"});
    vec![
        Tool::new(
            "send_notification",
            "Send one log message on this request's stream",
            schema(json!({"type": "object", "properties": {"message": {"type": "string"}, "level": level}, "required": ["message"]})),
        ),
        Tool::new(
            "broadcast",
            "Send a log message to every session's standalone stream",
            schema(json!({"type": "object", "properties": {"message": {"type": "string"}, "level": level}, "required": ["message"]})),
        ),
        Tool::new(
            "long_running_operation",
            "A long operation that reports progress",
            schema(json!({"type": "object", "properties": {
                "steps": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 5},
                "step_ms": {"type": "integer", "minimum": 0, "maximum": 60000, "default": 100}}})),
        ),
        Tool::new(
            "start_background_task",
            "Start a background task that notifies the standalone stream",
            schema(json!({"type": "object", "properties": {
                "name": {"type": "string"},
                "count": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 5},
                "interval_ms": {"type": "integer", "minimum": 10, "maximum": 60000, "default": 1000}},
                "required": ["name"]})),
        ),
        Tool::new("server_status", "Server status", schema(json!({"type": "object", "properties": {}}))),
    ]
}

fn text(s: impl Into<String>) -> CallToolResponse {
    CallToolResult::success(vec![ContentBlock::text(s.into())]).into()
}

impl ServerHandler for Demo {
    fn get_info(&self) -> InitializeResult {
        InitializeResult::new(ServerCapabilities::builder().enable_tools().enable_logging().build())
            .with_server_info(Implementation::new("rmcp-peer", "0.1.0"))
            .with_protocol_version(rmcp::model::ProtocolVersion::V_2025_11_25)
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        let id = self.shared.next_session.fetch_add(1, Ordering::Relaxed);
        self.shared.sessions.lock().unwrap().push((id, context.peer.clone(), self.level.clone()));
    }

    async fn set_level(&self, request: SetLevelRequestParams, _: RequestContext<RoleServer>) -> Result<(), McpError> {
        *self.level.lock().unwrap() = request.level;
        Ok(())
    }

    async fn list_tools(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(tools()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let args = request.arguments.clone().unwrap_or_default();
        match request.name.as_ref() {
            "send_notification" => {
                let message = str_arg(&args, "message")?;
                let level = parse_level(&args)?;
                if allows(&self.level, level) {
                    let param = LoggingMessageNotificationParam::new(level, Value::String(message.clone())).with_logger("notify");
                    let _ = context.peer.notify_logging_message(param).await;
                }
                Ok(text(format!("notification sent: {message}")))
            }
            "broadcast" => {
                let message = str_arg(&args, "message")?;
                let level = parse_level(&args)?;
                let param = LoggingMessageNotificationParam::new(level, Value::String(message)).with_logger("broadcast");
                let sessions: Vec<_> = self.shared.sessions.lock().unwrap().clone();
                let mut sent = 0usize;
                let mut dead = Vec::new();
                for (id, peer, session_level) in sessions {
                    if !allows(&session_level, level) {
                        continue;
                    }
                    match peer.notify_logging_message(param.clone()).await {
                        Ok(()) => sent += 1,
                        Err(_) => dead.push(id),
                    }
                }
                if !dead.is_empty() {
                    self.shared.sessions.lock().unwrap().retain(|(id, _, _)| !dead.contains(id));
                }
                Ok(text(format!("broadcast sent to {sent} sessions")))
            }
            "long_running_operation" => {
                let steps = int_arg(&args, "steps", 5, 1, 10_000)?;
                let step_ms = int_arg(&args, "step_ms", 100, 0, 60_000)? as u64;
                let token = context.meta.get_progress_token();
                self.shared.jobs.fetch_add(1, Ordering::Relaxed);
                let mut cancelled = false;
                for i in 1..=steps {
                    if step_ms > 0 {
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_millis(step_ms)) => {}
                            _ = context.ct.cancelled() => { cancelled = true; }
                        }
                    }
                    if cancelled || context.ct.is_cancelled() {
                        cancelled = true;
                        break;
                    }
                    if let Some(token) = &token {
                        let param = ProgressNotificationParam::new(token.clone(), i as f64)
                            .with_total(steps as f64)
                            .with_message(format!("step {i}/{steps}"));
                        let _ = context.peer.notify_progress(param).await;
                    }
                }
                self.shared.jobs.fetch_sub(1, Ordering::Relaxed);
                if cancelled {
                    return Err(McpError::internal_error("cancelled", None));
                }
                Ok(text(format!("operation completed: {steps} steps")))
            }
            "start_background_task" => {
                let name = str_arg(&args, "name")?;
                let count = int_arg(&args, "count", 5, 1, 1000)?;
                let interval = int_arg(&args, "interval_ms", 1000, 10, 60_000)? as u64;
                let id = format!("{name}-{}", self.shared.next_task.fetch_add(1, Ordering::Relaxed) + 1);
                let peer = context.peer.clone();
                let level = self.level.clone();
                let task_id = id.clone();
                tokio::spawn(async move {
                    for tick in 1..=count {
                        tokio::time::sleep(Duration::from_millis(interval)).await;
                        if allows(&level, LoggingLevel::Info) {
                            let data = json!({"task": name, "id": task_id, "tick": tick, "of": count});
                            let param = LoggingMessageNotificationParam::new(LoggingLevel::Info, data)
                                .with_logger(format!("task/{name}"));
                            if peer.notify_logging_message(param).await.is_err() {
                                return;
                            }
                        }
                    }
                });
                Ok(text(format!("started background task {id}")))
            }
            "server_status" => {
                let sessions = self.shared.sessions.lock().unwrap().len();
                let status = json!({"gateways": 1, "sessions": sessions, "workers": 1,
                    "jobs_in_flight": self.shared.jobs.load(Ordering::Relaxed)});
                Ok(text(status.to_string()))
            }
            other => Err(McpError::invalid_params(format!("unknown tool: {other}"), None)),
        }
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut port = 8200u16;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--port" {
            port = args.next().and_then(|p| p.parse().ok()).expect("--port N");
        }
    }
    let shared = Arc::new(Shared::default());
    let service = StreamableHttpService::new(
        move || {
            Ok(Demo {
                shared: shared.clone(),
                level: Arc::new(Mutex::new(LoggingLevel::Debug)),
            })
        },
        LocalSessionManager::default().into(),
        StreamableHttpServerConfig::default(),
    );
    let router = axum::Router::new().nest_service("/mcp", service);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    eprintln!("rmcp-peer listening on http://127.0.0.1:{port}/mcp");
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router).await
}
