//! One test suite for every [`Bus`] implementation: the contract in `contract.rs`, checked.
//!
//! An implementation's tests call [`run_all`] with a factory that builds a fresh, empty bus
//! honouring the given [`Limits`]. The checks that need a bus with a short idle TTL
//! ([`SHORT_IDLE_TTL`]) are public functions of their own, each run by its own test per
//! implementation: [`idle_expiry_reaches_subscribers_and_workers`] and
//! [`principal_counts_follow_live_sessions`].

use crate::contract::Bus;
use crate::error::BusError;
use crate::ids::{SessionId, StreamId, WorkerId};
use crate::message::{
    Control, EventBody, Job, Live, SessionRecord, StandaloneCursor, StreamTarget, WorkerInfo,
};
use mcp_protocol::{LogLevel, RequestId, Tool};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// The sizes a factory must configure.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Events kept per session log.
    pub session_log_len: usize,
    /// Live events a subscriber may fall behind.
    pub live_queue_len: usize,
}

const WAIT: Duration = Duration::from_secs(5);

/// The idle TTL a bus given to the idle-expiry checks must have.
pub const SHORT_IDLE_TTL: Duration = Duration::from_millis(1000);

/// How long after [`SHORT_IDLE_TTL`] an idle expiry may take to be announced (a sweep
/// period or heartbeat of the implementation under test must fit in it).
pub const EXPIRY_GRACE: Duration = Duration::from_secs(4);

/// A session record for tests.
pub fn record() -> SessionRecord {
    SessionRecord {
        id: SessionId::generate(),
        protocol_version: "2025-11-25".into(),
        client_capabilities: json!({}),
        client_info: json!({"name": "conformance"}),
        log_level: None,
        principal: String::new(),
        created_ms: crate::now_ms(),
        standalone_cursor: StandaloneCursor::default(),
        ephemeral: false,
    }
}

/// A `tools/call` job of `session` with request id `request`, for tests.
pub fn job(session: &SessionId, request: i64) -> Job {
    Job {
        session: session.clone(),
        stream: StreamId::generate(),
        request_id: RequestId::Number(request),
        method: "tools/call".into(),
        params: json!({"name": "x"}),
        progress_token: None,
        protocol_version: "2025-11-25".into(),
        client_capabilities: json!({}),
        log_level: None,
        deadline_ms: crate::now_ms() + 10_000,
        traceparent: None,
        attempt: 0,
        streaming: true,
        session_stream: true,
        delivery_id: None,
        principal: String::new(),
    }
}

fn message(n: u64) -> EventBody {
    EventBody::Message(json!({"jsonrpc":"2.0","method":"notifications/message","params":{"n":n}}))
}

/// Runs every check against fresh buses from `make`.
pub async fn run_all<F>(make: F)
where
    F: Fn(Limits) -> Arc<dyn Bus>,
{
    let roomy = Limits {
        session_log_len: 1000,
        live_queue_len: 1000,
    };
    sessions_round_trip(make(roomy)).await;
    publish_is_dense_ordered_and_replayable(make(roomy)).await;
    subscribe_then_replay_sees_each_event_once(make(roomy)).await;
    trimmed_logs_say_so(make(Limits {
        session_log_len: 4,
        ..roomy
    }))
    .await;
    lagging_subscribers_are_told(make(Limits {
        live_queue_len: 4,
        ..roomy
    }))
    .await;
    broadcasts_are_logged_and_live(make(roomy)).await;
    ending_a_session_reaches_subscribers_and_workers(make(roomy)).await;
    jobs_reach_one_worker_and_are_counted(make(roomy)).await;
    registry_unions_tools_and_announces_changes(make(roomy)).await;
    a_workers_catalog_changes_at_run_time(make(roomy)).await;
    resource_updates_reach_subscribed_sessions_only(make(roomy)).await;
    rate_budgets_admit_a_burst_then_the_rate(make(roomy)).await;
    running_call_slots_are_limited_released_and_leased(make(roomy)).await;
    the_audit_log_keeps_order_and_is_bounded(make(roomy)).await;
    exchanged_values_name_one_writer(make(roomy)).await;
}

