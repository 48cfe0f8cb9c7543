//! Browser clients, over raw HTTP and in a real browser.
//!
//! - `cors_*`: CORS as a browser sees it (preflights, exposed headers), over raw HTTP.
//! - `console_*`: the console page at `/` in a real headless Chromium (Debian's
//!   `chromium`, driven over the DevTools protocol by `tests/browser/driver.mjs` on
//!   puppeteer-core): standalone, and on two gateways behind nginx with one of them killed.
//! - `page_on_*`: the TypeScript SDK client in a page on another origin: refused by
//!   preflight when the origin is off the list, a full session when it is on it.
//! - `inspector_*`: the official MCP Inspector's CLI mode against a gateway.
//!
//! Needs Debian's `chromium` (`./test.sh` installs it), npm, and a Node.js >= 22
//! (provisioned by `e2e_tests::tools::node22`); the npm packages are installed with
//! `npm ci` from the lock files under `tests/browser/` and `gateway/console/`.
//! `MCPGW_SCREENSHOTS=DIR` makes the console tests save their screenshots there
//! (`docs/screenshots.sh` does, for the README).

use anyhow::{Context, bail, ensure};
use e2e_tests::{Gateway, RawClient, RedisServer, WorkerProcess};
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"cors-test","version":"0"}}}"#;

/// The request headers a browser MCP client sends (and so asks about in a preflight).
const CLIENT_HEADERS: &str = "content-type,accept,authorization,mcp-session-id,mcp-protocol-version,last-event-id,mcp-method,mcp-name,traceparent";

/// A gateway's own loopback origin under another port: allowed by the default policy of a
/// loopback listener.
fn loopback_origin(gw: &Gateway) -> String {
    let port = gw.base.rsplit(':').next().unwrap();
    format!("http://localhost:{port}")
}

async fn preflight(url: &str, origin: &str, method: &str, headers: &str) -> reqwest::Response {
    reqwest::Client::new()
        .request(Method::OPTIONS, url)
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header("access-control-request-headers", headers)
        .send()
        .await
        .expect("preflight")
}

fn header(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .map(|v| v.to_str().unwrap().to_ascii_lowercase())
        .unwrap_or_default()
}

fn list(headers: &HeaderMap, name: &str) -> Vec<String> {
    header(headers, name)
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

fn cors_headers(headers: &HeaderMap) -> Vec<String> {
    headers
        .keys()
        .map(|k| k.as_str().to_owned())
        .filter(|k| k.starts_with("access-control-"))
        .collect()
}

async fn initialize(url: &str, extra: &[(&str, &str)]) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(INITIALIZE);
    for (k, v) in extra {
        request = request.header(*k, *v);
    }
    request.send().await.expect("initialize")
}

/// The JSON-RPC message of a response, whether JSON or a one-event SSE stream.
async fn json_body(r: reqwest::Response) -> Value {
    let text = r.text().await.unwrap();
    let data = text
        .lines()
        .find_map(|l| l.strip_prefix("data:"))
        .unwrap_or(&text);
    serde_json::from_str(data.trim()).unwrap_or(Value::Null)
}

