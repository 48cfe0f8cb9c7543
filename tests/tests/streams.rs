//! SSE streams end to end: progress, logging, the standalone stream, resumption of both
//! kinds of stream, cancellation, takeover, slow clients and graceful drain.
//!
//! Each behaviour runs twice (see `in_both!` at the end): against one standalone gateway,
//! and against a Redis cluster of two gateways and a worker where every request of the
//! session, every stream and every resumption goes to the next gateway in turn.

use e2e_tests::client::{content_type, messages};
use e2e_tests::{Deployment, Gateway, Kind, RawClient, SseReader};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

async fn start(kind: Kind, args: &[&str]) -> Deployment {
    Deployment::start(kind, args).await.expect("deployment")
}

async fn session(d: &Deployment, version: &str) -> RawClient {
    d.client(version).await.expect("initialize")
}

async fn status(client: &RawClient) -> Value {
    let v = client
        .request(900, "tools/call", json!({"name": "server_status"}))
        .await
        .unwrap();
    serde_json::from_str(v["result"]["content"][0]["text"].as_str().unwrap()).unwrap()
}

fn progress_values(msgs: &[Value]) -> Vec<f64> {
    msgs.iter()
        .filter(|m| m["method"] == "notifications/progress")
        .filter_map(|m| m["params"]["progress"].as_f64())
        .collect()
}

async fn progress_arrives_in_order_before_the_result_and_only_with_a_token(kind: Kind) {
    let d = start(kind, &[]).await;
    let client = session(&d, "2025-11-25").await;
    let events = client
        .call_tool(
            1,
            "long_running_operation",
            json!({"steps": 20, "step_ms": 0}),
            Some("p-1"),
        )
        .await
        .unwrap();
    // 2025-11-25: the first event primes the client with an id and empty data.
    assert!(
        events[0].data.is_empty() && !events[0].id.is_empty(),
        "{:?}",
        events[0]
    );
    let msgs = messages(&events);
    assert_eq!(
        progress_values(&msgs),
        (1..=20).map(f64::from).collect::<Vec<_>>()
    );
    for m in &msgs[..20] {
        assert_eq!(m["params"]["progressToken"], "p-1");
        assert_eq!(m["params"]["total"], 20.0);
    }
    assert_eq!(msgs[5]["params"]["message"], "step 6/20");
    assert_eq!(msgs[20]["id"], 1);
    assert_eq!(
        msgs[20]["result"]["content"][0]["text"],
        "operation completed: 20 steps"
    );
    assert_eq!(msgs.len(), 21, "nothing after the result");
    // Event ids are distinct and name the stream.
    let ids: std::collections::HashSet<&str> = events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids.len(), events.len());

    // Without a progress token: no progress at all.
    let events = client
        .call_tool(
            2,
            "long_running_operation",
            json!({"steps": 5, "step_ms": 0}),
            None,
        )
        .await
        .unwrap();
    let msgs = messages(&events);
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert_eq!(msgs[0]["id"], 2);
}

async fn older_revisions_get_no_priming_event(kind: Kind) {
    let d = start(kind, &[]).await;
    let client = session(&d, "2025-03-26").await;
    let events = client
        .call_tool(1, "send_notification", json!({"message": "m"}), None)
        .await
        .unwrap();
    assert!(events.iter().all(|e| !e.data.is_empty()), "{events:?}");
    assert_eq!(messages(&events).len(), 2);
}

