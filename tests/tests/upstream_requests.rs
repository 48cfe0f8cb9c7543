//! An upstream's server-to-client requests (sampling, elicitation, roots) reach the
//! downstream client through the cluster, and its answers go back upstream; the client's
//! `logging/setLevel` reaches an upstream that declares logging. The clients: a raw one
//! that reads every stream, and the official TypeScript SDK client
//! (`tests/clients/typescript/upstream-client.mjs`) answering with its own handlers.
//!
//! The upstream is a server on the official TypeScript SDK
//! (`tests/clients/typescript/upstream-server.mjs`: its `McpServer` and Streamable HTTP
//! transport, unchanged) on a worker; two gateways on Redis; the client's call runs on one
//! gateway and its answers are posted to the other. Needs Node.js and npm (the SDK is
//! installed with `npm ci` from the committed lock file).

use anyhow::{Context, ensure};
use e2e_tests::client::SseReader;
use e2e_tests::redis::free_port;
use e2e_tests::typescript::{check_node, client_dir, ensure_sdk_installed, run_script};
use e2e_tests::{Gateway, RawClient, RedisServer, StatelessClient, WorkerProcess};
use serde_json::{Value, json};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

/// The TypeScript SDK server on a loopback port; killed when dropped.
struct TsUpstream {
    child: Child,
    port: u16,
}

