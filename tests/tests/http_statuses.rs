//! Every status the transport answers with, over real HTTP against a real gateway, and
//! the node still serving afterwards.

use e2e_tests::client::content_type;
use e2e_tests::{Gateway, RawClient};
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Value, json};

async fn session(gw: &Gateway, version: &str) -> RawClient {
    let mut client = RawClient::new(&gw.url());
    client.initialize(version).await.expect("initialize");
    client
}

/// Sends a POST's headers declaring `length` bytes, and no body; returns the status.
async fn status_of_headers_only(gw: &Gateway, session: &str, length: usize) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = gw.base.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nMcp-Session-Id: {session}\r\nContent-Length: {length}\r\n\r\n"
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), socket.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

async fn error_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, HeaderValue::from_static(v));
    }
    h
}

#[tokio::test]
async fn initialize_negotiates_and_issues_a_session_id() {
    let gw = Gateway::start(&[]).unwrap();
    let mut client = RawClient::new(&gw.url());
    for version in ["2025-03-26", "2025-06-18", "2025-11-25"] {
        let result = client.initialize(version).await.unwrap();
        assert_eq!(result["protocolVersion"], version);
        assert_eq!(result["capabilities"]["tools"]["listChanged"], true);
        assert!(result["capabilities"]["logging"].is_object());
        let id = client.session.clone().expect("a session id");
        assert_eq!(id.len(), 32, "128 bits as hex");
        assert!(id.bytes().all(|b| (0x21..=0x7e).contains(&b)));
    }
    // A revision we do not speak is answered with our latest.
    let result = client.initialize("2024-11-05").await.unwrap();
    assert_eq!(result["protocolVersion"], "2025-11-25");
}

#[tokio::test]
async fn bad_input_gets_the_status_and_error_the_spec_names() {
    let gw = Gateway::start(&[]).unwrap();
    let client = session(&gw, "2025-11-25").await;
    let ping = json!({"jsonrpc":"2.0","id":1,"method":"ping"});

    // 406: an Accept that allows neither JSON nor SSE.
    let r = client
        .post_with(&ping, &[("accept", "text/html")])
        .await
        .unwrap();
    assert_eq!(r.status(), 406);
    // 415: not JSON.
    let r = client
        .post_with(&ping, &[("content-type", "text/plain")])
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    // 400 + -32700: malformed JSON.
    let (status, body) = error_of(
        client
            .post_raw("{\"jsonrpc\":", client.headers())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (400, Some(-32700))
    );
    // 400 + -32600: JSON, but not JSON-RPC.
    for bad in [
        json!({"id": 1, "method": "ping"}),
        json!("ping"),
        json!({"jsonrpc":"2.0","id":null,"method":"ping"}),
        json!([]),
    ] {
        let (status, body) = error_of(client.post(&bad).await.unwrap()).await;
        assert_eq!(
            (status, body["error"]["code"].as_i64()),
            (400, Some(-32600)),
            "{bad}"
        );
    }
    // -32601: an unknown method (a well-formed request: HTTP 200, JSON-RPC error).
    let v = client
        .request(2, "resources/teleport", json!({}))
        .await
        .unwrap();
    assert_eq!(v["error"]["code"], -32601);
    assert_eq!(v["id"], 2);
    // -32602: bad params of a method the gateway answers.
    let v = client
        .request(3, "logging/setLevel", json!({"level": "loud"}))
        .await
        .unwrap();
    assert_eq!(v["error"]["code"], -32602);
    // 413: a declared length over the limit (default 4 MiB) is refused before the body is
    // read: a raw socket sends only the headers.
    assert_eq!(
        status_of_headers_only(&gw, client.session.as_deref().unwrap(), 5 * 1024 * 1024).await,
        413
    );
    // 413: a chunked body (no declared length) that grows past the limit.
    let limit = 4 * 1024 * 1024;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        vec![Ok(vec![b' '; limit]), Ok(b"{}      ".to_vec())];
    let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let r = client.post_raw(body, client.headers()).await.unwrap();
    assert_eq!(r.status(), 413);
    // 400: an unsupported MCP-Protocol-Version.
    let (status, _) = error_of(
        client
            .post_with(&ping, &[("mcp-protocol-version", "1999-01-01")])
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    // A supported revision other than the negotiated one is accepted.
    let r = client
        .post_with(&ping, &[("mcp-protocol-version", "2025-03-26")])
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // The node keeps serving.
    let v = client.request(9, "ping", json!({})).await.unwrap();
    assert_eq!(v["result"], json!({}));
}

#[tokio::test]
async fn sessions_are_required_known_and_deletable() {
    let gw = Gateway::start(&[]).unwrap();
    let mut client = session(&gw, "2025-11-25").await;
    let ping = json!({"jsonrpc":"2.0","id":1,"method":"ping"});

    let mut anonymous = client.clone();
    anonymous.session = None;
    let (status, _) = error_of(anonymous.post(&ping).await.unwrap()).await;
    assert_eq!(
        status, 400,
        "a non-initialize request without Mcp-Session-Id"
    );
    assert_eq!(anonymous.get(None).await.unwrap().status(), 400);

    let mut stranger = client.clone();
    stranger.session = Some("0123456789abcdef0123456789abcdef".into());
    let (status, body) = error_of(stranger.post(&ping).await.unwrap()).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], -32001);
    stranger.session = Some("not a session id at all".into());
    assert_eq!(stranger.post(&ping).await.unwrap().status(), 404);

    assert_eq!(client.delete().await.unwrap(), 204);
    assert_eq!(
        client.post(&ping).await.unwrap().status(),
        404,
        "a deleted session is gone"
    );
    assert_eq!(client.delete().await.unwrap(), 404);
    assert_eq!(client.get(None).await.unwrap().status(), 404);

    // After a 404 the client starts over with initialize, which works.
    client.initialize("2025-11-25").await.unwrap();
    assert_eq!(client.post(&ping).await.unwrap().status(), 200);
}