async fn sessions_round_trip(bus: Arc<dyn Bus>) {
    let r = record();
    bus.create_session(r.clone()).await.unwrap();
    assert_eq!(bus.session(&r.id).await.unwrap(), r);
    bus.set_log_level(&r.id, LogLevel::Warning).await.unwrap();
    assert_eq!(
        bus.session(&r.id).await.unwrap().log_level,
        Some(LogLevel::Warning)
    );
    let forward = StandaloneCursor {
        session_seq: 5,
        broadcast_seq: 2,
    };
    bus.advance_standalone_cursor(&r.id, forward).await.unwrap();
    bus.advance_standalone_cursor(&r.id, StandaloneCursor::default())
        .await
        .unwrap();
    assert_eq!(
        bus.session(&r.id).await.unwrap().standalone_cursor,
        forward,
        "the standalone cursor never moves back"
    );
    // Sessions are counted per principal, ephemeral ones (listen streams, tasks)
    // included, and an ended one no longer counts.
    let principal = format!("p-{}", SessionId::generate());
    let mut mine = Vec::new();
    for i in 0..3 {
        let mut r = record();
        r.principal = principal.clone();
        r.ephemeral = i == 2;
        bus.create_session(r.clone()).await.unwrap();
        mine.push(r.id);
    }
    assert_eq!(bus.count_sessions(&principal).await.unwrap(), 3);
    bus.end_session(&mine[0]).await.unwrap();
    assert_eq!(bus.count_sessions(&principal).await.unwrap(), 2);
    assert_eq!(bus.count_sessions("nobody").await.unwrap(), 0);

    let unknown = SessionId::generate();
    assert!(matches!(
        bus.session(&unknown).await,
        Err(BusError::SessionNotFound)
    ));
    assert!(matches!(
        bus.publish(&unknown, StreamTarget::Standalone, message(0))
            .await,
        Err(BusError::SessionNotFound)
    ));
}

async fn publish_is_dense_ordered_and_replayable(bus: Arc<dyn Bus>) {
    let r = record();
    bus.create_session(r.clone()).await.unwrap();
    let stream = StreamTarget::Request(StreamId::generate());
    for n in 1..=10 {
        let seq = bus.publish(&r.id, stream, message(n)).await.unwrap();
        assert_eq!(seq, n, "sequence numbers are dense and start at 1");
    }
    let replay = bus.replay(&r.id, 3, 10).await.unwrap();
    assert!(replay.complete);
    let seqs: Vec<u64> = replay.events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (4..=10).collect::<Vec<_>>());
    assert!(replay.events.iter().all(|e| e.stream == stream));
    assert!(bus.replay(&r.id, 10, 10).await.unwrap().events.is_empty());

    // A batch is the same as that many publishes: dense, in order, logged and live.
    let mut sub = bus.subscribe(&r.id).await.unwrap();
    assert_eq!(bus.publish_batch(&r.id, stream, vec![]).await.unwrap(), 10);
    assert_eq!(
        bus.publish_batch(&r.id, stream, vec![message(11)])
            .await
            .unwrap(),
        11
    );
    let batch = (12..=15).map(message).collect();
    assert_eq!(bus.publish_batch(&r.id, stream, batch).await.unwrap(), 15);
    for n in 11..=15 {
        match tokio::time::timeout(WAIT, sub.receiver.recv()).await {
            Ok(Ok(Live::Event(e))) => {
                assert_eq!(e.seq, n);
                assert_eq!(e.body, message(n));
            }
            other => panic!("expected event {n} live, got {other:?}"),
        }
    }
    let replay = bus.replay(&r.id, 10, 15).await.unwrap();
    let bodies: Vec<EventBody> = replay.events.iter().map(|e| e.body.clone()).collect();
    assert_eq!(bodies, (11..=15).map(message).collect::<Vec<_>>());
    let gone = SessionId::generate();
    assert!(matches!(
        bus.publish_batch(&gone, stream, vec![message(1), message(2)])
            .await,
        Err(BusError::SessionNotFound)
    ));
}

async fn subscribe_then_replay_sees_each_event_once(bus: Arc<dyn Bus>) {
    let r = record();
    bus.create_session(r.clone()).await.unwrap();
    for n in 1..=3 {
        bus.publish(&r.id, StreamTarget::Standalone, message(n))
            .await
            .unwrap();
    }
    let mut sub = bus.subscribe(&r.id).await.unwrap();
    assert_eq!(sub.head, 3);
    for n in 4..=6 {
        bus.publish(&r.id, StreamTarget::Standalone, message(n))
            .await
            .unwrap();
    }
    let mut seen: Vec<u64> = bus
        .replay(&r.id, 1, sub.head)
        .await
        .unwrap()
        .events
        .iter()
        .map(|e| e.seq)
        .collect();
    while seen.len() < 5 {
        match tokio::time::timeout(WAIT, sub.receiver.recv()).await {
            Ok(Ok(Live::Event(e))) if e.seq > sub.head => seen.push(e.seq),
            Ok(Ok(_)) => {}
            other => panic!("expected a live event, got {other:?}"),
        }
    }
    assert_eq!(seen, vec![2, 3, 4, 5, 6]);
}