async fn log_level_filters_notifications(kind: Kind) {
    let d = start(kind, &[]).await;
    let client = session(&d, "2025-11-25").await;
    let events = client
        .call_tool(1, "send_notification", json!({"message": "hello"}), None)
        .await
        .unwrap();
    let msgs = messages(&events);
    assert_eq!(msgs[0]["method"], "notifications/message");
    assert_eq!(
        msgs[0]["params"],
        json!({"level": "info", "logger": "notify", "data": "hello"})
    );
    assert!(
        msgs[1]["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("hello")
    );

    let v = client
        .request(2, "logging/setLevel", json!({"level": "warning"}))
        .await
        .unwrap();
    assert_eq!(v["result"], json!({}));
    let events = client
        .call_tool(
            3,
            "send_notification",
            json!({"message": "quiet", "level": "info"}),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        messages(&events).len(),
        1,
        "info is below warning: only the result"
    );
    let events = client
        .call_tool(
            4,
            "send_notification",
            json!({"message": "loud", "level": "error"}),
            None,
        )
        .await
        .unwrap();
    let msgs = messages(&events);
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0]["params"]["level"], "error");

    // Broadcasts on the standalone stream are filtered by each session's level too.
    let mut stream = client.open_stream(None).await.unwrap();
    client
        .call_tool(
            5,
            "broadcast",
            json!({"message": "low", "level": "debug"}),
            None,
        )
        .await
        .unwrap();
    client
        .call_tool(
            6,
            "broadcast",
            json!({"message": "high", "level": "critical"}),
            None,
        )
        .await
        .unwrap();
    let (_, m) = stream.next_message(WAIT).await.unwrap().unwrap();
    assert_eq!(m["params"]["data"], "high");
}

async fn a_json_only_client_gets_a_plain_json_result(kind: Kind) {
    let d = start(kind, &[]).await;
    let client = session(&d, "2025-11-25").await;
    let call = json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"long_running_operation","arguments":{"steps":3,"step_ms":0},"_meta":{"progressToken":"t"}}});
    let r = client
        .post_with(&call, &[("accept", "application/json")])
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(content_type(&r).starts_with("application/json"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["id"], 7);
    assert_eq!(
        v["result"]["content"][0]["text"],
        "operation completed: 3 steps"
    );
}

