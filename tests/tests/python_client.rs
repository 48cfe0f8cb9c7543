//! Interoperability with the official MCP Python SDK 2.x client at protocol 2026-07-28.
//!
//! `tests/clients/python/stateless_client.py` drives gateways through the SDK's `Client`
//! (`mode="auto"`, so the SDK itself probes `server/discover` and picks the revision) and
//! prints one JSON line of what it observed; this test judges that line. The SDK lives in
//! `tests/clients/python/.venv`, created on first run from the pinned requirements, so the
//! system Python (and its mcp 1.x, which `bench/peers` uses) is left alone. Needs Python
//! >= 3.10 with the `venv` module (Debian: python3-venv).

use anyhow::{Context, bail, ensure};
use e2e_tests::{Gateway, RawClient, RedisServer, WorkerProcess};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TOOLSETS: &str = "demo,conformance";
const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

fn client_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/python")
}

/// Runs a command to completion within `limit`, returning its output; kills it after.
fn run(mut command: Command, limit: Duration) -> anyhow::Result<std::process::Output> {
    let what = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {what}"))?;
    // Drain the pipes while waiting: a chatty child must not block on a full pipe.
    let stdout = child.stdout.take().context("stdout")?;
    let stderr = child.stderr.take().context("stderr")?;
    let out = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
    let err = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{what} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Ok(std::process::Output {
        status,
        stdout: out.join().unwrap_or_default().into_bytes(),
        stderr: err.join().unwrap_or_default().into_bytes(),
    })
}

/// The venv's interpreter with the pinned SDK (installed on first use).
fn venv_python() -> anyhow::Result<PathBuf> {
    e2e_tests::tools::python_sdk()
}

/// Runs the client script against `urls`; returns its report.
fn run_client(urls: &[String]) -> anyhow::Result<Value> {
    let mut command = Command::new(venv_python()?);
    command
        .arg("stateless_client.py")
        .args(urls)
        .current_dir(client_dir());
    let out = run(command, CLIENT_TIMEOUT)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.success(),
        "stateless_client.py failed ({}):\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .with_context(|| format!("stateless_client.py printed nothing; stderr: {stderr}"))?;
    serde_json::from_str(line)
        .with_context(|| format!("stateless_client.py printed a non-JSON line: {line}"))
}

/// The HTTP requests the SDK made whose `Mcp-Method` is `method` (and `Mcp-Name` `name`).
fn requests<'a>(r: &'a Value, method: &str, name: Option<&str>) -> Vec<&'a Value> {
    r["http"]
        .as_array()
        .map(|all| {
            all.iter()
                .filter(|h| h["headers"]["mcp-method"] == method)
                .filter(|h| name.is_none_or(|n| h["headers"]["mcp-name"] == n))
                .collect()
        })
        .unwrap_or_default()
}