#[tokio::test]
async fn notifications_and_responses_are_accepted_with_202() {
    let gw = Gateway::start(&[]).unwrap();
    let client = session(&gw, "2025-11-25").await;
    for message in [
        json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
        json!({"jsonrpc":"2.0","method":"notifications/roots/list_changed"}),
        json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId": 77}}),
        json!({"jsonrpc":"2.0","id":"w-unknown-1","result":{}}),
    ] {
        let r = client.post(&message).await.unwrap();
        assert_eq!(r.status(), 202, "{message}");
        assert!(r.bytes().await.unwrap().is_empty(), "202 has no body");
    }
    // A cancellation without a request id cannot be accepted.
    let r = client
        .post(&json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{}}))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn batches_exist_only_in_2025_03_26() {
    let gw = Gateway::start(&[]).unwrap();
    let batch = json!([
        {"jsonrpc":"2.0","id":1,"method":"ping"},
        {"jsonrpc":"2.0","method":"notifications/initialized"},
        {"jsonrpc":"2.0","id":2,"method":"tools/list"},
        {"jsonrpc":"2.0","id":3,"method":"no/such/method"},
        {"jsonrpc":"2.0","id":4,"method":7},
    ]);
    let new = session(&gw, "2025-06-18").await;
    let (status, body) = error_of(new.post(&batch).await.unwrap()).await;
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (400, Some(-32600))
    );

    let old = session(&gw, "2025-03-26").await;
    let r = old
        .post_with(&batch, &[("accept", "application/json")])
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let answers: Vec<Value> = r.json().await.unwrap();
    let by_id = |id: i64| {
        answers
            .iter()
            .find(|a| a["id"] == id)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(
        answers.len(),
        4,
        "one answer per request, none for the notification: {answers:?}"
    );
    assert_eq!(by_id(1)["result"], json!({}));
    assert!(by_id(2)["result"]["tools"].is_array());
    assert_eq!(by_id(3)["error"]["code"], -32601);
    assert_eq!(by_id(4)["error"]["code"], -32600);

    // A batch holding a tool call answers on one SSE stream carrying every response.
    let with_call = json!([
        {"jsonrpc":"2.0","id":10,"method":"ping"},
        {"jsonrpc":"2.0","id":11,"method":"tools/call","params":{"name":"long_running_operation","arguments":{"steps":2,"step_ms":0}}},
    ]);
    let r = old.post(&with_call).await.unwrap();
    assert!(content_type(&r).starts_with("text/event-stream"));
    let events = e2e_tests::SseReader::new(r)
        .collect(std::time::Duration::from_secs(10))
        .await
        .unwrap();
    let ids: Vec<Value> = e2e_tests::client::messages(&events)
        .iter()
        .map(|m| m["id"].clone())
        .collect();
    assert_eq!(ids, [json!(10), json!(11)]);

    // initialize cannot be batched.
    let init = json!([{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"x","version":"0"}}}]);
    let r = RawClient::new(&gw.url())
        .post_raw(
            init.to_string(),
            headers(&[
                ("content-type", "application/json"),
                ("accept", "application/json, text/event-stream"),
            ]),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn dns_rebinding_is_refused_with_403() {
    let gw = Gateway::start(&[]).unwrap();
    let client = session(&gw, "2025-11-25").await;
    let ping = json!({"jsonrpc":"2.0","id":1,"method":"ping"});
    let r = client
        .post_with(&ping, &[("origin", "http://evil.example.com")])
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = client
        .post_with(&ping, &[("host", "evil.example.com")])
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = client
        .post_with(&ping, &[("host", "evil.example.com:8000")])
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // Loopback origins on any port, and the gateway's own host, are fine.
    let r = client
        .post_with(&ping, &[("origin", "http://localhost:5173")])
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client
        .post_with(&ping, &[("origin", "http://127.0.0.1:9")])
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // A configured allow-list replaces the loopback default.
    let gw = Gateway::start(&["--allowed-origin", "https://app.example.com"]).unwrap();
    let client = session(&gw, "2025-11-25").await;
    let r = client
        .post_with(&ping, &[("origin", "https://app.example.com")])
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client
        .post_with(&ping, &[("origin", "http://localhost:5173")])
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn get_and_other_methods_are_checked() {
    let gw = Gateway::start(&[]).unwrap();
    let client = session(&gw, "2025-11-25").await;
    let http = reqwest::Client::new();
    let sid = client.session.clone().unwrap();

    let r = http
        .get(gw.url())
        .header("accept", "application/json")
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 406, "GET must accept text/event-stream");
    let r = http
        .get(gw.url())
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &sid)
        .header("last-event-id", "garbage")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "a Last-Event-ID we never issued");
    let r = http
        .put(gw.url())
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let r = http
        .get(format!("{}/healthz", gw.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn tool_errors_follow_the_negotiated_revision() {
    let gw = Gateway::start(&[]).unwrap();
    for version in ["2025-06-18", "2025-11-25"] {
        let client = session(&gw, version).await;
        // An unknown tool is a protocol error in every revision.
        let v = client
            .request(1, "tools/call", json!({"name": "no_such_tool"}))
            .await
            .unwrap();
        assert_eq!(v["error"]["code"], -32602, "{version}");
        // params that are not a CallToolRequest are a protocol error.
        let v = client
            .request(2, "tools/call", json!({"arguments": {}}))
            .await
            .unwrap();
        assert_eq!(v["error"]["code"], -32602, "{version}");
        let v = client
            .request(
                3,
                "tools/call",
                json!({"name": "broadcast", "arguments": [1]}),
            )
            .await
            .unwrap();
        assert_eq!(v["error"]["code"], -32602, "{version}");
        // Arguments that break the tool's schema.
        let v = client
            .request(
                4,
                "tools/call",
                json!({"name": "long_running_operation", "arguments": {"steps": 0}}),
            )
            .await
            .unwrap();
        if version == "2025-11-25" {
            // From 2025-11-25 a tool execution error, so a model can correct itself.
            assert_eq!(v["result"]["isError"], true, "{v}");
            let text = v["result"]["content"][0]["text"].as_str().unwrap_or("");
            assert!(text.contains("steps"), "{text}");
        } else {
            assert_eq!(v["error"]["code"], -32602, "{v}");
        }
        let v = client
            .request(5, "tools/call", json!({"name": "send_notification", "arguments": {"message": "x", "level": "loud"}}))
            .await
            .unwrap();
        assert!(
            v["error"]["code"] == -32602 || v["result"]["isError"] == true,
            "{v}"
        );
    }
}

#[tokio::test]
async fn tools_list_describes_the_demo_tools_with_schemas() {
    let gw = Gateway::start(&[]).unwrap();
    let client = session(&gw, "2025-11-25").await;
    let v = client.request(1, "tools/list", json!({})).await.unwrap();
    let tools = v["result"]["tools"].as_array().unwrap();
    let names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
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
    let op = tools
        .iter()
        .find(|t| t["name"] == "long_running_operation")
        .unwrap();
    assert_eq!(op["inputSchema"]["type"], "object");
    assert_eq!(op["inputSchema"]["properties"]["steps"]["minimum"], 1);
    assert_eq!(op["inputSchema"]["properties"]["steps"]["maximum"], 10000);
    assert_eq!(op["inputSchema"]["properties"]["step_ms"]["maximum"], 60000);
    let send = tools
        .iter()
        .find(|t| t["name"] == "send_notification")
        .unwrap();
    assert_eq!(send["inputSchema"]["required"], json!(["message"]));
    assert_eq!(
        send["inputSchema"]["properties"]["level"]["enum"]
            .as_array()
            .map(Vec::len),
        Some(8)
    );
}

#[tokio::test]
async fn stateless_mode_serves_requests_without_sessions() {
    let gw = Gateway::start(&["--stateless"]).unwrap();
    let mut client = RawClient::new(&gw.url());
    let body = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"x","version":"0"}}});
    let r = client.post(&body).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers().get("mcp-session-id").is_none(),
        "no session in stateless mode"
    );
    client.session = None;
    let events = client
        .call_tool(
            1,
            "long_running_operation",
            json!({"steps": 3, "step_ms": 0}),
            Some("tok"),
        )
        .await
        .unwrap();
    let msgs = e2e_tests::client::messages(&events);
    assert_eq!(msgs.len(), 4, "3 progress + the result: {msgs:?}");
    assert_eq!(
        msgs[3]["result"]["content"][0]["text"],
        "operation completed: 3 steps"
    );
    assert_eq!(client.get(None).await.unwrap().status(), 405);
    assert_eq!(client.delete().await.unwrap(), 405);
    // Without a standalone stream, a background task reports through its resource.
    let v = client
        .request(
            2,
            "tools/call",
            json!({"name":"start_background_task","arguments":{"name":"x","count":1,"interval_ms":10}}),
        )
        .await
        .unwrap();
    let uri = v["result"]["content"][1]["uri"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(uri.starts_with("notify://tasks/"), "{v}");
    let read = client
        .request(3, "resources/read", json!({"uri": uri}))
        .await
        .unwrap();
    let body: Value =
        serde_json::from_str(read["result"]["contents"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(body["task"], "x", "{read}");
}
