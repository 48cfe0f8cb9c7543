//! Every limit refuses with a clear 429 (JSON-RPC error inside) and counts the refusal in
//! `mcpgw_limit_rejections_total{limit}`; the gateway keeps serving.

use e2e_tests::{Gateway, RawClient, StatelessClient};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const TOKEN: &str = "alice-0123456789abcdef";

async fn rejections(gw: &Gateway, limit: &str) -> f64 {
    let text = reqwest::get(format!("{}/metrics", gw.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| {
            l.starts_with("mcpgw_limit_rejections_total{")
                && l.contains(&format!("limit=\"{limit}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn the_request_rate_of_a_principal_is_bounded() {
    let gw = Gateway::start(&["--rate-limit-per-second", "2", "--rate-limit-burst", "3"]).unwrap();
    let mut client = RawClient::new(&gw.url());
    client.initialize("2025-11-25").await.unwrap();
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for i in 0..10 {
        let r = client
            .post(&json!({"jsonrpc":"2.0","id":i,"method":"ping"}))
            .await
            .unwrap();
        if r.status() == 429 {
            retry_after = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"]["code"], -32000);
            statuses.push(429);
        } else {
            statuses.push(r.status().as_u16());
        }
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(retry_after.is_some_and(|s| s.parse::<u64>().is_ok_and(|n| n >= 1)));
    assert!(rejections(&gw, "rate").await >= 1.0);
    // The bucket refills: a request a little later is served again.
    let start = Instant::now();
    loop {
        let r = client
            .post(&json!({"jsonrpc":"2.0","id":99,"method":"ping"}))
            .await
            .unwrap();
        if r.status() == 200 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the bucket never refilled"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_session_has_bounded_concurrent_requests_and_streams() {
    let gw = Gateway::start(&[
        "--max-concurrent-requests-per-session",
        "2",
        "--max-streams-per-session",
        "2",
    ])
    .unwrap();
    let mut client = RawClient::new(&gw.url());
    client.initialize("2025-11-25").await.unwrap();
    let long = json!({"steps": 1000, "step_ms": 20});
    let mut first = client
        .call_tool_stream(1, "long_running_operation", long.clone(), Some("a"))
        .await
        .unwrap();
    let mut second = client
        .call_tool_stream(2, "long_running_operation", long.clone(), Some("b"))
        .await
        .unwrap();
    first.next_message(Duration::from_secs(20)).await.unwrap();
    second.next_message(Duration::from_secs(20)).await.unwrap();
    // A third request while two run: refused.
    let call = json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"long_running_operation","arguments":{"steps":1,"step_ms":0}}});
    let r = client.post(&call).await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(
        rejections(&gw, "streams_per_session").await
            + rejections(&gw, "requests_per_session").await
            >= 1.0
    );
    // A third stream (the standalone GET) too.
    assert_eq!(client.get(None).await.unwrap().status(), 429);
    // Requests the gateway answers itself are not limited by this.
    let r = client
        .post(&json!({"jsonrpc":"2.0","id":4,"method":"ping"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Cancel one: its claim goes back, and the session may call again.
    client
        .post(&json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}))
        .await
        .unwrap();
    first.collect(Duration::from_secs(20)).await.unwrap();
    let start = Instant::now();
    loop {
        let r = client.post(&call).await.unwrap();
        if r.status() == 200 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the claim was never released"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_principal_has_a_bounded_number_of_sessions() {
    let gw = Gateway::start(&[
        "--auth-token",
        &format!("alice:{TOKEN}"),
        "--max-sessions-per-principal",
        "2",
    ])
    .unwrap();
    let mut sessions = Vec::new();
    for _ in 0..2 {
        let mut c = RawClient::new(&gw.url());
        c.bearer = Some(TOKEN.to_owned());
        c.initialize("2025-11-25").await.unwrap();
        sessions.push(c);
    }
    let mut third = RawClient::new(&gw.url());
    third.bearer = Some(TOKEN.to_owned());
    let body = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"0"}}});
    let r = third.post(&body).await.unwrap();
    assert_eq!(r.status(), 429);
    let error: Value = r.json().await.unwrap();
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("2 sessions")
    );
    assert_eq!(rejections(&gw, "sessions_per_principal").await, 1.0);
    // Ending one makes room.
    assert_eq!(sessions[0].delete().await.unwrap(), 204);
    third.initialize("2025-11-25").await.unwrap();
}

#[tokio::test]
async fn listen_streams_count_against_the_sessions_of_a_principal() {
    let gw = Gateway::start(&[
        "--auth-token",
        &format!("alice:{TOKEN}"),
        "--max-sessions-per-principal",
        "2",
    ])
    .unwrap();
    let mut session = RawClient::new(&gw.url());
    session.bearer = Some(TOKEN.to_owned());
    session.initialize("2025-11-25").await.unwrap();
    let mut client = StatelessClient::rotating(&[gw.url()]);
    client.bearer = Some(TOKEN.to_owned());
    let filter = json!({"toolsListChanged": true});
    let (first, _) = client.listen(&gw.url(), 1, filter.clone()).await.unwrap();
    let refused = client.listen(&gw.url(), 2, filter.clone()).await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.to_string().contains("429")),
        "{:?}",
        refused.map(|(_, ack)| ack)
    );
    assert_eq!(rejections(&gw, "sessions_per_principal").await, 1.0);
    // Closing the stream ends its session on the bus, which makes room.
    drop(first);
    let start = Instant::now();
    loop {
        match client.listen(&gw.url(), 3, filter.clone()).await {
            Ok(_) => break,
            Err(e) => assert!(
                start.elapsed() < Duration::from_secs(10),
                "the closed listen stream still counts: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
