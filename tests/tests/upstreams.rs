//! Upstream MCP servers behind the cluster: the seed's FastMCP server
//! (`bench/peers/fastmcp/server.py`, Python SDK 1.x, unchanged) as an upstream of the
//! standalone gateway and of two workers behind two gateways on Redis, driven by the
//! official Python SDK 2.x client and by a raw client that reads every stream; plus
//! upstreams that are down at start, die mid-call or never answer.
//!
//! The FastMCP server runs from a venv cached outside the repository
//! (`tests/src/tools.rs` `fastmcp_peer`), the Python SDK client from
//! `tests/clients/python/.venv` (`python_sdk`).

use anyhow::{Context, bail, ensure};
use e2e_tests::client::messages;
use e2e_tests::redis::free_port;
use e2e_tests::{Gateway, RawClient, RedisServer, WorkerProcess};
use serde_json::{Value, json};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The seed's FastMCP server on a loopback port; killed when dropped.
struct FastMcp {
    child: Child,
    port: u16,
}

impl FastMcp {
    fn start() -> anyhow::Result<Self> {
        Self::start_on(free_port()?)
    }

    fn start_on(port: u16) -> anyhow::Result<Self> {
        let python = e2e_tests::tools::fastmcp_peer()?;
        let child = Command::new(python)
            .arg(repo().join("bench/peers/fastmcp/server.py"))
            .args(["--port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start the FastMCP server")?;
        let server = Self { child, port };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            ensure!(
                start.elapsed() < WAIT,
                "the FastMCP server did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for FastMcp {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The cluster's tool names, as `tools/list` shows them now.
async fn tool_names(client: &RawClient) -> anyhow::Result<Vec<String>> {
    let list = client.request(800, "tools/list", json!({})).await?;
    Ok(list["result"]["tools"]
        .as_array()
        .context("tools/list result")?
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect())
}

/// Polls `tools/list` until `wanted` says yes (the catalog changes when an upstream
/// connects or drops, within its health interval).
async fn wait_for_tools(
    client: &RawClient,
    what: &str,
    wanted: impl Fn(&[String]) -> bool,
) -> anyhow::Result<Vec<String>> {
    let start = Instant::now();
    loop {
        let names = tool_names(client).await?;
        if wanted(&names) {
            return Ok(names);
        }
        if start.elapsed() > WAIT {
            bail!("{what}: tools/list still shows {names:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `tests/clients/python/upstream_client.py` (the official Python SDK 2.x) against
/// `url`; returns its report.
fn python_client(url: &str, prefix: &str) -> anyhow::Result<Value> {
    python_script("upstream_client.py", &[url, prefix])
}

/// Runs a script of `tests/clients/python` with the official Python SDK 2.x; returns the
/// JSON report it prints last.
fn python_script(script: &str, args: &[&str]) -> anyhow::Result<Value> {
    let python = e2e_tests::tools::python_sdk()?;
    let mut child = Command::new(python)
        .arg(script)
        .args(args)
        .current_dir(repo().join("tests/clients/python"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let stderr = child.stderr.take().context("stderr")?;
    let out = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
    let err = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            bail!("{script} did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    ensure!(status.success(), "{script} failed: {stdout}\n{stderr}");
    let line = stdout.lines().last().context("no report")?;
    serde_json::from_str(line).with_context(|| format!("report: {line}"))
}

/// What the SDK saw: the upstream's tools under the prefix, its progress in order, its
/// request log (and not the one below the session's level), its background ticks.
fn check_python_report(r: &Value) -> anyhow::Result<()> {
    let tools: Vec<&str> = r["tools"]
        .as_array()
        .context("tools")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for name in [
        "seed_send_notification",
        "seed_long_running_operation",
        "seed_start_background_task",
        "seed_broadcast",
        "seed_server_status",
    ] {
        ensure!(tools.contains(&name), "{name} not listed: {tools:?}");
    }
    ensure!(
        r["long"] == json!(["operation completed: 5 steps"]),
        "result: {}",
        r["long"]
    );
    let progress: Vec<f64> = r["progress"]
        .as_array()
        .context("progress")?
        .iter()
        .filter_map(|p| p[0].as_f64())
        .collect();
    ensure!(
        progress == [1.0, 2.0, 3.0, 4.0, 5.0],
        "progress, in order, once each: {}",
        r["progress"]
    );
    ensure!(
        r["progress"][0] == json!([1.0, 5.0, "step 1/5"]),
        "{}",
        r["progress"]
    );
    let logs = r["logs"].as_array().context("logs")?;
    let notify: Vec<&Value> = logs.iter().filter(|l| l["logger"] == "notify").collect();
    ensure!(
        notify.len() == 1 && notify[0]["data"] == "hello upstream",
        "exactly the info message (the debug one is below the session's level): {logs:?}"
    );
    let ticks: Vec<i64> = logs
        .iter()
        .filter(|l| l["logger"] == "task/bg")
        .filter_map(|l| l["data"]["tick"].as_i64())
        .collect();
    ensure!(ticks == [1, 2, 3], "background ticks once each: {logs:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standalone_gateway_fronts_the_fastmcp_server() {
    let seed = FastMcp::start().expect("fastmcp");
    let upstream = format!("seed={}", seed.url());
    let gateway = Gateway::start(&["--upstream", &upstream]).expect("gateway");
    let mut client = RawClient::new(&gateway.url());
    client.initialize("2025-11-25").await.unwrap();
    let names = wait_for_tools(&client, "the seed's tools", |n| {
        n.iter().any(|t| t == "seed_long_running_operation")
    })
    .await
    .unwrap();
    assert!(
        names.iter().any(|t| t == "long_running_operation"),
        "the built-in tools stay: {names:?}"
    );
    let url = gateway.url();
    let report = tokio::task::spawn_blocking(move || python_client(&url, "seed_"))
        .await
        .unwrap()
        .unwrap();
    check_python_report(&report).unwrap_or_else(|e| panic!("{e:#}\n{report:#}"));

    // Generations bridged: a 2026-07-28 client (no session) uses the session-protocol-only
    // upstream, its progress on the request's stream under its own token.
    let modern = e2e_tests::StatelessClient::rotating(&[gateway.url()]);
    let (response, notes) = modern
        .call(
            9,
            "tools/call",
            json!({"name": "seed_long_running_operation", "arguments": {"steps": 3, "step_ms": 10}}),
            json!({"progressToken": "m"}),
        )
        .await
        .unwrap();
    assert_eq!(
        response["result"]["content"][0]["text"], "operation completed: 3 steps",
        "{response}"
    );
    let progress: Vec<(Value, f64)> = notes
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .map(|m| {
            (
                m["params"]["progressToken"].clone(),
                m["params"]["progress"].as_f64().unwrap_or(-1.0),
            )
        })
        .collect();
    assert_eq!(
        progress,
        [(json!("m"), 1.0), (json!("m"), 2.0), (json!("m"), 3.0)],
        "{notes:?}"
    );

    // Operations: server_status and the metrics name the upstream.
    let status = client
        .request(2, "tools/call", json!({"name": "server_status"}))
        .await
        .unwrap();
    let status: Value =
        serde_json::from_str(status["result"]["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(status["upstreams"][0]["name"], "seed", "{status}");
    assert_eq!(status["upstreams"][0]["up"], true, "{status}");
    assert_eq!(status["upstreams"][0]["tools"], 5, "{status}");
    let metrics = text_of(&format!("{}/metrics", gateway.base)).await.unwrap();
    assert_eq!(sample(&metrics, "mcpgw_upstream_up", "seed", ""), Some(1.0));
    assert!(
        sample(
            &metrics,
            "mcpgw_upstream_calls_total",
            "seed",
            "outcome=\"ok\""
        )
        .is_some_and(|n| n >= 4.0),
        "{metrics}"
    );
    assert!(
        sample(&metrics, "mcpgw_upstream_call_seconds_count", "seed", "").is_some_and(|n| n >= 4.0),
        "{metrics}"
    );
}

/// Two gateways and two workers on Redis, each worker with the same upstream. The SDK
/// client works through one gateway; a raw client's call starts on one gateway and its
/// stream resumes on the other, with every progress event once and the result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_and_two_workers_front_it_with_resumption_across_gateways() {
    let seed = FastMcp::start().expect("fastmcp");
    let redis = RedisServer::start().expect("redis");
    let upstream = format!("seed={}", seed.url());
    let gw_args = ["--redis-url", &redis.url()];
    let a = Gateway::start(&gw_args).expect("gateway a");
    let b = Gateway::start(&gw_args).expect("gateway b");
    let w1 = WorkerProcess::start(
        &redis.url(),
        &["--upstream", &upstream, "--metrics-listen", "127.0.0.1:0"],
    )
    .expect("worker 1");
    let _w2 = WorkerProcess::start(&redis.url(), &["--upstream", &upstream]).expect("worker 2");
    let mut client = RawClient::new(&a.url());
    client.initialize("2025-11-25").await.unwrap();
    wait_for_tools(&client, "the seed's tools", |n| {
        n.iter().any(|t| t == "seed_long_running_operation")
    })
    .await
    .unwrap();

    let ready = text_of(&format!(
        "http://{}/readyz",
        w1.metrics_addr.as_deref().unwrap()
    ))
    .await
    .unwrap();
    assert_eq!(
        ready, "ready\nupstream seed up",
        "the worker's readiness names it"
    );

    let url = a.url();
    let report = tokio::task::spawn_blocking(move || python_client(&url, "seed_"))
        .await
        .unwrap()
        .unwrap();
    check_python_report(&report).unwrap_or_else(|e| panic!("{e:#}\n{report:#}"));

    // The call goes to gateway A; its stream drops after three progress events and
    // resumes on gateway B.
    let mut stream = client
        .call_tool_stream(
            7,
            "seed_long_running_operation",
            json!({"steps": 12, "step_ms": 40}),
            Some("up"),
        )
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut last_id = String::new();
    while seen.len() < 3 {
        let (event, m) = stream.next_message(WAIT).await.unwrap().unwrap();
        assert_eq!(m["method"], "notifications/progress", "{m}");
        assert_eq!(
            m["params"]["progressToken"], "up",
            "the client's token: {m}"
        );
        seen.push(m["params"]["progress"].as_f64().unwrap());
        last_id = event.id;
    }
    drop(stream);
    let resumed = client
        .at(&b.url())
        .open_stream(Some(&last_id))
        .await
        .unwrap();
    let rest = messages(&resumed.collect(WAIT).await.unwrap());
    seen.extend(
        rest.iter()
            .filter(|m| m["method"] == "notifications/progress")
            .filter_map(|m| m["params"]["progress"].as_f64()),
    );
    assert_eq!(
        seen,
        (1..=12).map(f64::from).collect::<Vec<_>>(),
        "no loss, no duplicate: {rest:?}"
    );
    let last = rest.last().unwrap();
    assert_eq!(last["id"], 7);
    assert_eq!(
        last["result"]["content"][0]["text"],
        "operation completed: 12 steps"
    );
    assert_eq!(
        rest.iter().filter(|m| m.get("id").is_some()).count(),
        1,
        "one result"
    );
}

/// An upstream down at start leaves the rest of the catalog serving and joins when it
/// comes up; one that dies mid-call fails the call with an error naming it, at once; one
/// that never answers fails the call at its timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_upstreams_fail_clearly_and_the_rest_keeps_serving() {
    let seed = FastMcp::start().expect("fastmcp");
    let late_port = free_port().unwrap();
    let dir = tempdir();
    let file = dir.join("upstreams.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[[upstream]]
name = "seed"
url = "{}"
timeout_ms = 1500
health_interval_ms = 200

[[upstream]]
name = "late"
url = "http://127.0.0.1:{late_port}/mcp"
health_interval_ms = 200
connect_timeout_ms = 2000
"#,
            seed.url()
        ),
    )
    .unwrap();
    let gateway = Gateway::start(&["--upstreams", file.to_str().unwrap()]).expect("gateway");
    let mut client = RawClient::new(&gateway.url());
    client.initialize("2025-11-25").await.unwrap();
    let names = wait_for_tools(&client, "the seed's tools", |n| {
        n.iter().any(|t| t == "seed_send_notification")
    })
    .await
    .unwrap();
    assert!(
        !names.iter().any(|t| t.starts_with("late_")),
        "a down upstream is not listed: {names:?}"
    );
    assert!(names.iter().any(|t| t == "send_notification"), "{names:?}");
    let r = client
        .request(
            1,
            "tools/call",
            json!({"name": "seed_send_notification", "arguments": {"message": "x"}}),
        )
        .await
        .unwrap();
    assert_eq!(
        r["result"]["content"][0]["text"], "notification sent: x",
        "{r}"
    );

    // The late upstream comes up and joins the catalog.
    let mut late = FastMcp::start_on(late_port).expect("late fastmcp");
    wait_for_tools(&client, "the late upstream's tools", |n| {
        n.iter().any(|t| t == "late_long_running_operation")
    })
    .await
    .unwrap();

    // It dies mid-call: the call fails with an error that names it, well before the
    // call's own deadline.
    let mut stream = client
        .call_tool_stream(
            2,
            "late_long_running_operation",
            json!({"steps": 1000, "step_ms": 50}),
            Some("d"),
        )
        .await
        .unwrap();
    let (_, first) = stream.next_message(WAIT).await.unwrap().unwrap();
    assert_eq!(first["method"], "notifications/progress", "{first}");
    late.kill();
    let died = Instant::now();
    let rest = messages(&stream.collect(WAIT).await.unwrap());
    let answer = rest
        .iter()
        .find(|m| m.get("id").is_some())
        .unwrap_or_else(|| panic!("no answer after the upstream died: {rest:?}"));
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("upstream late"),
        "an error naming the upstream: {answer}"
    );
    assert!(
        died.elapsed() < Duration::from_secs(15),
        "answered in {:?}",
        died.elapsed()
    );
    wait_for_tools(&client, "the dead upstream's tools leave", |n| {
        !n.iter().any(|t| t.starts_with("late_")) && n.iter().any(|t| t.starts_with("seed_"))
    })
    .await
    .unwrap();

    // Never answers (within its 1.5 s timeout): a timeout error.
    let started = Instant::now();
    let r = client
        .request(
            3,
            "tools/call",
            json!({"name": "seed_long_running_operation", "arguments": {"steps": 3, "step_ms": 10000}}),
        )
        .await
        .unwrap();
    assert_eq!(r["error"]["code"], -32001, "a timeout: {r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("upstream seed did not answer within 1500 ms"),
        "{r}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let metrics = text_of(&format!("{}/metrics", gateway.base)).await.unwrap();
    assert_eq!(sample(&metrics, "mcpgw_upstream_up", "late", ""), Some(0.0));
    assert_eq!(
        sample(
            &metrics,
            "mcpgw_upstream_calls_total",
            "seed",
            "outcome=\"timeout\""
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &metrics,
            "mcpgw_upstream_calls_total",
            "late",
            "outcome=\"error\""
        ),
        Some(1.0),
        "the call cut short by the outage"
    );
    // The node and the upstream keep serving.
    let r = client
        .request(
            4,
            "tools/call",
            json!({"name": "seed_send_notification", "arguments": {"message": "still"}}),
        )
        .await
        .unwrap();
    assert_eq!(
        r["result"]["content"][0]["text"],
        "notification sent: still"
    );
}

/// The pids of `parent`'s children whose command line contains `needle` (from /proc).
fn children_running(parent: u32, needle: &str) -> Vec<u32> {
    children(parent)
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(needle))
                .unwrap_or(false)
        })
        .collect()
}

/// The pids of `parent`'s children (from /proc).
fn children(parent: u32) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces, so read after the last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    pids
}

fn alive(pid: u32) -> bool {
    // A zombie has exited; only its entry waits for the parent.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < WAIT, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The FastMCP server as a stdio upstream of a worker on Redis: one child for the
/// worker's own session and one per downstream session, gone after the session's DELETE
/// and, for all of them, after the worker is SIGKILLed. A child that never answers
/// `initialize` is killed at the connect timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_children_follow_their_sessions_and_die_with_their_worker() {
    let python = e2e_tests::tools::fastmcp_peer().expect("fastmcp venv");
    let script = repo().join("bench/peers/fastmcp/stdio.py");
    let upstream = format!("py=stdio:{} {}", python.display(), script.display());
    let dir = tempdir();
    let file = dir.join("upstreams.toml");
    std::fs::write(
        &file,
        "[[upstream]]\nname = \"mute\"\ncommand = \"sleep\"\nargs = [\"3600\"]\nconnect_timeout_ms = 300\nhealth_interval_ms = 300\n",
    )
    .unwrap();
    let redis = RedisServer::start().expect("redis");
    let gateway = Gateway::start(&["--redis-url", &redis.url()]).expect("gateway");
    let mut worker = WorkerProcess::start(
        &redis.url(),
        &[
            "--upstream",
            &upstream,
            "--upstreams",
            file.to_str().unwrap(),
        ],
    )
    .expect("worker");
    // The mute child is started, killed at its initialize timeout, started again...:
    // never more than one at a time, each gone soon.
    let mut mute = Vec::new();
    wait_until("a mute child starts", || {
        mute = children_running(worker.pid(), "3600");
        !mute.is_empty()
    })
    .await;
    assert_eq!(mute.len(), 1, "{mute:?}");
    wait_until("the mute child is killed at its initialize timeout", || {
        !alive(mute[0])
    })
    .await;
    wait_until("the timeout is reported in the worker's log", || {
        worker
            .log()
            .iter()
            .any(|l| l.contains("initialize did not finish within 300 ms"))
    })
    .await;
    let mut client = RawClient::new(&gateway.url());
    client.initialize("2025-11-25").await.unwrap();
    wait_for_tools(&client, "the stdio upstream's tools", |n| {
        n.iter().any(|t| t == "py_long_running_operation")
    })
    .await
    .unwrap();
    let own = children_running(worker.pid(), "stdio.py");
    assert_eq!(own.len(), 1, "the worker's own session: one child");

    let events = client
        .call_tool(
            1,
            "py_long_running_operation",
            json!({"steps": 4, "step_ms": 10}),
            Some("s"),
        )
        .await
        .unwrap();
    let all = messages(&events);
    let progress: Vec<f64> = all
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .filter_map(|m| m["params"]["progress"].as_f64())
        .collect();
    assert_eq!(progress, [1.0, 2.0, 3.0, 4.0], "{all:?}");
    assert_eq!(
        all.last().unwrap()["result"]["content"][0]["text"],
        "operation completed: 4 steps"
    );
    let with_session = children_running(worker.pid(), "stdio.py");
    assert_eq!(with_session.len(), 2, "a child for the session");
    let session_child = *with_session.iter().find(|p| !own.contains(p)).unwrap();

    assert!(client.delete().await.unwrap().is_success());
    wait_until("the session's child exits after DELETE", || {
        !alive(session_child)
    })
    .await;
    assert_eq!(
        children_running(worker.pid(), "stdio.py"),
        own,
        "the worker's own child stays"
    );

    // A new session gets a new child; SIGKILL of the worker takes every child with it.
    let mut client = RawClient::new(&gateway.url());
    client.initialize("2025-11-25").await.unwrap();
    let r = client
        .request(
            2,
            "tools/call",
            json!({"name": "py_send_notification", "arguments": {"message": "m"}}),
        )
        .await
        .unwrap();
    assert_eq!(r["result"]["content"][0]["text"], "notification sent: m");
    let before_kill = children(worker.pid());
    assert!(before_kill.len() >= 2, "{before_kill:?}");
    worker.kill();
    wait_until("every child exits when its worker is SIGKILLed", || {
        before_kill.iter().all(|p| !alive(*p))
    })
    .await;
}

/// The value of the sample of `metric` whose labels include `upstream="NAME"` (and
/// `extra`, e.g. `outcome="ok"`), in a Prometheus text exposition.
fn sample(text: &str, metric: &str, upstream: &str, extra: &str) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")))
        .filter(|l| l.contains(&format!("upstream=\"{upstream}\"")) && l.contains(extra))
        .find_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse().ok()))
}

async fn text_of(url: &str) -> anyhow::Result<String> {
    Ok(reqwest::get(url).await?.text().await?)
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "mcpgw-upstreams-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// The names (or URIs) in a list result's `field`, each item's `key`.
async fn listed(client: &RawClient, method: &str, field: &str, key: &str) -> Vec<String> {
    let list = client.request(900, method, json!({})).await.unwrap();
    list["result"][field]
        .as_array()
        .unwrap_or_else(|| panic!("{method}: {list}"))
        .iter()
        .filter_map(|item| item[key].as_str().map(str::to_owned))
        .collect()
}

/// Reads `stream` until a message with `method` arrives; returns the messages before it.
async fn until_method(stream: &mut e2e_tests::client::SseReader, method: &str) -> Vec<Value> {
    let mut before = Vec::new();
    loop {
        let (_, message) = stream
            .next_message(WAIT)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("the stream ended before {method}: {before:?}"));
        if message["method"] == method {
            return before;
        }
        before.push(message);
    }
}

/// Reads `stream` until a `changed` notification after which `list` (`method`'s items'
/// `key`) satisfies `wanted`; returns the other messages seen on the way. The list is
/// read only after each notification: a change that came without one is not seen.
async fn listed_after(
    stream: &mut e2e_tests::client::SseReader,
    client: &RawClient,
    changed: &str,
    (method, field, key): (&str, &str, &str),
    wanted: impl Fn(&[String]) -> bool,
) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        seen.extend(until_method(stream, changed).await);
        let items = listed(client, method, field, key).await;
        if wanted(&items) {
            return seen;
        }
    }
}

const PROMPTS: (&str, &str, &str) = ("prompts/list", "prompts", "name");
const RESOURCES: (&str, &str, &str) = ("resources/list", "resources", "uri");

/// An upstream's resources, templates, prompts and completions join the catalog: the
/// standalone gateway with the conformance tool set (resources, a template, prompts,
/// completions, subscriptions) is the upstream of another standalone gateway, beside an
/// upstream that is down and a second name for the same server (whose URIs are taken).
/// Lists under the prefix, reads, gets and completions reach the upstream under its own
/// names; a resource update reaches the subscribed client once; a change of what the
/// upstream lists (its policy, reloaded) is re-announced to the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstreams_resources_prompts_and_completions_join_the_catalog() {
    let dir = tempdir();
    let policy = dir.join("policy.toml");
    let everything = "[[rule]]\nanonymous = true\ntools = [\"*\"]\nprompts = [\"*\"]\nresources = [\"*\"]\nresource_templates = [\"*\"]\n";
    std::fs::write(&policy, everything).unwrap();
    let upstream = Gateway::start(&[
        "--toolset",
        "conformance",
        "--policy",
        policy.to_str().unwrap(),
        "--policy-poll-ms",
        "100",
    ])
    .expect("upstream gateway");
    let down_port = free_port().unwrap();
    let file = dir.join("upstreams.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[[upstream]]
name = "conf"
url = "{url}"
health_interval_ms = 200

[[upstream]]
name = "down"
url = "http://127.0.0.1:{down_port}/mcp"
health_interval_ms = 200

[[upstream]]
name = "again"
url = "{url}"
include = ["test_simple_prompt", "static-text"]
health_interval_ms = 200
"#,
            url = upstream.url()
        ),
    )
    .unwrap();
    let gateway = Gateway::start(&["--upstreams", file.to_str().unwrap()]).expect("gateway");
    let mut client = RawClient::new(&gateway.url());
    client.initialize("2025-11-25").await.unwrap();
    let mut stream = client.open_stream(None).await.unwrap();