async fn trimmed_logs_say_so(bus: Arc<dyn Bus>) {
    let r = record();
    bus.create_session(r.clone()).await.unwrap();
    for n in 1..=10 {
        bus.publish(&r.id, StreamTarget::Standalone, message(n))
            .await
            .unwrap();
    }
    let partial = bus.replay(&r.id, 2, 10).await.unwrap();
    assert!(!partial.complete, "events 3..6 were trimmed");
    let whole = bus.replay(&r.id, 6, 10).await.unwrap();
    assert!(whole.complete);
    assert_eq!(whole.events.len(), 4);
}

async fn lagging_subscribers_are_told(bus: Arc<dyn Bus>) {
    let r = record();
    bus.create_session(r.clone()).await.unwrap();
    let mut sub = bus.subscribe(&r.id).await.unwrap();
    for n in 1..=20 {
        bus.publish(&r.id, StreamTarget::Standalone, message(n))
            .await
            .unwrap();
    }
    let first = tokio::time::timeout(WAIT, sub.receiver.recv())
        .await
        .unwrap();
    assert!(
        matches!(first, Err(RecvError::Lagged(_))),
        "a subscriber 20 events behind a queue of 4 must be told it lagged, got {first:?}"
    );
}

async fn broadcasts_are_logged_and_live(bus: Arc<dyn Bus>) {
    let before = bus.broadcast_head().await.unwrap();
    let mut sub = bus.subscribe_broadcasts().await.unwrap();
    assert_eq!(sub.head, before);
    let seq = bus.broadcast(json!({"n": 1})).await.unwrap();
    assert_eq!(seq, before + 1);
    let live = tokio::time::timeout(WAIT, sub.receiver.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(live.seq, seq);
    let replay = bus.replay_broadcasts(before, seq).await.unwrap();
    assert_eq!(replay.events.len(), 1);
    assert_eq!(replay.events[0].message, json!({"n": 1}));
}

async fn ending_a_session_reaches_subscribers_and_workers(bus: Arc<dyn Bus>) {
    let r = record();
    bus.create_session(r.clone()).await.unwrap();
    let worker = WorkerId::generate();
    let mut control = bus.subscribe_control(&worker).await.unwrap();
    let mut sub = bus.subscribe(&r.id).await.unwrap();
    assert!(bus.end_session(&r.id).await.unwrap());
    assert!(!bus.end_session(&r.id).await.unwrap());
    let notice = tokio::time::timeout(WAIT, sub.receiver.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(notice, Live::SessionEnded);
    let ctl = tokio::time::timeout(WAIT, control.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        ctl,
        Control::SessionEnded {
            session: r.id.clone()
        }
    );
    assert!(matches!(
        bus.session(&r.id).await,
        Err(BusError::SessionNotFound)
    ));
}

async fn jobs_reach_one_worker_and_are_counted(bus: Arc<dyn Bus>) {
    let r = record();
    bus.create_session(r.clone()).await.unwrap();
    let job = job(&r.id, 7);
    bus.enqueue(job.clone()).await.unwrap();
    assert_eq!(bus.stats().await.unwrap().jobs_in_flight, 1);
    let worker = WorkerId::generate();
    let got = tokio::time::timeout(WAIT, bus.next_job(&worker))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        Job {
            delivery_id: None,
            ..got.clone()
        },
        job
    );
    bus.finish_job(&worker, &got).await.unwrap();
    assert_eq!(bus.stats().await.unwrap().jobs_in_flight, 0);
}

async fn registry_unions_tools_and_announces_changes(bus: Arc<dyn Bus>) {
    let tool = |name: &str| Tool {
        name: name.into(),
        title: None,
        description: None,
        input_schema: json!({"type": "object"}),
        annotations: None,
    };
    let mut sub = bus.subscribe_broadcasts().await.unwrap();
    let a = WorkerId::generate();
    let b = WorkerId::generate();
    bus.register_worker(WorkerInfo {
        id: a.clone(),
        tools: vec![tool("zeta"), tool("alpha")],
        resources: vec![],
        resource_templates: vec![],
        prompts: vec![],
        jobs_running: 0,
    })
    .await
    .unwrap();
    bus.register_worker(WorkerInfo {
        id: b.clone(),
        tools: vec![tool("alpha"), tool("mid")],
        resources: vec![],
        resource_templates: vec![],
        prompts: vec![],
        jobs_running: 0,
    })
    .await
    .unwrap();
    let names: Vec<String> = bus
        .tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["alpha", "mid", "zeta"], "a sorted union");
    assert_eq!(bus.stats().await.unwrap().workers, 2);
    let changed = tokio::time::timeout(WAIT, sub.receiver.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        changed.message["method"],
        "notifications/tools/list_changed"
    );
    // A heartbeat with the same tools changes nothing and announces nothing.
    bus.register_worker(WorkerInfo {
        id: b.clone(),
        tools: vec![tool("alpha"), tool("mid")],
        resources: vec![],
        resource_templates: vec![],
        prompts: vec![],
        jobs_running: 3,
    })
    .await
    .unwrap();
    bus.deregister_worker(&b).await.unwrap();
    let names: Vec<String> = bus
        .tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["alpha", "zeta"]);
    let mut changes = 1;
    while let Ok(Ok(e)) =
        tokio::time::timeout(Duration::from_millis(200), sub.receiver.recv()).await
    {
        assert_eq!(e.message["method"], "notifications/tools/list_changed");
        changes += 1;
    }
    assert_eq!(
        changes, 3,
        "register a, register b (adds mid), deregister b (drops mid)"
    );
}

