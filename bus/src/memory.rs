//! The in-process bus: one gateway and its embedded worker in one process, no Redis.
//!
//! Each session is a slot behind its own mutex (the map lock is held only to find the
//! slot), so sessions do not contend with each other. Appending to a log and offering
//! the event to live subscribers happen under the slot's lock, which is what makes
//! "subscribe, then replay" exact. No lock is held across an `.await`.

use crate::contract::{BroadcastSubscription, Bus, Replay, SessionSubscription};
use crate::error::BusError;
use crate::ids::{SessionId, WorkerId};
use crate::live::{self, LiveSender};
use crate::message::{
    BroadcastEvent, Catalog, ClusterStats, Control, EventBody, Job, Live, SessionEvent,
    SessionRecord, StandaloneCursor, StreamTarget, WorkerInfo,
};
use crate::now_ms;
use crate::quota::{AuditFields, MemoryAudit, MemoryQuotas, RateVerdict};
use async_trait::async_trait;
use mcp_protocol::{LogLevel, RequestId, jsonrpc};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

/// Sizes and timeouts of the memory bus.
#[derive(Debug, Clone)]
pub struct MemoryBusConfig {
    /// Events kept per session log.
    pub session_log_len: usize,
    /// Broadcasts kept in the broadcast log.
    pub broadcast_log_len: usize,
    /// Live events a subscriber may fall behind before it is told it lagged.
    pub live_queue_len: usize,
    /// Jobs waiting for a worker before `enqueue` refuses more.
    pub job_queue_len: usize,
    /// A session unused for this long is ended.
    pub session_idle_ttl: Duration,
}

impl Default for MemoryBusConfig {
    fn default() -> Self {
        Self {
            session_log_len: 1024,
            broadcast_log_len: 1024,
            live_queue_len: 256,
            job_queue_len: 10_000,
            session_idle_ttl: Duration::from_secs(30 * 60),
        }
    }
}

/// The in-process [`Bus`].
pub struct MemoryBus {
    config: MemoryBusConfig,
    sessions: Mutex<HashMap<SessionId, Arc<Mutex<SessionSlot>>>>,
    broadcasts: Mutex<BroadcastLog>,
    jobs_tx: async_channel::Sender<Job>,
    jobs_rx: async_channel::Receiver<Job>,
    jobs_in_flight: AtomicU64,
    control: broadcast::Sender<Control>,
    workers: Mutex<BTreeMap<WorkerId, WorkerInfo>>,
    /// Resource URI → the sessions subscribed to it.
    resource_subscriptions: Mutex<HashMap<String, HashSet<SessionId>>>,
    /// Secrets by name, made on first use.
    secrets: Mutex<HashMap<String, Vec<u8>>>,
    /// Values of `exchange_value`, by name.
    values: Mutex<HashMap<String, String>>,
    quotas: MemoryQuotas,
    audit: MemoryAudit,
}

struct SessionSlot {
    record: SessionRecord,
    log: VecDeque<Arc<SessionEvent>>,
    last_seq: u64,
    /// Created on first subscription and dropped when nobody listens, so idle sessions
    /// cost no queue memory.
    live: Option<LiveSender<Live>>,
    last_used: Instant,
}

