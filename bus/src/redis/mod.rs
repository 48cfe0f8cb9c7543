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
//!
//! Key and message formats: `docs/redis.md`.

mod hub;
pub mod keys;
pub mod metrics;
mod scripts;

use crate::contract::{BroadcastSubscription, Bus, Replay, SessionSubscription};
use crate::error::BusError;
use crate::ids::{SessionId, WorkerId};
use crate::message::{
    BroadcastEvent, Catalog, ClusterStats, Control, EventBody, Job, SessionEvent, SessionRecord,
    StandaloneCursor, StreamTarget, WorkerInfo,
};
use crate::now_ms;
use async_trait::async_trait;
use hub::Hub;
use keys::Keys;
use mcp_protocol::{LogLevel, RequestId, jsonrpc};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamId as RedisStreamId, StreamRangeReply,
    StreamReadOptions, StreamReadReply,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{OnceCell, broadcast};

/// How the Redis bus connects and what it keeps.
#[derive(Debug, Clone)]
pub struct RedisBusConfig {
    /// `redis://host:port/db`.
    pub url: String,
    /// Prefix of every key and channel.
    pub prefix: String,
    /// Events kept per session log.
    pub session_log_len: usize,
    /// Broadcasts kept in the broadcast log.
    pub broadcast_log_len: usize,
    /// Live events a local subscriber may fall behind.
    pub live_queue_len: usize,
    /// Jobs queued or running before `enqueue` refuses more.
    pub job_queue_len: usize,
    /// Idle TTL of sessions.
    pub session_idle_ttl: Duration,
    /// A job whose worker has not refreshed it for this long is claimed by another worker.
    pub job_claim_idle: Duration,
    /// How often a worker or gateway heartbeats, refreshes its running jobs and checks its
    /// subscriptions against the logs.
    pub heartbeat: Duration,
    /// Set for a gateway process: it announces itself under this id (for `stats`).
    pub gateway_id: Option<String>,
}

impl RedisBusConfig {
    /// Defaults for `url`.
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            prefix: "mcpgw".into(),
            session_log_len: 1024,
            broadcast_log_len: 1024,
            live_queue_len: 256,
            job_queue_len: 10_000,
            session_idle_ttl: Duration::from_secs(1800),
            job_claim_idle: Duration::from_secs(15),
            heartbeat: Duration::from_secs(5),
            gateway_id: None,
        }
    }

    fn liveness(&self) -> Duration {
        self.heartbeat * 3
    }
}

/// The JSON stored in a log entry and published live (the sequence number travels in the
/// entry id and in the message prefix).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct StoredEvent {
    stream: StreamTarget,
    body: EventBody,
    emitted_ms: u64,
}

impl StoredEvent {
    pub(crate) fn into_event(self, seq: u64) -> SessionEvent {
        SessionEvent {
            seq,
            stream: self.stream,
            body: self.body,
            emitted_ms: self.emitted_ms,
        }
    }
}

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

pub(crate) fn parse_log_entry(entry: &RedisStreamId) -> Option<SessionEvent> {
    let seq = seq_of_entry_id(&entry.id)?;
    let stored: StoredEvent = serde_json::from_str(&field_string(entry, "e")?).ok()?;
    Some(stored.into_event(seq))
}

pub(crate) fn parse_broadcast_entry(entry: &RedisStreamId) -> Option<BroadcastEvent> {
    let seq = seq_of_entry_id(&entry.id)?;
    let message = serde_json::from_str(&field_string(entry, "m")?).ok()?;
    Some(BroadcastEvent::new(seq, message, now_ms()))
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
    commands: ConnectionManager,
    client: redis::Client,
    hub: Arc<Hub>,
    /// A connection of its own for `XREADGROUP BLOCK` (no response timeout), made on first use.
    blocking: OnceCell<ConnectionManager>,
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
}

