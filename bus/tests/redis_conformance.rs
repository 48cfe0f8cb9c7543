//! The Redis bus passes the same contract suite as the memory bus, against a real
//! redis-server started for this test; and Redis's own rules: one cluster-wide idle TTL,
//! jobs of a dead worker redelivered, and no state left behind once sessions are gone.

use e2e_tests::{ClusterSetup, RedisServer, SentinelSetup};
use mcp_bus::conformance::{self, EXPIRY_GRACE, SHORT_IDLE_TTL, job, run_all};
use mcp_bus::{Bus, Control, EventBody, RedisBus, RedisBusConfig, StreamTarget, WorkerId};
use mcp_protocol::RequestId;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// A fresh, empty bus on `url` (its own key prefix unless `prefix` is given).
async fn connect(
    url: &str,
    prefix: Option<&str>,
    tune: impl FnOnce(&mut RedisBusConfig),
) -> Arc<RedisBus> {
    let mut config = RedisBusConfig::new(url);
    config.prefix = prefix.map_or_else(|| format!("t{}", rand::random::<u32>()), str::to_owned);
    tune(&mut config);
    RedisBus::connect(config)
        .await
        .expect("connect to the test's redis-server")
}

/// A gateway-like bus with the short idle TTL and a fast heartbeat (the sweep period).
fn short_idle(config: &mut RedisBusConfig) {
    config.session_idle_ttl = Some(SHORT_IDLE_TTL);
    config.heartbeat = Duration::from_millis(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_bus_keeps_the_bus_contract() {
    let redis = RedisServer::start().expect("redis-server");
    let url = redis.url();
    run_all(|limits| {
        let bus = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(connect(&url, None, |config| {
                config.session_log_len = limits.session_log_len;
                config.live_queue_len = limits.live_queue_len;
            }))
        });
        bus as Arc<dyn Bus>
    })
    .await;
}

/// The same suite through Sentinel: the bus resolves the master from three sentinels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_bus_keeps_the_bus_contract_through_sentinel() {
    let setup = SentinelSetup::start().expect("sentinel set-up");
    let urls = setup.urls();
    run_all(|limits| {
        let bus = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(connect(&urls, None, |config| {
                config.mode = mcp_bus::RedisMode::Sentinel;
                config.sentinel_master = e2e_tests::redis::SENTINEL_MASTER.into();
                config.session_log_len = limits.session_log_len;
                config.live_queue_len = limits.live_queue_len;
            }))
        });
        bus as Arc<dyn Bus>
    })
    .await;
}

/// The same suite on a Redis Cluster (three masters, three replicas): sessions on every
/// shard, sharded pub/sub, pipelines split by slot; then idle expiry and the bounded
/// principal index (on the same cluster: one takes ~7 s to start).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_bus_keeps_the_bus_contract_in_a_cluster() {
    let setup = ClusterSetup::start().expect("cluster set-up");
    let urls = setup.urls();
    run_all(|limits| {
        let bus = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(connect(&urls, None, |config| {
                config.mode = mcp_bus::RedisMode::Cluster;
                config.session_log_len = limits.session_log_len;
                config.live_queue_len = limits.live_queue_len;
            }))
        });
        bus as Arc<dyn Bus>
    })
    .await;
    let cluster_short_idle = |config: &mut RedisBusConfig| {
        config.mode = mcp_bus::RedisMode::Cluster;
        short_idle(config);
    };
    let bus = connect(&urls, None, cluster_short_idle).await;
    conformance::idle_expiry_reaches_subscribers_and_workers(bus).await;
    let bus = connect(&urls, None, cluster_short_idle).await;
    conformance::principal_counts_follow_live_sessions(bus).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_idle_expiry_reaches_subscribers_and_workers() {
    let redis = RedisServer::start().expect("redis-server");
    let bus = connect(&redis.url(), None, short_idle).await;
    conformance::idle_expiry_reaches_subscribers_and_workers(bus).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_principal_counts_follow_live_sessions() {
    let redis = RedisServer::start().expect("redis-server");
    let bus = connect(&redis.url(), None, short_idle).await;
    conformance::principal_counts_follow_live_sessions(bus).await;
}

/// A process without the setting (a worker) follows the TTL a gateway set, at start and
/// when it changes, and never arms a session with a default of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idle_ttl_is_one_cluster_wide_setting() {
    let redis = RedisServer::start().expect("redis-server");
    let url = redis.url();
    let prefix = format!("t{}", rand::random::<u32>());
    let gateway = connect(&url, Some(&prefix), short_idle).await;
    let worker = connect(&url, Some(&prefix), |c| {
        c.heartbeat = Duration::from_millis(200)
    })
    .await;
    assert_eq!(worker.session_idle_ttl(), SHORT_IDLE_TTL);
    let record = conformance::record();
    gateway.create_session(record.clone()).await.unwrap();
    // The worker's publishes re-arm the session with the cluster's TTL, not 30 minutes.
    worker
        .publish(&record.id, StreamTarget::Standalone, EventBody::End)
        .await
        .unwrap();
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let pttl: i64 = redis::cmd("PTTL")
        .arg(format!("{prefix}:{{{}}}:session", record.id))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        (1..=SHORT_IDLE_TTL.as_millis() as i64).contains(&pttl),
        "session TTL after a worker's publish: {pttl} ms"
    );
    // A gateway started with another setting changes it for everyone (and says so).
    let _other = connect(&url, Some(&prefix), |c| {
        c.session_idle_ttl = Some(Duration::from_secs(7));
        c.heartbeat = Duration::from_millis(200);
    })
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while worker.session_idle_ttl() != Duration::from_secs(7) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "worker kept the old TTL"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A job whose worker stops refreshing it is delivered to another worker, with `attempt`
/// raised, once the claim timeout has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_workers_job_is_redelivered() {
    let redis = RedisServer::start().expect("redis-server");
    dead_workers_job_is_redelivered(&redis.url(), mcp_bus::RedisMode::Single).await;
}

