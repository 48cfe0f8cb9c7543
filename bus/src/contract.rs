//! The [`Bus`] trait: the contract every implementation keeps.
//!
//! # Guarantees
//! - **Dense, ordered session logs.** Each session has one event log. [`Bus::publish`]
//!   gives an event the next sequence number of its session (1, 2, 3, …: no gaps, never
//!   reused) and, in the same atomic step, appends it to the log and offers it to live
//!   subscribers. Events of one session are seen by every subscriber in `seq` order.
//! - **Subscribe, then replay.** [`Bus::subscribe`] returns `head`, the last `seq` appended
//!   before the subscription took effect. Every event after `head` arrives live; every event
//!   up to `head` is in the log (unless trimmed). A reader that subscribes first, replays
//!   `(cursor, head]` and then takes live events with `seq > head` sees each event exactly
//!   once: this is how resumption avoids both loss and duplicates.
//! - **Bounded logs, honest trimming.** Logs keep the newest events up to a configured
//!   length. [`Replay::complete`] is false when events after the requested cursor were
//!   trimmed: the caller must refuse the resumption rather than replay a partial history.
//! - **Bounded live queues.** A subscriber that falls behind by more than the configured
//!   queue length gets `RecvError::Lagged` from its receiver. It must close its stream
//!   (the client resumes from its last event id); the bus never buffers without bound.
//! - **Broadcasts** follow the same rules on one cluster-wide broadcast log.
//! - **Jobs** are delivered to one worker each. A job is in flight from
//!   [`Bus::enqueue`] until [`Bus::finish_job`].
//! - **Control messages** reach the worker(s) that may hold the affected request or session.
//! - **Quotas** are shared by every node: a rate budget (GCRA) admits `burst` calls at
//!   once and then one per period, counted atomically on one clock (the store's) whichever
//!   node asks; a running-calls budget holds at most `limit` slots, each leased: a slot its
//!   holder never releases (a node that died) is free again when its lease runs out.
//! - **Audit** records go to one cluster-wide log, bounded: it keeps at least the newest
//!   `max_len` records and at most about that many (within one storage block).
//! - **Session end** ([`Bus::end_session`], or idle expiry) reaches every subscriber of the
//!   session as [`Live::SessionEnded`] and every worker as [`Control::SessionEnded`]; the
//!   session's log goes with it.
//!
//! [`Live::SessionEnded`]: crate::Live::SessionEnded
//! [`Control::SessionEnded`]: crate::Control::SessionEnded

use crate::error::BusError;
use crate::ids::{SessionId, WorkerId};
use crate::live::LiveReceiver;
use crate::message::{
    BroadcastEvent, Catalog, ClusterStats, Control, EventBody, Job, Live, SessionEvent,
    SessionRecord, StandaloneCursor, StreamTarget, WorkerInfo,
};
use crate::quota::{AuditFields, RateVerdict};
use async_trait::async_trait;
use mcp_protocol::{LogLevel, RequestId, Tool};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

/// A live subscription to one session's events.
#[derive(Debug)]
pub struct SessionSubscription {
    /// The last `seq` appended before the subscription took effect (0 for an empty log).
    pub head: u64,
    /// Live events with `seq > head`, and session notices.
    pub receiver: LiveReceiver<Live>,
}

/// A live subscription to the broadcast log.
#[derive(Debug)]
pub struct BroadcastSubscription {
    /// The last broadcast `seq` published before the subscription took effect.
    pub head: u64,
    /// Live broadcasts with `seq > head`.
    pub receiver: broadcast::Receiver<Arc<BroadcastEvent>>,
}

/// The result of reading a log range.
#[derive(Debug, Clone, PartialEq)]
pub struct Replay<T> {
    /// The events found, in `seq` order.
    pub events: Vec<T>,
    /// False when events in the requested range had already been trimmed from the log.
    pub complete: bool,
}