impl RedisBus {
    /// Connects (failing fast if Redis cannot be reached now) and starts the background
    /// tasks: push dispatch, heartbeats, subscription checks. Later outages are survived.
    pub async fn connect(config: RedisBusConfig) -> Result<Arc<Self>, BusError> {
        let client = redis::Client::open(config.url.as_str()).map_err(redis_err)?;
        // Few reconnect attempts, on purpose: commands issued while the manager reconnects
        // wait for the attempt, so an outage must fail them within a few seconds (the
        // request gets a 503, readiness reports Redis down). The next command after a
        // failed attempt starts a new one, so the connection comes back with Redis.
        let commands_config = redis::aio::ConnectionManagerConfig::new()
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500))
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)));
        let commands = ConnectionManager::new_with_config(client.clone(), commands_config)
            .await
            .map_err(redis_err)?;

        let (push_tx, push_rx, overflowed) = hub::push_queue(65_536);
        let pubsub_url = if config.url.contains('?') {
            format!("{}&protocol=resp3", config.url)
        } else {
            format!("{}?protocol=resp3", config.url)
        };
        let pubsub_client = redis::Client::open(pubsub_url.as_str()).map_err(redis_err)?;
        // The defaults give up after ~6 s of outage and leave the connection silently
        // unsubscribed: retry forever, at most a second apart.
        let manager_config = redis::aio::ConnectionManagerConfig::new()
            .set_push_sender(push_tx)
            .set_automatic_resubscription()
            .set_number_of_retries(usize::MAX)
            .set_max_delay(Duration::from_secs(1))
            .set_connection_timeout(Some(Duration::from_secs(2)));
        let pubsub = ConnectionManager::new_with_config(pubsub_client, manager_config)
            .await
            .map_err(redis_err)?;

        let keys = Keys::new(&config.prefix);
        let hub = Hub::new(keys.clone(), config.live_queue_len, pubsub.clone());
        let bus = Arc::new(Self {
            keys: keys.clone(),
            commands: commands.clone(),
            client,
            hub: hub.clone(),
            blocking: OnceCell::new(),
            running_jobs: Mutex::new(HashSet::new()),
            broadcasts_ready: OnceCell::new(),
            control_ready: OnceCell::new(),
            consumer: Mutex::new(None),
            control_subscribed: Mutex::new(HashSet::new()),
            last_autoclaim: Mutex::new(std::time::Instant::now()),
            job_group_ready: AtomicBool::new(false),
            config,
        });
        tokio::spawn(hub::dispatch_pushes(
            hub, commands, keys, push_rx, overflowed,
        ));
        tokio::spawn(maintain(Arc::downgrade(&bus), pubsub));
        // Fail fast on a wrong URL; everything later survives outages.
        let mut conn = bus.conn();
        let _: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        Ok(bus)
    }

    /// The shared connection, for one round trip (a command, a pipeline or a script).
    /// Cloning it is cheap; every clone sends on the same multiplexed connection.
    fn conn(&self) -> ConnectionManager {
        metrics::COMMANDS.inc();
        self.commands.clone()
    }

    fn ttl_ms(&self) -> u64 {
        self.config.session_idle_ttl.as_millis() as u64
    }

    async fn ensure_broadcasts(&self) -> Result<(), BusError> {
        self.broadcasts_ready
            .get_or_try_init(|| async {
                self.hub
                    .subscribe_channel(self.keys.broadcast_channel())
                    .await?;
                let mut conn = self.conn();
                let head: Option<u64> = conn
                    .get(self.keys.broadcast_seq())
                    .await
                    .map_err(redis_err)?;
                self.hub.set_broadcast_last(head.unwrap_or(0));
                Ok::<(), BusError>(())
            })
            .await
            .map(|_| ())
    }

    async fn blocking_conn(&self) -> Result<ConnectionManager, BusError> {
        self.blocking
            .get_or_try_init(|| async {
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_response_timeout(None)
                    .set_number_of_retries(usize::MAX)
                    .set_max_delay(Duration::from_secs(1))
                    .set_connection_timeout(Some(Duration::from_secs(2)));
                ConnectionManager::new_with_config(self.client.clone(), config)
                    .await
                    .map_err(redis_err)
            })
            .await
            .cloned()
    }

    /// A failed read of the job stream; `NOGROUP` means the group must be made again.
    fn job_read_error(&self, e: redis::RedisError) -> BusError {
        if e.code() == Some("NOGROUP") {
            self.job_group_ready.store(false, Ordering::Release);
        }
        redis_err(e)
    }

    async fn ensure_group(&self) -> Result<(), BusError> {
        let mut conn = self.conn();
        let created: redis::RedisResult<()> = conn
            .xgroup_create_mkstream(self.keys.jobs(), Keys::JOB_GROUP, "0")
            .await;
        match created {
            Ok(()) => Ok(()),
            Err(e) if e.to_string().contains("BUSYGROUP") => Ok(()),
            Err(e) => Err(redis_err(e)),
        }
    }

    async fn live_workers(&self) -> Result<BTreeMap<WorkerId, WorkerInfo>, BusError> {
        let mut conn = self.conn();
        let since = now_ms().saturating_sub(self.config.liveness().as_millis() as u64);
        let (ids, infos): (Vec<String>, std::collections::HashMap<String, String>) = redis::pipe()
            .zrangebyscore(self.keys.worker_heartbeats(), since, "+inf")
            .hgetall(self.keys.workers())
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        Ok(ids
            .into_iter()
            .filter_map(|id| {
                let info: WorkerInfo = serde_json::from_str(infos.get(&id)?).ok()?;
                Some((WorkerId(id), info))
            })
            .collect())
    }

    async fn live_catalog(&self) -> Result<Catalog, BusError> {
        Ok(Catalog::union(self.live_workers().await?.values()))
    }

    async fn announce_changes(&self, before: &Catalog, after: &Catalog) -> Result<(), BusError> {
        for method in before.changes(after) {
            self.broadcast(jsonrpc::notification(method, json!({})))
                .await?;
        }
        Ok(())
    }

    /// Removes workers whose heartbeat stopped.
    async fn prune_dead_workers(&self) -> Result<(), BusError> {
        let mut conn = self.conn();
        let before = now_ms().saturating_sub(self.config.liveness().as_millis() as u64);
        let dead: Vec<String> = conn
            .zrangebyscore(self.keys.worker_heartbeats(), "-inf", format!("({before}"))
            .await
            .map_err(redis_err)?;
        if dead.is_empty() {
            return Ok(());
        }
        let _: () = redis::pipe()
            .zrem(self.keys.worker_heartbeats(), &dead)
            .hdel(self.keys.workers(), &dead)
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        tracing::info!(workers = ?dead, "removed workers whose heartbeat stopped");
        Ok(())
    }

    /// Claims one job that a dead worker left pending, if any.
    async fn claim_abandoned(&self, worker: &WorkerId) -> Result<Option<Job>, BusError> {
        let mut conn = self.conn();
        let reply: StreamAutoClaimReply = conn
            .xautoclaim_options(
                self.keys.jobs(),
                Keys::JOB_GROUP,
                worker.0.as_str(),
                self.config.job_claim_idle.as_millis() as u64,
                "0-0",
                StreamAutoClaimOptions::default().count(1),
            )
            .await
            .map_err(|e| self.job_read_error(e))?;
        let Some(entry) = reply.claimed.into_iter().next() else {
            return Ok(None);
        };
        match Self::job_of(&entry) {
            Some(mut job) => {
                job.attempt += 1;
                tracing::warn!(session = %job.session, request = %job.request_id, attempt = job.attempt, "claimed a job whose worker stopped");
                Ok(Some(job))
            }
            None => {
                let _: () = redis::pipe()
                    .xack(self.keys.jobs(), Keys::JOB_GROUP, &[&entry.id])
                    .xdel(self.keys.jobs(), &[&entry.id])
                    .query_async(&mut conn)
                    .await
                    .map_err(redis_err)?;
                Ok(None)
            }
        }
    }

    fn job_of(entry: &RedisStreamId) -> Option<Job> {
        let mut job: Job = serde_json::from_str(&field_string(entry, "job")?).ok()?;
        job.delivery_id = Some(entry.id.clone());
        Some(job)
    }

    /// Marks a job as taken by `worker`; false if the client cancelled it while queued (the
    /// job is then finished here, with no response, as for any cancelled request).
    async fn take(&self, worker: &WorkerId, job: &Job) -> Result<bool, BusError> {
        let mut conn = self.conn();
        let field = serde_json::to_string(&job.request_id).map_err(corrupt)?;
        let (_, cancelled): ((), i64) = redis::pipe()
            .hset(self.keys.running(&job.session), &field, worker.0.as_str())
            .hdel(self.keys.cancelled(&job.session), &field)
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        if let Some(id) = &job.delivery_id {
            lock(&self.running_jobs).insert(id.clone());
        }
        if cancelled == 0 {
            return Ok(true);
        }
        let _ = self
            .publish(
                &job.session,
                StreamTarget::Request(job.stream),
                EventBody::End,
            )
            .await;
        self.finish_job(worker, job).await?;
        Ok(false)
    }
}