    let start = Instant::now();
    let prompts = loop {
        let prompts = listed(&client, "prompts/list", "prompts", "name").await;
        if prompts
            .iter()
            .any(|p| p == "conf_test_prompt_with_arguments")
            && prompts.iter().any(|p| p == "again_test_simple_prompt")
        {
            break prompts;
        }
        assert!(start.elapsed() < WAIT, "prompts/list: {prompts:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for name in [
        "conf_test_simple_prompt",
        "conf_test_prompt_with_embedded_resource",
        "conf_test_prompt_with_image",
    ] {
        assert!(prompts.iter().any(|p| p == name), "{name}: {prompts:?}");
    }
    assert!(
        !prompts
            .iter()
            .any(|p| p.starts_with("again_test_prompt_with")),
        "include applies to prompts: {prompts:?}"
    );
    assert!(
        !prompts.iter().any(|p| p.starts_with("down_")),
        "{prompts:?}"
    );
    // The gateway's own tool set is still there.
    let resources = listed(&client, "resources/list", "resources", "uri").await;
    assert!(
        resources.iter().any(|u| u == "notify://broadcast"),
        "{resources:?}"
    );
    for uri in [
        "test://static-text",
        "test://static-binary",
        "test://watched-resource",
    ] {
        assert_eq!(
            resources.iter().filter(|u| *u == uri).count(),
            1,
            "{uri} once, the first upstream's: {resources:?}"
        );
    }
    let names = listed(&client, "resources/list", "resources", "name").await;
    assert!(names.iter().any(|n| n == "conf_static-text"), "{names:?}");
    assert!(!names.iter().any(|n| n.starts_with("again_")), "{names:?}");
    let templates = listed(
        &client,
        "resources/templates/list",
        "resourceTemplates",
        "uriTemplate",
    )
    .await;
    assert!(
        templates.iter().any(|t| t == "test://template/{id}/data"),
        "{templates:?}"
    );
    let log = gateway.log().join("\n");
    assert!(
        log.contains("resource test://static-text is served by an earlier source"),
        "the duplicate URI is warned about"
    );

    let r = client
        .request(12, "tools/call", json!({"name": "server_status"}))
        .await
        .unwrap();
    let status: Value = serde_json::from_str(
        r["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_default(),
    )
    .unwrap_or_else(|_| panic!("{r}"));
    let conf = &status["upstreams"][0];
    assert_eq!(conf["name"], "conf", "{status}");
    assert_eq!(conf["resources"], 3, "{status}");
    assert_eq!(conf["resource_templates"], 1, "{status}");
    assert!(conf["prompts"].as_u64() >= Some(4), "{status}");
    assert_eq!(status["upstreams"][1]["up"], false, "{status}");

    // Reads, gets and completions reach the upstream under its own names.
    let r = client
        .request(1, "resources/read", json!({"uri": "test://static-text"}))
        .await
        .unwrap();
    assert_eq!(
        r["result"]["contents"][0]["text"], "This is the content of the static text resource.",
        "{r}"
    );
    let r = client
        .request(
            2,
            "resources/read",
            json!({"uri": "test://template/42/data"}),
        )
        .await
        .unwrap();
    let text = r["result"]["contents"][0]["text"]
        .as_str()
        .unwrap_or_default();
    let data: Value = serde_json::from_str(text).unwrap_or_else(|_| panic!("{r}"));
    assert_eq!(data["id"], "42", "{r}");
    assert_eq!(r["result"]["contents"][0]["uri"], "test://template/42/data");
    let r = client
        .request(
            3,
            "prompts/get",
            json!({"name": "conf_test_prompt_with_arguments", "arguments": {"arg1": "a", "arg2": "b"}}),
        )
        .await
        .unwrap();
    assert_eq!(
        r["result"]["messages"][0]["content"]["text"], "Prompt with arguments: arg1='a', arg2='b'",
        "{r}"
    );
    let r = client
        .request(
            4,
            "completion/complete",
            json!({"ref": {"type": "ref/prompt", "name": "conf_test_prompt_with_arguments"},
                   "argument": {"name": "arg1", "value": "par"}}),
        )
        .await
        .unwrap();
    assert_eq!(
        r["result"]["completion"]["values"],
        json!(["paris", "park", "party"]),
        "{r}"
    );
    let r = client
        .request(
            5,
            "completion/complete",
            json!({"ref": {"type": "ref/resource", "uri": "test://template/{id}/data"},
                   "argument": {"name": "id", "value": "4"}}),
        )
        .await
        .unwrap();
    assert_eq!(r["result"]["completion"]["values"], json!(["42"]), "{r}");
    // The upstream's errors come back as they are.
    let r = client
        .request(6, "resources/read", json!({"uri": "test://nothing-here"}))
        .await
        .unwrap();
    assert_eq!(r["error"]["code"], -32002, "{r}");
    let r = client
        .request(7, "prompts/get", json!({"name": "conf_no_such_prompt"}))
        .await
        .unwrap();
    assert_eq!(r["error"]["code"], -32602, "{r}");

    // A subscription: the upstream's update reaches the subscribed client once.
    let r = client
        .request(
            8,
            "resources/subscribe",
            json!({"uri": "test://watched-resource"}),
        )
        .await
        .unwrap();
    assert!(r.get("result").is_some(), "{r}");
    let r = client
        .request(
            9,
            "tools/call",
            json!({"name": "conf_update_watched_resource", "arguments": {}}),
        )
        .await
        .unwrap();
    assert!(r.get("result").is_some(), "{r}");
    let (_, update) = loop {
        let (event, message) = stream.next_message(WAIT).await.unwrap().expect("stream");
        if message["method"] == "notifications/resources/updated" {
            break (event, message);
        }
    };
    assert_eq!(update["params"]["uri"], "test://watched-resource");

    // The upstream lists less (its policy changes): the client hears list_changed for
    // prompts and resources, and the lists follow.
    let narrower = "[[rule]]\nanonymous = true\ntools = [\"*\"]\nprompts = [\"test_prompt_*\"]\nresources = [\"test://static-*\"]\nresource_templates = [\"*\"]\n";
    std::fs::write(&policy, narrower).unwrap();
    let mut seen = listed_after(
        &mut stream,
        &client,
        "notifications/prompts/list_changed",
        PROMPTS,
        |p| {
            !p.iter().any(|p| p.ends_with("_test_simple_prompt"))
                && p.iter().any(|p| p == "conf_test_prompt_with_arguments")
        },
    )
    .await;
    let resources_changed = |m: &Value| m["method"] == "notifications/resources/list_changed";
    if !seen.iter().any(resources_changed) {
        seen.extend(until_method(&mut stream, "notifications/resources/list_changed").await);
    }
    let resources = listed(&client, "resources/list", "resources", "uri").await;
    if resources.iter().any(|u| u == "test://watched-resource") {
        seen.extend(
            listed_after(
                &mut stream,
                &client,
                "notifications/resources/list_changed",
                RESOURCES,
                |r| !r.iter().any(|u| u == "test://watched-resource"),
            )
            .await,
        );
    }
    assert!(
        !seen
            .iter()
            .any(|m| m["method"] == "notifications/resources/updated"),
        "one update, not one per upstream session: {seen:?}"
    );
    let resources = listed(&client, "resources/list", "resources", "uri").await;
    assert!(
        resources.iter().any(|u| u == "test://static-text"),
        "{resources:?}"
    );

    // The upstream that was down comes up: its prompts join, with list_changed; it goes
    // down again: they leave, with list_changed, and the rest keeps serving.
    let mut late = Gateway::start_at(
        &format!("127.0.0.1:{down_port}"),
        &["--toolset", "conformance"],
    )
    .expect("the late upstream");
    listed_after(
        &mut stream,
        &client,
        "notifications/prompts/list_changed",
        PROMPTS,
        |p| p.iter().any(|p| p == "down_test_simple_prompt"),
    )
    .await;
    let r = client
        .request(
            10,
            "prompts/get",
            json!({"name": "down_test_simple_prompt"}),
        )
        .await
        .unwrap();
    assert_eq!(
        r["result"]["messages"][0]["content"]["text"], "This is a simple prompt for testing.",
        "{r}"
    );
    late.kill();
    listed_after(
        &mut stream,
        &client,
        "notifications/prompts/list_changed",
        PROMPTS,
        |p| {
            !p.iter().any(|p| p.starts_with("down_"))
                && p.iter().any(|p| p == "conf_test_prompt_with_arguments")
        },
    )
    .await;
    let r = client
        .request(11, "resources/read", json!({"uri": "test://static-binary"}))
        .await
        .unwrap();
    assert_eq!(r["result"]["contents"][0]["mimeType"], "image/png", "{r}");
}

/// The same catalog through two gateways and two workers on Redis (workers that serve
/// only the upstream), read by the official Python SDK 2.x client in both generations:
/// a session (`initialize`) and 2026-07-28 (no session; the worker's own upstream
/// session serves it), a resource update included (a subscription, or a listen stream).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_reads_an_upstreams_catalog_through_redis_workers_in_both_generations() {
    let upstream = Gateway::start(&["--toolset", "conformance"]).expect("upstream gateway");
    let redis = RedisServer::start().expect("redis");
    let gw_args = ["--redis-url", &redis.url()];
    let a = Gateway::start(&gw_args).expect("gateway a");
    let b = Gateway::start(&gw_args).expect("gateway b");
    let spec = format!("conf={}", upstream.url());
    let worker_args = ["--toolset", "none", "--upstream", &spec];
    let _w1 = WorkerProcess::start(&redis.url(), &worker_args).expect("worker 1");
    let _w2 = WorkerProcess::start(&redis.url(), &worker_args).expect("worker 2");
    let mut client = RawClient::new(&b.url());
    client.initialize("2025-11-25").await.unwrap();
    let start = Instant::now();
    while !listed(&client, "prompts/list", "prompts", "name")
        .await
        .iter()
        .any(|p| p == "conf_test_prompt_with_arguments")
    {
        assert!(
            start.elapsed() < WAIT,
            "the upstream's prompts never listed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    for mode in ["legacy", "auto"] {
        let r = python_script("upstream_catalog_client.py", &[&a.url(), "conf_", mode])
            .unwrap_or_else(|e| panic!("{mode}: {e:#}"));
        let version = r["protocol_version"].as_str().unwrap_or_default();
        if mode == "auto" {
            assert_eq!(version, "2026-07-28", "{r}");
        } else {
            assert_ne!(version, "2026-07-28", "{r}");
        }
        let prompts = r["prompts"].as_array().cloned().unwrap_or_default();
        for name in [
            "conf_test_prompt_with_arguments",
            "conf_test_prompt_with_embedded_resource",
            "conf_test_prompt_with_image",
            "conf_test_simple_prompt",
        ] {
            assert!(prompts.contains(&json!(name)), "{mode}: {name}: {r}");
        }
        assert!(
            prompts
                .iter()
                .all(|p| p.as_str().is_some_and(|p| p.starts_with("conf_"))),
            "{mode}: only the upstream's (the workers serve nothing else): {r}"
        );
        assert_eq!(
            r["resources"],
            json!([
                ["test://static-binary", "conf_static-binary"],
                ["test://static-text", "conf_static-text"],
                ["test://watched-resource", "conf_watched-resource"]
            ]),
            "{mode}: {r}"
        );
        assert_eq!(
            r["templates"],
            json!([["test://template/{id}/data", "conf_template-data"]]),
            "{mode}: {r}"
        );
        assert_eq!(
            r["static_text"],
            json!(["This is the content of the static text resource."]),
            "{mode}: {r}"
        );
        assert_eq!(r["static_binary"][0][0], "image/png", "{mode}: {r}");
        assert_eq!(r["template_data"][0]["id"], "7", "{mode}: {r}");
        assert_eq!(
            r["prompt"],
            json!(["Prompt with arguments: arg1='x', arg2='y'"]),
            "{mode}: {r}"
        );
        assert_eq!(r["prompt_image"][0], "image/png", "{mode}: {r}");
        assert_eq!(
            r["complete_prompt"],
            json!(["paris", "park", "party", "pasta"]),
            "{mode}: {r}"
        );
        assert_eq!(r["complete_template"], json!(["1", "123"]), "{mode}: {r}");
        assert_eq!(
            r["updated"],
            json!(["test://watched-resource"]),
            "{mode}: the upstream's resource update reaches the subscribed client: {r}"
        );
    }
}

/// A stdio upstream's catalog (a FastMCP server, `bench/peers/fastmcp/catalog.py`) keeps
/// every field of its descriptors (titles, annotations, icons, `_meta`) through the
/// cluster, and its template, prompt and completions answer under the prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdio_upstreams_catalog_keeps_every_field() {
    let python = e2e_tests::tools::fastmcp_peer().expect("fastmcp venv");
    let script = repo().join("bench/peers/fastmcp/catalog.py");
    let spec = format!("notes=stdio:{} {}", python.display(), script.display());
    let gateway = Gateway::start(&["--upstream", &spec]).expect("gateway");
    let mut client = RawClient::new(&gateway.url());
    client.initialize("2025-11-25").await.unwrap();
    let start = Instant::now();
    let resources = loop {
        let list = client
            .request(1, "resources/list", json!({}))
            .await
            .unwrap();
        let found = list["result"]["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["uri"] == "note://readme")
            .cloned();
        if let Some(found) = found {
            break found;
        }
        assert!(start.elapsed() < WAIT, "never listed: {list}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        resources,
        json!({
            "uri": "note://readme",
            "name": "notes_readme",
            "title": "Read me",
            "description": "The first note",
            "mimeType": "text/markdown",
            "icons": [{"src": "https://example.com/icon.png", "mimeType": "image/png"}],
            "annotations": {"audience": ["user"], "priority": 0.5},
            "_meta": {"example.com/kind": "note"},
        })
    );
    let templates = client
        .request(2, "resources/templates/list", json!({}))
        .await
        .unwrap();
    let template = templates["result"]["resourceTemplates"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["uriTemplate"] == "note://items/{item}")
        .cloned()
        .unwrap_or_else(|| panic!("{templates}"));
    assert_eq!(template["name"], "notes_item", "{template}");
    assert_eq!(template["title"], "An item", "{template}");
    assert_eq!(
        template["_meta"],
        json!({"example.com/kind": "item"}),
        "{template}"
    );
    let prompts = client.request(3, "prompts/list", json!({})).await.unwrap();
    let prompt = prompts["result"]["prompts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "notes_summarize")
        .cloned()
        .unwrap_or_else(|| panic!("{prompts}"));
    assert_eq!(prompt["title"], "Summarize", "{prompt}");
    assert_eq!(
        prompt["icons"][0]["src"], "https://example.com/icon.png",
        "{prompt}"
    );
    assert_eq!(prompt["arguments"][0]["name"], "topic", "{prompt}");

    let r = client
        .request(4, "resources/read", json!({"uri": "note://items/42"}))
        .await
        .unwrap();
    assert_eq!(r["result"]["contents"][0]["text"], "item 42", "{r}");
    let r = client
        .request(
            5,
            "prompts/get",
            json!({"name": "notes_summarize", "arguments": {"topic": "pears"}}),
        )
        .await
        .unwrap();
    assert_eq!(
        r["result"]["messages"][0]["content"]["text"], "Summarize pears.",
        "{r}"
    );
    let r = client
        .request(
            6,
            "completion/complete",
            json!({"ref": {"type": "ref/prompt", "name": "notes_summarize"},
                   "argument": {"name": "topic", "value": "ap"}}),
        )
        .await
        .unwrap();
    assert_eq!(
        r["result"]["completion"]["values"],
        json!(["apples", "apricots"]),
        "{r}"
    );
    let r = client
        .request(
            7,
            "completion/complete",
            json!({"ref": {"type": "ref/resource", "uri": "note://items/{item}"},
                   "argument": {"name": "item", "value": "a"}}),
        )
        .await
        .unwrap();
    assert_eq!(
        r["result"]["completion"]["values"],
        json!(["a1", "a2"]),
        "{r}"
    );
}

/// The seed's server restarted on the same port forgets its sessions (FastMCP keeps them
/// in memory): the next call of the downstream session gets a new upstream session and
/// works; a call running when the upstream restarted fails with an error, never hangs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_lost_the_session_is_reinitialized() {
    let mut seed = FastMcp::start().expect("fastmcp");
    let port = seed.port;
    let dir = tempdir();
    let file = dir.join("upstreams.toml");
    // The health check runs rarely, so the restart is seen by the session itself (404),
    // not by an outage of the whole upstream.
    std::fs::write(
        &file,
        format!(
            "[[upstream]]\nname = \"seed\"\nurl = \"{}\"\ntimeout_ms = 10000\nhealth_interval_ms = 60000\n",
            seed.url()
        ),
    )
    .unwrap();
    let gateway = Gateway::start(&["--upstreams", file.to_str().unwrap()]).expect("gateway");
    let mut client = RawClient::new(&gateway.url());
    client.initialize("2025-11-25").await.unwrap();
    wait_for_tools(&client, "the seed's tools", |n| {
        n.iter().any(|t| t == "seed_send_notification")
    })
    .await
    .unwrap();
    let send =
        |text: &str| json!({"name": "seed_send_notification", "arguments": {"message": text}});
    let r = client.request(1, "tools/call", send("one")).await.unwrap();
    assert_eq!(
        r["result"]["content"][0]["text"], "notification sent: one",
        "{r}"
    );

    // Restarted between two calls of the session: the second works.
    seed.kill();
    seed = FastMcp::start_on(port).expect("fastmcp again");
    let started = Instant::now();
    let r = client.request(2, "tools/call", send("two")).await.unwrap();
    assert_eq!(
        r["result"]["content"][0]["text"], "notification sent: two",
        "the call after the restart: {r}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );

    // Restarted during a call: that call fails with an error, well before its timeout.
    let mut stream = client
        .call_tool_stream(
            3,
            "seed_long_running_operation",
            json!({"steps": 1000, "step_ms": 50}),
            Some("lost"),
        )
        .await
        .unwrap();
    let (_, first) = stream.next_message(WAIT).await.unwrap().unwrap();
    assert_eq!(first["method"], "notifications/progress", "{first}");
    seed.kill();
    seed = FastMcp::start_on(port).expect("fastmcp a third time");
    let restarted = Instant::now();
    let rest = messages(&stream.collect(WAIT).await.unwrap());
    let answer = rest
        .iter()
        .find(|m| m.get("id").is_some())
        .unwrap_or_else(|| panic!("no answer after the upstream restarted: {rest:?}"));
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("upstream seed lost the session"),
        "an error saying the session was lost: {answer}"
    );
    // Its timeout is 10 s; the probe finds the loss within about a second.
    eprintln!(
        "the lost call answered {:?} after the restart",
        restarted.elapsed()
    );
    assert!(
        restarted.elapsed() < Duration::from_secs(5),
        "answered in {:?}",
        restarted.elapsed()
    );
    let r = client.request(4, "tools/call", send("four")).await.unwrap();
    assert_eq!(
        r["result"]["content"][0]["text"], "notification sent: four",
        "the session works after the lost call: {r}"
    );
    drop(seed);
}

/// A loopback HTTP server that answers every request 200 with a body that is not
/// JSON-RPC, or (silent) accepts and never answers. Runs until the test process ends.
fn bad_server(silent: bool) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            if silent {
                held.push(stream);
                continue;
            }
            std::thread::spawn(move || {
                use std::io::{BufRead, BufReader, Write};
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                // Read the request head, then answer garbage and close.
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                    if line == "\r\n" {
                        break;
                    }
                    line.clear();
                }
                let body = "this is not JSON-RPC <html>";
                let mut stream = reader.into_inner();
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    port
}

/// An upstream that answers garbage and one that never answers stay out of the catalog
/// (reported down, retried), and the rest of the catalog keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_silent_upstreams_stay_out_and_the_rest_serves() {
    let seed = FastMcp::start().expect("fastmcp");
    let garbage = bad_server(false);
    let silent = bad_server(true);
    let dir = tempdir();
    let file = dir.join("upstreams.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[[upstream]]
name = "seed"
url = "{}"

[[upstream]]
name = "garbage"
url = "http://127.0.0.1:{garbage}/mcp"
health_interval_ms = 200
connect_timeout_ms = 1000

[[upstream]]
name = "silent"
url = "http://127.0.0.1:{silent}/mcp"
health_interval_ms = 200
connect_timeout_ms = 1000
"#,
            seed.url()
        ),
    )
    .unwrap();
    let gateway = Gateway::start(&["--upstreams", file.to_str().unwrap()]).expect("gateway");
    let mut client = RawClient::new(&gateway.url());
    client.initialize("2025-11-25").await.unwrap();
    let names = wait_for_tools(&client, "the seed's tools", |n| {
        n.iter().any(|t| t == "seed_send_notification")
    })
    .await
    .unwrap();
    assert!(
        !names
            .iter()
            .any(|t| t.starts_with("garbage_") || t.starts_with("silent_")),
        "{names:?}"
    );
    // Both are reported down and retried (several connect attempts) while the seed serves.
    let started = Instant::now();
    loop {
        let status = client
            .request(1, "tools/call", json!({"name": "server_status"}))
            .await
            .unwrap();
        let status: Value =
            serde_json::from_str(status["result"]["content"][0]["text"].as_str().unwrap()).unwrap();
        let up = |name: &str| {
            status["upstreams"]
                .as_array()
                .and_then(|all| all.iter().find(|u| u["name"] == name))
                .map(|u| u["up"].clone())
        };
        assert_eq!(up("seed"), Some(json!(true)), "{status}");
        if up("garbage") == Some(json!(false)) && up("silent") == Some(json!(false)) {
            break;
        }
        assert!(started.elapsed() < WAIT, "{status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let started = Instant::now();
    let r = client
        .request(
            2,
            "tools/call",
            json!({"name": "seed_send_notification", "arguments": {"message": "fine"}}),
        )
        .await
        .unwrap();
    assert_eq!(
        r["result"]["content"][0]["text"], "notification sent: fine",
        "{r}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let r = client
        .request(3, "tools/call", json!({"name": "garbage_anything"}))
        .await
        .unwrap();
    assert!(
        r.get("error").is_some() || r["result"]["isError"] == true,
        "{r}"
    );
}