/// The seam between gateways and workers. See the module documentation for the contract.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    // ----- sessions -----

    /// Stores a new session.
    async fn create_session(&self, record: SessionRecord) -> Result<(), BusError>;

    /// Loads a session and restarts its idle timer.
    async fn session(&self, id: &SessionId) -> Result<SessionRecord, BusError>;

    /// How many live sessions `principal` holds (for the per-principal session limit):
    /// every session recorded with that principal, ephemeral ones included (listen
    /// streams and tasks are state a principal holds too).
    async fn count_sessions(&self, principal: &str) -> Result<u64, BusError>;

    /// Restarts a session's idle timer (a gateway holding a stream of it calls this).
    async fn touch_session(&self, id: &SessionId) -> Result<(), BusError>;

    /// Sets the session's minimum log level (`logging/setLevel`).
    async fn set_log_level(&self, id: &SessionId, level: LogLevel) -> Result<(), BusError>;

    /// Moves the session's standalone cursor forward (never back): a later fresh standalone
    /// stream starts after it.
    async fn advance_standalone_cursor(
        &self,
        id: &SessionId,
        cursor: StandaloneCursor,
    ) -> Result<(), BusError>;

    /// Ends a session everywhere. Returns false if it did not exist.
    async fn end_session(&self, id: &SessionId) -> Result<bool, BusError>;

    // ----- session events -----

    /// Appends an event to the session's log and publishes it to live subscribers, as one
    /// atomic step. Returns its `seq`.
    async fn publish(
        &self,
        session: &SessionId,
        stream: StreamTarget,
        body: EventBody,
    ) -> Result<u64, BusError>;

    /// Appends several events of one stream, in order, exactly as that many `publish`
    /// calls would (dense `seq`s, each event logged and published), in one round trip where
    /// the bus has round trips. Returns the `seq` of the last one (the head if `bodies` is
    /// empty). A job's messages queued while its previous publish was in flight go out
    /// this way.
    async fn publish_batch(
        &self,
        session: &SessionId,
        stream: StreamTarget,
        bodies: Vec<EventBody>,
    ) -> Result<u64, BusError>;

    /// Subscribes to the session's live events.
    async fn subscribe(&self, session: &SessionId) -> Result<SessionSubscription, BusError>;

    /// Reads the session's events with `after < seq <= up_to`.
    async fn replay(
        &self,
        session: &SessionId,
        after: u64,
        up_to: u64,
    ) -> Result<Replay<Arc<SessionEvent>>, BusError>;

    /// Tells every holder of `stream` that the connection with `claim` now delivers it;
    /// theirs must close.
    async fn claim_stream(
        &self,
        session: &SessionId,
        stream: StreamTarget,
        claim: u64,
    ) -> Result<(), BusError>;

    // ----- broadcasts -----

    /// Appends a notification to the broadcast log and publishes it. Returns its `seq`.
    async fn broadcast(&self, message: Value) -> Result<u64, BusError>;

    /// Subscribes to live broadcasts.
    async fn subscribe_broadcasts(&self) -> Result<BroadcastSubscription, BusError>;

    /// The `seq` of the newest broadcast (0 if none).
    async fn broadcast_head(&self) -> Result<u64, BusError>;

    /// Reads broadcasts with `after < seq <= up_to`.
    async fn replay_broadcasts(
        &self,
        after: u64,
        up_to: u64,
    ) -> Result<Replay<Arc<BroadcastEvent>>, BusError>;

    // ----- jobs -----

    /// Queues a job for some worker. Fails with [`BusError::Overloaded`] when the queue is full.
    async fn enqueue(&self, job: Job) -> Result<(), BusError>;

    /// Waits for the next job for this worker.
    async fn next_job(&self, worker: &WorkerId) -> Result<Job, BusError>;

    /// Marks a job done (answered, failed or cancelled).
    async fn finish_job(&self, worker: &WorkerId, job: &Job) -> Result<(), BusError>;

    // ----- control -----

    /// Sends a control message to the worker(s) concerned.
    async fn send_control(&self, message: Control) -> Result<(), BusError>;

    /// Records that `worker` now runs the call `(session, request_id)`, so that a
    /// [`Control::Cancel`] for it reaches that worker: for a call that moved to a session
    /// of its own (a task), which no job of that session announced.
    async fn adopt_call(
        &self,
        worker: &WorkerId,
        session: &SessionId,
        request_id: &RequestId,
    ) -> Result<(), BusError>;

    /// The control messages this worker must see.
    async fn subscribe_control(
        &self,
        worker: &WorkerId,
    ) -> Result<broadcast::Receiver<Control>, BusError>;

    // ----- registry -----

    /// Announces (or refreshes) a worker and what it serves. What a worker serves may
    /// change from one call to the next (its upstream MCP servers come and go): the new
    /// announcement replaces the old. When the union of all workers' tools, resources or
    /// prompts changes, every session is sent the matching
    /// `notifications/{tools,resources,prompts}/list_changed`, once per change.
    async fn register_worker(&self, info: WorkerInfo) -> Result<(), BusError>;

    /// Removes a worker from the registry (clean shutdown).
    async fn deregister_worker(&self, id: &WorkerId) -> Result<(), BusError>;

    /// The union of all live workers' tools, sorted by name.
    async fn tools(&self) -> Result<Vec<Tool>, BusError> {
        Ok(self.catalog().await?.tools)
    }

    /// The union of everything the live workers serve.
    async fn catalog(&self) -> Result<Catalog, BusError>;

    // ----- resource subscriptions -----

    /// Subscribes a session to updates of a resource (`resources/subscribe`).
    async fn subscribe_resource(&self, session: &SessionId, uri: &str) -> Result<(), BusError>;

    /// Ends a session's subscription to a resource (`resources/unsubscribe`).
    async fn unsubscribe_resource(&self, session: &SessionId, uri: &str) -> Result<(), BusError>;

    /// Sends `notifications/resources/updated` to the standalone stream of every session
    /// subscribed to `uri`, whichever gateway holds it. Returns how many were notified.
    async fn resource_updated(&self, uri: &str) -> Result<u64, BusError>;

    // ----- quotas -----

    /// Draws one call from the rate budget `budget` (GCRA: `burst` calls at once, then one
    /// per `period`), or says how long until the next call would be admitted. A refused
    /// call draws nothing. The budget's state lives until it is full again, no longer.
    async fn quota_take(
        &self,
        budget: &str,
        period: Duration,
        burst: u32,
    ) -> Result<RateVerdict, BusError>;

    /// Takes one of the `limit` running-call slots of `budget` under the id `slot` (unique
    /// per call), leased for `lease`. False when all are held. A slot not released within
    /// its lease is free again.
    async fn quota_acquire(
        &self,
        budget: &str,
        slot: &str,
        limit: u32,
        lease: Duration,
    ) -> Result<bool, BusError>;

    /// Gives a slot back (nothing happens if it was not held or its lease ran out).
    async fn quota_release(&self, budget: &str, slot: &str) -> Result<(), BusError>;

    // ----- audit -----

    /// Appends records, in order, to the cluster's audit log, which keeps at least the
    /// newest `max_len` (and at most about that many).
    async fn audit_append(&self, records: Vec<AuditFields>, max_len: usize)
    -> Result<(), BusError>;

    /// The newest `count` audit records (fewer if the log holds fewer), oldest first.
    async fn audit_tail(&self, count: usize) -> Result<Vec<AuditFields>, BusError>;

    // ----- cluster -----

    /// How long a session (and any log kept as one) lives without being used.
    fn session_idle_ttl(&self) -> Duration;

    /// A secret every node of the cluster shares, made at random by whichever node asks
    /// first (used to sign state the client carries between requests, such as
    /// `requestState`). Stable for the life of the bus's data.
    async fn shared_secret(&self, name: &str) -> Result<Vec<u8>, BusError>;

    /// Sets the cluster-wide value `name` to `value` and returns the value it replaced, in
    /// one atomic step: of several nodes writing the same value, exactly one sees another
    /// value before it (the one that should act on the change, e.g. announce it once).
    async fn exchange_value(&self, name: &str, value: &str) -> Result<Option<String>, BusError>;

    /// A cluster-wide snapshot.
    async fn stats(&self) -> Result<ClusterStats, BusError>;

    /// Succeeds when the bus can serve requests now (readiness probes ask this).
    async fn health(&self) -> Result<(), BusError>;
}
