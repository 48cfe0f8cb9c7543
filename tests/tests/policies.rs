//! Policies at the edge, for real: two gateways on one redis-server behind nginx
//! (`deploy/nginx/mcp.conf`), a policy file, and two principals whose JWTs grant
//! different scopes. Each sees only its tools in both protocol generations; a forbidden
//! call gets the unknown-tool error and never reaches a worker; a rate quota and a
//! running-calls quota hold across both gateways together; a policy change reaches a live
//! session as `list_changed`; a malformed policy is refused at start and, on reload,
//! leaves the old one in force; every call leaves exactly one audit record. The official
//! TypeScript and Python SDK clients see the same.
//!
//! Needs the Debian packages `redis-server` and `nginx`.

use e2e_tests::nginx::Nginx;
use e2e_tests::{Gateway, RawClient, RedisServer, SseReader, StatelessClient};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const SECRET: &str = "policy-test-secret-0123456789abcdef";
const WAIT: Duration = Duration::from_secs(20);

/// The status principal may use `server_status`; the notify principal the notification
/// tools, `send_notification` at most 5 calls/s (burst 5) and `long_running_operation` at
/// most 2 at once, whichever gateway is asked.
const POLICY: &str = r#"
[[rule]]
name = "status"
scopes = ["tools:status"]
tools = ["server_status"]

[[rule]]
name = "notify"
scopes = ["tools:notify"]
tools = ["send_notification", "long_running_operation"]

[[quota]]
name = "notify-rate"
scopes = ["tools:notify"]
tools = ["send_notification"]
per = "tool"
rate = 5.0
burst = 5

[[quota]]
name = "long-running"
tools = ["long_running_operation"]
concurrent = 2
"#;

fn token(subject: &str, scope: &str) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    jsonwebtoken::encode(
        &Header::default(),
        &json!({"sub": subject, "scope": scope, "exp": exp}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn status_token() -> String {
    token("alice", "tools:status")
}

fn notify_token() -> String {
    token("bob", "tools:notify")
}

struct Cluster {
    redis: RedisServer,
    gateways: Vec<Gateway>,
    nginx: Nginx,
    policy: PathBuf,
}

impl Cluster {
    fn start(policy_text: &str) -> Self {
        let redis = RedisServer::start().expect("redis-server (Debian package redis-server)");
        let dir = scratch_dir("run");
        let policy = dir.join("policy.toml");
        std::fs::write(&policy, policy_text).unwrap();
        let url = redis.url();
        let path = policy.display().to_string();
        let gateways: Vec<Gateway> = (0..2)
            .map(|_| {
                Gateway::start(&[
                    "--redis-url",
                    &url,
                    "--embedded-worker",
                    "--jwt-hs256-secret",
                    SECRET,
                    "--policy",
                    &path,
                    "--policy-poll-ms",
                    "100",
                    "--audit-stream",
                ])
                .expect("gateway")
            })
            .collect();
        let addrs: Vec<String> = gateways
            .iter()
            .map(|g| g.base.trim_start_matches("http://").to_owned())
            .collect();
        let upstreams: Vec<&str> = addrs.iter().map(String::as_str).collect();
        let nginx = Nginx::start(&upstreams).expect("nginx (Debian package nginx)");
        Self {
            redis,
            gateways,
            nginx,
            policy,
        }
    }

    fn urls(&self) -> Vec<String> {
        self.gateways.iter().map(Gateway::url).collect()
    }

    async fn session(&self, token: String) -> RawClient {
        let mut client = RawClient::new(&self.nginx.url());
        client.bearer = Some(token);
        client.initialize("2025-11-25").await.unwrap();
        client
    }

    fn stateless(&self, token: String) -> StatelessClient {
        let mut client = StatelessClient::rotating(&[self.nginx.url()]);
        client.bearer = Some(token);
        client
    }

    /// Replaces the policy file at once (a rename), as a ConfigMap update does.
    fn write_policy(&self, text: &str) {
        let tmp = self.policy.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &self.policy).unwrap();
    }

    /// The sum of a metric's series whose labels contain `labels`, over both gateways.
    async fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        let mut total = 0.0;
        for gw in &self.gateways {
            let text = reqwest::get(format!("{}/metrics", gw.base))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            total += text
                .lines()
                .filter(|l| l.starts_with(name) && labels.iter().all(|s| l.contains(s)))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>();
        }
        total
    }

    fn audit(&self) -> Vec<HashMap<String, String>> {
        self.redis
            .command(&["XRANGE", "mcpgw:{audit}:stream", "-", "+"])
            .unwrap()
            .stream_entries()
            .into_iter()
            .map(|(_, fields)| fields.into_iter().collect())
            .collect()
    }
}

