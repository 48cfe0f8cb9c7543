//! The Redis bus: many gateways and many workers on one Redis, keeping the contract of
//! [`Bus`](crate::Bus) exactly as the memory bus does (both pass `conformance`).
//!
//! - Sessions are hashes with an idle TTL; any gateway loads any session.
//! - Each session's events go to a bounded stream (its log) and its pub/sub channel in one
//!   Lua script, with a dense sequence number kept in the session hash.
//! - Each process holds one pub/sub connection (RESP3 push, automatic resubscription,
//!   unlimited reconnects); [`hub`] shares one subscription per session among all local
//!   streams of it and repairs what pub/sub loses from the logs.
//! - Jobs are a stream read by a consumer group of workers. A running job's idle time is
//!   refreshed by its worker; a job idle longer than the claim timeout belongs to a dead
//!   worker and is claimed by another (`XAUTOCLAIM`) with `attempt` raised.
//! - Cancellations and replies go to the one worker concerned (its own channel), not to
//!   every worker.
//! - Nothing grows without bound: the session idle TTL is one cluster-wide setting (in
//!   Redis, written by gateways, followed by workers), and each heartbeat's upkeep turns
//!   idle expiries into session ends and removes what expired sessions left in shared sets.
//!
//! Key and message formats: `docs/redis.md`.
//!
//! # Layout
//! One file per section of the contract ([`Bus`](crate::Bus)), each an `impl RedisBus`
//! block; this file holds the struct, the connection set-up and the `Bus` impl that
//! forwards each method to its section.
//! - `config`: [`RedisBusConfig`], how the bus connects and what it keeps.
//! - `sessions`: session hashes, idle TTL, per-principal index.
//! - `events`: session event logs, publishing, subscribing, replay, stream claims.
//! - `broadcasts`: the cluster-wide broadcast log.
//! - `jobs`: the job stream and its consumer group, taking, finishing and reclaiming jobs.
//! - `control`: cancellations, replies and session ends routed to workers.
//! - `registry`: workers, heartbeats and the catalog of what they serve.
//! - `resources`: resource subscriptions.
//! - `quotas`: rate (GCRA) and running-call budgets, one script per check.
//! - `audit`: the bounded audit stream.
//! - `cluster`: cluster-wide settings and views (idle TTL, shared secrets, stats, health).
//! - `upkeep`: the background heartbeat task.
//! - `hub`: this process's pub/sub connection, shared among local subscribers.
//! - `scripts`: the Lua scripts; `keys`: every key and channel; `metrics`: counters.

mod audit;
mod broadcasts;
mod cluster;
pub mod config;
pub mod connection;
mod control;
mod events;
mod hub;
mod jobs;
pub mod keys;
pub mod metrics;
mod quotas;
mod registry;
mod resources;
mod scripts;
mod sessions;
mod upkeep;

pub(crate) use broadcasts::parse_broadcast_entry;
pub use config::RedisBusConfig;
pub use connection::{Conn, RedisMode};
pub(crate) use events::{StoredEvent, parse_log_entry};

use crate::contract::{BroadcastSubscription, Bus, Replay, SessionSubscription};
use crate::error::BusError;
use crate::ids::{SessionId, WorkerId};
use crate::message::{
    BroadcastEvent, Catalog, ClusterStats, Control, EventBody, Job, SessionEvent, SessionRecord,
    StandaloneCursor, StreamTarget,
};
use crate::quota::{AuditFields, RateVerdict};
use async_trait::async_trait;
use connection::Source;
use hub::Hub;
use keys::Keys;
use mcp_protocol::{LogLevel, RequestId};
use redis::AsyncCommands;
use redis::streams::StreamId as RedisStreamId;
use serde_json::Value;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{OnceCell, broadcast};

pub(crate) fn redis_err(e: redis::RedisError) -> BusError {
    metrics::ERRORS.inc();
    BusError::Unavailable(e.to_string())
}

fn corrupt(e: impl std::fmt::Display) -> BusError {
    BusError::Corrupt(e.to_string())
}

fn seq_of_entry_id(id: &str) -> Option<u64> {
    id.split_once('-').and_then(|(seq, _)| seq.parse().ok())
}