/// Background upkeep: gateway heartbeat, subscription checks against the logs, local
/// subscription collection, refreshing running jobs, keeping the pub/sub connection probed.
async fn maintain(bus: std::sync::Weak<RedisBus>, mut pubsub: ConnectionManager) {
    let period = match bus.upgrade() {
        Some(bus) => bus.config.heartbeat,
        None => return,
    };
    let mut tick = tokio::time::interval(period);
    loop {
        tick.tick().await;
        let Some(bus) = bus.upgrade() else { return };
        // An idle pub/sub connection is probed so a dead one is noticed and re-established.
        if let Err(e) = redis::cmd("PING")
            .query_async::<redis::Value>(&mut pubsub)
            .await
        {
            tracing::debug!(error = %e, "pub/sub probe failed");
        }
        bus.hub.collect_idle();
        let mut conn = bus.conn();
        if let Some(id) = &bus.config.gateway_id {
            let _: redis::RedisResult<()> =
                conn.zadd(bus.keys.gateway_heartbeats(), id, now_ms()).await;
        }
        let running: Vec<String> = lock(&bus.running_jobs).iter().cloned().collect();
        if !running.is_empty() {
            // XCLAIM to ourselves resets the idle time: the job is alive.
            let refreshed: redis::RedisResult<redis::Value> = redis::cmd("XCLAIM")
                .arg(bus.keys.jobs())
                .arg(Keys::JOB_GROUP)
                .arg(running_owner(&bus))
                .arg(0)
                .arg(&running)
                .arg("JUSTID")
                .query_async(&mut conn)
                .await;
            if let Err(e) = refreshed {
                tracing::debug!(error = %e, "refreshing running jobs failed");
            }
        }
        if bus.broadcasts_ready.initialized()
            && let Err(e) = hub::catch_up_broadcasts(&bus.hub, &mut conn, &bus.keys).await
        {
            tracing::debug!(error = %e, "broadcast position check failed");
        }
        for (session, after) in bus.hub.positions() {
            let head: redis::RedisResult<Option<u64>> =
                conn.hget(bus.keys.session(&session), "seq").await;
            if let Ok(Some(head)) = head
                && head > after
                && let Err(e) =
                    hub::catch_up_session(&bus.hub, &mut conn, &bus.keys, &session, after).await
            {
                tracing::debug!(error = %e, "session position check failed");
            }
        }
    }
}