impl TsUpstream {
    async fn start() -> anyhow::Result<Self> {
        check_node().await?;
        let dir = client_dir();
        ensure_sdk_installed(&dir).await?;
        let port = free_port()?;
        let child = Command::new("node")
            .arg("upstream-server.mjs")
            .arg(port.to_string())
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("start node upstream-server.mjs")?;
        let server = Self { child, port };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            ensure!(
                start.elapsed() < WAIT,
                "the TypeScript server did not listen on {port}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(server)
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }
}

impl Drop for TsUpstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `tools/list` until the upstream's tools are listed.
async fn wait_for_upstream(client: &RawClient) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let list = client.request(900, "tools/list", json!({})).await?;
        let listed = list["result"]["tools"]
            .as_array()
            .is_some_and(|tools| tools.iter().any(|t| t["name"] == "ts_summarize"));
        if listed {
            return Ok(());
        }
        ensure!(
            start.elapsed() < WAIT,
            "the upstream's tools were never listed: {list}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The next message on a call's stream.
async fn next(stream: &mut SseReader) -> Value {
    stream
        .next_message(WAIT)
        .await
        .expect("read the stream")
        .expect("the stream ended early")
        .1
}

/// Reads the call's stream up to the server-to-client request `method` (skipping
/// anything else), and returns it.
async fn request_on(stream: &mut SseReader, method: &str) -> Value {
    loop {
        let m = next(stream).await;
        if m["method"] == method && m.get("id").is_some() {
            return m;
        }
        assert!(m.get("result").is_none(), "{method} never came: {m}");
    }
}

/// Posts the client's answer (a whole JSON-RPC response body but the id) to `client`'s
/// gateway.
async fn answer(client: &RawClient, request: &Value, body: Value) {
    let mut body = body;
    body["jsonrpc"] = json!("2.0");
    body["id"] = request["id"].clone();
    let response = client.post(&body).await.expect("post the answer");
    assert_eq!(response.status(), 202, "the answer was accepted");
}

/// The call's response, which ends the stream.
async fn response(stream: &mut SseReader, id: i64) -> Value {
    loop {
        let m = next(stream).await;
        if m["id"] == id && m.get("method").is_none() {
            return m;
        }
    }
}

/// The text of the call's result, and whether it is a tool error.
async fn result_text(stream: &mut SseReader, id: i64) -> (String, bool) {
    let m = response(stream, id).await;
    let result = &m["result"];
    (
        result["content"][0]["text"]
            .as_str()
            .unwrap_or_else(|| panic!("no text: {m}"))
            .to_owned(),
        result["isError"] == true,
    )
}

async fn tool_text(client: &RawClient, id: i64, name: &str) -> Value {
    let r = client
        .request(id, "tools/call", json!({"name": name, "arguments": {}}))
        .await
        .unwrap();
    serde_json::from_str(r["result"]["content"][0]["text"].as_str().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typescript_upstream_asks_a_client_on_another_gateway() {
    let upstream = TsUpstream::start().await.expect("the TypeScript upstream");
    let redis = RedisServer::start().expect("redis");
    let gw_args = ["--redis-url", &redis.url()];
    let a = Gateway::start(&gw_args).expect("gateway a");
    let b = Gateway::start(&gw_args).expect("gateway b");
    let spec = format!("ts={}", upstream.url());
    let worker = WorkerProcess::start(&redis.url(), &["--upstream", &spec, "--toolset", "none"])
        .expect("worker");

    let mut client = RawClient::new(&a.url());
    client
        .initialize_with(
            "2025-11-25",
            json!({"sampling": {}, "elicitation": {}, "roots": {}}),
        )
        .await
        .unwrap();
    wait_for_upstream(&client).await.unwrap();
    // The call's stream is on gateway A; every answer is posted to gateway B.
    let other = client.at(&b.url());

    // Sampling.
    let mut stream = client
        .call_tool_stream(1, "ts_summarize", json!({"text": "a long story"}), None)
        .await
        .unwrap();
    let request = request_on(&mut stream, "sampling/createMessage").await;
    assert_eq!(
        request["params"]["messages"][0]["content"]["text"], "Summarize: a long story",
        "the upstream's params, as it sent them: {request}"
    );
    assert_eq!(request["params"]["maxTokens"], 50, "{request}");
    answer(
        &other,
        &request,
        json!({"result": {"role": "assistant", "content": {"type": "text", "text": "short"}, "model": "test-model"}}),
    )
    .await;
    assert_eq!(
        result_text(&mut stream, 1).await,
        ("summary: short (model test-model)".to_owned(), false)
    );

    // Elicitation.
    let mut stream = client
        .call_tool_stream(2, "ts_ask", json!({"question": "Favourite colour?"}), None)
        .await
        .unwrap();
    let request = request_on(&mut stream, "elicitation/create").await;
    assert_eq!(request["params"]["message"], "Favourite colour?");
    assert_eq!(
        request["params"]["requestedSchema"]["required"],
        json!(["answer"])
    );
    answer(
        &other,
        &request,
        json!({"result": {"action": "accept", "content": {"answer": "blue"}}}),
    )
    .await;
    let (text, _) = result_text(&mut stream, 2).await;
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        json!({"action": "accept", "content": {"answer": "blue"}})
    );

    // Roots.
    let mut stream = client
        .call_tool_stream(3, "ts_roots", json!({}), None)
        .await
        .unwrap();
    let request = request_on(&mut stream, "roots/list").await;
    answer(
        &other,
        &request,
        json!({"result": {"roots": [{"uri": "file:///work", "name": "work"}]}}),
    )
    .await;
    let (text, _) = result_text(&mut stream, 3).await;
    assert_eq!(text, r#"["file:///work"]"#);

    // The client refuses: the upstream gets the client's JSON-RPC error, code and message.
    let mut stream = client
        .call_tool_stream(4, "ts_summarize", json!({"text": "x"}), None)
        .await
        .unwrap();
    let request = request_on(&mut stream, "sampling/createMessage").await;
    answer(
        &other,
        &request,
        json!({"error": {"code": -32042, "message": "the user said no"}}),
    )
    .await;
    // (The SDK's McpServer answers a call whose request failed with that error.)
    let refused = response(&mut stream, 4).await;
    assert_eq!(refused["error"]["code"], -32042, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("the user said no")),
        "the upstream saw the client's error: {refused}"
    );

    // A request the upstream sends on its GET stream (not related to the call) while the
    // call waits for it still reaches the call's client.
    let mut stream = client
        .call_tool_stream(5, "ts_summarize_unrelated", json!({"text": "y"}), None)
        .await
        .unwrap();
    let request = request_on(&mut stream, "sampling/createMessage").await;
    answer(
        &other,
        &request,
        json!({"result": {"role": "assistant", "content": {"type": "text", "text": "z"}, "model": "m"}}),
    )
    .await;
    assert_eq!(
        result_text(&mut stream, 5).await,
        ("unrelated: z".to_owned(), false)
    );

    // The client cancels while the upstream waits for its answer: the upstream's call is
    // cancelled (its signal aborts).
    let before = tool_text(&client, 20, "ts_aborted").await["aborted"]
        .as_i64()
        .unwrap();
    let mut stream = client
        .call_tool_stream(6, "ts_summarize", json!({"text": "never"}), None)
        .await
        .unwrap();
    request_on(&mut stream, "sampling/createMessage").await;
    let cancelled = other
        .post(
            &json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
            "params": {"requestId": 6, "reason": "changed my mind"}}),
        )
        .await
        .unwrap();
    assert_eq!(cancelled.status(), 202);
    let start = Instant::now();
    loop {
        let now = tool_text(&client, 21, "ts_aborted").await["aborted"]
            .as_i64()
            .unwrap();
        if now == before + 1 {
            break;
        }
        assert!(
            start.elapsed() < WAIT,
            "the upstream call was never cancelled ({now} aborted)\n{}",
            worker.log().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // logging/setLevel reaches the upstream (it declares logging): its own session's
    // level, as the TypeScript SDK recorded it.
    assert_eq!(
        tool_text(&client, 22, "ts_log_level").await,
        json!({"level": null})
    );
    let set = client
        .request(23, "logging/setLevel", json!({"level": "warning"}))
        .await
        .unwrap();
    assert_eq!(set["result"], json!({}), "{set}");
    assert_eq!(
        tool_text(&client, 24, "ts_log_level").await,
        json!({"level": "warning"})
    );

    // Background work: a request the upstream sends after its call answered belongs to no
    // call; it reaches the session's standalone stream (open on gateway B), and the answer
    // posted to gateway A goes back upstream.
    let mut standalone = other.open_stream(None).await.unwrap();
    let scheduled = client
        .request(
            25,
            "tools/call",
            json!({"name": "ts_sample_later", "arguments": {}}),
        )
        .await
        .unwrap();
    assert_eq!(
        scheduled["result"]["content"][0]["text"], "scheduled",
        "{scheduled}"
    );
    let request = request_on(&mut standalone, "sampling/createMessage").await;
    assert_eq!(
        request["params"]["messages"][0]["content"]["text"], "later",
        "{request}"
    );
    answer(
        &client,
        &request,
        json!({"result": {"role": "assistant", "content": {"type": "text", "text": "done"}, "model": "m"}}),
    )
    .await;
    let start = Instant::now();
    let later = loop {
        let later = tool_text(&client, 26, "ts_later").await;
        if !later["later"].is_null() {
            break later;
        }
        assert!(start.elapsed() < WAIT, "the upstream never got its answer");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(later, json!({"later": "answered: done"}));

    // A client that did not declare sampling: the upstream's request gets the error such a
    // client would give (-32601), and the upstream's tool reports it.
    let mut plain = RawClient::new(&b.url());
    plain.initialize("2025-11-25").await.unwrap();
    let mut stream = plain
        .call_tool_stream(1, "ts_summarize", json!({"text": "x"}), None)
        .await
        .unwrap();
    // (The SDK's McpServer reports this one as a tool error naming the code.)
    let (text, is_error) = result_text(&mut stream, 1).await;
    assert!(
        is_error
            && text.contains("-32601")
            && text.contains("did not declare the sampling capability"),
        "{text}"
    );

    // The official TypeScript SDK client, on gateway B, answers with its own handlers.
    let report = run_script(&client_dir(), "upstream-client.mjs", &[&b.url()])
        .await
        .unwrap();
    assert_eq!(
        report["summarize"],
        r#"summary: ts-sdk read "Summarize: the TS client" (model ts-sdk-model)"#,
        "{report}"
    );
    assert_eq!(
        serde_json::from_str::<Value>(report["ask"].as_str().unwrap()).unwrap(),
        json!({"action": "accept", "content": {"answer": "from the ts sdk"}}),
        "{report}"
    );
    assert_eq!(report["roots"], r#"["file:///ts"]"#, "{report}");
    assert_eq!(
        report["asked"],
        json!([
            {"method": "sampling/createMessage", "prompt": "Summarize: the TS client"},
            {"method": "elicitation/create", "message": "Who answers?"},
            {"method": "roots/list"}
        ]),
        "each request reached the SDK once"
    );
}

/// A 2026-07-28 client (no stream back to it): the upstream's elicitation becomes an input
/// request of an `InputRequiredResult`; the client's retry (on the other gateway) runs the
/// upstream's tool again, which gets the answer when it asks again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2026_client_answers_an_upstream_elicitation_by_multi_round_trip() {
    let upstream = TsUpstream::start().await.expect("the TypeScript upstream");
    let redis = RedisServer::start().expect("redis");
    let gw_args = ["--redis-url", &redis.url()];
    let a = Gateway::start(&gw_args).expect("gateway a");
    let b = Gateway::start(&gw_args).expect("gateway b");
    let spec = format!("ts={}", upstream.url());
    let _worker = WorkerProcess::start(&redis.url(), &["--upstream", &spec, "--toolset", "none"])
        .expect("worker");
    let mut probe = RawClient::new(&a.url());
    probe.initialize("2025-11-25").await.unwrap();
    wait_for_upstream(&probe).await.unwrap();

    let client = StatelessClient::rotating(&[a.url(), b.url()]);
    let params = json!({"name": "ts_ask", "arguments": {"question": "Which planet?"}});
    let first = client
        .request(1, "tools/call", params.clone())
        .await
        .unwrap();
    assert_eq!(first["result"]["resultType"], "input_required", "{first}");
    let asked = &first["result"]["inputRequests"]["upstream-0"];
    assert_eq!(asked["method"], "elicitation/create", "{first}");
    assert_eq!(asked["params"]["message"], "Which planet?", "{first}");

    let mut retry = params;
    retry["inputResponses"] =
        json!({"upstream-0": {"action": "accept", "content": {"answer": "Mars"}}});
    if let Some(state) = first["result"].get("requestState") {
        retry["requestState"] = state.clone();
    }
    let second = client.request(2, "tools/call", retry).await.unwrap();
    let text = second["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("{second}"));
    assert_eq!(
        serde_json::from_str::<Value>(text).unwrap(),
        json!({"action": "accept", "content": {"answer": "Mars"}})
    );
}

/// A stdio upstream (one stream for everything, so no request names its call): the
/// TypeScript SDK's own example server `toolWithSampleServer.js`, shipped in the SDK's
/// package, asks for sampling during its `summarize` tool; the request reaches the call's
/// client (the only call running in that upstream session).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdks_stdio_example_server_samples_through_the_standalone_gateway() {
    check_node().await.expect("node");
    let dir = client_dir();
    ensure_sdk_installed(&dir).await.expect("the SDK");
    let example = dir.join(
        "node_modules/@modelcontextprotocol/sdk/dist/esm/examples/server/toolWithSampleServer.js",
    );
    assert!(example.exists(), "{} is not in the SDK", example.display());
    let spec = format!("tss=stdio:node {}", example.display());
    let gateway = Gateway::start(&["--upstream", &spec, "--toolset", "none"]).expect("gateway");
    let mut client = RawClient::new(&gateway.url());
    client
        .initialize_with("2025-11-25", json!({"sampling": {}}))
        .await
        .unwrap();
    let start = Instant::now();
    loop {
        let list = client.request(900, "tools/list", json!({})).await.unwrap();
        let listed = list["result"]["tools"]
            .as_array()
            .is_some_and(|tools| tools.iter().any(|t| t["name"] == "tss_summarize"));
        if listed {
            break;
        }
        assert!(start.elapsed() < WAIT, "never listed: {list}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut stream = client
        .call_tool_stream(1, "tss_summarize", json!({"text": "stdio text"}), None)
        .await
        .unwrap();
    let request = request_on(&mut stream, "sampling/createMessage").await;
    let prompt = request["params"]["messages"][0]["content"]["text"]
        .as_str()
        .unwrap();
    assert!(prompt.ends_with("stdio text"), "{request}");
    answer(
        &client,
        &request,
        json!({"result": {"role": "assistant", "content": {"type": "text", "text": "a stdio summary"}, "model": "m"}}),
    )
    .await;
    assert_eq!(
        result_text(&mut stream, 1).await,
        ("a stdio summary".to_owned(), false)
    );
}