async fn the_standalone_stream_carries_broadcasts_and_background_tasks(kind: Kind) {
    let d = start(kind, &[]).await;
    let a = session(&d, "2025-11-25").await;
    let b = session(&d, "2025-06-18").await;
    let mut stream_a = a.open_stream(None).await.unwrap();
    let mut stream_b = b.open_stream(None).await.unwrap();
    // 2025-11-25 primes the standalone stream; 2025-06-18 does not.
    let first = stream_a.next(WAIT).await.unwrap().unwrap();
    assert!(
        first.data.is_empty() && first.id.starts_with("s."),
        "{first:?}"
    );

    let events = a
        .call_tool(1, "broadcast", json!({"message": "to everyone"}), None)
        .await
        .unwrap();
    assert!(
        messages(&events)[0]["result"].is_object(),
        "a broadcast sends nothing on the request's own stream"
    );
    for stream in [&mut stream_a, &mut stream_b] {
        let (event, m) = stream.next_message(WAIT).await.unwrap().unwrap();
        assert!(event.id.starts_with("s."));
        assert_eq!(
            m["params"],
            json!({"level": "info", "logger": "broadcast", "data": "to everyone"})
        );
    }

    let v = a
        .request(2, "tools/call", json!({"name": "start_background_task", "arguments": {"name": "job", "count": 3, "interval_ms": 10}}))
        .await
        .unwrap();
    let text = v["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_owned();
    for tick in 1..=3 {
        let (_, m) = stream_a.next_message(WAIT).await.unwrap().unwrap();
        assert_eq!(m["params"]["logger"], "task/job");
        assert_eq!(m["params"]["data"]["tick"], tick);
        assert_eq!(m["params"]["data"]["of"], 3);
        let id = m["params"]["data"]["id"].as_str().unwrap();
        assert!(
            text.contains(id),
            "the result names the task id {id}: {text}"
        );
    }

    let status = status(&a).await;
    assert_eq!(status["gateways"], d.gateways.len());
    assert_eq!(status["sessions"], 2);
    assert_eq!(status["workers"], 1);
    assert_eq!(status["jobs_in_flight"], 1, "only the status call itself");
}

async fn messages_sent_while_no_stream_is_open_wait_for_the_next_one(kind: Kind) {
    let d = start(kind, &[]).await;
    let a = session(&d, "2025-11-25").await;
    let b = session(&d, "2025-11-25").await;
    // b broadcasts while a has no standalone stream; the broadcast is logged before the
    // tool answers, so a's first stream must carry it.
    b.call_tool(
        1,
        "broadcast",
        json!({"message": "while you were away"}),
        None,
    )
    .await
    .unwrap();
    let mut stream = a.open_stream(None).await.unwrap();
    let (_, m) = stream.next_message(WAIT).await.unwrap().unwrap();
    assert_eq!(m["params"]["data"], "while you were away");
}

async fn a_dropped_standalone_stream_resumes_without_loss_or_duplicates(kind: Kind) {
    let d = start(kind, &[]).await;
    let client = session(&d, "2025-11-25").await;
    let mut stream = client.open_stream(None).await.unwrap();
    for i in 0..3 {
        client
            .call_tool(i, "broadcast", json!({"message": format!("b{i}")}), None)
            .await
            .unwrap();
    }
    let mut last_id = String::new();
    for i in 0..2 {
        let (event, m) = stream.next_message(WAIT).await.unwrap().unwrap();
        assert_eq!(m["params"]["data"], format!("b{i}"));
        last_id = event.id;
    }
    drop(stream); // the connection drops after b1
    for i in 3..5 {
        client
            .call_tool(i, "broadcast", json!({"message": format!("b{i}")}), None)
            .await
            .unwrap();
    }
    let mut resumed = client.open_stream(Some(&last_id)).await.unwrap();
    for i in 2..5 {
        let (_, m) = resumed.next_message(WAIT).await.unwrap().unwrap();
        assert_eq!(
            m["params"]["data"],
            format!("b{i}"),
            "exactly the missed events, in order"
        );
    }
    client
        .call_tool(9, "broadcast", json!({"message": "live"}), None)
        .await
        .unwrap();
    let (_, m) = resumed.next_message(WAIT).await.unwrap().unwrap();
    assert_eq!(
        m["params"]["data"], "live",
        "then live ones, with no duplicate before them"
    );
}

async fn a_dropped_request_stream_resumes_with_the_rest_and_the_result(kind: Kind) {
    let d = start(kind, &[]).await;
    let client = session(&d, "2025-11-25").await;
    let mut stream = client
        .call_tool_stream(
            1,
            "long_running_operation",
            json!({"steps": 10, "step_ms": 30}),
            Some("tok"),
        )
        .await
        .unwrap();
    let mut last_id = String::new();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let (event, m) = stream.next_message(WAIT).await.unwrap().unwrap();
        seen.push(m["params"]["progress"].as_f64().unwrap());
        last_id = event.id;
    }
    drop(stream); // the POST's connection drops mid-call; the call goes on
    let resumed = client.open_stream(Some(&last_id)).await.unwrap();
    let rest = messages(&resumed.collect(WAIT).await.unwrap());
    seen.extend(progress_values(&rest));
    assert_eq!(
        seen,
        (1..=10).map(f64::from).collect::<Vec<_>>(),
        "no gap, no duplicate"
    );
    let last = rest.last().unwrap();
    assert_eq!(last["id"], 1);
    assert_eq!(
        last["result"]["content"][0]["text"],
        "operation completed: 10 steps"
    );

    // Resuming a stream that already ended yields an empty stream that ends at once.
    let again = client.open_stream(Some(&last_id)).await.unwrap();
    let replayed = messages(&again.collect(WAIT).await.unwrap());
    assert!(
        replayed
            .iter()
            .all(|m| m["id"] == 1 || m["method"] == "notifications/progress")
    );
}

