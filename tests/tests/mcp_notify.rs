//! The `mcp-notify` client against a running gateway, read through its `--json` output:
//! the demo shows every kind of notification, a piped session runs every command, a dropped
//! stream is resumed without loss and reported, and errors are one sentence with a non-zero
//! exit status.

use e2e_tests::nginx::Nginx;
use e2e_tests::{Deployment, Kind};
use e2e_tests::{Gateway, RawClient};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

/// The `mcp-notify` binary, built once per test process with the tests' profile.
fn notify_binary() -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf();
    BUILT.get_or_init(|| {
        let status = std::process::Command::new(env!("CARGO"))
            .args([
                "build",
                "--quiet",
                "-p",
                "mcp-notify",
                "--bin",
                "mcp-notify",
            ])
            .current_dir(&root)
            .status()
            .expect("run cargo build for mcp-notify");
        assert!(status.success(), "building mcp-notify failed");
    });
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("debug")
        .join("mcp-notify")
}

/// `mcp-notify` as a child process, its stdout read line by line as JSON.
struct Notify {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::UnboundedReceiver<Value>,
    /// Every line read so far.
    seen: Vec<Value>,
    stderr: tokio::task::JoinHandle<String>,
}

impl Notify {
    fn spawn(args: &[&str]) -> Self {
        let mut child = Command::new(notify_binary())
            .args(args)
            .env_remove("MCP_NOTIFY_URL")
            .env_remove("MCP_NOTIFY_BEARER")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn mcp-notify");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        let mut err = child.stderr.take().expect("stderr");
        let stderr = tokio::spawn(async move {
            let mut buf = String::new();
            let _ = err.read_to_string(&mut buf).await;
            buf
        });
        let stdin = child.stdin.take();
        Self {
            child,
            stdin,
            lines,
            seen: Vec::new(),
            stderr,
        }
    }

    /// Sends command lines (interactive mode).
    async fn send(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin.write_all(text.as_bytes()).await.unwrap();
        stdin.flush().await.unwrap();
    }

    /// Reads lines until one satisfies `done`, at most `timeout`; returns it.
    async fn until(&mut self, timeout: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(v)) => {
                    self.seen.push(v.clone());
                    if done(&v) {
                        return v;
                    }
                }
                Ok(None) => panic!(
                    "mcp-notify ended before the awaited line; lines: {:#?}",
                    self.seen
                ),
                Err(_) => panic!(
                    "no awaited line within {timeout:?}; lines: {:#?}",
                    self.seen
                ),
            }
        }
    }

    /// Closes stdin, reads every remaining line and waits for the exit status.
    async fn finish(mut self) -> (Option<i32>, Vec<Value>, String) {
        drop(self.stdin.take());
        let read_all = async {
            while let Some(v) = self.lines.recv().await {
                self.seen.push(v);
            }
        };
        tokio::time::timeout(Duration::from_secs(20), read_all)
            .await
            .expect("mcp-notify closes its stdout within 20 s");
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("mcp-notify exits within 20 s")
            .expect("wait for mcp-notify");
        let stderr = tokio::time::timeout(Duration::from_secs(5), self.stderr)
            .await
            .expect("stderr closes with the process")
            .unwrap_or_default();
        (status.code(), self.seen, stderr)
    }
}

fn of_type<'a>(lines: &'a [Value], ty: &str) -> Vec<&'a Value> {
    lines.iter().filter(|v| v["type"] == ty).collect()
}

fn messages<'a>(lines: &'a [Value], logger: &str) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|v| v["type"] == "notification" && v["kind"] == "message" && v["logger"] == logger)
        .collect()
}

fn ticks(lines: &[Value], logger: &str) -> Vec<u64> {
    messages(lines, logger)
        .iter()
        .filter_map(|v| v["data"]["tick"].as_u64())
        .collect()
}

fn is_tick(v: &Value, logger: &str, tick: u64) -> bool {
    v["type"] == "notification" && v["logger"] == logger && v["data"]["tick"] == tick
}