/// A worker's catalog may change while it runs (an upstream MCP server comes up, goes
/// down, or changes its tools): registering again under the same id with other tools
/// replaces its entry, and the change is announced once.
async fn a_workers_catalog_changes_at_run_time(bus: Arc<dyn Bus>) {
    let tool = |name: &str| Tool {
        name: name.into(),
        title: None,
        description: None,
        input_schema: json!({"type": "object"}),
        annotations: None,
    };
    let info = |tools: Vec<Tool>, id: &WorkerId| WorkerInfo {
        id: id.clone(),
        tools,
        resources: vec![],
        resource_templates: vec![],
        prompts: vec![],
        jobs_running: 0,
    };
    let w = WorkerId::generate();
    bus.register_worker(info(vec![tool("own")], &w))
        .await
        .unwrap();
    let mut sub = bus.subscribe_broadcasts().await.unwrap();
    bus.register_worker(info(vec![tool("own"), tool("up_echo")], &w))
        .await
        .unwrap();
    let names = |tools: Vec<Tool>| tools.into_iter().map(|t| t.name).collect::<Vec<_>>();
    assert_eq!(names(bus.tools().await.unwrap()), ["own", "up_echo"]);
    let changed = tokio::time::timeout(WAIT, sub.receiver.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        changed.message["method"],
        "notifications/tools/list_changed"
    );
    bus.register_worker(info(vec![tool("own")], &w))
        .await
        .unwrap();
    assert_eq!(
        names(bus.tools().await.unwrap()),
        ["own"],
        "the entry is replaced"
    );
    let changed = tokio::time::timeout(WAIT, sub.receiver.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        changed.message["method"],
        "notifications/tools/list_changed"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(200), sub.receiver.recv())
            .await
            .is_err(),
        "one announcement per change"
    );
}

async fn resource_updates_reach_subscribed_sessions_only(bus: Arc<dyn Bus>) {
    let watcher = record();
    let other = record();
    bus.create_session(watcher.clone()).await.unwrap();
    bus.create_session(other.clone()).await.unwrap();
    bus.subscribe_resource(&watcher.id, "test://watched")
        .await
        .unwrap();
    bus.subscribe_resource(&other.id, "test://elsewhere")
        .await
        .unwrap();
    assert_eq!(bus.resource_updated("test://watched").await.unwrap(), 1);
    let events = bus.replay(&watcher.id, 0, 10).await.unwrap().events;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].stream, StreamTarget::Standalone);
    let EventBody::Message(m) = &events[0].body else {
        panic!("a message")
    };
    assert_eq!(m["method"], "notifications/resources/updated");
    assert_eq!(m["params"]["uri"], "test://watched");
    assert!(
        bus.replay(&other.id, 0, 10)
            .await
            .unwrap()
            .events
            .is_empty()
    );

    bus.unsubscribe_resource(&watcher.id, "test://watched")
        .await
        .unwrap();
    assert_eq!(bus.resource_updated("test://watched").await.unwrap(), 0);
    // A session that ended is no longer notified.
    bus.end_session(&other.id).await.unwrap();
    assert_eq!(bus.resource_updated("test://elsewhere").await.unwrap(), 0);
    assert!(matches!(
        bus.subscribe_resource(&other.id, "x").await,
        Err(BusError::SessionNotFound)
    ));
}