async fn cancellation_stops_the_tool_and_no_response_follows(kind: Kind) {
    let d = start(kind, &[]).await;
    let client = session(&d, "2025-11-25").await;
    let mut stream = client
        .call_tool_stream(
            41,
            "long_running_operation",
            json!({"steps": 1000, "step_ms": 20}),
            Some("c"),
        )
        .await
        .unwrap();
    for _ in 0..2 {
        let (_, m) = stream.next_message(WAIT).await.unwrap().unwrap();
        assert_eq!(m["method"], "notifications/progress");
    }
    let r = client
        .post(&json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":41,"reason":"user"}}))
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let rest = messages(&stream.collect(WAIT).await.unwrap());
    assert!(
        rest.iter().all(|m| m.get("id").is_none()),
        "no response to a cancelled request: {rest:?}"
    );
    assert!(
        rest.len() < 100,
        "the tool stopped: {} more progress events",
        rest.len()
    );
    // The cancelled job is finished (its stream ended first, so allow a moment).
    let start = Instant::now();
    while status(&client).await["jobs_in_flight"] != 1 {
        assert!(start.elapsed() < WAIT, "the cancelled job never finished");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn a_new_standalone_stream_takes_over_from_the_old_one(kind: Kind) {
    let d = start(kind, &[]).await;
    let client = session(&d, "2025-11-25").await;
    let mut old = client.open_stream(None).await.unwrap();
    let _priming = old.next(WAIT).await.unwrap();
    let mut new = client.open_stream(None).await.unwrap();
    assert_eq!(
        old.next_message(WAIT).await.unwrap(),
        None,
        "the old stream ends"
    );
    client
        .call_tool(1, "broadcast", json!({"message": "once"}), None)
        .await
        .unwrap();
    let (_, m) = new.next_message(WAIT).await.unwrap().unwrap();
    assert_eq!(m["params"]["data"], "once");
}

async fn a_slow_client_is_cut_off_and_resumes_without_loss(kind: Kind) {
    let d = start(kind, &["--stream-queue-len", "4"]).await;
    let client = session(&d, "2025-11-25").await;
    let mut stream = client.open_stream(None).await.unwrap();
    let priming = stream.next(WAIT).await.unwrap().unwrap();
    // The client reads nothing while 64 broadcasts of 1 MiB pile up: far more than the
    // socket buffers (a few MiB each way on loopback) and the bounded queue hold.
    const N: usize = 64;
    let pad = "x".repeat(1024 * 1024 - 64);
    for i in 0..N {
        client
            .call_tool(
                i as i64,
                "broadcast",
                json!({"message": format!("{i}:{pad}")}),
                None,
            )
            .await
            .unwrap();
    }
    let mut got = Vec::new();
    let mut last_id = priming.id.clone();
    let mut cut_off = false;
    while got.len() < N {
        let Some(event) = stream.next(WAIT).await.unwrap() else {
            // Closed without a hint: the gateway waits only briefly for room to send its
            // `retry` hint to a client this slow (on a loaded machine it may not get it).
            cut_off = true;
            break;
        };
        if event.data.is_empty() {
            assert!(event.retry.is_some(), "the server says when to come back");
            cut_off = true;
            continue;
        }
        got.push(
            event.json()["params"]["data"]
                .as_str()
                .unwrap()
                .split(':')
                .next()
                .unwrap()
                .to_owned(),
        );
        last_id = event.id;
    }
    assert!(
        cut_off,
        "the gateway must close a lagging stream instead of buffering (got {} of {N})",
        got.len()
    );
    let mut resumed = client.open_stream(Some(&last_id)).await.unwrap();
    while got.len() < N {
        let (_, m) = resumed.next_message(WAIT).await.unwrap().unwrap();
        got.push(
            m["params"]["data"]
                .as_str()
                .unwrap()
                .split(':')
                .next()
                .unwrap()
                .to_owned(),
        );
    }
    let expected: Vec<String> = (0..N).map(|i| i.to_string()).collect();
    assert_eq!(got, expected);
}

#[tokio::test]
async fn sigterm_drains_streams_and_exits_cleanly() {
    let mut gw = Gateway::start(&["--drain-timeout-secs", "5"]).unwrap();
    let mut client = RawClient::new(&gw.url());
    client.initialize("2025-11-25").await.unwrap();
    let standalone = client.open_stream(None).await.unwrap();
    let mut call = client
        .call_tool_stream(
            1,
            "long_running_operation",
            json!({"steps": 10, "step_ms": 50}),
            Some("d"),
        )
        .await
        .unwrap();
    let (_, first) = call.next_message(WAIT).await.unwrap().unwrap();
    assert_eq!(first["method"], "notifications/progress");
    gw.terminate().unwrap();

    // The standalone stream closes at once, telling the client when to reconnect.
    let events = standalone.collect(WAIT).await.unwrap();
    let last = events.last().unwrap();
    assert!(last.data.is_empty() && last.retry.is_some(), "{events:?}");
    // The running call finishes on its stream.
    let rest = messages(&call.collect(WAIT).await.unwrap());
    assert_eq!(
        rest.last().unwrap()["result"]["content"][0]["text"],
        "operation completed: 10 steps"
    );
    assert_eq!(gw.wait_exit(Duration::from_secs(10)).unwrap(), Some(0));
}

async fn sse_responses_carry_proxy_friendly_headers(kind: Kind) {
    let d = start(kind, &[]).await;
    let client = session(&d, "2025-11-25").await;
    let r = client.get(None).await.unwrap();
    assert_eq!(content_type(&r), "text/event-stream");
    assert_eq!(r.headers()["x-accel-buffering"], "no");
    assert!(
        r.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("no-cache")
    );
    drop(SseReader::new(r));
}

/// Behind an HTTP/2 front (h2c, prior knowledge) a session's POSTs, its standalone stream
/// and its request streams are streams of one connection; they work as over HTTP/1.1.
async fn http2_streams_share_one_connection(kind: Kind) {
    let d = start(kind, &[]).await;
    let mut client = RawClient::rotating(&d.urls()).over_http2();
    client.initialize("2025-11-25").await.unwrap();
    let listener = client.clone();
    let response = listener.get(None).await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    let mut standalone = SseReader::new(response);
    let priming = standalone.next(WAIT).await.unwrap().unwrap();
    assert!(priming.id.starts_with("s."), "{priming:?}");

    // A call's progress streams back while the standalone stream stays open beside it.
    let events = client
        .call_tool(
            1,
            "long_running_operation",
            json!({"steps": 5, "step_ms": 0}),
            Some("h2"),
        )
        .await
        .unwrap();
    assert_eq!(
        progress_values(&messages(&events)),
        vec![1.0, 2.0, 3.0, 4.0, 5.0]
    );
    client
        .call_tool(2, "broadcast", json!({"message": "over h2"}), None)
        .await
        .unwrap();
    let (_, m) = standalone.next_message(WAIT).await.unwrap().unwrap();
    assert_eq!(m["params"]["data"], "over h2");
    assert_eq!(client.delete().await.unwrap(), 204);

    // HTTP/2 names the host in `:authority`, not `Host`: the DNS-rebinding check reads it.
    let url = reqwest::Url::parse(&d.urls()[0]).unwrap();
    let port = url.port().unwrap();
    let rebinding = reqwest::Client::builder()
        .http2_prior_knowledge()
        .resolve("evil.example", ([127, 0, 0, 1], port).into())
        .build()
        .unwrap();
    let refused = rebinding
        .post(format!("http://evil.example:{port}/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.version(), reqwest::Version::HTTP_2);
    assert_eq!(refused.status(), 403);
}

/// Runs each named test against a standalone gateway and against a Redis cluster.
macro_rules! in_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use super::*;
            #[tokio::test]
            async fn standalone() {
                super::$name(Kind::Standalone).await
            }
            #[tokio::test]
            async fn redis_cluster() {
                super::$name(Kind::Cluster).await
            }
        }
    )*};
}

in_both!(
    progress_arrives_in_order_before_the_result_and_only_with_a_token,
    older_revisions_get_no_priming_event,
    log_level_filters_notifications,
    a_json_only_client_gets_a_plain_json_result,
    the_standalone_stream_carries_broadcasts_and_background_tasks,
    messages_sent_while_no_stream_is_open_wait_for_the_next_one,
    a_dropped_standalone_stream_resumes_without_loss_or_duplicates,
    a_dropped_request_stream_resumes_with_the_rest_and_the_result,
    cancellation_stops_the_tool_and_no_response_follows,
    a_new_standalone_stream_takes_over_from_the_old_one,
    a_slow_client_is_cut_off_and_resumes_without_loss,
    sse_responses_carry_proxy_friendly_headers,
    http2_streams_share_one_connection,
);