#[tokio::test]
async fn cors_preflight_of_an_allowed_origin_allows_the_transport() {
    let gw = Gateway::start(&[]).unwrap();
    let origin = loopback_origin(&gw);
    for method in ["POST", "GET", "DELETE"] {
        let r = preflight(&gw.url(), &origin, method, CLIENT_HEADERS).await;
        assert!(r.status().is_success(), "{method}: {}", r.status());
        let h = r.headers();
        assert_eq!(header(h, "access-control-allow-origin"), origin);
        let methods = list(h, "access-control-allow-methods");
        for m in ["post", "get", "delete"] {
            assert!(methods.contains(&m.to_owned()), "{methods:?}");
        }
        let allowed = list(h, "access-control-allow-headers");
        for wanted in CLIENT_HEADERS.split(',') {
            assert!(
                allowed.contains(&wanted.to_owned()),
                "{wanted}: {allowed:?}"
            );
        }
        assert_eq!(header(h, "access-control-max-age"), "7200");
        assert!(header(h, "vary").contains("origin"), "{h:?}");
        // No credentials mode: the bearer token is a header, not a cookie.
        assert!(h.get("access-control-allow-credentials").is_none());
    }
    // 2026-07-28's Mcp-Param-* headers are named by tool schemas: the ones asked are allowed.
    let r = preflight(
        &gw.url(),
        &origin,
        "POST",
        "content-type,mcp-method,mcp-name,mcp-param-region",
    )
    .await;
    let allowed = list(r.headers(), "access-control-allow-headers");
    assert!(
        allowed.contains(&"mcp-param-region".to_owned()),
        "{allowed:?}"
    );
    // Another header is not.
    let r = preflight(&gw.url(), &origin, "POST", "content-type,x-unknown").await;
    let allowed = list(r.headers(), "access-control-allow-headers");
    assert!(!allowed.contains(&"x-unknown".to_owned()), "{allowed:?}");
}

#[tokio::test]
async fn cors_an_origin_off_the_list_gets_403_preflight_included() {
    // Loopback defaults: a foreign origin is refused.
    let gw = Gateway::start(&[]).unwrap();
    for origin in ["http://evil.example", "null"] {
        let r = preflight(&gw.url(), origin, "POST", "content-type").await;
        assert_eq!(r.status(), 403, "{origin}");
        assert!(cors_headers(r.headers()).is_empty(), "{:?}", r.headers());
        let r = initialize(&gw.url(), &[("origin", origin)]).await;
        assert_eq!(r.status(), 403, "{origin}");
    }
    // An explicit list replaces the loopback default: a loopback page on another port is
    // foreign now.
    let gw = Gateway::start(&["--allowed-origin", "https://app.example.com"]).unwrap();
    let r = preflight(&gw.url(), "http://localhost:1", "POST", "content-type").await;
    assert_eq!(r.status(), 403);
    let r = preflight(&gw.url(), "https://app.example.com", "POST", "content-type").await;
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(
        header(r.headers(), "access-control-allow-origin"),
        "https://app.example.com"
    );
}

#[tokio::test]
async fn cors_responses_expose_the_session_id_to_an_allowed_origin() {
    let gw = Gateway::start(&[]).unwrap();
    let origin = loopback_origin(&gw);
    let r = initialize(&gw.url(), &[("origin", origin.as_str())]).await;
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(header(&h, "access-control-allow-origin"), origin);
    let exposed = list(&h, "access-control-expose-headers");
    for wanted in ["mcp-session-id", "www-authenticate"] {
        assert!(exposed.contains(&wanted.to_owned()), "{exposed:?}");
    }
    let session = header(&h, "mcp-session-id");
    assert_eq!(session.len(), 32);
    // The session then works from the page like from any client: a GET stream and a DELETE.
    let get = reqwest::Client::new()
        .get(gw.url())
        .header("origin", &origin)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 200);
    assert_eq!(header(get.headers(), "access-control-allow-origin"), origin);
    drop(get);
    let delete = reqwest::Client::new()
        .delete(gw.url())
        .header("origin", &origin)
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .unwrap();
    assert!(delete.status().is_success(), "{}", delete.status());
    assert_eq!(
        header(delete.headers(), "access-control-allow-origin"),
        origin
    );
}

#[tokio::test]
async fn cors_nothing_changes_without_origin() {
    let gw = Gateway::start(&[]).unwrap();
    let r = initialize(&gw.url(), &[]).await;
    assert_eq!(r.status(), 200);
    assert!(cors_headers(r.headers()).is_empty(), "{:?}", r.headers());
    assert!(r.headers().get("vary").is_none(), "{:?}", r.headers());
    // OPTIONS without Origin is no preflight: the transport's 405, as before.
    let r = reqwest::Client::new()
        .request(Method::OPTIONS, gw.url())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert!(cors_headers(r.headers()).is_empty(), "{:?}", r.headers());
}