/// Idle expiry is a session end like `end_session`: every subscriber of the session gets
/// `Live::SessionEnded`, every worker `Control::SessionEnded`, and the session and its log
/// are gone. `bus` must have the idle TTL [`SHORT_IDLE_TTL`].
pub async fn idle_expiry_reaches_subscribers_and_workers(bus: Arc<dyn Bus>) {
    assert_eq!(bus.session_idle_ttl(), SHORT_IDLE_TTL);
    let r = record();
    bus.create_session(r.clone()).await.unwrap();
    bus.publish(&r.id, StreamTarget::Standalone, message(1))
        .await
        .unwrap();
    let worker = WorkerId::generate();
    let mut control = bus.subscribe_control(&worker).await.unwrap();
    let mut sub = bus.subscribe(&r.id).await.unwrap();
    let wait = SHORT_IDLE_TTL + EXPIRY_GRACE;
    let notice = tokio::time::timeout(wait, sub.receiver.recv())
        .await
        .expect("subscribers hear of the idle expiry")
        .unwrap();
    assert_eq!(notice, Live::SessionEnded);
    let ended = Control::SessionEnded {
        session: r.id.clone(),
    };
    tokio::time::timeout(wait, async {
        loop {
            if control.recv().await.unwrap() == ended {
                break;
            }
        }
    })
    .await
    .expect("workers hear of the idle expiry");
    assert!(matches!(
        bus.session(&r.id).await,
        Err(BusError::SessionNotFound)
    ));
    assert!(matches!(
        bus.replay(&r.id, 0, 1).await,
        Err(BusError::SessionNotFound)
    ));
}

/// The per-principal count is the principal's live sessions: ended and expired ones leave
/// it, ephemeral ones count while they live. `bus` must have the idle TTL
/// [`SHORT_IDLE_TTL`].
pub async fn principal_counts_follow_live_sessions(bus: Arc<dyn Bus>) {
    let principal = format!("p{}", rand::random::<u32>());
    let mut ids = Vec::new();
    for i in 0..6 {
        let mut r = record();
        r.principal = principal.clone();
        r.ephemeral = i % 2 == 0;
        bus.create_session(r.clone()).await.unwrap();
        ids.push(r.id);
    }
    assert_eq!(bus.count_sessions(&principal).await.unwrap(), 6);
    for id in &ids[..3] {
        assert!(bus.end_session(id).await.unwrap());
    }
    assert_eq!(bus.count_sessions(&principal).await.unwrap(), 3);
    // The rest expire; kept in use, one outlives the TTL.
    let deadline = tokio::time::Instant::now() + SHORT_IDLE_TTL + EXPIRY_GRACE;
    loop {
        bus.touch_session(&ids[5]).await.unwrap();
        if bus.count_sessions(&principal).await.unwrap() == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "expired sessions still counted"
        );
        tokio::time::sleep(SHORT_IDLE_TTL / 5).await;
    }
    assert!(bus.session(&ids[5]).await.is_ok());
    assert!(bus.end_session(&ids[5]).await.unwrap());
    assert_eq!(bus.count_sessions(&principal).await.unwrap(), 0);
}

async fn rate_budgets_admit_a_burst_then_the_rate(bus: Arc<dyn Bus>) {
    use crate::quota::RateVerdict;
    // One call per second, three at once: three pass, the fourth waits about a second.
    let slow = Duration::from_secs(1);
    for _ in 0..3 {
        assert_eq!(
            bus.quota_take("conf|a", slow, 3).await.unwrap(),
            RateVerdict::Admitted
        );
    }
    match bus.quota_take("conf|a", slow, 3).await.unwrap() {
        RateVerdict::Wait(wait) => {
            assert!(
                wait > Duration::from_millis(500) && wait <= slow,
                "{wait:?}"
            )
        }
        RateVerdict::Admitted => panic!("a fourth call within the burst's second"),
    }
    // A refused call drew nothing, and another budget is untouched.
    assert!(matches!(
        bus.quota_take("conf|a", slow, 3).await.unwrap(),
        RateVerdict::Wait(_)
    ));
    assert_eq!(
        bus.quota_take("conf|b", slow, 1).await.unwrap(),
        RateVerdict::Admitted
    );
    // After the wait it names, the budget admits again (the rate, not a new burst).
    let fast = Duration::from_millis(200);
    assert_eq!(
        bus.quota_take("conf|c", fast, 1).await.unwrap(),
        RateVerdict::Admitted
    );
    let RateVerdict::Wait(wait) = bus.quota_take("conf|c", fast, 1).await.unwrap() else {
        panic!("a second call within the period")
    };
    assert!(wait <= fast, "{wait:?}");
    // Waiting is what is under test here: the budget refills with time.
    tokio::time::sleep(wait + Duration::from_millis(20)).await;
    assert_eq!(
        bus.quota_take("conf|c", fast, 1).await.unwrap(),
        RateVerdict::Admitted
    );
    assert!(matches!(
        bus.quota_take("conf|c", fast, 1).await.unwrap(),
        RateVerdict::Wait(_)
    ));
}

