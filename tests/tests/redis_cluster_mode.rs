//! Redis Cluster as the bus: a real cluster (three masters, three replicas) started here,
//! two gateways and two workers in `--redis-mode cluster`, one session spread over them
//! (calls on one gateway, the stream on the other), resumption, cancellation, broadcasts,
//! a 2026-07-28 call, proof that sessions and jobs really are spread over the shards, and
//! the loss of a shard's master under calls.

use e2e_tests::client::messages;
use e2e_tests::wait_for_workers;
use e2e_tests::{ClusterSetup, Gateway, RawClient, StatelessClient, WorkerProcess};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);
const CLUSTER: [&str; 2] = ["--redis-mode", "cluster"];

fn gateway(urls: &str) -> Gateway {
    let mut args = vec!["--redis-url", urls, "--redis-prefix", "mcpgw"];
    args.extend_from_slice(&CLUSTER);
    Gateway::start(&args).expect("gateway")
}

fn worker(urls: &str) -> WorkerProcess {
    WorkerProcess::start(urls, &CLUSTER).expect("worker")
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_spread_over_gateways_workers_and_shards() {
    let setup = ClusterSetup::start().expect("cluster");
    let urls = setup.urls();
    let g0 = gateway(&urls);
    let g1 = gateway(&urls);
    let _w0 = worker(&urls);
    let _w1 = worker(&urls);
    let mut a0 = RawClient::new(&g0.url());
    a0.initialize("2025-11-25").await.unwrap();
    let a1 = via(&a0, &g1);
    let status = wait_for_workers(&a1, 2).await.unwrap();
    assert_eq!(status["gateways"], 2);

    // The standalone stream on g1 while calls go to g0: progress and logging cross.
    let mut standalone = a1.open_stream(None).await.unwrap();
    let events = a0
        .call_tool(
            1,
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
    a1.request(2, "logging/setLevel", json!({"level": "debug"}))
        .await
        .unwrap();
    let events = a0
        .call_tool(3, "send_notification", json!({"message": "hello"}), None)
        .await
        .unwrap();
    let msgs = messages(&events);
    assert!(
        msgs.iter()
            .any(|m| m["method"] == "notifications/message" && m["params"]["data"] == "hello"),
        "{msgs:?}"
    );

    // A broadcast through g1 reaches this session's stream on g1 and another session's on g0.
    let mut b0 = RawClient::new(&g0.url());
    b0.initialize("2025-06-18").await.unwrap();
    let mut other_stream = b0.open_stream(None).await.unwrap();
    a1.call_tool(4, "broadcast", json!({"message": "everyone"}), None)
        .await
        .unwrap();
    let (_, m) = standalone.next_log(WAIT).await.unwrap().unwrap();
    assert_eq!(m["params"]["data"], "everyone");
    let (_, m) = other_stream.next_log(WAIT).await.unwrap().unwrap();
    assert_eq!(m["params"]["data"], "everyone");

    // A background task started through g0 ticks on the stream g1 holds.
    a0.request(5, "tools/call", json!({"name": "start_background_task", "arguments": {"name": "x", "count": 3, "interval_ms": 10}}))
        .await
        .unwrap();
    for tick in 1..=3 {
        let (_, m) = standalone.next_log(WAIT).await.unwrap().unwrap();
        assert_eq!(m["params"]["data"]["tick"], tick);
    }

    // A 2026-07-28 call (no session) through either gateway, with its progress.
    let stateless = StatelessClient::rotating(&[g0.url(), g1.url()]);
    for round in 0..2 {
        let (response, notes) = stateless
            .call(
                10 + round,
                "tools/call",
                json!({"name": "long_running_operation", "arguments": {"steps": 3, "step_ms": 0}}),
                json!({"progressToken": format!("s{round}")}),
            )
            .await
            .unwrap();
        assert_eq!(response["result"]["resultType"], "complete", "{response}");
        assert_eq!(progress_of(&notes), vec![1.0, 2.0, 3.0]);
    }

    // Sharding is real: the session hashes of a few sessions live on different masters.
    let mut ids = vec![a0.session.clone().unwrap()];
    for _ in 0..7 {
        let mut c = RawClient::new(&g1.url());
        c.initialize("2025-11-25").await.unwrap();
        ids.push(c.session.clone().unwrap());
    }
    let held = setup.keys_by_master("mcpgw:{*}:session");
    let mut shards = HashSet::new();
    for id in &ids {
        let key = format!("mcpgw:{{{id}}}:session");
        let (master, _) = held
            .iter()
            .find(|(_, keys)| keys.contains(&key))
            .unwrap_or_else(|| panic!("no master holds {key}: {held:?}"));
        assert_eq!(*master, setup.master_of(&key).unwrap());
        shards.insert(*master);
    }
    assert!(shards.len() >= 2, "8 sessions all on one shard: {held:?}");
    eprintln!(
        "sessions per master: {:?}",
        held.iter().map(|(m, k)| (*m, k.len())).collect::<Vec<_>>()
    );

    // Jobs spread too: the job streams that carried calls live on more than one master.
    let mut job_shards = HashSet::new();
    let mut jobs_added = 0;
    for stream in 0..8 {
        let key = format!("mcpgw:{{jobs:{stream}}}:stream");
        let master = setup.master_of(&key).unwrap();
        let Ok(info) = setup.nodes[master].command(&["XINFO", "STREAM", &key]) else {
            continue; // never used
        };
        let added = info
            .items()
            .chunks(2)
            .find(|kv| kv[0].text().as_deref() == Some("entries-added"))
            .and_then(|kv| match kv.get(1) {
                Some(e2e_tests::redis::Reply::Int(n)) => Some(*n),
                _ => None,
            })
            .unwrap_or(0);
        if added > 0 {
            job_shards.insert(master);
            jobs_added += added;
        }
    }
    eprintln!(
        "jobs: {jobs_added} over the job streams of {} masters",
        job_shards.len()
    );
    assert!(
        jobs_added >= 6,
        "the calls above went through the job streams"
    );
    assert!(job_shards.len() >= 2, "jobs on one shard only");

    // DELETE through g0 ends the session everywhere: g1's stream closes, g1 answers 404.
    assert_eq!(a0.delete().await.unwrap(), 204);
    assert_eq!(standalone.next_log(WAIT).await.unwrap(), None);
    let r = a1
        .post(&json!({"jsonrpc":"2.0","id":8,"method":"ping"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_resume_on_another_gateway_and_cancellation_crosses_them() {
    let setup = ClusterSetup::start().expect("cluster");
    let urls = setup.urls();
    let g0 = gateway(&urls);
    let g1 = gateway(&urls);
    let _w0 = worker(&urls);
    let _w1 = worker(&urls);
    let mut a0 = RawClient::new(&g0.url());
    a0.initialize("2025-11-25").await.unwrap();
    let a1 = via(&a0, &g1);
    wait_for_workers(&a0, 2).await.unwrap();

    // A POST stream on g0 dropped mid-call resumes on g1 with Last-Event-ID.
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

    // A cancellation posted to g1 stops the call streaming from g0.
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

/// No call may take longer than this: below the 15 s job-claim timeout, above the
/// gateway's job timeout (set to 8 s here) that answers a job lost with the old master.
const CALL_BOUND: Duration = Duration::from_secs(12);

#[derive(Debug, Default)]
struct Outcomes {
    ok: u32,
    errors: Vec<String>,
    hung: u32,
    slowest: Duration,
}

/// The master of the shard holding a session is SIGKILLed while four clients call tools in
/// that session: every call completes or gets an error within a bound, the cluster
/// promotes the replica, and calls in the same session (whose channel must be subscribed
/// again on the new master) succeed again through the same gateway and worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_survive_the_loss_of_a_shards_master() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Instant;

    let mut setup = ClusterSetup::start().expect("cluster");
    let urls = setup.urls();
    let mut args = vec!["--redis-url", urls.as_str(), "--job-timeout-secs", "8"];
    args.extend_from_slice(&CLUSTER);
    let gateway = Gateway::start(&args).expect("gateway");
    let worker = worker(&urls);
    let mut client = RawClient::new(&gateway.url());
    client.initialize("2025-11-25").await.unwrap();
    wait_for_workers(&client, 1).await.unwrap();
    let session_key = format!("mcpgw:{{{}}}:session", client.session.clone().unwrap());
    let victim = setup.master_of(&session_key).unwrap();

    let client = Arc::new(client);
    let stop = Arc::new(AtomicBool::new(false));
    let outcomes = Arc::new(std::sync::Mutex::new(Outcomes::default()));
    let mut callers = Vec::new();
    for caller in 0..4i64 {
        let (client, stop, outcomes) = (client.clone(), stop.clone(), outcomes.clone());
        callers.push(tokio::spawn(async move {
            let mut id = caller * 1_000_000;
            while !stop.load(Ordering::Relaxed) {
                id += 1;
                let started = Instant::now();
                let call = client.call_tool(
                    id,
                    "long_running_operation",
                    json!({"steps": 3, "step_ms": 100}),
                    Some("p"),
                );
                let result = tokio::time::timeout(CALL_BOUND, call).await;
                let took = started.elapsed();
                {
                    let mut o = outcomes.lock().unwrap();
                    o.slowest = o.slowest.max(took);
                    match result {
                        Err(_) => o.hung += 1,
                        Ok(Err(e)) => o.errors.push(format!("{e:#}")),
                        Ok(Ok(events)) => {
                            let msgs = messages(&events);
                            match msgs.iter().find(|m| m["id"] == id) {
                                Some(m) if m.get("result").is_some() => o.ok += 1,
                                Some(m) => o.errors.push(m["error"].to_string()),
                                None => o.errors.push("the stream ended without a response".into()),
                            }
                        }
                    }
                }
                if took < Duration::from_millis(50) {
                    // An immediate refusal (the cluster is down): do not spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }));
    }
    let before = Instant::now();
    while outcomes.lock().unwrap().ok < 8 {
        assert!(
            before.elapsed() < Duration::from_secs(20),
            "no calls before the failover"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ok_before = outcomes.lock().unwrap().ok;
    let killed = Instant::now();
    setup.nodes[victim].kill();
    let promoted = loop {
        if setup.masters().len() == 3 && setup.ready_without(victim) {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "the cluster did not promote a replica"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let recovered = loop {
        let ok = outcomes.lock().unwrap().ok;
        if ok >= ok_before + 8 && killed.elapsed() > promoted {
            break killed.elapsed();
        }
        if killed.elapsed() > Duration::from_secs(40) {
            let o = outcomes.lock().unwrap();
            panic!(
                "calls did not succeed again after the failover: {} ok, {} errors (last: {:?}), {} hung\ngateway log:\n{}\nworker log:\n{}",
                o.ok,
                o.errors.len(),
                o.errors.last(),
                o.hung,
                gateway
                    .log()
                    .iter()
                    .filter(|l| !l.contains("tower_http"))
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("\n"),
                worker.log().join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    stop.store(true, Ordering::Relaxed);
    for caller in callers {
        caller.await.unwrap();
    }
    {
        let o = outcomes.lock().unwrap();
        eprintln!(
            "cluster failover: replica promoted after {promoted:?}, calls in the session succeed again {recovered:?} after the kill; \
             {} calls ok, {} errors, {} without an answer within {CALL_BOUND:?}, slowest {:?}; errors: {:?}",
            o.ok,
            o.errors.len(),
            o.hung,
            o.slowest,
            o.errors.iter().fold(
                std::collections::BTreeMap::<&str, u32>::new(),
                |mut m, e| {
                    *m.entry(e.as_str()).or_default() += 1;
                    m
                }
            )
        );
        assert_eq!(o.hung, 0, "calls hung through the failover: {o:?}");
    }
    // The gateway's channels were subscribed again (one SSUBSCRIBE each, on the new
    // master), not merely caught up from the logs by the periodic check.
    let resubscribed = |log: Vec<String>| {
        log.iter()
            .any(|l| l.contains("subscribed again after a cluster node was lost"))
    };
    assert!(
        resubscribed(gateway.log()),
        "the gateway did not subscribe its channels again"
    );
    // A call now streams its progress live: it takes about its own 3 x 100 ms, not the
    // heartbeat period a log check would add.
    let started = Instant::now();
    let events = client
        .call_tool(
            9_999_999,
            "long_running_operation",
            json!({"steps": 3, "step_ms": 100}),
            Some("after"),
        )
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(progress_of(&messages(&events)), vec![1.0, 2.0, 3.0]);
    assert!(
        took < Duration::from_secs(3),
        "a call after the failover took {took:?}"
    );
}
