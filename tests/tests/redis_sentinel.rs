//! Sentinel failover under load: a real master, replica and three sentinels; a gateway and
//! a worker in `--redis-mode sentinel`; the master SIGKILLed while calls and a standalone
//! stream run. Every call must complete or get an error within a bound (no call waits out
//! the job-claim timeout), the gateway and worker must follow the new master without a
//! restart, and the test reports what the failover lost.

use e2e_tests::client::messages;
use e2e_tests::{Gateway, RawClient, SentinelSetup, WorkerProcess, wait_for_workers};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_survive_a_sentinel_failover() {
    let mut setup = SentinelSetup::start().expect("sentinel set-up");
    let urls = setup.urls();
    let sentinel = ["--redis-mode", "sentinel"];
    let mut gateway_args = vec!["--redis-url", urls.as_str(), "--job-timeout-secs", "8"];
    gateway_args.extend_from_slice(&sentinel);
    let gateway = Gateway::start(&gateway_args).expect("gateway");
    let worker = WorkerProcess::start(&urls, &sentinel).expect("worker");
    let mut client = RawClient::new(&gateway.url());
    client.initialize("2025-11-25").await.unwrap();
    wait_for_workers(&client, 1).await.unwrap();
    let old_master = setup.master_port().unwrap();
    assert_eq!(old_master, setup.master.port);

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
                    // An immediate refusal (Redis switching): do not spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }));
    }
    // Let calls run on the first master, then kill it.
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
    setup.master.kill();
    let promoted = loop {
        if setup.master_port().is_ok_and(|p| p == setup.replica.port) {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(20),
            "the sentinels did not fail over"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Calls must succeed again on the new master, through the same processes.
    let recovered = loop {
        let ok = outcomes.lock().unwrap().ok;
        if ok >= ok_before + 8 && killed.elapsed() > promoted {
            break killed.elapsed();
        }
        if killed.elapsed() > Duration::from_secs(30) {
            let log = gateway.log();
            let wlog = worker.log();
            let o = outcomes.lock().unwrap();
            panic!(
                "calls did not succeed again after the failover: {} ok, {} errors (last: {:?}), {} hung\ngateway log:\n{}\nworker log:\n{}",
                o.ok,
                o.errors.len(),
                o.errors.last(),
                o.hung,
                log.iter()
                    .filter(|l| !l.contains("tower_http"))
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("\n"),
                wlog.join("\n")
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
            "sentinel failover: promoted after {promoted:?}, calls succeed again {recovered:?} after the kill; \
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
    // A session created after the failover works end to end (the bus writes to the new
    // master, the pub/sub connection delivers from it).
    let mut fresh = RawClient::new(&gateway.url());
    fresh.initialize("2025-11-25").await.unwrap();
    let events = fresh
        .call_tool(
            1,
            "long_running_operation",
            json!({"steps": 2, "step_ms": 0}),
            Some("q"),
        )
        .await
        .unwrap();
    assert!(
        messages(&events)
            .iter()
            .any(|m| m["id"] == 1 && m.get("result").is_some())
    );
}