async fn running_call_slots_are_limited_released_and_leased(bus: Arc<dyn Bus>) {
    let long = Duration::from_secs(60);
    assert!(bus.quota_acquire("conf|r", "s1", 2, long).await.unwrap());
    assert!(bus.quota_acquire("conf|r", "s2", 2, long).await.unwrap());
    assert!(!bus.quota_acquire("conf|r", "s3", 2, long).await.unwrap());
    bus.quota_release("conf|r", "s1").await.unwrap();
    assert!(bus.quota_acquire("conf|r", "s3", 2, long).await.unwrap());
    assert!(!bus.quota_acquire("conf|r", "s4", 2, long).await.unwrap());
    // Releasing what is not held changes nothing.
    bus.quota_release("conf|r", "never-held").await.unwrap();
    assert!(!bus.quota_acquire("conf|r", "s4", 2, long).await.unwrap());
    // A slot never released (its holder died) is free again when its lease runs out.
    let lease = Duration::from_millis(300);
    assert!(bus.quota_acquire("conf|l", "dead", 1, lease).await.unwrap());
    assert!(!bus.quota_acquire("conf|l", "next", 1, lease).await.unwrap());
    // Waiting is what is under test here: the lease runs out with time.
    tokio::time::sleep(lease + Duration::from_millis(50)).await;
    assert!(bus.quota_acquire("conf|l", "next", 1, lease).await.unwrap());
}

async fn the_audit_log_keeps_order_and_is_bounded(bus: Arc<dyn Bus>) {
    let record = |n: usize| -> crate::quota::AuditFields {
        vec![
            ("time".into(), format!("t{n}")),
            ("outcome".into(), "ok".into()),
            ("name".into(), format!("tool{n}")),
        ]
    };
    assert!(bus.audit_tail(10).await.unwrap().is_empty());
    bus.audit_append((0..3).map(record).collect(), 1000)
        .await
        .unwrap();
    assert_eq!(
        bus.audit_tail(10).await.unwrap(),
        vec![record(0), record(1), record(2)]
    );
    assert_eq!(bus.audit_tail(2).await.unwrap(), vec![record(1), record(2)]);
    // Bounded: 300 more with a bound of 10 keep at least the newest 10, at most about 10
    // (a store may trim in whole blocks; Redis's hold 100 entries).
    for batch in 0..30 {
        bus.audit_append((0..10).map(|i| record(100 + batch * 10 + i)).collect(), 10)
            .await
            .unwrap();
    }
    let kept = bus.audit_tail(10_000).await.unwrap();
    assert!(kept.len() >= 10 && kept.len() <= 10 + 100, "{}", kept.len());
    assert_eq!(kept.last(), Some(&record(399)));
    let newest: Vec<_> = (390..400).map(record).collect();
    assert_eq!(kept[kept.len() - 10..], newest[..]);
}

async fn exchanged_values_name_one_writer(bus: Arc<dyn Bus>) {
    assert_eq!(bus.exchange_value("conf", "a").await.unwrap(), None);
    assert_eq!(
        bus.exchange_value("conf", "b").await.unwrap().as_deref(),
        Some("a")
    );
    // Of many writers of one value at once, exactly one saw another value before it.
    let writers: Vec<_> = (0..8)
        .map(|_| {
            let bus = bus.clone();
            tokio::spawn(async move { bus.exchange_value("conf", "c").await.unwrap() })
        })
        .collect();
    let mut changed = 0;
    for writer in writers {
        if writer.await.unwrap().as_deref() != Some("c") {
            changed += 1;
        }
    }
    assert_eq!(changed, 1);
    assert_eq!(bus.exchange_value("other", "c").await.unwrap(), None);
}