#[tokio::test]
async fn cors_with_auth_the_preflight_needs_no_token_and_a_401_is_readable() {
    let gw = Gateway::start(&["--auth-token", "alice:secret-token-alice-0123"]).unwrap();
    let origin = loopback_origin(&gw);
    // A preflight carries no credentials: it must not be asked for them.
    let r = preflight(&gw.url(), &origin, "POST", CLIENT_HEADERS).await;
    assert!(r.status().is_success(), "{}", r.status());
    // Without a token: 401, and the page can read WWW-Authenticate (resource metadata).
    let r = initialize(&gw.url(), &[("origin", origin.as_str())]).await;
    assert_eq!(r.status(), 401);
    assert_eq!(header(r.headers(), "access-control-allow-origin"), origin);
    assert!(
        list(r.headers(), "access-control-expose-headers").contains(&"www-authenticate".into())
    );
    assert!(header(r.headers(), "www-authenticate").starts_with("bearer"));
    // The metadata the header points to is readable cross-origin too.
    let r = reqwest::Client::new()
        .get(format!("{}/.well-known/oauth-protected-resource", gw.base))
        .header("origin", &origin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(r.headers(), "access-control-allow-origin"), origin);
    // With the token: a session.
    let r = initialize(
        &gw.url(),
        &[
            ("origin", origin.as_str()),
            ("authorization", "Bearer secret-token-alice-0123"),
        ],
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(r.headers(), "access-control-allow-origin"), origin);
    let body = json_body(r).await;
    assert!(body["result"]["protocolVersion"].is_string(), "{body}");
}

// --- the browser ---------------------------------------------------------------------

/// One driver command (a page load, a wait for events) never takes longer.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

fn chromium() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    ensure!(
        path.is_file(),
        "{} not found: install Debian's chromium (`apt-get install chromium`; ./test.sh does)",
        path.display()
    );
    Ok(path)
}

