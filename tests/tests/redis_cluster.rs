//! The Redis bus end to end: several gateways and workers as real processes on a real
//! redis-server, one session spread over them, and each failure survived: a killed
//! worker, a killed gateway, a restarted Redis.

use e2e_tests::client::messages;
use e2e_tests::{Gateway, RawClient, RedisServer, WorkerProcess, wait_for_workers};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);

fn gateway(redis: &RedisServer, extra: &[&str]) -> Gateway {
    let mut args = vec!["--redis-url", redis.url().leak() as &str];
    args.extend_from_slice(extra);
    Gateway::start(&args).expect("gateway")
}

fn worker(redis: &RedisServer, extra: &[&str]) -> WorkerProcess {
    WorkerProcess::start(&redis.url(), extra).expect("worker")
}

/// A client of the same session talking to another gateway.
fn via(client: &RawClient, gw: &Gateway) -> RawClient {
    let mut other = client.clone();
    other.url = gw.url();
    other
}

fn progress_of(msgs: &[Value]) -> Vec<f64> {
    msgs.iter()
        .filter(|m| m["method"] == "notifications/progress")
        .filter_map(|m| m["params"]["progress"].as_f64())
        .collect()
}

#[tokio::test]
async fn one_session_spread_over_gateways_and_workers() {
    let redis = RedisServer::start().unwrap();
    let g0 = gateway(&redis, &[]);
    let g1 = gateway(&redis, &[]);
    let _w0 = worker(&redis, &[]);
    let _w1 = worker(&redis, &[]);
    let mut a0 = RawClient::new(&g0.url());
    a0.initialize("2025-11-25").await.unwrap();
    let a1 = via(&a0, &g1);
    let status = wait_for_workers(&a1, 2).await.unwrap();
    assert_eq!(status["gateways"], 2);

    // tools/list on the other gateway is the registry's union.
    let v = a1.request(1, "tools/list", json!({})).await.unwrap();
    assert_eq!(v["result"]["tools"].as_array().map(Vec::len), Some(5));

    // The standalone stream on g1 while calls go to g0.
    let mut standalone = a1.open_stream(None).await.unwrap();
    let events = a0
        .call_tool(
            2,
            "long_running_operation",
            json!({"steps": 10, "step_ms": 0}),
            Some("x"),
        )
        .await
        .unwrap();
    let msgs = messages(&events);
    assert_eq!(
        progress_of(&msgs),
        (1..=10).map(f64::from).collect::<Vec<_>>()
    );
    assert_eq!(
        msgs.last().unwrap()["result"]["content"][0]["text"],
        "operation completed: 10 steps"
    );

    // setLevel on g1 applies to a call on g0.
    a1.request(3, "logging/setLevel", json!({"level": "error"}))
        .await
        .unwrap();
    let events = a0
        .call_tool(4, "send_notification", json!({"message": "quiet"}), None)
        .await
        .unwrap();
    assert_eq!(messages(&events).len(), 1, "filtered: only the result");
    a1.request(5, "logging/setLevel", json!({"level": "debug"}))
        .await
        .unwrap();

    // A broadcast sent through g1 reaches this session on g1 and another session on g0.
    let mut b0 = RawClient::new(&g0.url());
    b0.initialize("2025-06-18").await.unwrap();
    let mut other_stream = b0.open_stream(None).await.unwrap();
    a1.call_tool(6, "broadcast", json!({"message": "everyone"}), None)
        .await
        .unwrap();
    let (_, m) = standalone.next_log(WAIT).await.unwrap().unwrap();
    assert_eq!(m["params"]["data"], "everyone");
    let (_, m) = other_stream.next_log(WAIT).await.unwrap().unwrap();
    assert_eq!(m["params"]["data"], "everyone");

    // A background task started through g0 ticks on the stream held by g1.
    a0.request(7, "tools/call", json!({"name": "start_background_task", "arguments": {"name": "x", "count": 3, "interval_ms": 10}}))
        .await
        .unwrap();
    for tick in 1..=3 {
        let (_, m) = standalone.next_log(WAIT).await.unwrap().unwrap();
        assert_eq!(m["params"]["data"]["tick"], tick);
    }

    // DELETE through g0 ends the session everywhere: g1's stream closes, g1 answers 404.
    assert_eq!(a0.delete().await.unwrap(), 204);
    assert_eq!(standalone.next_log(WAIT).await.unwrap(), None);
    let r = a1
        .post(&json!({"jsonrpc":"2.0","id":8,"method":"ping"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn streams_resume_on_another_gateway_and_cancellation_crosses_them() {
    let redis = RedisServer::start().unwrap();
    let g0 = gateway(&redis, &[]);
    let g1 = gateway(&redis, &[]);
    let _w0 = worker(&redis, &[]);
    let _w1 = worker(&redis, &[]);
    let mut a0 = RawClient::new(&g0.url());
    a0.initialize("2025-11-25").await.unwrap();
    let a1 = via(&a0, &g1);
    wait_for_workers(&a0, 2).await.unwrap();

    // A POST stream on g0 dropped mid-call resumes on g1.
    let mut stream = a0
        .call_tool_stream(
            1,
            "long_running_operation",
            json!({"steps": 10, "step_ms": 30}),
            Some("r"),
        )
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut last_id = String::new();
    while seen.len() < 3 {
        let (e, m) = stream.next_message(WAIT).await.unwrap().unwrap();
        seen.push(m["params"]["progress"].as_f64().unwrap());
        last_id = e.id;
    }
    drop(stream);
    let rest = messages(
        &a1.open_stream(Some(&last_id))
            .await
            .unwrap()
            .collect(WAIT)
            .await
            .unwrap(),
    );
    seen.extend(progress_of(&rest));
    assert_eq!(seen, (1..=10).map(f64::from).collect::<Vec<_>>());
    assert_eq!(rest.last().unwrap()["id"], 1);

    // A cancellation posted to g1 stops the call streaming from g0, whichever worker runs it.
    let mut stream = a0
        .call_tool_stream(
            2,
            "long_running_operation",
            json!({"steps": 1000, "step_ms": 20}),
            Some("c"),
        )
        .await
        .unwrap();
    stream.next_message(WAIT).await.unwrap().unwrap();
    let r = a1
        .post(&json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":2}}))
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let rest = messages(&stream.collect(WAIT).await.unwrap());
    assert!(
        rest.iter().all(|m| m.get("id").is_none()),
        "no response after a cancellation"
    );
    assert!(rest.len() < 200, "the tool stopped");
}

#[tokio::test]
async fn a_reply_to_a_server_request_reaches_the_waiting_worker_from_any_gateway() {
    let redis = RedisServer::start().unwrap();
    let g0 = gateway(&redis, &[]);
    let g1 = gateway(&redis, &[]);
    let _w0 = worker(&redis, &["--toolset", "demo,conformance"]);
    let _w1 = worker(&redis, &["--toolset", "demo,conformance"]);
    let mut a0 = RawClient::new(&g0.url());
    a0.initialize_with("2025-11-25", json!({"sampling": {}, "elicitation": {}}))
        .await
        .unwrap();
    let a1 = via(&a0, &g1);
    wait_for_workers(&a0, 2).await.unwrap();

    let mut stream = a0
        .call_tool_stream(1, "test_sampling", json!({"prompt": "say hi"}), None)
        .await
        .unwrap();
    let (_, request) = stream.next_message(WAIT).await.unwrap().unwrap();
    assert_eq!(request["method"], "sampling/createMessage");
    assert_eq!(
        request["params"]["messages"][0]["content"]["text"],
        "say hi"
    );
    let reply = json!({"jsonrpc":"2.0","id":request["id"],"result":{"role":"assistant","content":{"type":"text","text":"hi"},"model":"test"}});
    assert_eq!(
        a1.post(&reply).await.unwrap().status(),
        202,
        "the reply goes to the other gateway"
    );
    let rest = messages(&stream.collect(WAIT).await.unwrap());
    assert_eq!(
        rest.last().unwrap()["result"]["content"][0]["text"],
        "LLM response: hi"
    );
}

#[tokio::test]
async fn a_killed_gateway_is_survived_by_resuming_elsewhere() {
    let redis = RedisServer::start().unwrap();
    let mut g0 = gateway(&redis, &[]);
    let g1 = gateway(&redis, &[]);
    let _w = worker(&redis, &[]);
    let mut a0 = RawClient::new(&g0.url());
    a0.initialize("2025-11-25").await.unwrap();
    let a1 = via(&a0, &g1);
    wait_for_workers(&a0, 1).await.unwrap();

    let mut stream = a0
        .call_tool_stream(
            1,
            "long_running_operation",
            json!({"steps": 20, "step_ms": 50}),
            Some("k"),
        )
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut last_id = String::new();
    while seen.len() < 3 {
        let (e, m) = stream.next_message(WAIT).await.unwrap().unwrap();
        seen.push(m["params"]["progress"].as_f64().unwrap());
        last_id = e.id;
    }
    g0.kill();
    let rest = messages(
        &a1.open_stream(Some(&last_id))
            .await
            .unwrap()
            .collect(WAIT)
            .await
            .unwrap(),
    );
    seen.extend(progress_of(&rest));
    assert_eq!(
        seen,
        (1..=20).map(f64::from).collect::<Vec<_>>(),
        "every missed event, once"
    );
    assert_eq!(
        rest.last().unwrap()["result"]["content"][0]["text"],
        "operation completed: 20 steps"
    );
}

#[tokio::test]
async fn a_killed_worker_is_survived_by_retry_or_a_clear_error() {
    let redis = RedisServer::start().unwrap();
    let g = gateway(&redis, &[]);
    let fast = [
        "--toolset",
        "demo,conformance",
        "--job-claim-idle-ms",
        "1500",
        "--heartbeat-ms",
        "300",
    ];
    let mut w0 = worker(&redis, &fast);
    let mut client = RawClient::new(&g.url());
    client
        .initialize_with("2025-11-25", json!({"sampling": {}}))
        .await
        .unwrap();
    wait_for_workers(&client, 1).await.unwrap();

    // A retryable tool: w0 dies mid-call, w1 runs it again, the client sees progress only
    // increase and gets the result.
    let mut stream = client
        .call_tool_stream(
            1,
            "long_running_operation",
            json!({"steps": 10, "step_ms": 200}),
            Some("w"),
        )
        .await
        .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let (_, m) = stream.next_message(WAIT).await.unwrap().unwrap();
        seen.push(m["params"]["progress"].as_f64().unwrap());
    }
    // The non-retryable call waits for a reply that never comes, on the same worker.
    let pending = client
        .call_tool_stream(2, "test_sampling", json!({"prompt": "p"}), None)
        .await
        .unwrap();
    let mut pending = pending;
    let (_, request) = pending.next_message(WAIT).await.unwrap().unwrap();
    assert_eq!(request["method"], "sampling/createMessage");

    let killed_at = Instant::now();
    w0.kill();
    let _w1 = worker(&redis, &fast);
    let rest = messages(&stream.collect(WAIT).await.unwrap());
    seen.extend(progress_of(&rest));
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "progress only increases: {seen:?}"
    );
    assert_eq!(seen.last(), Some(&10.0));
    assert_eq!(
        rest.last().unwrap()["result"]["content"][0]["text"],
        "operation completed: 10 steps"
    );

    let rest = messages(&pending.collect(WAIT).await.unwrap());
    let answer = rest.last().unwrap();
    assert_eq!(answer["id"], 2);
    assert_eq!(answer["error"]["code"], -32603, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not marked retryable")
    );
    assert!(
        killed_at.elapsed() < Duration::from_secs(20),
        "answered within a bounded time"
    );
}

/// Found by the chaos test: a call whose worker died starts its progress over on another
/// worker, and a client that resumed the call's stream on another gateway got that
/// progress again (1, 2, 3, then 1, 2, 3, 4, ...): the resuming gateway did not know what
/// the client already had.
#[tokio::test]
async fn a_resumed_stream_of_a_retried_call_repeats_no_progress() {
    let redis = RedisServer::start().unwrap();
    let g0 = gateway(&redis, &[]);
    let g1 = gateway(&redis, &[]);
    let fast = ["--job-claim-idle-ms", "1500", "--heartbeat-ms", "300"];
    let mut w0 = worker(&redis, &fast);
    let mut a0 = RawClient::new(&g0.url());
    a0.initialize("2025-11-25").await.unwrap();
    let a1 = via(&a0, &g1);
    wait_for_workers(&a0, 1).await.unwrap();

    let mut stream = a0
        .call_tool_stream(
            1,
            "long_running_operation",
            json!({"steps": 10, "step_ms": 200}),
            Some("again"),
        )
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut last_id = String::new();
    while seen.len() < 3 {
        let (e, m) = stream.next_message(WAIT).await.unwrap().unwrap();
        seen.push(m["params"]["progress"].as_f64().unwrap());
        last_id = e.id;
    }
    // The worker dies; another runs the call again from step 1. Meanwhile the client's
    // connection drops and it resumes on the other gateway, which has sent it nothing.
    w0.kill();
    let _w1 = worker(&redis, &fast);
    drop(stream);
    let rest = messages(
        &a1.open_stream(Some(&last_id))
            .await
            .unwrap()
            .collect(WAIT)
            .await
            .unwrap(),
    );
    seen.extend(progress_of(&rest));
    assert_eq!(
        seen,
        (1..=10).map(f64::from).collect::<Vec<_>>(),
        "each progress value once, only increasing"
    );
    assert_eq!(
        rest.last().unwrap()["result"]["content"][0]["text"],
        "operation completed: 10 steps"
    );
}

#[tokio::test]
async fn a_redis_restart_is_survived() {
    let mut redis = RedisServer::start().unwrap();
    let g = gateway(&redis, &[]);
    let _w = worker(&redis, &[]);
    let mut client = RawClient::new(&g.url());
    client.initialize("2025-11-25").await.unwrap();
    wait_for_workers(&client, 1).await.unwrap();
    let mut standalone = client.open_stream(None).await.unwrap();
    client
        .call_tool(1, "broadcast", json!({"message": "before"}), None)
        .await
        .unwrap();
    let (event, m) = standalone.next_log(WAIT).await.unwrap().unwrap();
    assert_eq!(m["params"]["data"], "before");
    let mut last_id = event.id;

    redis.kill();
    // During the outage: a clear 503, quickly, not a hang.
    let started = Instant::now();
    let r = client
        .post(&json!({"jsonrpc":"2.0","id":2,"method":"ping"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(started.elapsed() < Duration::from_secs(10));

    redis.restart().unwrap();
    // Back: requests work again once the gateway has reconnected.
    let start = Instant::now();
    loop {
        let r = client
            .post(&json!({"jsonrpc":"2.0","id":3,"method":"ping"}))
            .await
            .unwrap();
        if r.status() == 200 {
            break;
        }
        assert!(
            start.elapsed() < WAIT,
            "the gateway did not recover: {}",
            r.status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_for_workers(&client, 1).await.unwrap();
    client
        .call_tool(4, "broadcast", json!({"message": "after"}), None)
        .await
        .unwrap();
    // The open stream either carries it, or ended so the client resumes: either way the
    // client gets it exactly once, after "before".
    let got = match standalone.next_log(WAIT).await {
        Ok(Some((_, m))) => m,
        _ => {
            let mut resumed = client.open_stream(Some(&last_id)).await.unwrap();
            let (e, m) = resumed.next_log(WAIT).await.unwrap().unwrap();
            last_id = e.id;
            m
        }
    };
    assert_eq!(got["params"]["data"], "after");
    let _ = last_id;
}

#[tokio::test]
async fn resource_updates_reach_subscribers_on_other_gateways() {
    let redis = RedisServer::start().unwrap();
    let g0 = gateway(&redis, &["--toolset", "demo,conformance"]);
    let g1 = gateway(&redis, &["--toolset", "demo,conformance"]);
    let _w = worker(&redis, &["--toolset", "demo,conformance"]);
    let mut watcher = RawClient::new(&g1.url());
    watcher.initialize("2025-11-25").await.unwrap();
    wait_for_workers(&watcher, 1).await.unwrap();
    let mut stream = watcher.open_stream(None).await.unwrap();
    let v = watcher
        .request(
            1,
            "resources/subscribe",
            json!({"uri": "test://watched-resource"}),
        )
        .await
        .unwrap();
    assert_eq!(v["result"], json!({}));

    // Another session, on the other gateway, changes the resource.
    let mut changer = RawClient::new(&g0.url());
    changer.initialize("2025-11-25").await.unwrap();
    changer
        .call_tool(2, "update_watched_resource", json!({}), None)
        .await
        .unwrap();
    let m = loop {
        let (_, m) = stream.next_message(WAIT).await.unwrap().unwrap();
        // The worker registered after this session began: list_changed comes first.
        if !m["method"]
            .as_str()
            .unwrap_or("")
            .ends_with("/list_changed")
        {
            break m;
        }
    };
    assert_eq!(m["method"], "notifications/resources/updated");
    assert_eq!(m["params"]["uri"], "test://watched-resource");
    // The changer did not subscribe, so its own stream stays quiet; and reading the
    // resource works from either gateway.
    let read = changer
        .request(
            3,
            "resources/read",
            json!({"uri": "test://watched-resource"}),
        )
        .await
        .unwrap();
    assert_eq!(
        read["result"]["contents"][0]["uri"],
        "test://watched-resource"
    );

    // After unsubscribing (through the other gateway), updates stop.
    let mut watcher_on_g0 = watcher.clone();
    watcher_on_g0.url = g0.url();
    watcher_on_g0
        .request(
            4,
            "resources/unsubscribe",
            json!({"uri": "test://watched-resource"}),
        )
        .await
        .unwrap();
    let v = changer
        .call_tool(5, "update_watched_resource", json!({}), None)
        .await
        .unwrap();
    assert!(
        messages(&v).last().unwrap()["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("0 subscribed sessions notified")
    );
}

#[tokio::test]
async fn a_server_closed_stream_is_polled_on_another_gateway() {
    let redis = RedisServer::start().unwrap();
    let g0 = gateway(&redis, &["--toolset", "demo,conformance"]);
    let g1 = gateway(&redis, &["--toolset", "demo,conformance"]);
    let _w = worker(&redis, &["--toolset", "demo,conformance"]);
    let mut a0 = RawClient::new(&g0.url());
    a0.initialize("2025-11-25").await.unwrap();
    let a1 = via(&a0, &g1);
    wait_for_workers(&a0, 1).await.unwrap();
    // The tool closes the connection (SSE polling, 2025-11-25) and answers later.
    let events = a0
        .call_tool(1, "test_reconnection", json!({}), None)
        .await
        .unwrap();
    let last = events.last().unwrap();
    assert!(
        last.data.is_empty(),
        "the stream ends with an empty event: {events:?}"
    );
    assert_eq!(
        last.retry,
        Some(Duration::from_millis(500)),
        "carrying the retry hint"
    );
    assert!(
        messages(&events).iter().all(|m| m.get("id").is_none()),
        "no result yet"
    );
    let rest = messages(
        &a1.open_stream(Some(&last.id))
            .await
            .unwrap()
            .collect(WAIT)
            .await
            .unwrap(),
    );
    assert_eq!(
        rest.last().unwrap()["result"]["content"][0]["text"],
        "Reconnection test completed"
    );
}