fn field_string(entry: &RedisStreamId, field: &str) -> Option<String> {
    entry
        .map
        .get(field)
        .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The Redis [`Bus`].
pub struct RedisBus {
    config: RedisBusConfig,
    keys: Keys,
    /// The one connection every ordinary command shares. It is multiplexed: concurrent
    /// commands are pipelined on it, so a command costs one round trip, not a pool
    /// checkout (deadpool-redis's recycle sent `UNWATCH` + `PING` first) plus the command.
    commands: Conn,
    hub: Arc<Hub>,
    /// A connection of its own per job stream for `XREADGROUP BLOCK` (no response
    /// timeout), made on first use.
    blocking: Vec<OnceCell<Conn>>,
    /// With several job streams: the queue this process's stream readers fill (started by
    /// the first `next_job`).
    job_readers: std::sync::OnceLock<async_channel::Receiver<Job>>,
    /// Callers of `next_job` waiting for the job stream readers, and their signal.
    job_demand: std::sync::atomic::AtomicUsize,
    job_wanted: Arc<tokio::sync::Notify>,
    /// The job stream the next `enqueue` goes to (in turn).
    job_turn: std::sync::atomic::AtomicUsize,
    /// This bus, for the tasks it starts on demand (the job stream readers).
    me: std::sync::Weak<RedisBus>,
    /// Delivery ids of jobs this process is running, kept fresh so no one claims them.
    running_jobs: Mutex<HashSet<String>>,
    broadcasts_ready: OnceCell<()>,
    control_ready: OnceCell<()>,
    /// The consumer name jobs taken here are held under (the worker's id).
    consumer: Mutex<Option<WorkerId>>,
    /// Workers of this process whose control channel is subscribed.
    control_subscribed: Mutex<HashSet<WorkerId>>,
    last_autoclaim: Mutex<std::time::Instant>,
    /// The job stream's consumer group is known to exist. Cleared by a `NOGROUP` error
    /// (Redis restarted empty), so the next read creates it again: asking on every job
    /// cost a round trip per tool call.
    job_group_ready: AtomicBool,
    /// The cluster's session idle TTL (ms) as this process last read it from Redis (see
    /// [`RedisBusConfig::session_idle_ttl`]); every TTL this process arms comes from here.
    idle_ttl_ms: AtomicU64,
}

impl RedisBus {
    /// Connects (failing fast if Redis cannot be reached now) and starts the background
    /// tasks: push dispatch, heartbeats, subscription checks. Later outages are survived.
    pub async fn connect(config: RedisBusConfig) -> Result<Arc<Self>, BusError> {
        let cluster = config.mode == RedisMode::Cluster;
        // Few reconnect attempts, on purpose: commands issued while the manager reconnects
        // wait for the attempt, so an outage must fail them within a few seconds (the
        // request gets a 503, readiness reports Redis down). The next command after a
        // failed attempt starts a new one, so the connection comes back with Redis.
        // (A cluster connection bounds each command, retries included, to 2 s.)
        let commands = if cluster {
            Conn::connect_cluster(&config.url, Duration::from_secs(2), None::<hub::PushQueue>).await
        } else {
            let source = Source::new(&config.mode, &config.url, &config.sentinel_master)
                .map_err(redis_err)?;
            let commands_config = redis::aio::ConnectionManagerConfig::new()
                .set_number_of_retries(1)
                .set_min_delay(Duration::from_millis(50))
                .set_max_delay(Duration::from_millis(500))
                .set_connection_timeout(Some(Duration::from_secs(2)))
                .set_response_timeout(Some(Duration::from_secs(2)));
            Conn::connect("commands", source, commands_config).await
        }
        .map_err(redis_err)?;

        let (push_tx, push_rx, overflowed) = hub::push_queue(65_536);
        let pushes = push_tx.sender();
        let pubsub = if cluster {
            // The cluster client reconnects each node by itself; the hub subscribes every
            // channel again after a node is lost (see `hub::resubscribe`).
            Conn::connect_cluster(&config.url, Duration::from_secs(2), Some(push_tx)).await
        } else {
            let pubsub_source = Source::resp3(&config.mode, &config.url, &config.sentinel_master)
                .map_err(redis_err)?;
            // The defaults give up after ~6 s of outage and leave the connection silently
            // unsubscribed: retry forever, at most a second apart.
            let manager_config = redis::aio::ConnectionManagerConfig::new()
                .set_push_sender(push_tx)
                .set_automatic_resubscription()
                .set_number_of_retries(usize::MAX)
                .set_max_delay(Duration::from_secs(1))
                .set_connection_timeout(Some(Duration::from_secs(2)));
            Conn::connect("pub/sub", pubsub_source, manager_config).await
        }
        .map_err(redis_err)?;

        let keys = if cluster {
            Keys::sharded(&config.prefix)
        } else {
            Keys::new(&config.prefix)
        };
        let hub = Hub::new(keys.clone(), config.live_queue_len, pubsub.clone(), pushes);
        let bus = Arc::new_cyclic(|me| Self {
            blocking: (0..keys.job_streams()).map(|_| OnceCell::new()).collect(),
            job_readers: std::sync::OnceLock::new(),
            job_turn: std::sync::atomic::AtomicUsize::new(0),
            job_demand: std::sync::atomic::AtomicUsize::new(0),
            job_wanted: Arc::new(tokio::sync::Notify::new()),
            me: me.clone(),
            keys: keys.clone(),
            commands: commands.clone(),
            hub: hub.clone(),
            running_jobs: Mutex::new(HashSet::new()),
            broadcasts_ready: OnceCell::new(),
            control_ready: OnceCell::new(),
            consumer: Mutex::new(None),
            control_subscribed: Mutex::new(HashSet::new()),
            last_autoclaim: Mutex::new(std::time::Instant::now()),
            job_group_ready: AtomicBool::new(false),
            idle_ttl_ms: AtomicU64::new(config::DEFAULT_SESSION_IDLE_TTL.as_millis() as u64),
            config,
        });
        tokio::spawn(hub::dispatch_pushes(
            hub,
            commands,
            pubsub.clone(),
            keys,
            push_rx,
            overflowed,
        ));
        tokio::spawn(upkeep::maintain(Arc::downgrade(&bus), pubsub));
        // Fail fast on a wrong URL; everything later survives outages.
        let mut conn = bus.conn();
        let _: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        bus.settle_idle_ttl().await?;
        Ok(bus)
    }

    /// The shared connection, for one round trip (a command, a pipeline or a script).
    /// Cloning it is cheap; every clone sends on the same multiplexed connection.
    fn conn(&self) -> Conn {
        metrics::COMMANDS.inc();
        self.commands.clone()
    }

    /// The cluster's session idle TTL in ms, the one every session key is armed with.
    fn ttl_ms(&self) -> u64 {
        self.idle_ttl_ms.load(Ordering::Relaxed)
    }

    /// At start: a process that owns the setting writes it (saying so when it changes what
    /// other processes use); every process then adopts what Redis holds.
    async fn settle_idle_ttl(&self) -> Result<(), BusError> {
        let mut conn = self.conn();
        if let Some(ttl) = self.config.session_idle_ttl {
            let ttl = ttl.as_millis() as u64;
            let (previous,): (Option<u64>,) = redis::pipe()
                .hget(self.keys.settings(), Keys::IDLE_TTL_FIELD)
                .hset(self.keys.settings(), Keys::IDLE_TTL_FIELD, ttl)
                .ignore()
                .query_async(&mut conn)
                .await
                .map_err(redis_err)?;
            if let Some(previous) = previous.filter(|p| *p != ttl) {
                tracing::warn!(
                    previous_ms = previous,
                    now_ms = ttl,
                    "this process changes the cluster's session idle TTL"
                );
            }
        }
        self.refresh_idle_ttl().await
    }

    /// Adopts the cluster's session idle TTL from Redis (at start and every heartbeat).
    async fn refresh_idle_ttl(&self) -> Result<(), BusError> {
        let mut conn = self.conn();
        let stored: Option<u64> = conn
            .hget(self.keys.settings(), Keys::IDLE_TTL_FIELD)
            .await
            .map_err(redis_err)?;
        if let Some(ttl) = stored.filter(|t| *t > 0) {
            let before = self.idle_ttl_ms.swap(ttl, Ordering::Relaxed);
            if before != ttl {
                tracing::info!(ttl_ms = ttl, "following the cluster's session idle TTL");
            }
        }
        Ok(())
    }
}

// Each method lives in the file of its contract section; `RedisBus::name` picks the
// inherent method there (inherent methods come before trait methods).
#[async_trait]
impl Bus for RedisBus {
    async fn create_session(&self, record: SessionRecord) -> Result<(), BusError> {
        RedisBus::create_session(self, record).await
    }

    async fn session(&self, id: &SessionId) -> Result<SessionRecord, BusError> {
        RedisBus::session(self, id).await
    }

    async fn count_sessions(&self, principal: &str) -> Result<u64, BusError> {
        RedisBus::count_sessions(self, principal).await
    }

    async fn touch_session(&self, id: &SessionId) -> Result<(), BusError> {
        RedisBus::touch_session(self, id).await
    }

    async fn set_log_level(&self, id: &SessionId, level: LogLevel) -> Result<(), BusError> {
        RedisBus::set_log_level(self, id, level).await
    }

    async fn advance_standalone_cursor(
        &self,
        id: &SessionId,
        cursor: StandaloneCursor,
    ) -> Result<(), BusError> {
        RedisBus::advance_standalone_cursor(self, id, cursor).await
    }

    async fn end_session(&self, id: &SessionId) -> Result<bool, BusError> {
        RedisBus::end_session(self, id).await
    }

    async fn publish(
        &self,
        session: &SessionId,
        stream: StreamTarget,
        body: EventBody,
    ) -> Result<u64, BusError> {
        RedisBus::publish(self, session, stream, body).await
    }

    async fn publish_batch(
        &self,
        session: &SessionId,
        stream: StreamTarget,
        bodies: Vec<EventBody>,
    ) -> Result<u64, BusError> {
        RedisBus::publish_batch(self, session, stream, bodies).await
    }

    async fn subscribe(&self, session: &SessionId) -> Result<SessionSubscription, BusError> {
        RedisBus::subscribe(self, session).await
    }

    async fn replay(
        &self,
        session: &SessionId,
        after: u64,
        up_to: u64,
    ) -> Result<Replay<Arc<SessionEvent>>, BusError> {
        RedisBus::replay(self, session, after, up_to).await
    }

    async fn claim_stream(
        &self,
        session: &SessionId,
        stream: StreamTarget,
        claim: u64,
    ) -> Result<(), BusError> {
        RedisBus::claim_stream(self, session, stream, claim).await
    }

    async fn broadcast(&self, message: Value) -> Result<u64, BusError> {
        RedisBus::broadcast(self, message).await
    }

    async fn subscribe_broadcasts(&self) -> Result<BroadcastSubscription, BusError> {
        RedisBus::subscribe_broadcasts(self).await
    }

    async fn broadcast_head(&self) -> Result<u64, BusError> {
        RedisBus::broadcast_head(self).await
    }

    async fn replay_broadcasts(
        &self,
        after: u64,
        up_to: u64,
    ) -> Result<Replay<Arc<BroadcastEvent>>, BusError> {
        RedisBus::replay_broadcasts(self, after, up_to).await
    }

    async fn enqueue(&self, job: Job) -> Result<(), BusError> {
        RedisBus::enqueue(self, job).await
    }

    async fn next_job(&self, worker: &WorkerId) -> Result<Job, BusError> {
        RedisBus::next_job(self, worker).await
    }

    async fn finish_job(&self, worker: &WorkerId, job: &Job) -> Result<(), BusError> {
        RedisBus::finish_job(self, worker, job).await
    }

    async fn send_control(&self, message: Control) -> Result<(), BusError> {
        RedisBus::send_control(self, message).await
    }

    async fn adopt_call(
        &self,
        worker: &WorkerId,
        session: &SessionId,
        request_id: &RequestId,
    ) -> Result<(), BusError> {
        RedisBus::adopt_call(self, worker, session, request_id).await
    }

    async fn subscribe_control(
        &self,
        worker: &WorkerId,
    ) -> Result<broadcast::Receiver<Control>, BusError> {
        RedisBus::subscribe_control(self, worker).await
    }

    async fn register_worker(&self, info: crate::message::WorkerInfo) -> Result<(), BusError> {
        RedisBus::register_worker(self, info).await
    }

    async fn deregister_worker(&self, id: &WorkerId) -> Result<(), BusError> {
        RedisBus::deregister_worker(self, id).await
    }

    async fn catalog(&self) -> Result<Catalog, BusError> {
        RedisBus::catalog(self).await
    }

    async fn subscribe_resource(&self, session: &SessionId, uri: &str) -> Result<(), BusError> {
        RedisBus::subscribe_resource(self, session, uri).await
    }

    async fn unsubscribe_resource(&self, session: &SessionId, uri: &str) -> Result<(), BusError> {
        RedisBus::unsubscribe_resource(self, session, uri).await
    }

    async fn resource_updated(&self, uri: &str) -> Result<u64, BusError> {
        RedisBus::resource_updated(self, uri).await
    }

    fn session_idle_ttl(&self) -> Duration {
        RedisBus::session_idle_ttl(self)
    }

    async fn shared_secret(&self, name: &str) -> Result<Vec<u8>, BusError> {
        RedisBus::shared_secret(self, name).await
    }

    async fn exchange_value(&self, name: &str, value: &str) -> Result<Option<String>, BusError> {
        RedisBus::exchange_value(self, name, value).await
    }

    async fn stats(&self) -> Result<ClusterStats, BusError> {
        RedisBus::stats(self).await
    }

    async fn health(&self) -> Result<(), BusError> {
        RedisBus::health(self).await
    }

    async fn quota_take(
        &self,
        budget: &str,
        period: Duration,
        burst: u32,
    ) -> Result<RateVerdict, BusError> {
        RedisBus::quota_take(self, budget, period, burst).await
    }

    async fn quota_acquire(
        &self,
        budget: &str,
        slot: &str,
        limit: u32,
        lease: Duration,
    ) -> Result<bool, BusError> {
        RedisBus::quota_acquire(self, budget, slot, limit, lease).await
    }

    async fn quota_release(&self, budget: &str, slot: &str) -> Result<(), BusError> {
        RedisBus::quota_release(self, budget, slot).await
    }

    async fn audit_append(
        &self,
        records: Vec<AuditFields>,
        max_len: usize,
    ) -> Result<(), BusError> {
        RedisBus::audit_append(self, records, max_len).await
    }

    async fn audit_tail(&self, count: usize) -> Result<Vec<AuditFields>, BusError> {
        RedisBus::audit_tail(self, count).await
    }
}
