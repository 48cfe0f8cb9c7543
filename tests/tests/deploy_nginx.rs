//! The compose stack's load balancer, for real: nginx running `deploy/nginx/mcp.conf`
//! (included verbatim, exactly as the compose stack includes it) in front of two gateways
//! and two workers on a real redis-server. One session is driven through it with plain
//! round robin and no session affinity: initialize, tools/list, a tool call with progress
//! over SSE, the standalone GET stream receiving a broadcast, and the gateway holding a
//! stream killed mid-call, after which the client resumes through nginx and gets every
//! missed event exactly once.
//!
//! Needs the Debian package `nginx` (`.ci/run` installs it).

use e2e_tests::client::messages;
use e2e_tests::nginx::Nginx;
use e2e_tests::{
    Gateway, RawClient, RedisServer, SseEvent, SseReader, WorkerProcess, wait_for_workers,
};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);
/// Steps of the calls that outlive a gateway: long enough (3 s) that neither has finished
/// when the gateway dies, even on a loaded machine.
const LONG_STEPS: u32 = 30;

/// `host:port` of a gateway.
fn addr(gw: &Gateway) -> String {
    gw.base.trim_start_matches("http://").to_owned()
}

fn progress_of(msgs: &[Value]) -> Vec<f64> {
    msgs.iter()
        .filter(|m| m["method"] == "notifications/progress")
        .filter_map(|m| m["params"]["progress"].as_f64())
        .collect()
}

/// What a client saw of one call's stream: its messages and the last event id.
#[derive(Default)]
struct Seen {
    messages: Vec<Value>,
    last_id: String,
}

impl Seen {
    fn take(&mut self, e: &SseEvent) {
        if !e.id.is_empty() {
            self.last_id = e.id.clone();
        }
        if !e.data.is_empty() {
            self.messages.push(e.json());
        }
    }

    fn finished(&self) -> bool {
        self.messages.iter().any(|m| m.get("id").is_some())
    }
}

/// Reads `stream` until it ends (`true`: the call's response arrived) or breaks (`false`:
/// the connection was cut, as when its gateway dies).
async fn read_on(stream: &mut SseReader, seen: &mut Seen) -> bool {
    loop {
        match stream.next(WAIT).await {
            Ok(Some(e)) => seen.take(&e),
            Ok(None) | Err(_) => return seen.finished(),
        }
    }
}