/// The same on a Redis Cluster, where jobs spread over several streams on different slots
/// (each read by every worker), several jobs in a row so every stream gets one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_workers_job_is_redelivered_in_a_cluster() {
    let setup = ClusterSetup::start().expect("cluster set-up");
    dead_workers_job_is_redelivered(&setup.urls(), mcp_bus::RedisMode::Cluster).await;
}

async fn dead_workers_job_is_redelivered(url: &str, mode: mcp_bus::RedisMode) {
    let prefix = format!("t{}", rand::random::<u32>());
    let tune = |c: &mut RedisBusConfig| {
        c.mode = mode.clone();
        c.job_claim_idle = Duration::from_millis(600);
        c.heartbeat = Duration::from_millis(200);
    };
    let record = conformance::record();
    // Queues the jobs (in turn over the streams) and never takes one.
    let gateway = connect(url, Some(&prefix), tune).await;
    gateway.create_session(record.clone()).await.unwrap();
    let streams = if mode == mcp_bus::RedisMode::Cluster {
        mcp_bus::redis::keys::Keys::CLUSTER_JOB_STREAMS
    } else {
        1
    };
    // A job on each stream, each taken by a worker that then dies.
    for n in 0..streams as i64 {
        let dead = connect(url, Some(&prefix), tune).await;
        let first_worker = WorkerId::generate();
        // Both consumers exist before the job is queued (the group is made on first read).
        let taken = tokio::spawn({
            let dead = dead.clone();
            let worker = first_worker.clone();
            async move { dead.next_job(&worker).await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        gateway.enqueue(job(&record.id, n)).await.unwrap();
        let first = tokio::time::timeout(Duration::from_secs(5), taken)
            .await
            .expect("a worker takes the job")
            .unwrap()
            .unwrap();
        assert_eq!(first.attempt, 0);
        // The process that took it dies: nothing refreshes the job any more.
        gone(dead).await;
        let alive = connect(url, Some(&prefix), tune).await;
        let second = tokio::time::timeout(
            Duration::from_secs(10),
            alive.next_job(&WorkerId::generate()),
        )
        .await
        .expect("the job is redelivered")
        .unwrap();
        assert_eq!(second.request_id, first.request_id);
        assert_eq!(second.attempt, 1);
        alive
            .finish_job(&WorkerId::generate(), &second)
            .await
            .unwrap();
        // This one reads no further job: the next must go to the next `dead`.
        gone(alive).await;
    }
    assert_eq!(gateway.stats().await.unwrap().jobs_in_flight, 0);
}

/// Drops a bus and waits until it is gone: none of its tasks (job stream readers) holds it
/// any more, so none of its connections reads jobs.
async fn gone(bus: Arc<RedisBus>) {
    let weak = Arc::downgrade(&bus);
    drop(bus);
    tokio::time::timeout(Duration::from_secs(10), async {
        while weak.strong_count() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the bus is dropped by its tasks");
}

/// Mixed traffic with a short idle TTL, then silence: once the TTL has passed, the key
/// count and every shared collection are back to where they were before the traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_returns_to_baseline_after_the_idle_ttl() {
    let redis = RedisServer::start().expect("redis-server");
    state_returns_to_baseline(Topology::Single(&redis)).await;
}

/// The same on a Redis Cluster (keys counted on every master).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_returns_to_baseline_after_the_idle_ttl_in_a_cluster() {
    let setup = ClusterSetup::start().expect("cluster set-up");
    state_returns_to_baseline(Topology::Cluster(&setup)).await;
}

/// Where a test reads what the bus stored.
enum Topology<'a> {
    Single(&'a RedisServer),
    Cluster(&'a ClusterSetup),
}

impl Topology<'_> {
    fn url(&self) -> String {
        match self {
            Self::Single(redis) => redis.url(),
            Self::Cluster(setup) => setup.urls(),
        }
    }

    fn mode(&self) -> mcp_bus::RedisMode {
        match self {
            Self::Single(_) => mcp_bus::RedisMode::Single,
            Self::Cluster(_) => mcp_bus::RedisMode::Cluster,
        }
    }

    /// The keys matching `pattern`, on every master.
    fn keys(&self, pattern: &str) -> Vec<String> {
        let on = |server: &RedisServer| -> Vec<String> {
            server
                .command(&["KEYS", pattern])
                .unwrap()
                .items()
                .iter()
                .filter_map(e2e_tests::redis::Reply::text)
                .collect()
        };
        match self {
            Self::Single(redis) => on(redis),
            Self::Cluster(setup) => setup
                .masters()
                .into_iter()
                .flat_map(|i| on(&setup.nodes[i]))
                .collect(),
        }
    }

    /// An integer command on the node that holds `key`.
    fn count(&self, args: &[&str]) -> u64 {
        let server = match self {
            Self::Single(redis) => *redis,
            Self::Cluster(setup) => &setup.nodes[setup.master_of(args[1]).unwrap()],
        };
        match server.command(args).unwrap() {
            e2e_tests::redis::Reply::Int(n) => u64::try_from(n).unwrap_or(0),
            other => panic!("{args:?}: {other:?}"),
        }
    }
}

async fn state_returns_to_baseline(topology: Topology<'_>) {
    let url = topology.url();
    let mode = topology.mode();
    let prefix = format!("t{}", rand::random::<u32>());
    let gateway = connect(&url, Some(&prefix), |c| {
        c.mode = mode.clone();
        short_idle(c);
        c.gateway_id = Some("soak-gateway".into());
    })
    .await;
    let worker_bus = connect(&url, Some(&prefix), |c| {
        c.mode = mode.clone();
        c.heartbeat = Duration::from_millis(200)
    })
    .await;
    // Keys that live as long as the deployment (bounded: registry, broadcast log, job
    // stream, settings) exist once a first broadcast and a first job have passed.
    let worker = WorkerId::generate();
    let _control = worker_bus.subscribe_control(&worker).await.unwrap();
    gateway.broadcast(json!({"n": 0})).await.unwrap();
    let warmup = conformance::record();
    gateway.create_session(warmup.clone()).await.unwrap();
    gateway.enqueue(job(&warmup.id, 0)).await.unwrap();
    let j = worker_bus.next_job(&worker).await.unwrap();
    worker_bus.finish_job(&worker, &j).await.unwrap();
    gateway.end_session(&warmup.id).await.unwrap();
    // This deployment's keys (its prefix), on every master.
    let all_keys = format!("{prefix}:*");
    let baseline = topology.keys(&all_keys).len() as u64;

    let started = tokio::time::Instant::now();
    let mut n = 0i64;
    while started.elapsed() < Duration::from_secs(4) {
        n += 1;
        let mut r = conformance::record();
        r.principal = "soak".into();
        r.ephemeral = n % 3 == 0;
        gateway.create_session(r.clone()).await.unwrap();
        let _sub = gateway.subscribe(&r.id).await.unwrap();
        gateway
            .subscribe_resource(&r.id, &format!("res://{}", n % 5))
            .await
            .unwrap();
        gateway.enqueue(job(&r.id, n)).await.unwrap();
        let j = worker_bus.next_job(&worker).await.unwrap();
        worker_bus
            .adopt_call(&worker, &r.id, &j.request_id)
            .await
            .unwrap();
        worker_bus
            .publish_batch(
                &r.id,
                StreamTarget::Request(j.stream),
                vec![EventBody::End, EventBody::End],
            )
            .await
            .unwrap();
        gateway
            .send_control(Control::Cancel {
                session: r.id.clone(),
                request_id: RequestId::Number(n + 1_000_000),
                reason: None,
            })
            .await
            .unwrap();
        // Half the calls finish; the others are left as a crashed request leaves them.
        if n % 2 == 0 {
            worker_bus.finish_job(&worker, &j).await.unwrap();
        }
        if n % 4 == 0 {
            gateway.end_session(&r.id).await.unwrap();
        }
        if n % 10 == 0 {
            gateway.broadcast(json!({"n": n})).await.unwrap();
            gateway.resource_updated("res://1").await.unwrap();
        }
    }
    let peak = topology.keys(&all_keys).len() as u64;
    assert!(peak > baseline, "the traffic made no keys ({peak})");

    let deadline =
        tokio::time::Instant::now() + SHORT_IDLE_TTL + EXPIRY_GRACE + Duration::from_secs(2);
    let index = format!("{prefix}:{{registry}}:sessions");
    let principals = format!("{prefix}:{{registry}}:session-principals");
    let principal = format!("{prefix}:{{registry}}:principal:soak");
    loop {
        let keys = topology.keys(&all_keys).len() as u64;
        let sessions = topology.count(&["ZCARD", &index]);
        let principal_members = topology.count(&["ZCARD", &principal]);
        let mapped = topology.count(&["HLEN", &principals]);
        // Unfinished jobs stay in the streams until a worker finishes or reclaims them
        // (jobs are not session state): they are counted apart.
        let pending = gateway.stats().await.unwrap().jobs_in_flight;
        if keys == baseline && sessions == 0 && principal_members == 0 && mapped == 0 {
            eprintln!(
                "{n} calls; keys: baseline {baseline}, peak {peak}, after {keys}; jobs left unfinished: {pending}"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "state left after the idle TTL: {keys} keys (baseline {baseline}), {sessions} indexed sessions, {principal_members} principal members, {mapped} principal mappings"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let leftover = topology.keys(&format!("{prefix}:{{res}}:*"));
    assert!(
        leftover.is_empty(),
        "resource subscriber sets left: {leftover:?}"
    );
}

/// Quotas are one budget for every node on the Redis: a rate drawn on one bus is drawn on
/// all, a slot held by one counts for all, and every quota key has a TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_budgets_are_shared_by_every_node_and_expire() {
    use mcp_bus::RateVerdict;
    let redis = RedisServer::start().expect("redis-server");
    let url = redis.url();
    let prefix = format!("t{}", rand::random::<u32>());
    let a = connect(&url, Some(&prefix), |_| {}).await;
    let b = connect(&url, Some(&prefix), |_| {}).await;
    let second = Duration::from_secs(1);
    assert_eq!(
        a.quota_take("q|p", second, 2).await.unwrap(),
        RateVerdict::Admitted
    );
    assert_eq!(
        b.quota_take("q|p", second, 2).await.unwrap(),
        RateVerdict::Admitted
    );
    assert!(matches!(
        a.quota_take("q|p", second, 2).await.unwrap(),
        RateVerdict::Wait(_)
    ));
    assert!(matches!(
        b.quota_take("q|p", second, 2).await.unwrap(),
        RateVerdict::Wait(_)
    ));
    let minute = Duration::from_secs(60);
    assert!(a.quota_acquire("q|p", "on-a", 1, minute).await.unwrap());
    assert!(!b.quota_acquire("q|p", "on-b", 1, minute).await.unwrap());
    // The keys: the budget's hash tag, each with a TTL no longer than what it holds.
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    for (key, most) in [
        (format!("{prefix}:{{quota:q|p}}:rate"), 2_001),
        (format!("{prefix}:{{quota:q|p}}:slots"), 60_000),
    ] {
        let pttl: i64 = redis::cmd("PTTL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!((1..=most).contains(&pttl), "{key}: PTTL {pttl}");
    }
    a.quota_release("q|p", "on-a").await.unwrap();
    assert!(b.quota_acquire("q|p", "on-b", 1, minute).await.unwrap());
    // The audit stream is one for the cluster: what a appends, b reads.
    a.audit_append(vec![vec![("outcome".into(), "ok".into())]], 100)
        .await
        .unwrap();
    assert_eq!(
        b.audit_tail(5).await.unwrap(),
        vec![vec![("outcome".to_owned(), "ok".to_owned())]]
    );
}