/// Everything the report must show; `urls` are the gateways the script was given.
fn check_report(r: &Value, urls: &[String]) -> anyhow::Result<()> {
    ensure!(
        r["errors"].as_array().is_some_and(Vec::is_empty),
        "steps failed inside the SDK: {}",
        serde_json::to_string_pretty(&r["errors"])?
    );

    // The SDK probed server/discover and chose 2026-07-28 on every gateway.
    let clients = r["clients"].as_array().context("no clients")?;
    ensure!(
        clients.len() == urls.len(),
        "one client per URL: {clients:?}"
    );
    for c in clients {
        ensure!(
            c["protocol_version"] == "2026-07-28",
            "the SDK did not adopt 2026-07-28 at {}: {}",
            c["url"],
            c["protocol_version"]
        );
        ensure!(
            c["discover"]["supportedVersions"] == json!(["2026-07-28"])
                && c["discover"]["resultType"] == "complete",
            "the discover result the SDK kept: {}",
            c["discover"]
        );
        ensure!(
            c["server_info"]["name"] == "mcp-notify-gateway",
            "the SDK read no serverInfo from the discover result: {}",
            c["server_info"]
        );
    }

    // The wire: stateless requests only, each with the headers the revision requires.
    let http = r["http"].as_array().context("no http")?;
    ensure!(
        !requests(r, "server/discover", None).is_empty(),
        "the SDK never sent server/discover"
    );
    ensure!(
        !http
            .iter()
            .any(|h| h["method"] != "POST" || h["headers"].get("mcp-session-id").is_some()),
        "a 2026-07-28 client needs no session and no GET stream: {http:?}"
    );
    for h in http {
        ensure!(
            h["headers"]["mcp-protocol-version"] == "2026-07-28",
            "every request names the revision: {h}"
        );
        // The one refusal is the fresh client's, checked below.
        ensure!(
            h["client"] == "fresh" || h["status"] == 200,
            "every request succeeds: {h}"
        );
        ensure!(h["session_id"].is_null(), "the gateway made a session: {h}");
    }

    // tools/list from each gateway: the demo and conformance tools.
    for (client, tools) in r["steps"]["tools"].as_object().context("no tools step")? {
        let tools: Vec<&str> = tools
            .as_array()
            .context("tools")?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        for tool in [
            "long_running_operation",
            "test_input_required_result_elicitation",
            "test_custom_header_tool",
            "update_watched_resource",
        ] {
            ensure!(
                tools.contains(&tool),
                "client {client} lists no {tool}: {tools:?}"
            );
        }
    }

    // Progress: 1..=5 of 5, increasing, then the result, on an SSE answer.
    let progress = &r["steps"]["progress"];
    let values: Vec<f64> = progress["progress"]
        .as_array()
        .context("no progress")?
        .iter()
        .filter_map(|p| p["progress"].as_f64())
        .collect();
    ensure!(
        values == [1.0, 2.0, 3.0, 4.0, 5.0],
        "progress should be exactly 1..=5, got {values:?}"
    );
    ensure!(
        progress["progress"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["total"] == 5.0),
        "every progress names total 5: {progress}"
    );
    ensure!(
        progress["text"] == "operation completed: 5 steps" && progress["is_error"] == false,
        "long_running_operation result: {progress}"
    );
    let calls = requests(r, "tools/call", Some("long_running_operation"));
    ensure!(
        calls.len() == 1
            && calls[0]["content_type"]
                .as_str()
                .is_some_and(|c| c.starts_with("text/event-stream")),
        "progress needs a stream: {calls:?}"
    );

    // Multi round-trip, driven by the SDK: one elicitation, then the greeting.
    let elicitation = &r["steps"]["elicitation"];
    ensure!(
        elicitation["text"] == "Hello, Alice!" && elicitation["asked"] == 1,
        "the SDK's automatic input_required round: {elicitation}"
    );
    // ...and driven by hand, started on the first gateway and finished on the last.
    let across = &r["steps"]["elicitation_across_gateways"];
    ensure!(
        across["first_result_type"] == "InputRequiredResult"
            && across["input_request_methods"] == json!(["elicitation/create"])
            && across["has_request_state"] == true
            && across["text"] == "Hello, Bob!",
        "the round trip across gateways: {across}"
    );
    let rounds = requests(
        r,
        "tools/call",
        Some("test_input_required_result_elicitation"),
    );
    ensure!(
        rounds.len() == 4,
        "two rounds by the SDK, two by hand: {rounds:?}"
    );
    ensure!(
        rounds[2]["url"] == urls[0].as_str() && rounds[3]["url"] == urls[urls.len() - 1].as_str(),
        "the manual retry went to the last URL: {rounds:?}"
    );

    // resources/read and prompts/get (one plain, one asking for input first).
    let contents = &r["steps"]["read_resource"];
    ensure!(
        *contents
            == json!([{
                "uri": "test://static-text",
                "mimeType": "text/plain",
                "text": "This is the content of the static text resource.",
            }]),
        "resources/read test://static-text: {contents}"
    );
    ensure!(
        r["steps"]["get_prompt"] == json!(["Prompt with arguments: arg1='one', arg2='two'"]),
        "prompts/get: {}",
        r["steps"]["get_prompt"]
    );
    ensure!(
        r["steps"]["prompt_with_input"] == json!(["Use this context: from-python"]),
        "prompts/get with an input round: {}",
        r["steps"]["prompt_with_input"]
    );

    // The SDK mirrored the x-mcp-header argument (non-ASCII, so base64) and we accepted it.
    ensure!(
        r["steps"]["mirrored_header"]["text"] == "greeting: Grüße",
        "test_custom_header_tool: {}",
        r["steps"]["mirrored_header"]
    );
    let (fresh, listed): (Vec<&Value>, Vec<&Value>) =
        requests(r, "tools/call", Some("test_custom_header_tool"))
            .into_iter()
            .partition(|h| h["client"] == "fresh");
    ensure!(
        listed.len() == 1
            && listed[0]["headers"]["mcp-param-greeting"] == "=?base64?R3LDvMOfZQ==?=",
        "the Mcp-Param-Greeting header: {listed:?}"
    );

    // A client that never listed the tool sends no header: refused with 400 and -32020,
    // which the SDK answers by listing the tools and calling again, with the header.
    ensure!(
        r["steps"]["header_mismatch_recovery"]["text"] == "greeting: hi",
        "the call after the SDK's recovery: {}",
        r["steps"]["header_mismatch_recovery"]
    );
    let sequence: Vec<(String, u64, Option<String>)> = http
        .iter()
        .filter(|h| h["client"] == "fresh" && h["headers"]["mcp-method"] != "server/discover")
        .map(|h| {
            (
                h["headers"]["mcp-method"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                h["status"].as_u64().unwrap_or_default(),
                h["headers"]["mcp-param-greeting"]
                    .as_str()
                    .map(str::to_owned),
            )
        })
        .collect();
    ensure!(
        sequence
            == [
                ("tools/call".into(), 400, None),
                ("tools/list".into(), 200, None),
                ("tools/call".into(), 200, Some("hi".into())),
            ]
            && fresh.len() == 2,
        "the fresh client's requests: {sequence:?}"
    );

    // Per-request logging: the level in _meta filters (warning: two of the three).
    let logging = &r["steps"]["logging"];
    ensure!(
        logging["logs"]
            == json!([
                {"level": "warning", "logger": "test_logging_tool", "data": "log message 2"},
                {"level": "error", "logger": "test_logging_tool", "data": "log message 3"},
            ]),
        "log messages at or above warning: {logging}"
    );

    // subscriptions/listen on the last gateway hears a change made through the first.
    let listen = &r["steps"]["listen"];
    ensure!(
        listen["honored"]["resourceSubscriptions"] == json!(["test://watched-resource"])
            && listen["events"]
                .as_array()
                .and_then(|e| e.last())
                .is_some_and(|e| e == "ResourceUpdated(uri='test://watched-resource')")
            && listen["changed"]
                .as_str()
                .is_some_and(|t| t.contains("1 subscribed sessions notified")),
        "subscriptions/listen: {listen}"
    );

    // Every gateway given served tools/call requests.
    for url in urls {
        ensure!(
            requests(r, "tools/call", None)
                .iter()
                .any(|h| h["url"] == url.as_str()),
            "no tools/call reached {url}"
        );
    }
    Ok(())
}

/// Runs the client against `gateways` and checks its report; on failure, shows the
/// gateways' logs too.
fn run_and_check(gateways: &[&Gateway]) -> anyhow::Result<()> {
    let urls: Vec<String> = gateways.iter().map(|g| g.url()).collect();
    let outcome = run_client(&urls).and_then(|report| {
        eprintln!(
            "MCP Python SDK {}; report:\n{}",
            report["sdk_version"],
            serde_json::to_string_pretty(&report)?
        );
        check_report(&report, &urls)
    });
    if let Err(e) = outcome {
        let logs: Vec<String> = gateways
            .iter()
            .map(|g| {
                let log = g.log();
                log[log.len().saturating_sub(30)..].join("\n")
            })
            .collect();
        bail!(
            "{e:#}\n--- gateway logs (last lines) ---\n{}",
            logs.join("\n---\n")
        );
    }
    Ok(())
}

/// Waits until both workers have registered: `server_status` counts them.
async fn wait_for_workers(url: &str, workers: u64) -> anyhow::Result<()> {
    let mut probe = RawClient::new(url);
    probe.initialize("2025-11-25").await?;
    let start = Instant::now();
    loop {
        let v = probe
            .request(1, "tools/call", json!({"name": "server_status"}))
            .await?;
        if let Some(text) = v["result"]["content"][0]["text"].as_str()
            && let Ok(status) = serde_json::from_str::<Value>(text)
            && status["workers"].as_u64() == Some(workers)
        {
            probe.delete().await?;
            return Ok(());
        }
        ensure!(
            start.elapsed() < Duration::from_secs(30),
            "the workers never registered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_official_python_client_speaks_2026_07_28_across_two_gateways() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let url = redis.url();
    let g0 = Gateway::start(&["--redis-url", &url, "--toolset", TOOLSETS])?;
    let g1 = Gateway::start(&["--redis-url", &url, "--toolset", TOOLSETS])?;
    let _workers = [
        WorkerProcess::start(&url, &["--toolset", TOOLSETS])?,
        WorkerProcess::start(&url, &["--toolset", TOOLSETS])?,
    ];
    wait_for_workers(&g0.url(), 2).await?;
    tokio::task::block_in_place(|| run_and_check(&[&g0, &g1]))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_official_python_client_speaks_2026_07_28_to_a_standalone_gateway() -> anyhow::Result<()>
{
    let gw = Gateway::start(&["--toolset", TOOLSETS])?;
    // Two SDK clients on one gateway: the same steps, with nothing shared between nodes.
    tokio::task::block_in_place(|| run_and_check(&[&gw, &gw]))
}