struct BroadcastLog {
    log: VecDeque<Arc<BroadcastEvent>>,
    last_seq: u64,
    live: broadcast::Sender<Arc<BroadcastEvent>>,
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it: every critical
/// section here leaves the data consistent, so the poison carries no information.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl MemoryBus {
    /// A new bus. Spawns the idle-session sweeper on the current tokio runtime; it stops
    /// when the bus is dropped.
    pub fn new(config: MemoryBusConfig) -> Arc<Self> {
        let (jobs_tx, jobs_rx) = async_channel::bounded(config.job_queue_len.max(1));
        let (control, _) = broadcast::channel(4096);
        let (bcast_tx, _) = broadcast::channel(config.live_queue_len.max(1));
        let bus = Arc::new(Self {
            config,
            sessions: Mutex::new(HashMap::new()),
            broadcasts: Mutex::new(BroadcastLog {
                log: VecDeque::new(),
                last_seq: 0,
                live: bcast_tx,
            }),
            jobs_tx,
            jobs_rx,
            jobs_in_flight: AtomicU64::new(0),
            control,
            workers: Mutex::new(BTreeMap::new()),
            resource_subscriptions: Mutex::new(HashMap::new()),
            secrets: Mutex::new(HashMap::new()),
            values: Mutex::new(HashMap::new()),
            quotas: MemoryQuotas::default(),
            audit: MemoryAudit::default(),
        });
        let period = (bus.config.session_idle_ttl / 4)
            .clamp(Duration::from_millis(50), Duration::from_secs(10));
        tokio::spawn(sweep_idle_sessions(Arc::downgrade(&bus), period));
        bus
    }

    fn slot(&self, id: &SessionId) -> Result<Arc<Mutex<SessionSlot>>, BusError> {
        lock(&self.sessions)
            .get(id)
            .cloned()
            .ok_or(BusError::SessionNotFound)
    }

    fn remove_session(&self, id: &SessionId) -> bool {
        let removed = lock(&self.sessions).remove(id);
        let Some(slot) = removed else { return false };
        if let Some(live) = lock(&slot).live.take() {
            let _ = live.send(Live::SessionEnded);
        }
        let _ = self.control.send(Control::SessionEnded {
            session: id.clone(),
        });
        lock(&self.resource_subscriptions).retain(|_, sessions| {
            sessions.remove(id);
            !sessions.is_empty()
        });
        true
    }

    fn announce_changes(&self, before: &Catalog, after: &Catalog) {
        for method in before.changes(after) {
            self.publish_broadcast(jsonrpc::notification(method, json!({})));
        }
    }

    fn publish_broadcast(&self, message: Value) -> u64 {
        let mut log = lock(&self.broadcasts);
        log.last_seq += 1;
        let event = Arc::new(BroadcastEvent::new(log.last_seq, message, now_ms()));
        log.log.push_back(event.clone());
        while log.log.len() > self.config.broadcast_log_len {
            log.log.pop_front();
        }
        let _ = log.live.send(event);
        log.last_seq
    }
}

async fn sweep_idle_sessions(bus: Weak<MemoryBus>, period: Duration) {
    let mut tick = tokio::time::interval(period);
    loop {
        tick.tick().await;
        let Some(bus) = bus.upgrade() else { return };
        let ttl = bus.config.session_idle_ttl;
        let expired: Vec<SessionId> = lock(&bus.sessions)
            .iter()
            .filter(|(_, slot)| lock(slot).last_used.elapsed() > ttl)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            tracing::debug!(session = %id, "session expired after idle timeout");
            bus.remove_session(&id);
        }
    }
}

fn replay_range<T: Clone>(
    log: &VecDeque<T>,
    seq_of: impl Fn(&T) -> u64,
    after: u64,
    up_to: u64,
) -> Replay<T> {
    let first_retained = log.front().map(&seq_of);
    let complete = after >= up_to || first_retained.is_some_and(|first| first <= after + 1);
    let events = log
        .iter()
        .filter(|e| {
            let s = seq_of(e);
            s > after && s <= up_to
        })
        .cloned()
        .collect();
    Replay { events, complete }
}

#[async_trait]
impl Bus for MemoryBus {
    async fn create_session(&self, record: SessionRecord) -> Result<(), BusError> {
        let id = record.id.clone();
        let slot = SessionSlot {
            record,
            log: VecDeque::new(),
            last_seq: 0,
            live: None,
            last_used: Instant::now(),
        };
        lock(&self.sessions).insert(id, Arc::new(Mutex::new(slot)));
        Ok(())
    }

