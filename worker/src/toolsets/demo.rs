//! The demo tools (the contract is `shared/demo-tools.md`): notifications, broadcasts,
//! progress, background work and the cluster's status, done the MCP way.
//!
//! Under 2026-07-28 there is no session stream, so the same tools also speak in
//! resources: a broadcast updates `notify://broadcast` (both generations see the same
//! broadcast), and a background task without a session reports on `notify://tasks/{id}`,
//! a log on the bus any worker can read. Listeners subscribed to either URI get
//! `notifications/resources/updated` on whichever gateway holds their stream.

use crate::catalog::ResourceContents;
use crate::context::ToolContext;
use crate::tool::{ToolError, ToolSet};
use mcp_protocol::{CallToolResult, ErrorObject, LogLevel, Resource, ResourceTemplate, jsonrpc};
use rand::Rng;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
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

/// The resource a broadcast updates: the last broadcast, for 2026-07-28 listeners.
pub const BROADCAST_URI: &str = "notify://broadcast";
/// The template of a background task's resource.
pub const TASK_URI_TEMPLATE: &str = "notify://tasks/{id}";

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
        .resource(
            Resource {
                uri: BROADCAST_URI.into(),
                name: "broadcast".into(),
                title: Some("Last broadcast".into()),
                description: Some("The last message sent with the broadcast tool: message, level and time. Subscribe (subscriptions/listen) to hear of new ones.".into()),
                mime_type: Some("application/json".into()),
                extra: Default::default(),
            },
            read_broadcast,
        )
        .resource_template(
            ResourceTemplate {
                uri_template: TASK_URI_TEMPLATE.into(),
                name: "background-task".into(),
                description: Some("A background task started without a session: its ticks so far".into()),
                mime_type: Some("application/json".into()),
                extra: Default::default(),
            },
            read_task,
        )
        // Running these twice shows the client nothing twice: the gateway drops progress
        // that does not increase.
        .retryable(&["long_running_operation", "server_status"])
}

/// How far back `notify://broadcast` looks in the broadcast log (which also carries list
/// changes) for the last broadcast.
const BROADCAST_LOOKBACK: u64 = 256;

async fn read_broadcast(ctx: ToolContext) -> Result<Vec<ResourceContents>, ToolError> {
    let events = ctx.recent_broadcasts(BROADCAST_LOOKBACK).await?;
    let last = events.iter().rev().find(|e| {
        e.message["method"] == "notifications/message"
            && e.message["params"]["logger"] == "broadcast"
    });
    let body = match last {
        Some(e) => json!({
            "message": e.message["params"]["data"],
            "level": e.message["params"]["level"],
            "time_ms": e.emitted_ms,
        }),
        None => json!({"message": null}),
    };
    Ok(vec![ResourceContents::text(
        BROADCAST_URI,
        "application/json",
        body.to_string(),
    )])
}

async fn read_task(
    ctx: ToolContext,
    uri: String,
    vars: HashMap<String, String>,
) -> Result<Vec<ResourceContents>, ToolError> {
    let id = vars.get("id").map(String::as_str).unwrap_or_default();
    let Some(entries) = ctx.read_log(id).await? else {
        return Err(ToolError::Protocol(
            ErrorObject::new(
                jsonrpc::RESOURCE_NOT_FOUND,
                format!("Resource not found: {uri}"),
            )
            .with_data(json!({"uri": uri})),
        ));
    };
    let of = entries.first().and_then(|e| e["of"].as_u64());
    let ticks: Vec<&Value> = entries.iter().filter(|e| e.get("tick").is_some()).collect();
    let body = json!({
        "id": id,
        "task": entries.first().map(|e| e["task"].clone()),
        "ticks": ticks,
        "done": of.is_some_and(|of| ticks.len() as u64 >= of),
    });
    Ok(vec![ResourceContents::text(
        uri,
        "application/json",
        body.to_string(),
    )])
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
    // The same broadcast as a resource change, for 2026-07-28 listeners.
    ctx.resource_updated(BROADCAST_URI).await?;
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
        return start_task_resource(ctx, args).await;
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

/// A background task for a request without a session stream (2026-07-28, or a stateless
/// gateway): its ticks go to a log on the bus, readable as `notify://tasks/{id}`, and
/// each one tells that resource's subscribers it changed.
async fn start_task_resource(
    ctx: ToolContext,
    args: StartBackgroundTask,
) -> Result<CallToolResult, ToolError> {
    let log = ctx.open_log().await?;
    let id = log.id().to_owned();
    let uri = TASK_URI_TEMPLATE.replace("{id}", &id);
    log.append(json!({"task": args.name, "id": id, "of": args.count}))
        .await?;
    let name = args.name.clone();
    let task_uri = uri.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(args.interval_ms));
        tick.tick().await;
        for i in 1..=args.count {
            tick.tick().await;
            let entry = json!({"task": name, "id": log.id(), "tick": i, "of": args.count});
            let appended = async {
                log.append(entry).await?;
                log.resource_updated(&task_uri).await
            };
            if let Err(e) = appended.await {
                tracing::debug!(error = %e, "background task stopped: its log is gone");
                return;
            }
        }
    });
    Ok(CallToolResult::content(vec![
        json!({"type": "text", "text": format!(
            "background task {:?} started as {uri}: {} ticks, one every {} ms; read or subscribe to it",
            args.name, args.count, args.interval_ms
        )}),
        json!({"type": "resource_link", "uri": uri, "name": format!("task {}", args.name), "mimeType": "application/json"}),
    ]))
}

async fn server_status(ctx: ToolContext, _args: NoArguments) -> Result<CallToolResult, ToolError> {
    let stats = ctx.cluster_stats().await?;
    let mut status = serde_json::to_value(&stats).unwrap_or_default();
    // The upstream MCP servers of the worker that answers (each worker has its own view).
    let upstreams = ctx.upstreams();
    if !upstreams.is_empty() {
        status["upstreams"] = serde_json::to_value(upstreams).unwrap_or_default();
    }
    Ok(CallToolResult::text(status.to_string()))
}
