//! Interoperability with the official TypeScript MCP SDK client (`@modelcontextprotocol/sdk`,
//! the exact version pinned in `tests/clients/typescript/package.json`).
//!
//! `tests/clients/typescript/flows.mjs` drives a real gateway process through the SDK's
//! `Client` + `StreamableHTTPClientTransport` and prints one JSON line with everything it
//! observed; this test checks that line against the MCP specification and the demo tool
//! contract. Needs Node.js >= 18 and npm; the SDK is installed with `npm ci` from the
//! committed lock file when it is not installed yet.

use anyhow::{Context, bail, ensure};
use e2e_tests::Gateway;
use e2e_tests::typescript::{check_node, client_dir, ensure_sdk_installed, run_script};
use serde_json::Value;

/// Protocol versions the gateway speaks with sessions.
const GATEWAY_VERSIONS: &[&str] = &["2025-03-26", "2025-06-18", "2025-11-25"];
const DEMO_TOOLS: &[&str] = &[
    "send_notification",
    "broadcast",
    "long_running_operation",
    "start_background_task",
    "server_status",
];
/// The checks, one by one; the report is printed by the caller if any fails.
fn check_report(r: &Value) -> anyhow::Result<()> {
    // Protocol version: one the gateway speaks, and the one the SDK asked for when the
    // gateway speaks it (a server that supports the requested version MUST answer with it).
    let negotiated = r["protocol_version"]
        .as_str()
        .context("no protocol_version")?;
    ensure!(
        GATEWAY_VERSIONS.contains(&negotiated),
        "negotiated protocol version {negotiated} is not one the gateway supports"
    );
    if let Some(requested) = r["requested_protocol_version"].as_str()
        && GATEWAY_VERSIONS.contains(&requested)
    {
        ensure!(
            negotiated == requested,
            "the SDK requested {requested} (supported by the gateway) but {negotiated} was negotiated"
        );
    }
    ensure!(
        r["server_capabilities"]["logging"].is_object(),
        "the server does not declare the logging capability: {}",
        r["server_capabilities"]
    );

    // The GET stream was opened by the SDK itself after initialize, and answered with SSE.
    let gets: Vec<&Value> = r["http"]
        .as_array()
        .context("no http")?
        .iter()
        .filter(|h| h["method"] == "GET")
        .collect();
    ensure!(
        !gets.is_empty(),
        "the SDK never opened the standalone GET stream"
    );
    ensure!(
        gets[0]["status"] == 200
            && gets[0]["content_type"]
                .as_str()
                .is_some_and(|c| c.starts_with("text/event-stream")),
        "the standalone GET stream was not answered with 200 text/event-stream: {}",
        gets[0]
    );

    // tools/list
    let tools: Vec<&str> = r["tools"]
        .as_array()
        .context("no tools")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for tool in DEMO_TOOLS {
        ensure!(tools.contains(tool), "tool {tool} is not listed: {tools:?}");
    }
    let mut unique = tools.clone();
    unique.sort_unstable();
    unique.dedup();
    ensure!(
        unique.len() == tools.len(),
        "duplicate tool names: {tools:?}"
    );

    let logs = r["log_messages"].as_array().context("no log_messages")?;
    let sse = r["sse"].as_array().context("no sse")?;
    let result_text = |key: &str| {
        r["results"][key]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    // On which stream(s) the notifications/message with this logger and data arrived.
    let streams_of = |logger: &str, data: &Value| -> Vec<String> {
        sse.iter()
            .filter(|e| {
                e["method"] == "notifications/message"
                    && e["logger"] == logger
                    && e["data"] == *data
            })
            .map(|e| e["via"].as_str().unwrap_or_default().to_owned())
            .collect()
    };

    // send_notification: one message, level warning, logger notify, on the request's stream.
    let from_ts: Vec<&Value> = logs.iter().filter(|m| m["data"] == "from-ts").collect();
    ensure!(
        from_ts.len() == 1,
        "expected exactly one \"from-ts\" message: {from_ts:?}"
    );
    ensure!(
        from_ts[0]["logger"] == "notify" && from_ts[0]["level"] == "warning",
        "\"from-ts\" should have logger notify and level warning: {}",
        from_ts[0]
    );
    ensure!(
        streams_of("notify", &Value::from("from-ts")) == ["POST tools/call send_notification"],
        "\"from-ts\" should arrive on the tools/call POST response stream only, arrived on {:?}",
        streams_of("notify", &Value::from("from-ts"))
    );
    ensure!(
        result_text("send_notification").contains("from-ts"),
        "send_notification result does not contain the message: {:?}",
        result_text("send_notification")
    );

    // long_running_operation: progress 1..=5 (total 5), then the result.
    let progress: Vec<f64> = r["progress"]
        .as_array()
        .context("no progress")?
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    ensure!(
        progress == [1.0, 2.0, 3.0, 4.0, 5.0],
        "progress values should be exactly [1, 2, 3, 4, 5], got {progress:?}"
    );
    for p in r["progress_detail"]
        .as_array()
        .context("no progress_detail")?
    {
        ensure!(p["total"] == 5, "progress total should be 5: {p}");
    }
    ensure!(
        result_text("long_running_operation") == "operation completed: 5 steps",
        "long_running_operation result: {:?}",
        result_text("long_running_operation")
    );

    // start_background_task: 3 ticks, in order, on the GET stream.
    let task_id = logs
        .iter()
        .find(|m| m["logger"] == "task/ts")
        .and_then(|m| m["data"]["id"].as_str())
        .context("no task/ts message arrived")?
        .to_owned();
    ensure!(
        result_text("start_background_task").contains(&task_id),
        "start_background_task result {:?} does not contain the task id {task_id}",
        result_text("start_background_task")
    );
    let ticks: Vec<&Value> = logs.iter().filter(|m| m["logger"] == "task/ts").collect();
    ensure!(
        ticks.len() == 3,
        "expected 3 task/ts messages, got {}: {ticks:?}",
        ticks.len()
    );
    for (i, tick) in ticks.iter().enumerate() {
        let d = &tick["data"];
        ensure!(
            tick["level"] == "info"
                && d["tick"] == i as u64 + 1
                && d["of"] == 3
                && d["task"] == "ts"
                && d["id"] == task_id.as_str(),
            "task/ts message #{} is wrong (ticks must be 1, 2, 3 in order): {tick}",
            i + 1
        );
        ensure!(
            streams_of("task/ts", d) == ["GET"],
            "task tick {} should arrive on the standalone GET stream only, arrived on {:?}",
            i + 1,
            streams_of("task/ts", d)
        );
    }

    // broadcast: once, on the GET stream.
    let broadcasts: Vec<&Value> = logs.iter().filter(|m| m["logger"] == "broadcast").collect();
    ensure!(
        broadcasts.len() == 1
            && broadcasts[0]["data"] == "ts-broadcast"
            && broadcasts[0]["level"] == "info",
        "expected one broadcast message {{logger broadcast, level info, data ts-broadcast}}: {broadcasts:?}"
    );
    ensure!(
        streams_of("broadcast", &Value::from("ts-broadcast")) == ["GET"],
        "the broadcast should arrive on the standalone GET stream only, arrived on {:?}",
        streams_of("broadcast", &Value::from("ts-broadcast"))
    );

    // server_status
    let status = &r["server_status"];
    ensure!(
        status["workers"].as_u64().is_some_and(|w| w >= 1),
        "server_status workers should be >= 1: {status}"
    );
    ensure!(
        status["gateways"].as_u64().is_some_and(|g| g >= 1),
        "server_status gateways should be >= 1: {status}"
    );
    ensure!(
        status["sessions"].as_u64().is_some_and(|s| s >= 1),
        "server_status sessions should count this session: {status}"
    );

    // logging/setLevel error: "filtered" (info) suppressed, "after-filter" (error) delivered.
    ensure!(
        r["filtered_arrived"] == false && !logs.iter().any(|m| m["data"] == "filtered"),
        "\"filtered\" (info) arrived although the level was set to error"
    );
    ensure!(
        !sse.iter()
            .any(|e| e["method"] == "notifications/message" && e["data"] == "filtered"),
        "\"filtered\" was sent on some SSE stream although the level was set to error"
    );
    let after: Vec<&Value> = logs
        .iter()
        .filter(|m| m["data"] == "after-filter")
        .collect();
    ensure!(
        r["after_filter_arrived"] == true
            && after.len() == 1
            && after[0]["level"] == "error"
            && after[0]["logger"] == "notify",
        "expected one \"after-filter\" message with level error and logger notify: {after:?}"
    );

    // DELETE ended the session: the transport forgot it, and the old id is now unknown (404).
    ensure!(
        r["http"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["method"] == "DELETE"
                && h["status"]
                    .as_u64()
                    .is_some_and(|s| (200..300).contains(&s))),
        "the DELETE of the session was not answered with 2xx: {}",
        r["http"]
    );
    ensure!(
        r["session_id_after_terminate"].is_null(),
        "the SDK kept the session id"
    );
    ensure!(
        r["status_after_terminate"] == 404,
        "a request with the deleted session id should get 404, got {}",
        r["status_after_terminate"]
    );

    // Nothing went wrong inside the SDK while the session was live.
    ensure!(
        r["transport_errors"]
            .as_array()
            .is_some_and(|e| e.is_empty()),
        "the SDK reported transport errors: {}",
        r["transport_errors"]
    );
    Ok(())
}

#[tokio::test]
async fn typescript_sdk_client_flows() -> anyhow::Result<()> {
    check_node().await?;
    let dir = client_dir();
    ensure_sdk_installed(&dir).await?;

    let gateway = Gateway::start(&[])?;
    let report = match run_script(&dir, "flows.mjs", &[&gateway.url()]).await {
        Ok(report) => report,
        Err(e) => {
            let log = gateway.log();
            let tail = &log[log.len().saturating_sub(40)..];
            bail!(
                "{e:#}\n--- gateway log (last {} lines) ---\n{}",
                tail.len(),
                tail.join("\n")
            );
        }
    };
    eprintln!(
        "TypeScript SDK {} negotiated {}; report:\n{}",
        report["sdk_version"],
        report["protocol_version"],
        serde_json::to_string_pretty(&report)?
    );
    if let Err(e) = check_report(&report) {
        let log = gateway.log();
        let tail = &log[log.len().saturating_sub(40)..];
        bail!(
            "{e:#}\n--- gateway log (last {} lines) ---\n{}",
            tail.len(),
            tail.join("\n")
        );
    }
    if let Some(errors) = report["transport_errors_after_delete"].as_array()
        && !errors.is_empty()
    {
        eprintln!("note: SDK errors after the session was deleted: {errors:?}");
    }
    Ok(())
}