    async fn session(&self, id: &SessionId) -> Result<SessionRecord, BusError> {
        let slot = self.slot(id)?;
        let mut slot = lock(&slot);
        slot.last_used = Instant::now();
        Ok(slot.record.clone())
    }

    async fn count_sessions(&self, principal: &str) -> Result<u64, BusError> {
        let slots: Vec<_> = lock(&self.sessions).values().cloned().collect();
        Ok(slots
            .iter()
            .filter(|slot| {
                let slot = lock(slot);
                slot.record.principal == principal
            })
            .count() as u64)
    }

    async fn touch_session(&self, id: &SessionId) -> Result<(), BusError> {
        let slot = self.slot(id)?;
        lock(&slot).last_used = Instant::now();
        Ok(())
    }

    async fn set_log_level(&self, id: &SessionId, level: LogLevel) -> Result<(), BusError> {
        let slot = self.slot(id)?;
        lock(&slot).record.log_level = Some(level);
        Ok(())
    }

    async fn advance_standalone_cursor(
        &self,
        id: &SessionId,
        cursor: StandaloneCursor,
    ) -> Result<(), BusError> {
        let slot = self.slot(id)?;
        let mut slot = lock(&slot);
        let current = &mut slot.record.standalone_cursor;
        current.session_seq = current.session_seq.max(cursor.session_seq);
        current.broadcast_seq = current.broadcast_seq.max(cursor.broadcast_seq);
        Ok(())
    }

    async fn end_session(&self, id: &SessionId) -> Result<bool, BusError> {
        Ok(self.remove_session(id))
    }

    async fn publish(
        &self,
        session: &SessionId,
        stream: StreamTarget,
        body: EventBody,
    ) -> Result<u64, BusError> {
        self.publish_batch(session, stream, vec![body]).await
    }

    async fn publish_batch(
        &self,
        session: &SessionId,
        stream: StreamTarget,
        bodies: Vec<EventBody>,
    ) -> Result<u64, BusError> {
        let slot = self.slot(session)?;
        let mut slot = lock(&slot);
        let emitted_ms = now_ms();
        for body in bodies {
            slot.last_seq += 1;
            let event = Arc::new(SessionEvent {
                seq: slot.last_seq,
                stream,
                body,
                emitted_ms,
            });
            slot.log.push_back(event.clone());
            while slot.log.len() > self.config.session_log_len {
                slot.log.pop_front();
            }
            if let Some(live) = &slot.live
                && live.send(Live::Event(event)).is_err()
            {
                slot.live = None;
            }
        }
        Ok(slot.last_seq)
    }

    async fn subscribe(&self, session: &SessionId) -> Result<SessionSubscription, BusError> {
        let slot = self.slot(session)?;
        let mut slot = lock(&slot);
        let receiver = match &slot.live {
            Some(live) => live.subscribe(),
            None => {
                let (tx, rx) = live::channel(self.config.live_queue_len);
                slot.live = Some(tx);
                rx
            }
        };
        Ok(SessionSubscription {
            head: slot.last_seq,
            receiver,
        })
    }

    async fn replay(
        &self,
        session: &SessionId,
        after: u64,
        up_to: u64,
    ) -> Result<Replay<Arc<SessionEvent>>, BusError> {
        let slot = self.slot(session)?;
        let slot = lock(&slot);
        Ok(replay_range(&slot.log, |e| e.seq, after, up_to))
    }

    async fn claim_stream(
        &self,
        session: &SessionId,
        stream: StreamTarget,
        claim: u64,
    ) -> Result<(), BusError> {
        let slot = self.slot(session)?;
        let slot = lock(&slot);
        if let Some(live) = &slot.live {
            let _ = live.send(Live::StreamClaimed { stream, claim });
        }
        Ok(())
    }

    async fn broadcast(&self, message: Value) -> Result<u64, BusError> {
        Ok(self.publish_broadcast(message))
    }