/// The consumer name jobs of this process are held under.
fn running_owner(bus: &RedisBus) -> String {
    lock(&bus.consumer)
        .as_ref()
        .map(|w| w.0.clone())
        .unwrap_or_default()
}

#[async_trait]
impl Bus for RedisBus {
    async fn create_session(&self, record: SessionRecord) -> Result<(), BusError> {
        let mut conn = self.conn();
        let key = self.keys.session(&record.id);
        let rec = serde_json::to_string(&record).map_err(corrupt)?;
        let _: () = redis::pipe()
            .atomic()
            .hset_multiple(
                &key,
                &[
                    ("rec", rec),
                    ("cs", record.standalone_cursor.session_seq.to_string()),
                    ("cb", record.standalone_cursor.broadcast_seq.to_string()),
                    ("seq", "0".to_owned()),
                ],
            )
            .pexpire(&key, self.ttl_ms() as i64)
            .zadd(self.keys.session_index(), record.id.as_str(), now_ms())
            .zadd(
                self.keys.principal_sessions(&record.principal),
                record.id.as_str(),
                now_ms(),
            )
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        Ok(())
    }

    async fn session(&self, id: &SessionId) -> Result<SessionRecord, BusError> {
        let mut conn = self.conn();
        let key = self.keys.session(id);
        let ttl = self.ttl_ms() as i64;
        let ((rec, level, cs, cb),): ((Option<String>, Option<String>, Option<u64>, Option<u64>),) =
            redis::pipe()
                .cmd("HMGET")
                .arg(&key)
                .arg(&["rec", "level", "cs", "cb"])
                .pexpire(&key, ttl)
                .ignore()
                .pexpire(self.keys.log(id), ttl)
                .ignore()
                .zadd(self.keys.session_index(), id.as_str(), now_ms())
                .ignore()
                .query_async(&mut conn)
                .await
                .map_err(redis_err)?;
        let rec = rec.ok_or(BusError::SessionNotFound)?;
        let mut record: SessionRecord = serde_json::from_str(&rec).map_err(corrupt)?;
        record.log_level = level.as_deref().and_then(LogLevel::parse);
        record.standalone_cursor = StandaloneCursor {
            session_seq: cs.unwrap_or(0),
            broadcast_seq: cb.unwrap_or(0),
        };
        Ok(record)
    }

    async fn count_sessions(&self, principal: &str) -> Result<u64, BusError> {
        // Members whose session hash is gone (ended or expired) are dropped as we go, so
        // the set stays as small as the principal's live sessions.
        let mut conn = self.conn();
        let key = self.keys.principal_sessions(principal);
        let members: Vec<String> = conn.zrange(&key, 0, -1).await.map_err(redis_err)?;
        if members.is_empty() {
            return Ok(0);
        }
        let mut pipe = redis::pipe();
        for id in &members {
            let Some(id) = SessionId::parse(id) else {
                continue;
            };
            pipe.exists(self.keys.session(&id));
        }
        let alive: Vec<bool> = pipe.query_async(&mut conn).await.map_err(redis_err)?;
        let dead: Vec<&String> = members
            .iter()
            .zip(&alive)
            .filter(|(_, alive)| !**alive)
            .map(|(id, _)| id)
            .collect();
        if !dead.is_empty() {
            let _: i64 = conn.zrem(&key, dead).await.map_err(redis_err)?;
        }
        Ok(alive.iter().filter(|a| **a).count() as u64)
    }

    async fn touch_session(&self, id: &SessionId) -> Result<(), BusError> {
        let mut conn = self.conn();
        let ttl = self.ttl_ms() as i64;
        let (exists,): (bool,) = redis::pipe()
            .pexpire(self.keys.session(id), ttl)
            .pexpire(self.keys.log(id), ttl)
            .ignore()
            .zadd(self.keys.session_index(), id.as_str(), now_ms())
            .ignore()
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        if exists {
            Ok(())
        } else {
            Err(BusError::SessionNotFound)
        }
    }

