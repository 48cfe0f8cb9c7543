//! Interoperability with the official Rust SDK client (`rmcp`, streamable HTTP transport),
//! pinned to the 2025-11-25 session protocol.
//!
//! rmcp marks `notifications/message` deprecated (SEP-2577 removes logging after the
//! session protocol); this test speaks 2025-11-25, where logging is current.
#![allow(deprecated)]

use e2e_tests::Gateway;
use rmcp::model::{
    CallToolRequestParams, ClientConfig, LoggingMessageNotificationParam,
    ProgressNotificationParam, ProtocolVersion,
};
use rmcp::service::{NotificationContext, RoleClient};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientHandler, ServiceExt};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::sync::mpsc;

#[derive(Debug)]
enum Seen {
    Progress(f64),
    Log {
        logger: String,
        level: String,
        data: Value,
    },
}

struct Recorder {
    seen: mpsc::UnboundedSender<Seen>,
}

impl ClientHandler for Recorder {
    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        let _ = self.seen.send(Seen::Progress(params.progress));
    }

    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        let level = serde_json::to_value(params.level)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let _ = self.seen.send(Seen::Log {
            logger: params.logger.unwrap_or_default(),
            level,
            data: params.data,
        });
    }

    fn get_info(&self) -> ClientConfig {
        ClientConfig::default().with_protocol_version(ProtocolVersion::V_2025_11_25)
    }
}

fn args(v: Value) -> serde_json::Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

fn text_of(result: &rmcp::model::CallToolResult) -> String {
    let v = serde_json::to_value(result).unwrap_or(Value::Null);
    v["content"][0]["text"].as_str().unwrap_or("").to_owned()
}

/// Waits until a log notification from `logger` arrives, keeping every other observation.
async fn wait_for_log(
    rx: &mut mpsc::UnboundedReceiver<Seen>,
    logger: &str,
    kept: &mut Vec<Seen>,
) -> (String, Value) {
    loop {
        let seen = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no {logger} notification within 20 s"))
            .expect("client alive");
        if let Seen::Log {
            logger: l,
            level,
            data,
        } = &seen
            && l == logger
        {
            return (level.clone(), data.clone());
        }
        kept.push(seen);
    }
}

#[tokio::test]
async fn the_official_rust_client_lists_calls_and_hears_every_notification() {
    let gw = Gateway::start(&[]).unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let transport = StreamableHttpClientTransport::from_uri(gw.url());
    let client = Recorder { seen: tx }
        .serve(transport)
        .await
        .expect("rmcp initializes");

    let info = client.peer_info().expect("server info after initialize");
    assert_eq!(info.protocol_version, ProtocolVersion::V_2025_11_25);

    let tools = client.list_all_tools().await.unwrap();
    let mut names: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "broadcast",
            "long_running_operation",
            "send_notification",
            "server_status",
            "start_background_task"
        ]
    );

    // A log notification on the call's own stream, before the result.
    let result = client
        .call_tool(
            CallToolRequestParams::new("send_notification")
                .with_arguments(args(json!({"message": "from-rmcp", "level": "notice"}))),
        )
        .await
        .unwrap();
    assert!(text_of(&result).contains("from-rmcp"));
    let mut other = Vec::new();
    let (level, data) = wait_for_log(&mut rx, "notify", &mut other).await;
    assert_eq!((level.as_str(), data), ("notice", json!("from-rmcp")));

    // Progress: rmcp puts a progress token of its own on every request (it overwrites any
    // `_meta.progressToken` a caller sets), so the call reports progress.
    let params = CallToolRequestParams::new("long_running_operation")
        .with_arguments(args(json!({"steps": 8, "step_ms": 5})));
    let result = client.call_tool(params).await.unwrap();
    assert_eq!(text_of(&result), "operation completed: 8 steps");
    // The result was delivered after all progress on the same stream, and the client
    // handles notifications in order, so a marker log sent now arrives after them all.
    client
        .call_tool(
            CallToolRequestParams::new("send_notification")
                .with_arguments(args(json!({"message": "marker"}))),
        )
        .await
        .unwrap();
    let mut seen = Vec::new();
    wait_for_log(&mut rx, "notify", &mut seen).await;
    let progress: Vec<f64> = seen
        .iter()
        .filter_map(|s| match s {
            Seen::Progress(p) => Some(*p),
            _ => None,
        })
        .collect();
    assert_eq!(progress, (1..=8).map(f64::from).collect::<Vec<_>>());

    // A broadcast and a background task arrive on the standalone stream the client opened.
    client
        .call_tool(
            CallToolRequestParams::new("broadcast")
                .with_arguments(args(json!({"message": "rmcp-all"}))),
        )
        .await
        .unwrap();
    let (_, data) = wait_for_log(&mut rx, "broadcast", &mut other).await;
    assert_eq!(data, "rmcp-all");
    client
        .call_tool(
            CallToolRequestParams::new("start_background_task")
                .with_arguments(args(json!({"name": "r", "count": 2, "interval_ms": 10}))),
        )
        .await
        .unwrap();
    for tick in 1..=2 {
        let (_, data) = wait_for_log(&mut rx, "task/r", &mut other).await;
        assert_eq!(data["tick"], tick);
    }

    let status = client
        .call_tool(CallToolRequestParams::new("server_status"))
        .await
        .unwrap();
    let status: Value = serde_json::from_str(&text_of(&status)).unwrap();
    assert_eq!(status["workers"], 1);

    client.cancel().await.unwrap();
}