/// The summary must count exactly the notification lines that were printed.
fn assert_summary_matches(lines: &[Value], summary: &Value) {
    let notifications = of_type(lines, "notification");
    let kind = |k: &str| notifications.iter().filter(|v| v["kind"] == k).count() as u64;
    assert_eq!(
        summary["notifications"],
        notifications.len() as u64,
        "{summary}"
    );
    assert_eq!(summary["progress"], kind("progress"), "{summary}");
    assert_eq!(summary["messages"]["total"], kind("message"), "{summary}");
    assert_eq!(summary["other"]["total"], kind("other"), "{summary}");
    let by_logger = summary["messages"]["by_logger"]
        .as_object()
        .expect("by_logger");
    for (logger, count) in by_logger {
        assert_eq!(
            count.as_u64(),
            Some(messages(lines, logger).len() as u64),
            "logger {logger}: {summary}"
        );
    }
}

/// Where the client connects: one standalone gateway, or a Redis cluster (two gateways,
/// a worker) behind the deployment's round-robin nginx, so its requests spread.
struct Target {
    _deployment: Deployment,
    _nginx: Option<Nginx>,
    url: String,
}

async fn target(kind: Kind) -> Target {
    let deployment = Deployment::start(kind, &[]).await.unwrap();
    let (nginx, url) = match kind {
        Kind::Standalone => (None, deployment.gateways[0].url()),
        Kind::Cluster => {
            let upstreams: Vec<String> = deployment
                .gateways
                .iter()
                .map(|g| g.base.trim_start_matches("http://").to_owned())
                .collect();
            let upstreams: Vec<&str> = upstreams.iter().map(String::as_str).collect();
            let nginx = Nginx::start(&upstreams).unwrap();
            let url = nginx.url();
            (Some(nginx), url)
        }
    };
    Target {
        _deployment: deployment,
        _nginx: nginx,
        url,
    }
}

#[tokio::test]
async fn the_demo_shows_every_kind_of_notification_and_a_matching_summary() {
    the_demo_in(Kind::Standalone).await;
}

#[tokio::test]
async fn the_demo_works_through_a_redis_cluster_behind_nginx() {
    the_demo_in(Kind::Cluster).await;
}