/// A headless Chromium behind `tests/browser/driver.mjs`: one JSON command a line.
struct Browser {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Browser {
    async fn launch() -> anyhow::Result<Self> {
        let chromium = chromium()?;
        let dir = repo().join("tests/browser");
        e2e_tests::tools::npm_ci(&dir).await?;
        let node = e2e_tests::tools::node22()?;
        let mut child = Command::new(node)
            .arg("driver.mjs")
            .current_dir(&dir)
            .env("CHROMIUM", chromium)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("spawn node driver.mjs")?;
        let stdin = child.stdin.take().context("driver stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("driver stdout")?).lines();
        Ok(Self {
            child,
            stdin,
            stdout,
        })
    }

    async fn command(&mut self, command: Value) -> anyhow::Result<Value> {
        let line = format!("{command}\n");
        self.stdin.write_all(line.as_bytes()).await?;
        let answer = tokio::time::timeout(COMMAND_TIMEOUT, self.stdout.next_line())
            .await
            .with_context(|| format!("the browser did not answer {command} in time"))??
            .with_context(|| format!("the browser driver exited during {command}"))?;
        let answer: Value = serde_json::from_str(&answer)?;
        if answer["ok"] != true {
            bail!("{command} failed: {}", answer["error"]);
        }
        Ok(answer["value"].clone())
    }

    /// Opens `url` in a new page; its HTTP status.
    async fn open(&mut self, url: &str) -> anyhow::Result<Value> {
        self.command(json!({"op": "open", "url": url})).await
    }

    async fn eval(&mut self, js: &str) -> anyhow::Result<Value> {
        self.command(json!({"op": "eval", "js": js})).await
    }

    /// Waits until `js` is truthy in the page; on a timeout, says what the page showed.
    async fn wait(&mut self, what: &str, js: &str, timeout: Duration) -> anyhow::Result<Value> {
        let waited = self
            .command(json!({"op": "wait", "js": js, "timeout_ms": timeout.as_millis() as u64}))
            .await;
        match waited {
            Ok(v) => Ok(v),
            Err(e) => {
                let state = self
                    .eval("JSON.stringify(window.mcpConsole ?? null)")
                    .await
                    .unwrap_or_default();
                let logs = self
                    .command(json!({"op": "logs"}))
                    .await
                    .unwrap_or_default();
                bail!("waiting for {what}: {e}\nconsole state: {state}\npage log: {logs}")
            }
        }
    }

    async fn click(&mut self, selector: &str) -> anyhow::Result<()> {
        self.command(json!({"op": "click", "selector": selector}))
            .await
            .map(drop)
    }

    async fn fill(&mut self, selector: &str, value: &str) -> anyhow::Result<()> {
        self.command(json!({"op": "fill", "selector": selector, "value": value}))
            .await
            .map(drop)
    }

    /// Fills a tool's form and runs it.
    async fn run_tool(&mut self, tool: &str, fields: &[(&str, &str)]) -> anyhow::Result<()> {
        for (name, value) in fields {
            self.fill(&format!("form[data-tool={tool}] [name={name}]"), value)
                .await?;
        }
        self.click(&format!("form[data-tool={tool}] button")).await
    }

    /// Saves a screenshot as `name` in `$MCPGW_SCREENSHOTS`, when set.
    async fn screenshot(&mut self, name: &str) -> anyhow::Result<()> {
        let Some(dir) = std::env::var_os("MCPGW_SCREENSHOTS") else {
            return Ok(());
        };
        let path = PathBuf::from(dir).join(name);
        self.command(json!({"op": "screenshot", "path": path, "width": 1400, "height": 900}))
            .await
            .map(drop)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Waits until the console is connected and lists the five demo tools.
async fn console_ready(browser: &mut Browser) -> anyhow::Result<()> {
    let tools = browser
        .wait(
            "the tools",
            "window.mcpConsole?.tools.length >= 5 && mcpConsole.tools.map(t => t.name).sort()",
            Duration::from_secs(20),
        )
        .await?;
    ensure!(
        tools
            == json!([
                "broadcast",
                "long_running_operation",
                "send_notification",
                "server_status",
                "start_background_task"
            ]),
        "{tools}"
    );
    // One form per tool, fields from the input schema.
    let fields = browser
        .eval("[...document.querySelectorAll('form[data-tool=long_running_operation] input')].map(i => `${i.name}:${i.type}:${i.value}`).sort()")
        .await?;
    ensure!(
        fields == json!(["step_ms:number:100", "steps:number:5"]),
        "{fields}"
    );
    Ok(())
}

/// Runs `long_running_operation` from its form; the progress bar reaches the end.
async fn progress_reaches_the_end(browser: &mut Browser, steps: u32) -> anyhow::Result<()> {
    let calls = browser.eval("mcpConsole.calls.length").await?;
    browser
        .run_tool(
            "long_running_operation",
            &[("steps", &steps.to_string()), ("step_ms", "40")],
        )
        .await?;
    let index = calls.as_u64().unwrap_or(0);
    let bar = browser
        .wait(
            "the call's result",
            &format!(
                "mcpConsole.calls[{index}]?.result && [document.getElementById('call-progress').value, document.getElementById('call-progress').max, mcpConsole.calls[{index}].progress.length, document.getElementById('call-result').textContent]"
            ),
            Duration::from_secs(20),
        )
        .await?;
    ensure!(
        bar == json!([
            steps,
            steps,
            steps,
            format!("operation completed: {steps} steps")
        ]),
        "progress bar, progress events, result: {bar}"
    );
    Ok(())
}

/// A background task started from the page: every tick shown once, none missing.
async fn start_task(
    browser: &mut Browser,
    name: &str,
    count: u32,
    interval_ms: u32,
) -> anyhow::Result<()> {
    browser
        .run_tool(
            "start_background_task",
            &[
                ("name", name),
                ("count", &count.to_string()),
                ("interval_ms", &interval_ms.to_string()),
            ],
        )
        .await
}

async fn task_completes(
    browser: &mut Browser,
    name: &str,
    count: u32,
    within: Duration,
) -> anyhow::Result<()> {
    let task = browser
        .wait(
            &format!("task {name}'s {count} ticks"),
            &format!(
                "mcpConsole.tasks[{name:?}]?.ticks.length >= {count} && mcpConsole.tasks[{name:?}]"
            ),
            within,
        )
        .await?;
    let mut ticks: Vec<u64> = task["ticks"]
        .as_array()
        .context("ticks")?
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    ticks.sort_unstable();
    ensure!(
        ticks == (1..=u64::from(count)).collect::<Vec<_>>() && task["duplicates"] == 0,
        "every tick once: {task}"
    );
    let shown = browser
        .eval(&format!(
            "document.querySelector('[data-task={name:?}]').textContent"
        ))
        .await?;
    ensure!(
        shown == json!(format!("{name}: tick {count}/{count} (no gap)")),
        "{shown}"
    );
    Ok(())
}

/// A broadcast sent by another client (a raw client of its own session) shows on the page.
async fn broadcast_shows(browser: &mut Browser, via: &str, message: &str) -> anyhow::Result<()> {
    let mut other = RawClient::new(via);
    other.initialize("2025-11-25").await?;
    let v = other
        .request(
            7,
            "tools/call",
            json!({"name": "broadcast", "arguments": {"message": message, "level": "notice"}}),
        )
        .await?;
    ensure!(v["result"]["isError"] != true, "{v}");
    browser
        .wait(
            "the broadcast",
            &format!(
                "mcpConsole.broadcasts.some(b => b.data === {message:?} && b.level === 'notice')"
            ),
            Duration::from_secs(15),
        )
        .await?;
    let _ = other.delete().await;
    Ok(())
}

/// A broadcast sent by the official Python SDK client (2.x, which picks 2026-07-28 and
/// so has no session of its own) shows on the page.
async fn python_broadcast_shows(
    browser: &mut Browser,
    via: &str,
    message: &str,
) -> anyhow::Result<()> {
    let python = e2e_tests::tools::python_sdk()?;
    let out = tokio::time::timeout(
        COMMAND_TIMEOUT,
        Command::new(python)
            .args(["broadcast.py", via, message])
            .current_dir(repo().join("tests/clients/python"))
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .context("broadcast.py did not finish")??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "broadcast.py failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(stdout.trim())?;
    ensure!(report["is_error"] == false, "{report}");
    browser
        .wait(
            "the Python client's broadcast",
            &format!(
                "mcpConsole.broadcasts.some(b => b.data === {message:?} && b.level === 'notice')"
            ),
            Duration::from_secs(15),
        )
        .await?;
    Ok(())
}

#[tokio::test]
async fn console_shows_the_demo_live_on_a_standalone_gateway() -> anyhow::Result<()> {
    let gw = Gateway::start(&[])?;
    let mut browser = Browser::launch().await?;
    ensure!(browser.open(&format!("{}/", gw.base)).await? == 200);
    console_ready(&mut browser).await?;
    progress_reaches_the_end(&mut browser, 20).await?;
    // A log message of a call shows under it, with level and logger.
    browser
        .run_tool(
            "send_notification",
            &[("message", "hello from the page"), ("level", "warning")],
        )
        .await?;
    let log = browser
        .wait(
            "the call's log message",
            "document.getElementById('call-log').textContent.includes('hello from the page') && mcpConsole.messages.find(m => m.data === 'hello from the page')",
            Duration::from_secs(10),
        )
        .await?;
    ensure!(
        log["level"] == "warning" && log["logger"] == "notify",
        "{log}"
    );
    start_task(&mut browser, "ticker", 5, 100).await?;
    python_broadcast_shows(&mut browser, &gw.url(), "hello from Python").await?;
    task_completes(&mut browser, "ticker", 5, Duration::from_secs(15)).await?;
    // The cluster's status.
    let status = browser
        .wait(
            "the status",
            "mcpConsole.status?.gateways === 1 && mcpConsole.status",
            Duration::from_secs(10),
        )
        .await?;
    ensure!(status["workers"] == 1, "{status}");
    let state = browser.eval("mcpConsole.state").await?;
    ensure!(state == "connected", "{state}");
    browser.screenshot("console.png").await?;
    // --no-console: no page.
    let off = Gateway::start(&["--no-console"])?;
    let r = reqwest::get(format!("{}/", off.base)).await?;
    ensure!(r.status() == 404, "{}", r.status());
    // A page from a foreign Host (DNS rebinding) is refused like /mcp.
    let r = reqwest::Client::new()
        .get(format!("{}/", gw.base))
        .header("host", "evil.example")
        .send()
        .await?;
    ensure!(r.status() == 403, "{}", r.status());
    Ok(())
}

/// `mcpgw_sse_streams_open{kind="get"}` of a gateway.
async fn get_streams(gw: &Gateway) -> anyhow::Result<i64> {
    let text = reqwest::get(format!("{}/metrics", gw.base))
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .find(|l| l.starts_with("mcpgw_sse_streams_open{") && l.contains("kind=\"get\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as i64))
}

#[tokio::test]
async fn console_behind_nginx_resumes_on_the_other_gateway_when_its_gateway_dies()
-> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let url = redis.url();
    let args = ["--redis-url", url.as_str()];
    let mut gateways = [Some(Gateway::start(&args)?), Some(Gateway::start(&args)?)];
    let _worker = WorkerProcess::start(&url, &[])?;
    let upstreams: Vec<String> = gateways
        .iter()
        .flatten()
        .map(|g| g.base.trim_start_matches("http://").to_owned())
        .collect();
    let upstreams: Vec<&str> = upstreams.iter().map(String::as_str).collect();
    let nginx = e2e_tests::nginx::Nginx::start(&upstreams)?;
    let mut browser = Browser::launch().await?;
    ensure!(browser.open(&format!("{}/", nginx.base)).await? == 200);
    console_ready(&mut browser).await?;
    browser
        .wait(
            "two gateways and a worker in the status",
            "mcpConsole.status?.gateways === 2 && mcpConsole.status?.workers === 1",
            Duration::from_secs(20),
        )
        .await?;
    progress_reaches_the_end(&mut browser, 10).await?;
    // A task ticks on the standalone stream; the gateway holding that stream dies mid-way.
    start_task(&mut browser, "survivor", 30, 150).await?;
    browser
        .wait(
            "the first ticks",
            "mcpConsole.tasks.survivor?.ticks.length >= 5",
            Duration::from_secs(15),
        )
        .await?;
    let start = Instant::now();
    let holder = loop {
        let mut holders = Vec::new();
        for (i, gw) in gateways.iter().enumerate() {
            if let Some(gw) = gw
                && get_streams(gw).await? > 0
            {
                holders.push(i);
            }
        }
        if let [one] = holders[..] {
            break one;
        }
        ensure!(
            start.elapsed() < Duration::from_secs(10),
            "GET streams: {holders:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    drop(gateways[holder].take()); // SIGKILL: no drain, the stream is cut
    let survivor = gateways.iter().flatten().next().context("a gateway left")?;
    browser
        .wait(
            "the stream resumed on the other gateway",
            "mcpConsole.resumes.length >= 1 && mcpConsole.state === 'resumed'",
            Duration::from_secs(20),
        )
        .await?;
    task_completes(&mut browser, "survivor", 30, Duration::from_secs(30)).await?;
    ensure!(
        get_streams(survivor).await? == 1,
        "the stream lives on the survivor"
    );
    broadcast_shows(&mut browser, &survivor.url(), "after the failover").await?;
    let badge = browser
        .eval("document.getElementById('connection').textContent")
        .await?;
    ensure!(
        badge
            .as_str()
            .is_some_and(|b| b.starts_with("resumed") && b.ends_with("nothing lost")),
        "{badge}"
    );
    browser.screenshot("console-resumed.png").await?;
    Ok(())
}

#[tokio::test]
async fn console_bundle_matches_its_sources() -> anyhow::Result<()> {
    // The gateway embeds gateway/console/dist/console.js; it must be what the committed
    // sources and lock file build (`npm ci && npm run build` in gateway/console).
    let dir = repo().join("gateway/console");
    e2e_tests::tools::npm_ci(&dir).await?;
    let out = std::env::temp_dir().join(format!("mcpgw-console-{}.js", std::process::id()));
    let status = Command::new("node")
        .arg("build.mjs")
        .arg(&out)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .status()
        .await
        .context("node is needed (Debian: apt-get install nodejs)")?;
    ensure!(status.success(), "node build.mjs failed");
    let built = std::fs::read(&out)?;
    let _ = std::fs::remove_file(&out);
    let committed = std::fs::read(dir.join("dist/console.js"))?;
    ensure!(
        built == committed,
        "gateway/console/dist/console.js is not what its sources build: run `npm ci && npm run build` in gateway/console and commit the result"
    );
    Ok(())
}

/// Serves the console's page and bundle on `listener` (a loopback port of its own: another
/// origin than the gateway's), pointed at `endpoint` by a `<meta name="mcp-endpoint">`.
fn serve_page(
    listener: tokio::net::TcpListener,
    endpoint: &str,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    use axum::http::header::CONTENT_TYPE;
    let dir = repo().join("gateway/console");
    let index = std::fs::read_to_string(dir.join("index.html"))?.replace(
        "<meta charset=\"utf-8\">",
        &format!("<meta charset=\"utf-8\">\n<meta name=\"mcp-endpoint\" content=\"{endpoint}\">"),
    );
    let script = std::fs::read_to_string(dir.join("dist/console.js"))?;
    let style = std::fs::read_to_string(dir.join("style.css"))?;
    let app = axum::Router::new()
        .route(
            "/",
            axum::routing::get(move || async move { ([(CONTENT_TYPE, "text/html")], index) }),
        )
        .route(
            "/console/console.js",
            axum::routing::get(
                move || async move { ([(CONTENT_TYPE, "text/javascript")], script) },
            ),
        )
        .route(
            "/console/style.css",
            axum::routing::get(move || async move { ([(CONTENT_TYPE, "text/css")], style) }),
        );
    Ok(tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    }))
}

/// `mcpgw_http_requests_total` of a gateway for one method and status.
async fn http_requests(gw: &Gateway, method: &str, status: u16) -> anyhow::Result<f64> {
    let text = reqwest::get(format!("{}/metrics", gw.base))
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("mcpgw_http_requests_total{"))
        .filter(|l| {
            l.contains(&format!("method=\"{method}\""))
                && l.contains(&format!("status=\"{status}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

#[tokio::test]
async fn page_on_a_foreign_origin_is_refused_and_one_on_an_allowed_origin_completes_a_session()
-> anyhow::Result<()> {
    // Two pages on two loopback ports; the gateway allows only the first.
    let allowed = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let foreign = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let allowed_page = format!("http://{}", allowed.local_addr()?);
    let foreign_page = format!("http://{}", foreign.local_addr()?);
    let gw = Gateway::start(&["--allowed-origin", &allowed_page])?;
    let _a = serve_page(allowed, &gw.url())?;
    let _b = serve_page(foreign, &gw.url())?;
    let mut browser = Browser::launch().await?;

    // Off the list: the preflight is refused (403), the SDK never gets a session.
    ensure!(browser.open(&format!("{foreign_page}/")).await? == 200);
    let state = browser
        .wait(
            "the refused connection",
            "mcpConsole.state === 'error' && mcpConsole.detail",
            Duration::from_secs(20),
        )
        .await?;
    ensure!(
        state.as_str().is_some_and(|s| s.contains("fetch")),
        "{state}"
    );
    let logs = browser.command(json!({"op": "logs"})).await?.to_string();
    ensure!(
        logs.contains("preflight"),
        "the browser names the preflight: {logs}"
    );
    ensure!(http_requests(&gw, "OPTIONS", 403).await? >= 1.0);
    ensure!(
        http_requests(&gw, "POST", 200).await? == 0.0,
        "no request passed the preflight"
    );

    // On the list: the TypeScript SDK in the page completes a session and uses it.
    ensure!(browser.open(&format!("{allowed_page}/")).await? == 200);
    console_ready(&mut browser).await?;
    progress_reaches_the_end(&mut browser, 5).await?;
    let session = browser.eval("mcpConsole.sessionId").await?;
    ensure!(session.as_str().is_some_and(|s| s.len() == 32), "{session}");
    start_task(&mut browser, "cross-origin", 3, 50).await?;
    task_completes(&mut browser, "cross-origin", 3, Duration::from_secs(10)).await?;
    ensure!(http_requests(&gw, "OPTIONS", 200).await? >= 1.0);
    Ok(())
}

/// Runs the MCP Inspector's CLI mode (`--cli URL --transport http ARGS`); its JSON answer.
async fn inspector(url: &str, args: &[&str]) -> anyhow::Result<Value> {
    let dir = repo().join("tests/browser");
    e2e_tests::tools::npm_ci(&dir).await?;
    let node = e2e_tests::tools::node22()?;
    let child = Command::new(node)
        .arg("node_modules/@modelcontextprotocol/inspector/clients/launcher/build/index.js")
        .args(["--cli", url, "--transport", "http"])
        .args(args)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("spawn the MCP Inspector")?;
    let out = tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
        .await
        .with_context(|| format!("the Inspector did not finish {args:?}"))??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "Inspector {args:?} failed ({}): {stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).with_context(|| format!("Inspector {args:?} printed {stdout}"))
}

#[tokio::test]
async fn inspector_cli_lists_tools_calls_one_and_reads_a_resource() -> anyhow::Result<()> {
    let gw = Gateway::start(&[])?;
    let url = gw.url();
    let listed = inspector(&url, &["--method", "tools/list"]).await?;
    let mut names: Vec<&str> = listed["tools"]
        .as_array()
        .context("tools")?
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    names.sort_unstable();
    ensure!(
        names
            == [
                "broadcast",
                "long_running_operation",
                "send_notification",
                "server_status",
                "start_background_task"
            ],
        "{listed}"
    );
    let called = inspector(
        &url,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "long_running_operation",
            "--tool-arg",
            "steps=3",
            "--tool-arg",
            "step_ms=10",
        ],
    )
    .await?;
    ensure!(
        called["content"][0]["text"] == "operation completed: 3 steps",
        "{called}"
    );
    // A broadcast from the Inspector, then the resource that holds the last one.
    inspector(
        &url,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "broadcast",
            "--tool-arg",
            "message=from the inspector",
        ],
    )
    .await?;
    let read = inspector(
        &url,
        &["--method", "resources/read", "--uri", "notify://broadcast"],
    )
    .await?;
    let text = read["contents"][0]["text"]
        .as_str()
        .context("resource text")?;
    let last: Value = serde_json::from_str(text)?;
    ensure!(last["message"] == "from the inspector", "{read}");
    Ok(())
}

#[tokio::test]
async fn console_asks_for_a_token_when_auth_is_on() -> anyhow::Result<()> {
    let token = "console-token-0123456789";
    let gw = Gateway::start(&["--auth-token", &format!("alice:{token}")])?;
    let mut browser = Browser::launch().await?;
    // The page itself is static and served without a token; /mcp answers 401.
    ensure!(browser.open(&format!("{}/", gw.base)).await? == 200);
    browser
        .wait(
            "the token field",
            "mcpConsole.state === 'unauthorized' && !document.getElementById('auth').hidden",
            Duration::from_secs(20),
        )
        .await?;
    browser.fill("#token", token).await?;
    browser.click("#auth button").await?;
    console_ready(&mut browser).await?;
    progress_reaches_the_end(&mut browser, 3).await?;
    let hidden = browser
        .eval("document.getElementById('auth').hidden")
        .await?;
    ensure!(hidden == true, "the token field goes away once connected");
    Ok(())
}