/// A new folder under the system's temp dir for one test's policy file.
fn scratch_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "mcpgw-policy-{tag}-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn rand_suffix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
}

fn names(list: &Value, field: &str) -> Vec<String> {
    let mut names: Vec<String> = list[field]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|t| t["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// `tools/list` of a session, polled until the workers have registered (non-empty).
async fn tools_of(client: &RawClient) -> Vec<String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let list = client.request(2, "tools/list", json!({})).await.unwrap();
        let tools = names(&list["result"], "tools");
        if !tools.is_empty() || Instant::now() > deadline {
            return tools;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One `tools/call` with a JSON answer: the HTTP status, `Retry-After`, and the body (or
/// the SSE stream's response).
async fn call(
    client: &RawClient,
    id: i64,
    name: &str,
    arguments: Value,
) -> (u16, Option<String>, Value) {
    rpc(
        client,
        id,
        "tools/call",
        json!({"name": name, "arguments": arguments}),
    )
    .await
}

/// One request: the HTTP status, `Retry-After`, and the body (or the SSE stream's
/// response).
async fn rpc(
    client: &RawClient,
    id: i64,
    method: &str,
    params: Value,
) -> (u16, Option<String>, Value) {
    let response = client
        .post(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
        .await
        .unwrap();
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let is_sse = e2e_tests::client::content_type(&response).starts_with("text/event-stream");
    let body = if is_sse {
        let events = SseReader::new(response).collect(WAIT).await.unwrap();
        e2e_tests::client::messages(&events)
            .into_iter()
            .find(|m| m.get("id").is_some())
            .unwrap_or(Value::Null)
    } else {
        response.json().await.unwrap_or(Value::Null)
    };
    (status, retry_after, body)
}

#[tokio::test]
async fn each_principal_sees_only_its_tools_in_both_generations() {
    let cluster = Cluster::start(POLICY);
    let status = cluster.session(status_token()).await;
    let notify = cluster.session(notify_token()).await;
    assert_eq!(tools_of(&status).await, ["server_status"]);
    assert_eq!(
        tools_of(&notify).await,
        ["long_running_operation", "send_notification"]
    );
    // Prompts and resources: no rule names any, so none are shown.
    let prompts = status.request(3, "prompts/list", json!({})).await.unwrap();
    assert_eq!(prompts["result"]["prompts"], json!([]));
    assert!(prompts["result"].get("cacheScope").is_none());

    // 2026-07-28, through nginx to either gateway: the same lists, cached privately.
    for (token, expected) in [
        (status_token(), vec!["server_status"]),
        (
            notify_token(),
            vec!["long_running_operation", "send_notification"],
        ),
    ] {
        let client = cluster.stateless(token);
        for id in 0..2 {
            let list = client.request(id, "tools/list", json!({})).await.unwrap();
            assert_eq!(names(&list["result"], "tools"), expected, "{list}");
            assert_eq!(list["result"]["cacheScope"], "private", "{list}");
        }
    }
}

#[tokio::test]
async fn a_forbidden_call_gets_the_unknown_tool_error_and_never_runs() {
    let cluster = Cluster::start(POLICY);
    let status = cluster.session(status_token()).await;
    tools_of(&status).await;
    let (code, _, forbidden) =
        call(&status, 10, "send_notification", json!({"message": "x"})).await;
    assert_eq!(code, 200);
    let (_, _, unknown) = call(&status, 11, "no_such_tool", json!({})).await;
    assert_eq!(forbidden["error"]["code"], unknown["error"]["code"]);
    assert_eq!(forbidden["error"]["code"], -32602);
    assert_eq!(
        forbidden["error"]["message"],
        "Unknown tool: send_notification"
    );
    assert_eq!(unknown["error"]["message"], "Unknown tool: no_such_tool");

    // The same under 2026-07-28.
    let stateless = cluster.stateless(status_token());
    let refused = stateless
        .request(
            12,
            "tools/call",
            json!({"name": "send_notification", "arguments": {"message": "x"}}),
        )
        .await
        .unwrap();
    assert_eq!(refused["error"]["code"], -32602, "{refused}");

    // Resources: none is allowed, so notify://broadcast reads as one that does not exist.
    let resources = status
        .request(14, "resources/list", json!({}))
        .await
        .unwrap();
    assert_eq!(resources["result"]["resources"], json!([]), "{resources}");
    let hidden = status
        .request(15, "resources/read", json!({"uri": "notify://broadcast"}))
        .await
        .unwrap();
    let missing = status
        .request(
            16,
            "resources/read",
            json!({"uri": "notify://nothing-here"}),
        )
        .await
        .unwrap();
    assert_eq!(hidden["error"]["code"], -32002, "{hidden}");
    assert_eq!(hidden["error"]["code"], missing["error"]["code"]);
    assert_eq!(
        hidden["error"]["message"],
        "Resource not found: notify://broadcast"
    );

    // Allowed calls run; the forbidden ones never reached a worker on either gateway.
    let (_, _, ok) = call(&status, 13, "server_status", json!({})).await;
    assert!(ok["result"]["content"].is_array(), "{ok}");
    assert_eq!(
        cluster
            .metric("mcpgw_jobs_enqueued_total", &["tool=\"send_notification\""])
            .await,
        0.0
    );
    assert_eq!(
        cluster
            .metric("mcpgw_policy_denials_total", &["method=\"tools/call\""])
            .await,
        // send_notification twice, and no_such_tool: no rule names it either.
        3.0
    );
}

#[tokio::test]
async fn a_rate_quota_holds_across_both_gateways_together() {
    let cluster = Cluster::start(POLICY);
    let notify = cluster.session(notify_token()).await;
    tools_of(&notify).await;
    // Four callers, each alternating between the two gateways directly (no nginx), for
    // two seconds: per gateway the budget would be twice what the quota allows.
    let urls = cluster.urls();
    let start = Instant::now();
    let run_for = Duration::from_secs(2);
    let mut tasks = Vec::new();
    for worker in 0..4i64 {
        let mut client = RawClient::rotating(&urls);
        client.session = notify.session.clone();
        client.version = notify.version.clone();
        client.bearer = notify.bearer.clone();
        tasks.push(tokio::spawn(async move {
            let mut admitted = 0u32;
            let mut refused = 0u32;
            let mut n = 0;
            while start.elapsed() < run_for {
                n += 1;
                let (status, retry_after, _) = call(
                    &client,
                    worker * 100_000 + n,
                    "send_notification",
                    json!({"message": "q"}),
                )
                .await;
                match status {
                    200 => admitted += 1,
                    429 => {
                        assert!(retry_after.is_some(), "429 without Retry-After");
                        refused += 1;
                    }
                    other => panic!("unexpected HTTP {other}"),
                }
            }
            (admitted, refused)
        }));
    }
    let (mut admitted, mut refused) = (0, 0);
    for task in tasks {
        let (a, r) = task.await.unwrap();
        admitted += a;
        refused += r;
    }
    let elapsed = start.elapsed().as_secs_f64();
    // Burst 5, then 5 per second: at most 5 + 5 * elapsed (one more for the edge).
    let most = 5.0 + 5.0 * elapsed + 1.0;
    println!(
        "rate quota 5/s burst 5 over two gateways: {admitted} admitted, {refused} refused in {elapsed:.2} s (at most {most:.1} allowed)"
    );
    assert!(refused > 0);
    assert!(f64::from(admitted) <= most, "{admitted} admitted > {most}");
    assert!(
        f64::from(admitted) >= 5.0 + 5.0 * 1.5,
        "{admitted} admitted: the budget was not used"
    );
    assert_eq!(
        cluster
            .metric(
                "mcpgw_quota_rejections_total",
                &["notify-rate", "limit=\"rate\""]
            )
            .await,
        f64::from(refused)
    );
}

#[tokio::test]
async fn a_running_calls_quota_holds_across_both_gateways() {
    let cluster = Cluster::start(POLICY);
    let notify = cluster.session(notify_token()).await;
    tools_of(&notify).await;
    let urls = cluster.urls();
    let long = json!({"steps": 20, "step_ms": 100});
    // Four calls at once, two per gateway: two run, two are refused.
    let mut calls = Vec::new();
    for i in 0..4 {
        let client = notify.at(&urls[i % 2]);
        let arguments = long.clone();
        calls.push(tokio::spawn(async move {
            call(&client, 20 + i as i64, "long_running_operation", arguments).await
        }));
    }
    let mut statuses = Vec::new();
    for c in calls {
        let (status, retry_after, body) = c.await.unwrap();
        if status == 200 {
            assert!(body["result"]["content"].is_array(), "{body}");
        } else {
            assert_eq!(retry_after.as_deref(), Some("1"));
        }
        statuses.push(status);
    }
    statuses.sort();
    assert_eq!(statuses, [200, 200, 429, 429]);
    // They ended: their slots are free again, on either gateway.
    let (status, _, _) = call(
        &notify.at(&urls[1]),
        30,
        "long_running_operation",
        json!({"steps": 1, "step_ms": 0}),
    )
    .await;
    assert_eq!(status, 200);
}

/// The next message of a stream, which must come.
async fn next(stream: &mut e2e_tests::SseReader) -> Value {
    stream
        .next_message(WAIT)
        .await
        .unwrap()
        .expect("the stream ended")
        .1
}

#[tokio::test]
async fn a_policy_change_reaches_only_the_sessions_whose_view_changed_once_and_a_malformed_one_is_ignored()
 {
    let cluster = Cluster::start(POLICY);
    let status = cluster.session(status_token()).await;
    let notify = cluster.session(notify_token()).await;
    assert_eq!(tools_of(&status).await, ["server_status"]);
    let notify_tools = tools_of(&notify).await;
    let mut status_stream = status.open_stream(None).await.unwrap();
    let mut notify_stream = notify.open_stream(None).await.unwrap();
    // A 2026-07-28 client listening for list changes, through nginx.
    let listener = cluster.stateless(status_token());
    let (mut listen, _) = listener
        .listen(&cluster.nginx.url(), 1, json!({"toolsListChanged": true}))
        .await
        .unwrap();
    // Only the status principal's view changes: it may broadcast now.
    let wider = POLICY.replace(
        "tools = [\"server_status\"]",
        "tools = [\"server_status\", \"broadcast\"]",
    );
    cluster.write_policy(&wider);
    assert_eq!(
        next(&mut status_stream).await["method"],
        "notifications/tools/list_changed"
    );
    assert_eq!(
        next(&mut listen).await["method"],
        "notifications/tools/list_changed"
    );
    // Both gateways have applied it (a reload is counted once its announcement, if it
    // makes one, is sent): two at start, two now.
    let deadline = Instant::now() + WAIT;
    while cluster
        .metric("mcpgw_policy_reloads_total", &["result=\"ok\""])
        .await
        < 4.0
    {
        assert!(Instant::now() < deadline, "a gateway did not reload");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A broadcast after that reaches every standalone stream: it must be the next
    // message of both. So the notify session, whose view did not change, heard nothing
    // of the change, and the status session heard of it once, not once per gateway.
    let (_, _, sent) = call(
        &status,
        40,
        "broadcast",
        json!({"message": "after the reload"}),
    )
    .await;
    assert!(sent["result"]["content"].is_array(), "{sent}");
    for stream in [&mut notify_stream, &mut status_stream] {
        let message = next(stream).await;
        assert_eq!(message["method"], "notifications/message", "{message}");
        assert_eq!(message["params"]["data"], "after the reload", "{message}");
    }
    let list = listener.request(5, "tools/list", json!({})).await.unwrap();
    assert_eq!(
        names(&list["result"], "tools"),
        ["broadcast", "server_status"]
    );
    assert_eq!(tools_of(&status).await, ["broadcast", "server_status"]);
    assert_eq!(tools_of(&notify).await, notify_tools);

    // A malformed file: both gateways refuse it, count it, and keep the policy in force.
    cluster.write_policy("[[rule]]\ntools = [\"server_status\"\n");
    let deadline = Instant::now() + WAIT;
    while cluster
        .metric("mcpgw_policy_reloads_total", &["result=\"error\""])
        .await
        < 2.0
    {
        assert!(
            Instant::now() < deadline,
            "the malformed policy was not noticed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(tools_of(&status).await, ["broadcast", "server_status"]);
    let logged = cluster.gateways.iter().all(|g| {
        g.log()
            .iter()
            .any(|l| l.contains("policy reload refused") && l.contains("line "))
    });
    assert!(logged, "the refused reload is not logged with its line");
}

#[tokio::test]
async fn a_malformed_policy_is_refused_at_start() {
    let dir = std::env::temp_dir().join(format!("mcpgw-policy-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[[rule]]\ntool = [\"server_status\"]\n").unwrap();
    let error = Gateway::start(&["--policy", &bad.display().to_string()])
        .err()
        .expect("a gateway with a malformed policy must not start")
        .to_string();
    assert!(error.contains("line 2"), "{error}");
    assert!(error.contains("unknown field"), "{error}");
}

#[tokio::test]
async fn every_call_leaves_exactly_one_audit_record() {
    let cluster = Cluster::start(POLICY);
    let status = cluster.session(status_token()).await;
    let notify = cluster.session(notify_token()).await;
    tools_of(&status).await;
    call(&status, 50, "server_status", json!({})).await; // ok
    call(&status, 51, "send_notification", json!({"message": "no"})).await; // denied
    call(&notify, 52, "long_running_operation", json!({"steps": "x"})).await; // error
    let stateless = cluster.stateless(notify_token());
    stateless
        .request(
            53,
            "tools/call",
            json!({"name": "send_notification", "arguments": {"message": "hi"}}),
        )
        .await
        .unwrap(); // ok, 2026-07-28
    let expected: HashMap<&str, (&str, &str)> = HashMap::from([
        ("50", ("server_status", "ok")),
        ("51", ("send_notification", "denied")),
        // Invalid arguments are a tool error from 2025-11-25 on.
        ("52", ("long_running_operation", "tool_error")),
        ("53", ("send_notification", "ok")),
    ]);
    let deadline = Instant::now() + WAIT;
    let mut records = cluster.audit();
    while records.len() < expected.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        records = cluster.audit();
    }
    // tools_of's polls and session set-up are not calls; only the four calls are here.
    let ours: Vec<_> = records
        .iter()
        .filter(|r| expected.contains_key(r["request_id"].as_str()))
        .collect();
    assert_eq!(ours.len(), 4, "{records:?}");
    for record in ours {
        let (name, outcome) = expected[record["request_id"].as_str()];
        assert_eq!(record["name"], name, "{record:?}");
        assert_eq!(record["outcome"], outcome, "{record:?}");
        assert_eq!(record["method"], "tools/call");
        assert_eq!(record["arguments_sha256"].len(), 64);
        assert!(
            record["principal"].ends_with(if name == "server_status" || outcome == "denied" {
                "#alice"
            } else {
                "#bob"
            }),
            "{record:?}"
        );
        assert!(record["duration_ms"].parse::<f64>().is_ok());
        assert!(!record["time"].is_empty());
        assert!(
            !record.contains_key("arguments"),
            "arguments are off by default"
        );
    }
    // The same records are in the gateways' logs, under their own target (read from their
    // stderr by a thread of the harness: poll).
    let logged = || -> usize {
        cluster
            .gateways
            .iter()
            .map(|g| {
                g.log()
                    .iter()
                    .filter(|l| l.contains("mcpgw::audit"))
                    .count()
            })
            .sum()
    };
    let deadline = Instant::now() + WAIT;
    while logged() < 4 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let logged = logged();
    assert!(logged >= 4, "{logged} audit lines in the logs");
}

/// The standalone gateway (no Redis) keeps the same quotas in memory, for anonymous
/// callers too (they share one budget).
#[tokio::test]
async fn a_standalone_gateway_keeps_quotas_in_memory() {
    let dir = std::env::temp_dir().join(format!("mcpgw-policy-mem-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let policy = dir.join("policy.toml");
    std::fs::write(
        &policy,
        "[[rule]]\nanonymous = true\ntools = [\"*\"]\n\n[[quota]]\nname = \"anon\"\nrate = 4.0\nburst = 2\n",
    )
    .unwrap();
    let gateway = Gateway::start(&["--policy", &policy.display().to_string()]).unwrap();
    let mut client = RawClient::new(&gateway.url());
    client.initialize("2025-11-25").await.unwrap();
    let start = Instant::now();
    let (mut admitted, mut refused) = (0u32, 0u32);
    let mut n = 0;
    while start.elapsed() < Duration::from_millis(1500) {
        n += 1;
        match call(&client, n, "server_status", json!({})).await.0 {
            200 => admitted += 1,
            429 => refused += 1,
            other => panic!("unexpected HTTP {other}"),
        }
    }
    let most = 2.0 + 4.0 * start.elapsed().as_secs_f64() + 1.0;
    println!(
        "memory quota 4/s burst 2: {admitted} admitted, {refused} refused (at most {most:.1})"
    );
    assert!(refused > 0);
    assert!(f64::from(admitted) <= most, "{admitted} > {most}");
    assert!(admitted >= 6, "{admitted}: the budget was not used");
}

/// The official TypeScript SDK client, through nginx to either gateway: each principal
/// lists only its tools, and a forbidden call fails as an unknown tool would.
#[tokio::test]
async fn the_typescript_sdk_client_sees_only_what_the_policy_allows() -> anyhow::Result<()> {
    use e2e_tests::typescript::{check_node, client_dir, ensure_sdk_installed, run_script};
    check_node().await?;
    let dir = client_dir();
    ensure_sdk_installed(&dir).await?;
    let cluster = Cluster::start(POLICY);
    // The workers register with the cluster first.
    tools_of(&cluster.session(status_token()).await).await;
    let url = cluster.nginx.url();
    let status = run_script(
        &dir,
        "policy.mjs",
        &[&url, &status_token(), "send_notification"],
    )
    .await?;
    assert_eq!(status["tools"], json!(["server_status"]), "{status}");
    assert_eq!(status["call"]["ok"], false, "{status}");
    assert_eq!(status["call"]["code"], -32602, "{status}");
    let notify = run_script(
        &dir,
        "policy.mjs",
        &[&url, &notify_token(), "send_notification"],
    )
    .await?;
    assert_eq!(
        notify["tools"],
        json!(["long_running_operation", "send_notification"]),
        "{notify}"
    );
    assert_eq!(notify["call"]["ok"], true, "{notify}");
    Ok(())
}

/// Runs `tests/clients/python/policy.py` (the official MCP Python SDK) with `args`, within
/// a bound; returns the JSON line it printed.
async fn python_policy_view(args: &[&str]) -> anyhow::Result<Value> {
    use anyhow::Context;
    let python = e2e_tests::tools::python_sdk()?;
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("clients/python");
    let mut command = tokio::process::Command::new(python);
    command
        .arg("policy.py")
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(90), command.output())
        .await
        .context("policy.py did not finish within 90 s")??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    anyhow::ensure!(
        out.status.success(),
        "policy.py failed ({}):\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .with_context(|| format!("policy.py printed nothing; stderr: {stderr}"))?;
    serde_json::from_str(line).with_context(|| format!("policy.py printed: {line}"))
}

/// The official Python SDK client, through nginx to either gateway, in the session
/// protocol and in 2026-07-28 (whichever the SDK negotiates in `auto` mode, checked): each
/// principal lists only its tools, its allowed call runs, and its forbidden call fails
/// as an unknown tool would and never reaches a worker.
#[tokio::test]
async fn the_python_sdk_client_sees_only_what_the_policy_allows() -> anyhow::Result<()> {
    // Installs the SDK first (once per machine), before any server's clock starts.
    e2e_tests::tools::python_sdk()?;
    let cluster = Cluster::start(POLICY);
    // The workers register with the cluster first.
    tools_of(&cluster.session(status_token()).await).await;
    let url = cluster.nginx.url();
    let cases = [
        (
            status_token(),
            "server_status",
            "send_notification",
            vec!["server_status"],
        ),
        (
            notify_token(),
            "send_notification",
            "server_status",
            vec!["long_running_operation", "send_notification"],
        ),
    ];
    for (token, allowed, forbidden, expected) in &cases {
        let report = python_policy_view(&[&url, token, allowed, forbidden]).await?;
        assert_eq!(report["errors"], json!([]), "{report}");
        assert!(
            report["sdk_version"]
                .as_str()
                .is_some_and(|v| v.starts_with("2.")),
            "{report}"
        );
        let legacy = &report["views"]["legacy"];
        let auto = &report["views"]["auto"];
        assert_eq!(legacy["protocol_version"], "2025-11-25", "{report}");
        assert_eq!(auto["protocol_version"], "2026-07-28", "{report}");
        for view in [legacy, auto] {
            assert_eq!(view["tools"], json!(expected), "{report}");
            assert_eq!(view["allowed"]["ok"], true, "{report}");
            assert_eq!(view["forbidden"]["ok"], false, "{report}");
            assert_eq!(view["forbidden"]["code"], -32602, "{report}");
            assert_eq!(
                view["forbidden"]["message"],
                format!("Unknown tool: {forbidden}"),
                "{report}"
            );
        }
    }
    // Each tool ran exactly for its allowed calls (two per principal: one per protocol),
    // never for the forbidden ones; the four refusals were counted.
    for tool in ["server_status", "send_notification"] {
        assert_eq!(
            cluster
                .metric("mcpgw_jobs_enqueued_total", &[&format!("tool=\"{tool}\"")])
                .await,
            2.0,
            "{tool}"
        );
    }
    assert_eq!(
        cluster
            .metric("mcpgw_policy_denials_total", &["method=\"tools/call\""])
            .await,
        4.0
    );
    Ok(())
}

/// SIGHUP, end to end: a gateway that polls its policy file only hourly applies a
/// rewritten file when it gets SIGHUP (its live session hears `list_changed`, its list and
/// calls follow the new policy); a malformed file on SIGHUP is refused, counted, and the
/// policy in force stays.
#[tokio::test]
async fn sighup_reloads_the_policy_and_a_malformed_file_keeps_the_old_one() {
    let dir = scratch_dir("hup");
    let policy = dir.join("policy.toml");
    let narrow = "[[rule]]\nanonymous = true\ntools = [\"server_status\"]\n";
    std::fs::write(&policy, narrow).unwrap();
    let gateway = Gateway::start(&[
        "--policy",
        &policy.display().to_string(),
        "--policy-poll-ms",
        "3600000",
    ])
    .unwrap();
    let metric = |result: &'static str| {
        let base = gateway.base.clone();
        async move {
            let text = reqwest::get(format!("{base}/metrics"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            text.lines()
                .filter(|l| {
                    l.starts_with("mcpgw_policy_reloads_total")
                        && l.contains(&format!("result=\"{result}\""))
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>()
        }
    };
    let mut client = RawClient::new(&gateway.url());
    client.initialize("2025-11-25").await.unwrap();
    assert_eq!(tools_of(&client).await, ["server_status"]);
    let mut stream = client.open_stream(None).await.unwrap();

    // The new file alone changes nothing for an hour; SIGHUP applies it now.
    let wider = narrow.replace(
        "[\"server_status\"]",
        "[\"server_status\", \"send_notification\"]",
    );
    std::fs::write(&policy, &wider).unwrap();
    gateway.hangup().unwrap();
    let heard = next(&mut stream).await;
    assert_eq!(
        heard["method"], "notifications/tools/list_changed",
        "{heard}"
    );
    assert_eq!(
        tools_of(&client).await,
        ["send_notification", "server_status"]
    );
    let (_, _, echoed) = call(&client, 7, "send_notification", json!({"message": "hup"})).await;
    assert!(echoed["result"]["content"].is_array(), "{echoed}");
    assert_eq!(metric("ok").await, 2.0);

    // A malformed file on SIGHUP: refused, counted, logged; the policy in force stays.
    std::fs::write(&policy, "[[rule]]\ntools = [\"server_status\"\n").unwrap();
    gateway.hangup().unwrap();
    let deadline = Instant::now() + WAIT;
    while metric("error").await < 1.0 {
        assert!(
            Instant::now() < deadline,
            "the malformed policy was not noticed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(metric("ok").await, 2.0);
    assert_eq!(
        tools_of(&client).await,
        ["send_notification", "server_status"]
    );
    let (_, _, echoed) = call(&client, 8, "send_notification", json!({"message": "still"})).await;
    assert!(echoed["result"]["content"].is_array(), "{echoed}");
    assert!(
        gateway
            .log()
            .iter()
            .any(|l| l.contains("policy reload refused") && l.contains("SIGHUP")),
        "the refused reload is not logged as SIGHUP's"
    );
}

/// Quotas count `prompts/get` and `resources/read` too, when they name them: a rate per
/// prompt and per resource (429 with `Retry-After` past it), a running-calls limit whose
/// slot each answer gives back, and tool calls left alone by quotas that name no tools.
#[tokio::test]
async fn quotas_count_prompt_gets_and_resource_reads_that_they_name() {
    let dir = scratch_dir("reads");
    let policy = dir.join("policy.toml");
    std::fs::write(
        &policy,
        r#"
[[rule]]
anonymous = true
tools = ["*"]
prompts = ["*"]
resources = ["*"]

[[quota]]
name = "reads"
tools = []
prompts = ["test_simple_prompt"]
resources = ["test://static-text"]
per = "tool"
rate = 0.01
burst = 1

[[quota]]
name = "one-prompt-at-a-time"
tools = []
prompts = ["test_prompt_with_arguments"]
concurrent = 1
"#,
    )
    .unwrap();
    let gateway = Gateway::start(&[
        "--policy",
        &policy.display().to_string(),
        "--toolset",
        "demo,conformance",
    ])
    .unwrap();
    let mut client = RawClient::new(&gateway.url());
    client.initialize("2025-11-25").await.unwrap();
    let prompt = json!({"name": "test_simple_prompt"});
    let resource = json!({"uri": "test://static-text"});
    for (method, params) in [("prompts/get", &prompt), ("resources/read", &resource)] {
        let (status, _, first) = rpc(&client, 1, method, params.clone()).await;
        assert_eq!(status, 200, "{first}");
        assert!(first["result"].is_object(), "{first}");
        // Each has a budget of its own (per name): the first of each passes.
        let (status, retry_after, second) = rpc(&client, 2, method, params.clone()).await;
        assert_eq!(status, 429, "{method}: {second}");
        assert!(retry_after.is_some_and(|r| r.parse::<u64>().unwrap() >= 1));
    }
    // The running-calls slot comes back with each answer.
    for id in 10..13 {
        let (status, _, answer) = rpc(
            &client,
            id,
            "prompts/get",
            json!({"name": "test_prompt_with_arguments", "arguments": {"arg1": "a", "arg2": "b"}}),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
    }
    // Tools are not counted by quotas that name none.
    for id in 20..25 {
        assert_eq!(call(&client, id, "server_status", json!({})).await.0, 200);
    }
}

/// Completions and resource subscriptions follow the policy too: completing an argument of
/// a prompt or template the caller may not use gets the unknown-prompt error (it would
/// show what the policy hides), and a subscription to a resource it may not read is
/// acknowledged but never made, like one to a URI that does not exist, until a policy
/// lets it read the resource.
#[tokio::test]
async fn completions_and_subscriptions_follow_the_policy() {
    let dir = scratch_dir("refs");
    let policy = dir.join("policy.toml");
    let narrow = r#"
[[rule]]
anonymous = true
tools = ["*"]
prompts = ["test_simple_prompt"]
resources = ["test://static-text"]
"#;
    std::fs::write(&policy, narrow).unwrap();
    let gateway = Gateway::start(&[
        "--policy",
        &policy.display().to_string(),
        "--policy-poll-ms",
        "100",
        "--toolset",
        "conformance",
    ])
    .unwrap();
    let mut client = RawClient::new(&gateway.url());
    client.initialize("2025-11-25").await.unwrap();
    let complete =
        |reference: Value| json!({"ref": reference, "argument": {"name": "arg1", "value": "a"}});

    // Forbidden prompt and template: the spec's error for an unknown prompt.
    let (_, _, answer) = rpc(
        &client,
        1,
        "completion/complete",
        complete(json!({"type": "ref/prompt", "name": "test_prompt_with_arguments"})),
    )
    .await;
    assert_eq!(answer["error"]["code"], -32602, "{answer}");
    assert_eq!(
        answer["error"]["message"], "Unknown prompt: test_prompt_with_arguments",
        "{answer}"
    );
    let (_, _, answer) = rpc(
        &client,
        2,
        "completion/complete",
        complete(json!({"type": "ref/resource", "uri": "test://template/{id}/data"})),
    )
    .await;
    assert_eq!(answer["error"]["code"], -32602, "{answer}");
    // An allowed prompt is completed by the worker as without a policy.
    let (_, _, answer) = rpc(
        &client,
        3,
        "completion/complete",
        complete(json!({"type": "ref/prompt", "name": "test_simple_prompt"})),
    )
    .await;
    assert!(
        answer["result"]["completion"]["values"].is_array(),
        "{answer}"
    );

    // A forbidden resource: acknowledged, never subscribed.
    let (_, _, answer) = rpc(
        &client,
        4,
        "resources/subscribe",
        json!({"uri": "test://watched-resource"}),
    )
    .await;
    assert_eq!(answer["result"], json!({}), "{answer}");
    let notified = |answer: &Value| answer["result"]["content"][0]["text"].clone();
    let (_, _, answer) = call(&client, 5, "update_watched_resource", json!({})).await;
    assert_eq!(
        notified(&answer),
        "test://watched-resource updated; 0 subscribed sessions notified"
    );

    // Once the policy lets the caller read it, the same subscription is made.
    std::fs::write(&policy, narrow.replace("\"test://static-text\"", "\"*\"")).unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let list = client
            .request(6, "resources/list", json!({}))
            .await
            .unwrap();
        if names(&list["result"], "resources").len() > 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the new policy was not applied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, _, answer) = rpc(
        &client,
        7,
        "resources/subscribe",
        json!({"uri": "test://watched-resource"}),
    )
    .await;
    assert_eq!(answer["result"], json!({}), "{answer}");
    let (_, _, answer) = call(&client, 8, "update_watched_resource", json!({})).await;
    assert_eq!(
        notified(&answer),
        "test://watched-resource updated; 1 subscribed sessions notified"
    );
}