#[tokio::test]
async fn a_session_through_nginx_round_robin_survives_a_killed_gateway() {
    let redis = RedisServer::start().unwrap();
    let url = redis.url();
    let mut g0 = Gateway::start(&["--redis-url", &url]).unwrap();
    let g1 = Gateway::start(&["--redis-url", &url]).unwrap();
    let _w0 = WorkerProcess::start(&url, &[]).unwrap();
    let _w1 = WorkerProcess::start(&url, &[]).unwrap();
    let (a0, a1) = (addr(&g0), addr(&g1));
    let nginx = Nginx::start(&[&a0, &a1]).unwrap();

    // initialize through nginx: the Mcp-Session-Id header comes back through it.
    let mut client = RawClient::new(&nginx.url());
    let init = client.initialize("2025-11-25").await.unwrap();
    assert_eq!(init["protocolVersion"], "2025-11-25");
    let session = client.session.clone().expect("a session id through nginx");
    wait_for_workers(&client, 2).await.unwrap();

    // tools/list: the workers' registry, whichever gateway answers.
    let v = client.request(1, "tools/list", json!({})).await.unwrap();
    let names: BTreeSet<&str> = v["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    for tool in ["long_running_operation", "broadcast", "send_notification"] {
        assert!(names.contains(tool), "{tool} in {names:?}");
    }

    // A tool call with progress: every event arrives through nginx, unbuffered, in order.
    let events = client
        .call_tool(
            2,
            "long_running_operation",
            json!({"steps": 5, "step_ms": 20}),
            Some("p"),
        )
        .await
        .unwrap();
    let msgs = messages(&events);
    assert_eq!(progress_of(&msgs), vec![1.0, 2.0, 3.0, 4.0, 5.0]);
    assert_eq!(
        msgs.last().unwrap()["result"]["content"][0]["text"],
        "operation completed: 5 steps"
    );

    // The standalone GET stream through nginx receives a broadcast sent through nginx.
    let mut standalone = client.open_stream(None).await.unwrap();
    client
        .call_tool(3, "broadcast", json!({"message": "through nginx"}), None)
        .await
        .unwrap();
    let (first_broadcast, m) = standalone.next_log(WAIT).await.unwrap().unwrap();
    assert_eq!(m["params"]["data"], "through nginx");

    // No affinity: the one session's requests went to both gateways.
    let used: BTreeSet<String> = nginx
        .access_log()
        .into_iter()
        .filter(|(_, _, _, s)| s == &session)
        .map(|(_, _, upstream, _)| upstream)
        .collect();
    assert!(
        used.contains(&a0) && used.contains(&a1),
        "round robin spread the session over both gateways: {used:?}"
    );

    // Two long calls back to back: round robin puts one on each gateway. Then gateway 0
    // dies (SIGKILL) mid-call.
    let mut calls = Vec::new();
    for id in [10, 11] {
        let stream = client
            .call_tool_stream(
                id,
                "long_running_operation",
                json!({"steps": LONG_STEPS, "step_ms": 100}),
                Some(&format!("k{id}")),
            )
            .await
            .unwrap();
        calls.push((id, stream, Seen::default()));
    }
    for (_, stream, seen) in &mut calls {
        while progress_of(&seen.messages).len() < 3 {
            let e = stream.next(WAIT).await.unwrap().expect("progress");
            seen.take(&e);
        }
    }
    g0.kill();

    // The stream on the live gateway runs to its end; the one on the dead gateway breaks,
    // and the client resumes it with Last-Event-ID through nginx, which fails over to the
    // live gateway (connection refused → proxy_next_upstream).
    let mut cut = 0;
    for (id, mut stream, mut seen) in calls {
        if !read_on(&mut stream, &mut seen).await {
            cut += 1;
            drop(stream);
            let resumed = client.open_stream(Some(&seen.last_id)).await.unwrap();
            for e in resumed.collect(WAIT).await.unwrap() {
                seen.take(&e);
            }
        }
        assert_eq!(
            progress_of(&seen.messages),
            (1..=LONG_STEPS).map(f64::from).collect::<Vec<_>>(),
            "call {id}: every progress event exactly once"
        );
        let answers: Vec<&Value> = seen
            .messages
            .iter()
            .filter(|m| m.get("id").is_some())
            .collect();
        assert_eq!(answers.len(), 1, "call {id}: one response");
        assert_eq!(answers[0]["id"], id);
        assert_eq!(
            answers[0]["result"]["content"][0]["text"],
            format!("operation completed: {LONG_STEPS} steps")
        );
    }
    assert!(
        cut >= 1,
        "one of the two calls streamed from the killed gateway; nginx log:\n{:?}",
        nginx.access_log()
    );

    // The standalone stream resumes too: a broadcast sent after the kill arrives once.
    drop(standalone);
    client
        .call_tool(12, "broadcast", json!({"message": "after the kill"}), None)
        .await
        .unwrap();
    let mut standalone = client.open_stream(Some(&first_broadcast.id)).await.unwrap();
    let (_, m) = standalone.next_log(WAIT).await.unwrap().unwrap();
    assert_eq!(m["params"]["data"], "after the kill");

    // New requests keep working with one gateway gone, and the session ends through nginx.
    for id in 13..17 {
        let v = client.request(id, "ping", json!({})).await.unwrap();
        assert_eq!(v["id"], id, "{v}");
    }
    assert_eq!(client.delete().await.unwrap(), 204);
    let err = nginx.error_log();
    assert!(
        !err.contains("[emerg]") && !err.contains("[alert]"),
        "nginx error log:\n{err}"
    );
}
