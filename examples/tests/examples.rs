//! The example binaries, run for real: a user's own tool served by a standalone gateway
//! binary, and by a worker binary behind `mcp-gateway` on Redis.

use e2e_tests::client::messages;
use e2e_tests::{Gateway, RawClient, RedisServer, WorkerProcess, wait_for_workers};
use serde_json::{Value, json};
use std::path::Path;

const VERSION: &str = "2025-11-25";

/// Calls `word_count` with a progress token; checks its log, progress and result.
async fn call_word_count(client: &RawClient) -> anyhow::Result<()> {
    let events = client
        .call_tool(
            7,
            "word_count",
            json!({"text": "one two three"}),
            Some("p1"),
        )
        .await?;
    let messages = messages(&events);
    let log = messages
        .iter()
        .find(|m| m["method"] == "notifications/message")
        .ok_or_else(|| anyhow::anyhow!("no log message in {messages:?}"))?;
    assert_eq!(log["params"]["data"], "3 words");
    assert_eq!(log["params"]["logger"], "word_count");
    let progress = messages
        .iter()
        .find(|m| m["method"] == "notifications/progress")
        .ok_or_else(|| anyhow::anyhow!("no progress in {messages:?}"))?;
    assert_eq!(progress["params"]["progressToken"], "p1");
    let result = messages
        .iter()
        .find(|m| m["id"] == 7)
        .ok_or_else(|| anyhow::anyhow!("no result in {messages:?}"))?;
    assert_eq!(result["result"]["content"][0]["text"], "3 words");
    Ok(())
}

fn tool_names(list: &Value) -> Vec<String> {
    list["result"]["tools"]
        .as_array()
        .map(|tools| {
            tools
                .iter()
                .filter_map(|t| t["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn standalone_gateway_binary_serves_the_users_toolset() -> anyhow::Result<()> {
    let gateway =
        Gateway::start_binary(Path::new(env!("CARGO_BIN_EXE_example-gateway")), &[], &[])?;
    let mut client = RawClient::new(&gateway.url());
    client.initialize(VERSION).await?;
    // `text` is this binary's default: the built-in demo tools are not served unless asked.
    let names = tool_names(&client.request(1, "tools/list", json!({})).await?);
    assert_eq!(names, vec!["word_count".to_owned()]);
    call_word_count(&client).await
}

#[tokio::test]
async fn standalone_gateway_binary_combines_builtin_and_own_sets() -> anyhow::Result<()> {
    let gateway = Gateway::start_binary(
        Path::new(env!("CARGO_BIN_EXE_example-gateway")),
        &["--toolset", "text,demo"],
        &[],
    )?;
    let mut client = RawClient::new(&gateway.url());
    client.initialize(VERSION).await?;
    let names = tool_names(&client.request(1, "tools/list", json!({})).await?);
    assert!(names.contains(&"word_count".to_owned()), "{names:?}");
    assert!(names.contains(&"send_notification".to_owned()), "{names:?}");
    call_word_count(&client).await
}

#[tokio::test]
async fn worker_binary_serves_the_users_toolset_over_redis() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let url = redis.url();
    let gateway = Gateway::start(&["--redis-url", &url])?;
    // `demo` too, for `server_status`, which tells when the worker has registered.
    let _worker = WorkerProcess::start_binary(
        Path::new(env!("CARGO_BIN_EXE_example-worker")),
        &url,
        &["--toolset", "text,demo"],
        &[],
    )?;
    let mut client = RawClient::new(&gateway.url());
    client.initialize(VERSION).await?;
    wait_for_workers(&client, 1).await?;
    let names = tool_names(&client.request(1, "tools/list", json!({})).await?);
    assert!(names.contains(&"word_count".to_owned()), "{names:?}");
    call_word_count(&client).await
}

#[test]
fn unknown_toolset_is_refused_with_the_known_names() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_example-worker"))
        .args(["--toolset", "nope", "--list-tools"])
        .output()
        .expect("run example-worker");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("unknown toolset \"nope\"") && stderr.contains("text"),
        "{stderr}"
    );
}
