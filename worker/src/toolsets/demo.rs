//! The demo tools (the contract is `shared/demo-tools.md`): notifications, broadcasts,
//! progress, background work and the cluster's status, done the MCP way.

use crate::context::ToolContext;
use crate::tool::{ToolError, ToolSet};
use mcp_protocol::{CallToolResult, LogLevel};
use rand::Rng;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;
use std::time::Duration;

/// Arguments of `send_notification`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendNotification {
    /// The message to send.
    pub message: String,
    /// Its log level.
    #[serde(default = "info")]
    pub level: LogLevel,
}

/// Arguments of `broadcast`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Broadcast {
    /// The message to send to every session.
    pub message: String,
    /// Its log level.
    #[serde(default = "info")]
    pub level: LogLevel,
}

/// Arguments of `long_running_operation`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LongRunningOperation {
    /// Number of steps.
    #[serde(default = "five")]
    #[schemars(range(min = 1, max = 10000))]
    pub steps: u32,
    /// Milliseconds per step.
    #[serde(default = "hundred")]
    #[schemars(range(min = 0, max = 60000))]
    pub step_ms: u64,
}

/// Arguments of `start_background_task`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StartBackgroundTask {
    /// A name for the task (its notifications use the logger `task/<name>`).
    pub name: String,
    /// How many notifications to send.
    #[serde(default = "five")]
    #[schemars(range(min = 1, max = 1000))]
    pub count: u32,
    /// Milliseconds between notifications.
    #[serde(default = "thousand")]
    #[schemars(range(min = 10, max = 60000))]
    pub interval_ms: u64,
}

/// `server_status` takes no arguments.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoArguments {}

fn info() -> LogLevel {
    LogLevel::Info
}
fn five() -> u32 {
    5
}
fn hundred() -> u64 {
    100
}
fn thousand() -> u64 {
    1000
}

/// The five demo tools.
pub fn tools() -> ToolSet {
    ToolSet::new()
        .tool(
            "send_notification",
            "Send one log notification (notifications/message, logger \"notify\") on this request's stream, then return.",
            send_notification,
        )
        .tool(
            "broadcast",
            "Send a log notification (logger \"broadcast\") to every live session's standalone stream, on every gateway.",
            broadcast,
        )
        .tool(
            "long_running_operation",
            "Run for `steps` steps of `step_ms` each, reporting progress when the request carries a progress token. Cancellable.",
            long_running_operation,
        )
        .tool(
            "start_background_task",
            "Start a task that sends `count` log notifications (logger \"task/<name>\") on the session's standalone stream, one every `interval_ms`; returns at once.",
            start_background_task,
        )
        .tool_with(
            "server_status",
            "Report the cluster: gateways, sessions, workers and jobs in flight.",
            Some(json!({"readOnlyHint": true})),
            server_status,
        )
        // Running these twice shows the client nothing twice: the gateway drops progress
        // that does not increase.
        .retryable(&["long_running_operation", "server_status"])
}

async fn send_notification(
    ctx: ToolContext,
    args: SendNotification,
) -> Result<CallToolResult, ToolError> {
    ctx.log(args.level, "notify", &args.message).await?;
    Ok(CallToolResult::text(format!(
        "notification sent ({}): {}",
        args.level.as_str(),
        args.message
    )))
}

async fn broadcast(ctx: ToolContext, args: Broadcast) -> Result<CallToolResult, ToolError> {
    ctx.broadcast_log(args.level, "broadcast", &args.message)
        .await?;
    Ok(CallToolResult::text(format!(
        "broadcast sent to every session ({}): {}",
        args.level.as_str(),
        args.message
    )))
}

async fn long_running_operation(
    ctx: ToolContext,
    args: LongRunningOperation,
) -> Result<CallToolResult, ToolError> {
    let steps = args.steps;
    for i in 1..=steps {
        if args.step_ms > 0 {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(args.step_ms)) => {}
                () = ctx.cancelled() => return Err(ToolError::Cancelled),
            }
        } else if ctx.is_cancelled() {
            return Err(ToolError::Cancelled);
        }
        ctx.progress(
            f64::from(i),
            Some(f64::from(steps)),
            Some(&format!("step {i}/{steps}")),
        )
        .await?;
    }
    Ok(CallToolResult::text(format!(
        "operation completed: {steps} steps"
    )))
}

async fn start_background_task(
    ctx: ToolContext,
    args: StartBackgroundTask,
) -> Result<CallToolResult, ToolError> {
    let Some(session) = ctx.session() else {
        return Err(ToolError::failed(
            "background tasks need a session with a standalone stream; this request has none",
        ));
    };
    let id = format!("{:08x}", rand::rng().random::<u32>());
    let task_id = id.clone();
    let name = args.name.clone();
    tokio::spawn(async move {
        let logger = format!("task/{name}");
        let mut tick = tokio::time::interval(Duration::from_millis(args.interval_ms));
        tick.tick().await;
        for i in 1..=args.count {
            tokio::select! {
                _ = tick.tick() => {}
                () = session.closed() => return,
            }
            let data = json!({"task": name, "id": task_id, "tick": i, "of": args.count});
            if let Err(e) = session.log(LogLevel::Info, &logger, data).await {
                tracing::debug!(error = %e, "background task stopped: its session is gone");
                return;
            }
        }
    });
    Ok(CallToolResult::text(format!(
        "background task {:?} started with id {id}: {} notifications, one every {} ms",
        args.name, args.count, args.interval_ms
    )))
}

async fn server_status(ctx: ToolContext, _args: NoArguments) -> Result<CallToolResult, ToolError> {
    let stats = ctx.cluster_stats().await?;
    Ok(CallToolResult::text(
        serde_json::to_string(&stats).unwrap_or_default(),
    ))
}