    async fn subscribe_broadcasts(&self) -> Result<BroadcastSubscription, BusError> {
        let log = lock(&self.broadcasts);
        Ok(BroadcastSubscription {
            head: log.last_seq,
            receiver: log.live.subscribe(),
        })
    }

    async fn broadcast_head(&self) -> Result<u64, BusError> {
        Ok(lock(&self.broadcasts).last_seq)
    }

    async fn replay_broadcasts(
        &self,
        after: u64,
        up_to: u64,
    ) -> Result<Replay<Arc<BroadcastEvent>>, BusError> {
        let log = lock(&self.broadcasts);
        Ok(replay_range(&log.log, |e| e.seq, after, up_to))
    }

    async fn enqueue(&self, job: Job) -> Result<(), BusError> {
        match self.jobs_tx.try_send(job) {
            Ok(()) => {
                self.jobs_in_flight.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(async_channel::TrySendError::Full(_)) => Err(BusError::Overloaded),
            Err(async_channel::TrySendError::Closed(_)) => Err(BusError::Closed),
        }
    }

    async fn next_job(&self, _worker: &WorkerId) -> Result<Job, BusError> {
        self.jobs_rx.recv().await.map_err(|_| BusError::Closed)
    }

    async fn finish_job(&self, _worker: &WorkerId, _job: &Job) -> Result<(), BusError> {
        let _ = self
            .jobs_in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        Ok(())
    }

    async fn send_control(&self, message: Control) -> Result<(), BusError> {
        // No receiver means no worker holds anything the message could concern.
        let _ = self.control.send(message);
        Ok(())
    }

    async fn subscribe_control(
        &self,
        _worker: &WorkerId,
    ) -> Result<broadcast::Receiver<Control>, BusError> {
        Ok(self.control.subscribe())
    }

    async fn register_worker(&self, info: WorkerInfo) -> Result<(), BusError> {
        let (before, after) = {
            let mut workers = lock(&self.workers);
            let before = Catalog::union(workers.values());
            workers.insert(info.id.clone(), info);
            (before, Catalog::union(workers.values()))
        };
        self.announce_changes(&before, &after);
        Ok(())
    }

    async fn deregister_worker(&self, id: &WorkerId) -> Result<(), BusError> {
        let (before, after) = {
            let mut workers = lock(&self.workers);
            let before = Catalog::union(workers.values());
            workers.remove(id);
            (before, Catalog::union(workers.values()))
        };
        self.announce_changes(&before, &after);
        Ok(())
    }

    async fn catalog(&self) -> Result<Catalog, BusError> {
        Ok(Catalog::union(lock(&self.workers).values()))
    }

    async fn subscribe_resource(&self, session: &SessionId, uri: &str) -> Result<(), BusError> {
        self.slot(session)?;
        lock(&self.resource_subscriptions)
            .entry(uri.to_owned())
            .or_default()
            .insert(session.clone());
        Ok(())
    }

    async fn unsubscribe_resource(&self, session: &SessionId, uri: &str) -> Result<(), BusError> {
        self.slot(session)?;
        let mut subscriptions = lock(&self.resource_subscriptions);
        if let Some(sessions) = subscriptions.get_mut(uri) {
            sessions.remove(session);
            if sessions.is_empty() {
                subscriptions.remove(uri);
            }
        }
        Ok(())
    }

    async fn resource_updated(&self, uri: &str) -> Result<u64, BusError> {
        let sessions: Vec<SessionId> = lock(&self.resource_subscriptions)
            .get(uri)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        let message = jsonrpc::notification("notifications/resources/updated", json!({"uri": uri}));
        let mut notified = 0;
        for session in sessions {
            let published = self
                .publish(
                    &session,
                    StreamTarget::Standalone,
                    EventBody::Message(message.clone()),
                )
                .await;
            if published.is_ok() {
                notified += 1;
            }
        }
        Ok(notified)
    }

    async fn stats(&self) -> Result<ClusterStats, BusError> {
        let sessions = lock(&self.sessions)
            .values()
            .filter(|slot| !lock(slot).record.ephemeral)
            .count() as u64;
        Ok(ClusterStats {
            gateways: 1,
            sessions,
            workers: lock(&self.workers).len() as u64,
            jobs_in_flight: self.jobs_in_flight.load(Ordering::Relaxed),
        })
    }

    async fn adopt_call(
        &self,
        _worker: &WorkerId,
        _session: &SessionId,
        _request_id: &RequestId,
    ) -> Result<(), BusError> {
        // Every worker here sees every control message: nothing to route.
        Ok(())
    }

    fn session_idle_ttl(&self) -> Duration {
        self.config.session_idle_ttl
    }

    async fn shared_secret(&self, name: &str) -> Result<Vec<u8>, BusError> {
        Ok(lock(&self.secrets)
            .entry(name.to_owned())
            .or_insert_with(|| rand::random::<[u8; 32]>().to_vec())
            .clone())
    }

    async fn exchange_value(&self, name: &str, value: &str) -> Result<Option<String>, BusError> {
        Ok(lock(&self.values).insert(name.to_owned(), value.to_owned()))
    }

    async fn health(&self) -> Result<(), BusError> {
        Ok(())
    }

    async fn quota_take(
        &self,
        budget: &str,
        period: Duration,
        burst: u32,
    ) -> Result<RateVerdict, BusError> {
        Ok(self.quotas.take(budget, period, burst))
    }

    async fn quota_acquire(
        &self,
        budget: &str,
        slot: &str,
        limit: u32,
        lease: Duration,
    ) -> Result<bool, BusError> {
        Ok(self.quotas.acquire(budget, slot, limit, lease))
    }

    async fn quota_release(&self, budget: &str, slot: &str) -> Result<(), BusError> {
        self.quotas.release(budget, slot);
        Ok(())
    }

    async fn audit_append(
        &self,
        records: Vec<AuditFields>,
        max_len: usize,
    ) -> Result<(), BusError> {
        self.audit.append(records, max_len);
        Ok(())
    }

    async fn audit_tail(&self, count: usize) -> Result<Vec<AuditFields>, BusError> {
        Ok(self.audit.tail(count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bus_with(config: MemoryBusConfig) -> Arc<dyn Bus> {
        MemoryBus::new(config)
    }

    #[tokio::test]
    async fn passes_the_bus_conformance_suite() {
        crate::conformance::run_all(|limits| {
            bus_with(MemoryBusConfig {
                session_log_len: limits.session_log_len,
                live_queue_len: limits.live_queue_len,
                ..Default::default()
            })
        })
        .await;
    }

    fn short_idle_bus() -> Arc<dyn Bus> {
        bus_with(MemoryBusConfig {
            session_idle_ttl: crate::conformance::SHORT_IDLE_TTL,
            ..Default::default()
        })
    }

    #[tokio::test]
    async fn conformance_idle_expiry_reaches_subscribers_and_workers() {
        crate::conformance::idle_expiry_reaches_subscribers_and_workers(short_idle_bus()).await;
    }

    #[tokio::test]
    async fn conformance_principal_counts_follow_live_sessions() {
        crate::conformance::principal_counts_follow_live_sessions(short_idle_bus()).await;
    }

    #[tokio::test]
    async fn idle_sessions_expire_and_subscribers_hear_it() {
        let bus = bus_with(MemoryBusConfig {
            session_idle_ttl: Duration::from_millis(100),
            ..Default::default()
        });
        let record = crate::conformance::record();
        bus.create_session(record.clone()).await.unwrap();
        let mut sub = bus.subscribe(&record.id).await.unwrap();
        let notice = tokio::time::timeout(Duration::from_secs(5), sub.receiver.recv())
            .await
            .expect("the sweeper ends the idle session")
            .unwrap();
        assert_eq!(notice, Live::SessionEnded);
        assert!(matches!(
            bus.session(&record.id).await,
            Err(BusError::SessionNotFound)
        ));
    }
}