    async fn set_log_level(&self, id: &SessionId, level: LogLevel) -> Result<(), BusError> {
        let mut conn = self.conn();
        let done: i64 = scripts::SET_IF_SESSION
            .key(self.keys.session(id))
            .arg("level")
            .arg(level.as_str())
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err)?;
        if done < 0 {
            Err(BusError::SessionNotFound)
        } else {
            Ok(())
        }
    }

    async fn advance_standalone_cursor(
        &self,
        id: &SessionId,
        cursor: StandaloneCursor,
    ) -> Result<(), BusError> {
        let mut conn = self.conn();
        let done: i64 = scripts::ADVANCE_CURSOR
            .key(self.keys.session(id))
            .arg(cursor.session_seq)
            .arg(cursor.broadcast_seq)
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err)?;
        if done < 0 {
            Err(BusError::SessionNotFound)
        } else {
            Ok(())
        }
    }

    async fn end_session(&self, id: &SessionId) -> Result<bool, BusError> {
        let mut conn = self.conn();
        let control = serde_json::to_string(&Control::SessionEnded {
            session: id.clone(),
        })
        .map_err(corrupt)?;
        let existed: i64 = scripts::END_SESSION
            .key(self.keys.session(id))
            .key(self.keys.log(id))
            .key(self.keys.running(id))
            .key(self.keys.cancelled(id))
            .key(self.keys.session_resources(id))
            .arg(self.keys.session_channel(id))
            .arg(self.keys.control_channel())
            .arg(control)
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err)?;
        let _: redis::RedisResult<()> = conn.zrem(self.keys.session_index(), id.as_str()).await;
        Ok(existed == 1)
    }

    async fn publish(
        &self,
        session: &SessionId,
        stream: StreamTarget,
        body: EventBody,
    ) -> Result<u64, BusError> {
        let payload = serde_json::to_string(&StoredEvent {
            stream,
            body,
            emitted_ms: now_ms(),
        })
        .map_err(corrupt)?;
        let mut conn = self.conn();
        let seq: i64 = scripts::PUBLISH_EVENT
            .key(self.keys.session(session))
            .key(self.keys.log(session))
            .arg(self.config.session_log_len.max(1))
            .arg(self.keys.session_channel(session))
            .arg(payload)
            .arg(self.ttl_ms())
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err)?;
        u64::try_from(seq).map_err(|_| BusError::SessionNotFound)
    }

    async fn publish_batch(
        &self,
        session: &SessionId,
        stream: StreamTarget,
        bodies: Vec<EventBody>,
    ) -> Result<u64, BusError> {
        if bodies.len() <= 1 {
            return match bodies.into_iter().next() {
                Some(body) => self.publish(session, stream, body).await,
                None => {
                    let head: Option<u64> = self
                        .conn()
                        .hget(self.keys.session(session), "seq")
                        .await
                        .map_err(redis_err)?;
                    head.ok_or(BusError::SessionNotFound)
                }
            };
        }
        let emitted_ms = now_ms();
        let mut invocation = scripts::PUBLISH_EVENTS.key(self.keys.session(session));
        invocation
            .key(self.keys.log(session))
            .arg(self.config.session_log_len.max(1))
            .arg(self.keys.session_channel(session))
            .arg(self.ttl_ms());
        for body in bodies {
            let payload = serde_json::to_string(&StoredEvent {
                stream,
                body,
                emitted_ms,
            })
            .map_err(corrupt)?;
            invocation.arg(payload);
        }
        let seq: i64 = invocation
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        u64::try_from(seq).map_err(|_| BusError::SessionNotFound)
    }

    async fn subscribe(&self, session: &SessionId) -> Result<SessionSubscription, BusError> {
        let (receiver, _) = self.hub.join(session).await?;
        // Read the head only now that the subscription is in effect.
        let mut conn = self.conn();
        let head: Option<u64> = conn
            .hget(self.keys.session(session), "seq")
            .await
            .map_err(redis_err)?;
        let head = head.ok_or(BusError::SessionNotFound)?;
        let first = self.hub.positions().iter().all(|(id, _)| id != session);
        self.hub.prime(session, head);
        if first {
            // Events published between the head read and priming were not forwarded.
            hub::catch_up_session(&self.hub, &mut conn, &self.keys, session, head).await?;
        }
        Ok(SessionSubscription { head, receiver })
    }

    async fn replay(
        &self,
        session: &SessionId,
        after: u64,
        up_to: u64,
    ) -> Result<Replay<Arc<SessionEvent>>, BusError> {
        let mut conn = self.conn();
        let key = self.keys.log(session);
        let (exists, first, range): (bool, StreamRangeReply, StreamRangeReply) = redis::pipe()
            .exists(self.keys.session(session))
            .xrange_count(&key, "-", "+", 1)
            .xrange(&key, format!("{}-0", after + 1), format!("{up_to}-9"))
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        if !exists {
            return Err(BusError::SessionNotFound);
        }
        let first_retained = first.ids.first().and_then(|e| seq_of_entry_id(&e.id));
        let complete = after >= up_to || first_retained.is_some_and(|f| f <= after + 1);
        let events = range
            .ids
            .iter()
            .filter_map(parse_log_entry)
            .map(Arc::new)
            .collect();
        Ok(Replay { events, complete })
    }

    async fn claim_stream(
        &self,
        session: &SessionId,
        stream: StreamTarget,
        claim: u64,
    ) -> Result<(), BusError> {
        let mut conn = self.conn();
        let stream = serde_json::to_string(&stream).map_err(corrupt)?;
        let _: i64 = conn
            .publish(
                self.keys.session_channel(session),
                format!("c {claim} {stream}"),
            )
            .await
            .map_err(redis_err)?;
        Ok(())
    }

    async fn broadcast(&self, message: Value) -> Result<u64, BusError> {
        let mut conn = self.conn();
        let seq: u64 = scripts::PUBLISH_BROADCAST
            .key(self.keys.broadcast_seq())
            .key(self.keys.broadcast_log())
            .arg(self.config.broadcast_log_len.max(1))
            .arg(self.keys.broadcast_channel())
            .arg(message.to_string())
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err)?;
        Ok(seq)
    }

    async fn subscribe_broadcasts(&self) -> Result<BroadcastSubscription, BusError> {
        self.ensure_broadcasts().await?;
        let receiver = self.hub.broadcasts.subscribe();
        let head = self.broadcast_head().await?;
        Ok(BroadcastSubscription { head, receiver })
    }

    async fn broadcast_head(&self) -> Result<u64, BusError> {
        let mut conn = self.conn();
        let head: Option<u64> = conn
            .get(self.keys.broadcast_seq())
            .await
            .map_err(redis_err)?;
        Ok(head.unwrap_or(0))
    }

    async fn replay_broadcasts(
        &self,
        after: u64,
        up_to: u64,
    ) -> Result<Replay<Arc<BroadcastEvent>>, BusError> {
        let mut conn = self.conn();
        let key = self.keys.broadcast_log();
        let (first, range): (StreamRangeReply, StreamRangeReply) = redis::pipe()
            .xrange_count(&key, "-", "+", 1)
            .xrange(&key, format!("{}-0", after + 1), format!("{up_to}-9"))
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        let first_retained = first.ids.first().and_then(|e| seq_of_entry_id(&e.id));
        let complete = after >= up_to || first_retained.is_some_and(|f| f <= after + 1);
        let events = range
            .ids
            .iter()
            .filter_map(parse_broadcast_entry)
            .map(Arc::new)
            .collect();
        Ok(Replay { events, complete })
    }

    async fn enqueue(&self, job: Job) -> Result<(), BusError> {
        let payload = serde_json::to_string(&job).map_err(corrupt)?;
        let mut conn = self.conn();
        let id: Option<String> = scripts::ENQUEUE
            .key(self.keys.jobs())
            .arg(self.config.job_queue_len.max(1))
            .arg(payload)
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err)?;
        id.map(|_| ()).ok_or(BusError::Overloaded)
    }

    async fn next_job(&self, worker: &WorkerId) -> Result<Job, BusError> {
        if !self.job_group_ready.load(Ordering::Acquire) {
            self.ensure_group().await?;
            self.job_group_ready.store(true, Ordering::Release);
        }
        *lock(&self.consumer) = Some(worker.clone());
        loop {
            let claim_due = {
                let mut last = lock(&self.last_autoclaim);
                let due =
                    last.elapsed() >= self.config.heartbeat.min(self.config.job_claim_idle / 2);
                if due {
                    *last = std::time::Instant::now();
                }
                due
            };
            if claim_due && let Some(job) = self.claim_abandoned(worker).await? {
                if self.take(worker, &job).await? {
                    return Ok(job);
                }
                continue;
            }
            let mut conn = self.blocking_conn().await?;
            metrics::COMMANDS.inc();
            let block_ms = self.config.heartbeat.as_millis().min(2000) as usize;
            let reply: Option<StreamReadReply> = conn
                .xread_options(
                    &[self.keys.jobs()],
                    &[">"],
                    &StreamReadOptions::default()
                        .group(Keys::JOB_GROUP, worker.0.as_str())
                        .count(1)
                        .block(block_ms),
                )
                .await
                .map_err(|e| self.job_read_error(e))?;
            let Some(entry) = reply
                .and_then(|r| r.keys.into_iter().next())
                .and_then(|k| k.ids.into_iter().next())
            else {
                continue;
            };
            let Some(job) = Self::job_of(&entry) else {
                tracing::warn!(id = entry.id, "dropping an unreadable job");
                let mut conn = self.conn();
                let _: () = redis::pipe()
                    .xack(self.keys.jobs(), Keys::JOB_GROUP, &[&entry.id])
                    .xdel(self.keys.jobs(), &[&entry.id])
                    .query_async(&mut conn)
                    .await
                    .map_err(redis_err)?;
                continue;
            };
            if self.take(worker, &job).await? {
                return Ok(job);
            }
        }
    }

    async fn finish_job(&self, _worker: &WorkerId, job: &Job) -> Result<(), BusError> {
        let Some(id) = &job.delivery_id else {
            return Ok(());
        };
        lock(&self.running_jobs).remove(id);
        let field = serde_json::to_string(&job.request_id).map_err(corrupt)?;
        let mut conn = self.conn();
        let _: () = redis::pipe()
            .xack(self.keys.jobs(), Keys::JOB_GROUP, &[id])
            .ignore()
            .xdel(self.keys.jobs(), &[id])
            .ignore()
            .hdel(self.keys.running(&job.session), field)
            .ignore()
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        Ok(())
    }

    async fn send_control(&self, message: Control) -> Result<(), BusError> {
        let payload = serde_json::to_string(&message).map_err(corrupt)?;
        let mut conn = self.conn();
        match &message {
            Control::Cancel {
                session,
                request_id,
                ..
            } => {
                let field = serde_json::to_string(request_id).map_err(corrupt)?;
                // Either the worker's `take` sees the marker, or we see its claim: the
                // marker is written before the second look.
                let running: Option<String> = conn
                    .hget(self.keys.running(session), &field)
                    .await
                    .map_err(redis_err)?;
                let worker = match running {
                    Some(worker) => Some(worker),
                    None => {
                        let (_, _, running): ((), (), Option<String>) = redis::pipe()
                            .hset(self.keys.cancelled(session), &field, 1)
                            .pexpire(self.keys.cancelled(session), self.ttl_ms() as i64)
                            .hget(self.keys.running(session), &field)
                            .query_async(&mut conn)
                            .await
                            .map_err(redis_err)?;
                        running
                    }
                };
                if let Some(worker) = worker {
                    let _: i64 = conn
                        .publish(self.keys.worker_channel(&WorkerId(worker)), payload)
                        .await
                        .map_err(redis_err)?;
                }
            }
            Control::ClientResponse { request_id, .. } => {
                // Our requests to clients are named `<worker id>-<n>`.
                let worker = match request_id {
                    RequestId::String(s) => s.rsplit_once('-').map(|(w, _)| w.to_owned()),
                    RequestId::Number(_) => None,
                };
                match worker {
                    Some(worker) => {
                        let _: i64 = conn
                            .publish(self.keys.worker_channel(&WorkerId(worker)), payload)
                            .await
                            .map_err(redis_err)?;
                    }
                    None => {
                        tracing::debug!(request = %request_id, "a response to no request of ours")
                    }
                }
            }
            Control::SessionEnded { .. } | Control::SetListed { .. } => {
                let _: i64 = conn
                    .publish(self.keys.control_channel(), payload)
                    .await
                    .map_err(redis_err)?;
            }
        }
        Ok(())
    }

    async fn subscribe_control(
        &self,
        worker: &WorkerId,
    ) -> Result<broadcast::Receiver<Control>, BusError> {
        let receiver = self.hub.control.subscribe();
        self.control_ready
            .get_or_try_init(|| self.hub.subscribe_channel(self.keys.control_channel()))
            .await?;
        // Marked only once subscribed, so a failed attempt is retried by the next call.
        let known = lock(&self.control_subscribed).contains(worker);
        if !known {
            self.hub
                .subscribe_channel(self.keys.worker_channel(worker))
                .await?;
            lock(&self.control_subscribed).insert(worker.clone());
        }
        Ok(receiver)
    }

    async fn register_worker(&self, info: WorkerInfo) -> Result<(), BusError> {
        let before = self.live_catalog().await?;
        self.prune_dead_workers().await?;
        let mut conn = self.conn();
        let _: () = redis::pipe()
            .hset(
                self.keys.workers(),
                info.id.0.as_str(),
                serde_json::to_string(&info).map_err(corrupt)?,
            )
            .ignore()
            .zadd(self.keys.worker_heartbeats(), info.id.0.as_str(), now_ms())
            .ignore()
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        // Pruning dead workers or adding this one may change the union either way.
        let after = self.live_catalog().await?;
        self.announce_changes(&before, &after).await
    }

    async fn deregister_worker(&self, id: &WorkerId) -> Result<(), BusError> {
        let before = self.live_catalog().await?;
        let mut conn = self.conn();
        let _: () = redis::pipe()
            .hdel(self.keys.workers(), id.0.as_str())
            .ignore()
            .zrem(self.keys.worker_heartbeats(), id.0.as_str())
            .ignore()
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        let after = self.live_catalog().await?;
        self.announce_changes(&before, &after).await
    }

    async fn catalog(&self) -> Result<Catalog, BusError> {
        self.live_catalog().await
    }

    async fn subscribe_resource(&self, session: &SessionId, uri: &str) -> Result<(), BusError> {
        let mut conn = self.conn();
        let ttl = self.ttl_ms() as i64;
        let (exists, (), (), ()): (bool, (), (), ()) = redis::pipe()
            .exists(self.keys.session(session))
            .sadd(self.keys.session_resources(session), uri)
            .ignore()
            .pexpire(self.keys.session_resources(session), ttl)
            .ignore()
            .sadd(self.keys.resource_subscribers(uri), session.as_str())
            .ignore()
            .query_async::<(bool,)>(&mut conn)
            .await
            .map(|(e,)| (e, (), (), ()))
            .map_err(redis_err)?;
        if !exists {
            let _: redis::RedisResult<()> = redis::pipe()
                .srem(self.keys.resource_subscribers(uri), session.as_str())
                .del(self.keys.session_resources(session))
                .query_async(&mut conn)
                .await;
            return Err(BusError::SessionNotFound);
        }
        Ok(())
    }

    async fn unsubscribe_resource(&self, session: &SessionId, uri: &str) -> Result<(), BusError> {
        let mut conn = self.conn();
        let (exists,): (bool,) = redis::pipe()
            .exists(self.keys.session(session))
            .srem(self.keys.session_resources(session), uri)
            .ignore()
            .srem(self.keys.resource_subscribers(uri), session.as_str())
            .ignore()
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        if exists {
            Ok(())
        } else {
            Err(BusError::SessionNotFound)
        }
    }

    async fn resource_updated(&self, uri: &str) -> Result<u64, BusError> {
        let subscribers: Vec<String> = {
            let mut conn = self.conn();
            conn.smembers(self.keys.resource_subscribers(uri))
                .await
                .map_err(redis_err)?
        };
        let message = jsonrpc::notification("notifications/resources/updated", json!({"uri": uri}));
        let mut notified = 0;
        let mut gone = Vec::new();
        for id in subscribers {
            let Some(session) = SessionId::parse(&id) else {
                continue;
            };
            // One publish per session keeps each session's keys in one slot (cluster-safe).
            match self
                .publish(
                    &session,
                    StreamTarget::Standalone,
                    EventBody::Message(message.clone()),
                )
                .await
            {
                Ok(_) => notified += 1,
                Err(BusError::SessionNotFound) => gone.push(id),
                Err(e) => return Err(e),
            }
        }
        if !gone.is_empty() {
            let mut conn = self.conn();
            let _: i64 = conn
                .srem(self.keys.resource_subscribers(uri), &gone)
                .await
                .map_err(redis_err)?;
        }
        Ok(notified)
    }

    async fn stats(&self) -> Result<ClusterStats, BusError> {
        let workers = self.live_workers().await?.len() as u64;
        let mut conn = self.conn();
        let live_since = now_ms().saturating_sub(self.config.liveness().as_millis() as u64);
        let session_since = now_ms().saturating_sub(self.ttl_ms());
        let (gateways, sessions, jobs): (u64, u64, u64) = redis::pipe()
            .zcount(self.keys.gateway_heartbeats(), live_since, "+inf")
            .zcount(self.keys.session_index(), session_since, "+inf")
            .xlen(self.keys.jobs())
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        Ok(ClusterStats {
            gateways,
            sessions,
            workers,
            jobs_in_flight: jobs,
        })
    }

    async fn adopt_call(
        &self,
        worker: &WorkerId,
        session: &SessionId,
        request_id: &RequestId,
    ) -> Result<(), BusError> {
        let field = serde_json::to_string(request_id).map_err(corrupt)?;
        let key = self.keys.running(session);
        let mut conn = self.conn();
        let ((), ()) = redis::pipe()
            .hset(&key, &field, &worker.0)
            .pexpire(&key, self.ttl_ms() as i64)
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        Ok(())
    }

    fn session_idle_ttl(&self) -> Duration {
        self.config.session_idle_ttl
    }

    async fn shared_secret(&self, name: &str) -> Result<Vec<u8>, BusError> {
        let key = self.keys.secret(name);
        let candidate: String = rand::random::<[u8; 32]>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut conn = self.conn();
        // SET NX then GET: whichever node comes first decides, every node reads the same.
        let (secret,): (String,) = redis::pipe()
            .cmd("SET")
            .arg(&key)
            .arg(&candidate)
            .arg("NX")
            .ignore()
            .get(&key)
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        Ok(secret.into_bytes())
    }

    async fn health(&self) -> Result<(), BusError> {
        let mut conn = self.conn();
        let _: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        Ok(())
    }
}