async fn the_demo_in(kind: Kind) {
    let gw = target(kind).await;
    let url = gw.url.clone();
    let client = Notify::spawn(&[
        "--json",
        "--url",
        &url,
        "demo",
        "--steps",
        "4",
        "--step-ms",
        "20",
        "--ticks",
        "3",
        "--tick-ms",
        "50",
    ]);
    let (code, lines, stderr) = client.finish().await;
    assert_eq!(code, Some(0), "stderr: {stderr}; lines: {lines:#?}");

    assert_eq!(of_type(&lines, "connected")[0]["protocol"], "2025-11-25");
    let notify = messages(&lines, "notify");
    assert_eq!(notify.len(), 1, "{lines:#?}");
    assert_eq!(notify[0]["method"], "notifications/message");
    assert_eq!(notify[0]["level"], "info");
    assert_eq!(messages(&lines, "broadcast").len(), 1, "{lines:#?}");
    let progress: Vec<(f64, f64)> = of_type(&lines, "notification")
        .iter()
        .filter(|v| v["kind"] == "progress")
        .map(|v| {
            (
                v["progress"].as_f64().unwrap(),
                v["total"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(progress, [(1.0, 4.0), (2.0, 4.0), (3.0, 4.0), (4.0, 4.0)]);
    assert_eq!(ticks(&lines, "task/demo"), [1, 2, 3]);
    let results = of_type(&lines, "result");
    let commands: Vec<&str> = results
        .iter()
        .map(|r| r["command"].as_str().unwrap())
        .collect();
    assert_eq!(
        commands,
        ["notify", "broadcast", "operation", "task", "status"]
    );
    assert!(results.iter().all(|r| r["ok"] == true), "{results:#?}");
    assert_eq!(results[4]["value"]["workers"], 1);
    assert!(of_type(&lines, "error").is_empty());

    let summary = lines.last().expect("a summary line");
    assert_eq!(summary["type"], "summary", "the summary is the last line");
    assert_eq!(summary["notifications"], 9);
    assert_eq!(summary["messages"]["by_logger"]["task/demo"], 3);
    assert_eq!(summary["commands"]["operation"]["runs"], 1);
    assert_eq!(summary["failed_commands"], 0);
    assert_summary_matches(&lines, summary);
}

#[tokio::test]
async fn a_piped_session_runs_every_command_and_scripts_read_json() {
    a_piped_session_in(Kind::Standalone).await;
}

#[tokio::test]
async fn a_piped_session_works_through_a_redis_cluster_behind_nginx() {
    a_piped_session_in(Kind::Cluster).await;
}

async fn a_piped_session_in(kind: Kind) {
    let gw = target(kind).await;
    let url = gw.url.clone();
    let mut client = Notify::spawn(&["--json", "--url", &url, "interactive"]);
    // `wait` holds the script until the background task's messages are all in.
    client
        .send(
            "help\nnotify disk almost full warning\nbroadcast hello all\n# a comment\n\
             operation 3 10\ntask t 3 30\nwait\nstatus\ntools\nsummary\nquit\n",
        )
        .await;
    let (code, lines, stderr) = client.finish().await;
    assert_eq!(code, Some(0), "stderr: {stderr}; lines: {lines:#?}");

    let notify = messages(&lines, "notify");
    assert_eq!(
        (notify.len(), &notify[0]["level"], &notify[0]["data"]),
        (1, &Value::from("warning"), &Value::from("disk almost full"))
    );
    assert_eq!(messages(&lines, "broadcast")[0]["data"], "hello all");
    let progress = of_type(&lines, "notification")
        .iter()
        .filter(|v| v["kind"] == "progress")
        .count();
    assert_eq!(progress, 3);
    assert_eq!(ticks(&lines, "task/t"), [1, 2, 3]);

    let results = of_type(&lines, "result");
    let commands: Vec<&str> = results
        .iter()
        .map(|r| r["command"].as_str().unwrap())
        .collect();
    assert_eq!(
        commands,
        [
            "notify",
            "broadcast",
            "operation",
            "task",
            "status",
            "tools"
        ]
    );
    assert!(results.iter().all(|r| r["ok"] == true), "{results:#?}");
    assert_eq!(results[4]["value"]["sessions"], 1);
    let mut tools: Vec<&str> = results[5]["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    tools.sort();
    assert_eq!(
        tools,
        [
            "broadcast",
            "long_running_operation",
            "send_notification",
            "server_status",
            "start_background_task"
        ]
    );
    assert_eq!(of_type(&lines, "help").len(), 1);

    // The `summary` command's line, then the final one, last.
    let summaries = of_type(&lines, "summary");
    assert_eq!(summaries.len(), 2);
    let last = lines.last().unwrap();
    assert_eq!(last["type"], "summary");
    assert_eq!(last["messages"]["by_level"]["warning"], 1);
    assert_eq!(last["messages"]["by_logger"]["task/t"], 3);
    assert_summary_matches(&lines, last);
}

/// A TCP proxy between the client and the gateway that can cut every open connection,
/// as a load balancer or a flaky network would. It keeps what went through, to check
/// headers.
struct Proxy {
    addr: std::net::SocketAddr,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
    /// While set, new connections are closed at once (the network is down).
    down: Arc<AtomicBool>,
    /// Bytes from the client, then bytes from the server, of every connection.
    upstream_bytes: Arc<Mutex<Vec<u8>>>,
    downstream_bytes: Arc<Mutex<Vec<u8>>>,
    accept: AbortHandle,
}

impl Proxy {
    async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let conns: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let is_down: Arc<AtomicBool> = Arc::default();
        let up: Arc<Mutex<Vec<u8>>> = Arc::default();
        let down: Arc<Mutex<Vec<u8>>> = Arc::default();
        let (c, u, d, off) = (conns.clone(), up.clone(), down.clone(), is_down.clone());
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if off.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&target).await else {
                    continue;
                };
                let (u, d) = (u.clone(), d.clone());
                let task = tokio::spawn(async move {
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::join!(pipe(cr, sw, u), pipe(sr, cw, d));
                });
                c.lock().unwrap().push(task.abort_handle());
            }
        })
        .abort_handle();
        Self {
            addr,
            conns,
            down: is_down,
            upstream_bytes: up,
            downstream_bytes: down,
            accept,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    /// Takes the network down (new connections are closed at once) or back up.
    fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Cuts every connection open now.
    fn cut(&self) {
        for conn in self.conns.lock().unwrap().drain(..) {
            conn.abort();
        }
    }

    /// What the client sent, lowercased for matching header names.
    fn sent(&self) -> String {
        String::from_utf8_lossy(&self.upstream_bytes.lock().unwrap()).to_ascii_lowercase()
    }

    /// What the server sent, as it was.
    fn received(&self) -> String {
        String::from_utf8_lossy(&self.downstream_bytes.lock().unwrap()).into_owned()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// Copies one direction, keeping a bounded copy of what passed.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    log: Arc<Mutex<Vec<u8>>>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        {
            let mut log = log.lock().unwrap();
            if log.len() < 4 << 20 {
                log.extend_from_slice(&buf[..n]);
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

#[tokio::test]
async fn a_dropped_stream_is_resumed_without_loss_and_reported() {
    let gw = Gateway::start(&[]).unwrap();
    let proxy = Proxy::start(gw.base.trim_start_matches("http://").to_owned()).await;
    let url = proxy.url();
    let mut client = Notify::spawn(&[
        "--json",
        "--url",
        &url,
        "--bearer",
        "secret-token",
        "--header",
        "X-Demo: yes",
        "interactive",
    ]);
    client
        .until(Duration::from_secs(10), |v| v["type"] == "connected")
        .await;
    client.send("task drop 6 400\n").await;
    client
        .until(Duration::from_secs(10), |v| is_tick(v, "task/drop", 2))
        .await;
    let before_cut = ticks(&client.seen, "task/drop").len();
    assert!(before_cut < 6, "the cut must come while ticks are pending");
    proxy.set_down(true);
    proxy.cut();
    // The client retries at once, then after 250 ms, then after 500 ms more: by its third
    // failed attempt the stream has been down for 750 ms, longer than a tick's 400 ms, so
    // the gateway sent at least one tick into the gap, which only resumption can bring back.
    client
        .until(Duration::from_secs(10), |v| {
            v["type"] == "resume_failed" && v["attempt"] == 3
        })
        .await;
    proxy.set_down(false);

    client
        .until(Duration::from_secs(15), |v| v["type"] == "reconnected")
        .await;
    client
        .until(Duration::from_secs(15), |v| is_tick(v, "task/drop", 6))
        .await;
    client.send("quit\n").await;
    let (code, lines, stderr) = client.finish().await;
    assert_eq!(code, Some(0), "stderr: {stderr}; lines: {lines:#?}");

    // Every tick exactly once, in order, across the cut.
    assert_eq!(ticks(&lines, "task/drop"), [1, 2, 3, 4, 5, 6], "{lines:#?}");
    let dropped = of_type(&lines, "stream_dropped");
    assert_eq!(dropped[0]["stream"], "standalone", "{lines:#?}");
    let resumed = of_type(&lines, "reconnected");
    assert_eq!(resumed.len(), 1, "{lines:#?}");
    assert_eq!(resumed[0]["stream"], "standalone");
    assert_eq!(resumed[0]["after"], "dropped");
    assert_eq!(resumed[0]["attempt"], 4);
    let cursor = resumed[0]["last_event_id"].as_str().expect("a cursor");
    // Ticks came over the resumed stream, not only before the cut.
    let resumed_at = lines
        .iter()
        .position(|v| v["type"] == "reconnected")
        .unwrap();
    assert!(
        lines[resumed_at..]
            .iter()
            .any(|v| v["logger"] == "task/drop"),
        "{lines:#?}"
    );

    let summary = lines.last().unwrap();
    assert_eq!(summary["type"], "summary");
    assert_eq!(summary["reconnects"], 1);
    assert_eq!(summary["messages"]["by_logger"]["task/drop"], 6);
    assert_summary_matches(&lines, summary);

    // What went over the wire: the resumption, and our headers on every request.
    let sent = proxy.sent();
    assert!(
        sent.contains(&format!("last-event-id: {}", cursor.to_ascii_lowercase())),
        "the resumed GET carries the cursor"
    );
    let requests = sent.matches("\r\nhost:").count();
    assert!(requests >= 4, "{requests} requests");
    assert_eq!(
        sent.matches("authorization: bearer secret-token").count(),
        requests
    );
    assert_eq!(sent.matches("x-demo: yes").count(), requests);
}

#[tokio::test]
async fn errors_are_one_sentence_and_a_non_zero_exit_status() {
    // Nobody listens on a port that was just released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/mcp");
    let (code, lines, stderr) = Notify::spawn(&["--json", "--url", &url, "demo"])
        .finish()
        .await;
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot reach {url}: connection refused")),
        "{stderr}"
    );
    assert_eq!(of_type(&lines, "error").len(), 1);
    assert_eq!(lines.last().unwrap()["type"], "summary");

    // A tool error: reported, the session goes on, the script's exit status says so.
    let gw = Gateway::start(&[]).unwrap();
    let url = gw.url();
    let mut client = Notify::spawn(&["--json", "--url", &url, "interactive"]);
    client.send("operation 0\nnotify still here\nquit\n").await;
    let (code, lines, stderr) = client.finish().await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("tool long_running_operation failed: "),
        "{stderr}"
    );
    let results = of_type(&lines, "result");
    assert_eq!(results[0]["ok"], false);
    assert_eq!(results[1]["ok"], true);
    assert_eq!(lines.last().unwrap()["failed_commands"], 1);

    // The session ends under the client (here: deleted by someone else): the next command
    // says so and the client exits.
    let proxy = Proxy::start(gw.base.trim_start_matches("http://").to_owned()).await;
    let mut client = Notify::spawn(&["--json", "--url", &proxy.url(), "interactive"]);
    client
        .until(Duration::from_secs(10), |v| v["type"] == "connected")
        .await;
    let received = proxy.received();
    let at = received
        .to_ascii_lowercase()
        .find("\r\nmcp-session-id: ")
        .expect("the gateway named the session")
        + "\r\nmcp-session-id: ".len();
    let session = received[at..]
        .split("\r\n")
        .next()
        .unwrap_or_default()
        .to_owned();
    let mut other = RawClient::new(&gw.url());
    other.session = Some(session);
    assert_eq!(other.delete().await.unwrap(), 204);
    client.send("notify anyone there\n").await;
    let (code, lines, stderr) = client.finish().await;
    assert_eq!(code, Some(3), "{stderr}; {lines:#?}");
    assert!(
        stderr.contains("the server ended the session (HTTP 404)"),
        "{stderr}"
    );
    assert_eq!(lines.last().unwrap()["type"], "summary");
}

#[tokio::test]
async fn a_dropped_call_resumes_with_the_rest_of_its_progress_and_its_result() {
    let gw = Gateway::start(&[]).unwrap();
    let proxy = Proxy::start(gw.base.trim_start_matches("http://").to_owned()).await;
    let url = proxy.url();
    let mut client = Notify::spawn(&["--json", "--url", &url, "interactive"]);
    client
        .until(Duration::from_secs(10), |v| v["type"] == "connected")
        .await;
    client.send("operation 8 250\nquit\n").await;
    client
        .until(Duration::from_secs(10), |v| {
            v["kind"] == "progress" && v["progress"] == 2.0
        })
        .await;
    // Both streams go: the call's own and the standalone one.
    proxy.cut();
    let (code, lines, stderr) = client.finish().await;
    assert_eq!(code, Some(0), "stderr: {stderr}; lines: {lines:#?}");

    let progress: Vec<f64> = of_type(&lines, "notification")
        .iter()
        .filter(|v| v["kind"] == "progress")
        .map(|v| v["progress"].as_f64().unwrap())
        .collect();
    assert_eq!(progress, (1..=8).map(f64::from).collect::<Vec<_>>());
    let result = &of_type(&lines, "result")[0];
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(result["text"], "operation completed: 8 steps");
    let resumed = of_type(&lines, "reconnected");
    assert!(
        resumed
            .iter()
            .any(|r| r["stream"] == "request" && r["after"] == "dropped"),
        "{lines:#?}"
    );
    let summary = lines.last().unwrap();
    assert_eq!(summary["progress"], 8);
    assert_eq!(summary["reconnects"], resumed.len());
    assert_summary_matches(&lines, summary);
}
