//! The local side of pub/sub: one Redis subscription per session per process, shared by
//! every stream of that session here, and the fan-out to them.
//!
//! Pub/sub may drop messages (a reconnect, a full push queue). The hub therefore forwards a
//! session's events strictly in sequence order: an event after a gap is not forwarded but
//! triggers a catch-up that reads the missing range from the session's log. The same
//! catch-up runs for every subscribed session after a disconnection and periodically, so
//! a silently lost message is found within one check period.

use super::connection::Conn;
use super::keys::Keys;
use super::{StoredEvent, redis_err};
use crate::error::BusError;
use crate::ids::SessionId;
use crate::live::{self, LiveReceiver, LiveSender};
use crate::message::{BroadcastEvent, Control, Live, SessionEvent, StreamTarget};
use redis::streams::StreamRangeReply;
use redis::{AsyncCommands, PushInfo, PushKind};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{OnceCell, broadcast, mpsc, oneshot};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A bounded push queue: Redis must never block on us, so a full queue drops the message
/// and raises a flag; the dispatcher then catches every session up from the logs.
pub(crate) struct PushQueue {
    tx: mpsc::Sender<PushInfo>,
    overflowed: Arc<AtomicBool>,
}

impl PushQueue {
    /// Another handle on the queue, for notices of our own (a switch of master).
    pub(crate) fn sender(&self) -> mpsc::Sender<PushInfo> {
        self.tx.clone()
    }
}

impl redis::aio::AsyncPushSender for PushQueue {
    fn send(&self, info: PushInfo) -> Result<(), redis::aio::SendError> {
        if self.tx.try_send(info).is_err() {
            self.overflowed.store(true, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// A new push queue and its receiving end.
pub(crate) fn push_queue(
    capacity: usize,
) -> (PushQueue, mpsc::Receiver<PushInfo>, Arc<AtomicBool>) {
    let (tx, rx) = mpsc::channel(capacity.max(16));
    let overflowed = Arc::new(AtomicBool::new(false));
    (
        PushQueue {
            tx,
            overflowed: overflowed.clone(),
        },
        rx,
        overflowed,
    )
}

struct HubSession {
    tx: LiveSender<Live>,
    /// The last sequence number forwarded; `None` until the first subscriber has read the
    /// head of the log (events before that come from the log, not from here).
    last_seq: Option<u64>,
    subscribed: Arc<OnceCell<()>>,
}

enum SubscriptionCommand {
    Subscribe(String, oneshot::Sender<Result<(), BusError>>),
    Unsubscribe(String),
    /// Subscribe again (in a cluster, where the client's own resubscription cannot be
    /// relied on): every channel (`None`), after a node's connection was lost, or one,
    /// after Redis dropped it (its slot moved).
    Resubscribe(Option<String>),
}

/// The notice the hub queues on the push queue once every channel is subscribed again
/// after a cluster node was lost: the dispatcher then catches up from the logs (what was
/// published between the loss and the new subscription reached nobody).
pub(crate) const RESUBSCRIBED: &str = "mcpgw-resubscribed";

/// How often channels that could not be subscribed again are retried (a cluster refuses
/// every command until a failed master's replica is promoted, seconds).
const RESUBSCRIBE_RETRY: std::time::Duration = std::time::Duration::from_millis(250);

/// Local fan-out of session events, broadcasts and control messages.
pub(crate) struct Hub {
    keys: Keys,
    live_queue_len: usize,
    sessions: Mutex<HashMap<SessionId, HubSession>>,
    commands: mpsc::UnboundedSender<SubscriptionCommand>,
    pub(crate) broadcasts: broadcast::Sender<Arc<BroadcastEvent>>,
    broadcast_last: AtomicU64,
    pub(crate) control: broadcast::Sender<Control>,
}

impl Hub {
    /// A hub over `pubsub`; spawns the subscription manager. SUBSCRIBE and UNSUBSCRIBE go
    /// through one task, in order, so an unsubscribe of a stale entry can never overtake
    /// the subscribe of a new one.
    /// After the connection moved to another master (Sentinel failover), every channel is
    /// subscribed again there and a `Disconnection` notice is queued on `pushes`, so the
    /// dispatcher catches every session up from the logs.
    pub(crate) fn new(
        keys: Keys,
        live_queue_len: usize,
        pubsub: Conn,
        pushes: mpsc::Sender<PushInfo>,
    ) -> Arc<Self> {
        let (commands, mut rx) = mpsc::unbounded_channel::<SubscriptionCommand>();
        let (broadcasts, _) = broadcast::channel(live_queue_len.max(1));
        let (control, _) = broadcast::channel(4096);
        let hub = Arc::new(Self {
            keys,
            live_queue_len,
            sessions: Mutex::new(HashMap::new()),
            commands,
            broadcasts,
            broadcast_last: AtomicU64::new(0),
            control,
        });
        let task_keys = hub.keys.clone();
        tokio::spawn(async move {
            let conn = pubsub;
            let keys = task_keys;
            let mut switches = conn.switches();
            // What this process is subscribed to, for a new master's connection.
            let mut channels: HashSet<String> = HashSet::new();
            // In a cluster: channels to subscribe again, retried until each succeeds.
            let mut pending: HashSet<String> = HashSet::new();
            let mut announce = false;
            loop {
                let retry = tokio::time::sleep(RESUBSCRIBE_RETRY);
                tokio::select! {
                    command = rx.recv() => match command {
                        None => return,
                        Some(SubscriptionCommand::Subscribe(channel, done)) => {
                            let sharded = keys.is_sharded_channel(&channel);
                            let result = conn.subscribe(&channel, sharded).await.map_err(redis_err);
                            if result.is_ok() {
                                pending.remove(&channel);
                                channels.insert(channel);
                            }
                            let _ = done.send(result);
                        }
                        Some(SubscriptionCommand::Unsubscribe(channel)) => {
                            channels.remove(&channel);
                            pending.remove(&channel);
                            let sharded = keys.is_sharded_channel(&channel);
                            if let Err(e) = conn.unsubscribe(&channel, sharded).await {
                                tracing::debug!(error = %e, channel, "unsubscribe failed");
                            }
                        }
                        Some(SubscriptionCommand::Resubscribe(None)) => {
                            pending.extend(channels.iter().cloned());
                            announce = true;
                        }
                        Some(SubscriptionCommand::Resubscribe(Some(channel))) => {
                            if channels.contains(&channel) {
                                pending.insert(channel);
                                announce = true;
                            }
                        }
                    },
                    () = retry, if !pending.is_empty() => {
                        pending = resubscribe(&conn, &keys, pending).await;
                        if pending.is_empty() && announce {
                            announce = false;
                            let notice = PushInfo {
                                kind: PushKind::Other(RESUBSCRIBED.into()),
                                data: Vec::new(),
                            };
                            let _ = pushes.send(notice).await;
                        }
                    }
                    changed = switches.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        for channel in &channels {
                            let sharded = keys.is_sharded_channel(channel);
                            if let Err(e) = conn.subscribe(channel, sharded).await {
                                tracing::warn!(error = %e, channel, "subscribing on the new master failed");
                            }
                        }
                        let notice = PushInfo { kind: PushKind::Disconnection, data: Vec::new() };
                        let _ = pushes.send(notice).await;
                    }
                }
            }
        });
        hub
    }

    /// Has every channel (`None`) or one subscribed again, in a cluster (see
    /// [`dispatch_pushes`]).
    pub(crate) fn resubscribe(&self, channel: Option<String>) {
        let _ = self
            .commands
            .send(SubscriptionCommand::Resubscribe(channel));
    }

    /// Subscribes a channel (shared or not) through the manager.
    pub(crate) async fn subscribe_channel(&self, channel: String) -> Result<(), BusError> {
        let (done, wait) = oneshot::channel();
        self.commands
            .send(SubscriptionCommand::Subscribe(channel, done))
            .map_err(|_| BusError::Closed)?;
        wait.await.map_err(|_| BusError::Closed)?
    }

    /// A receiver of the session's live messages, subscribed to its channel (once per
    /// process). Returns whether this call created the local entry.
    pub(crate) async fn join(
        &self,
        session: &SessionId,
    ) -> Result<(LiveReceiver<Live>, bool), BusError> {
        let (receiver, subscribed, created) = {
            let mut sessions = lock(&self.sessions);
            match sessions.get(session) {
                Some(entry) => (entry.tx.subscribe(), entry.subscribed.clone(), false),
                None => {
                    let (tx, rx) = live::channel(self.live_queue_len);
                    let subscribed = Arc::new(OnceCell::new());
                    sessions.insert(
                        session.clone(),
                        HubSession {
                            tx,
                            last_seq: None,
                            subscribed: subscribed.clone(),
                        },
                    );
                    (rx, subscribed, true)
                }
            }
        };
        let channel = self.keys.session_channel(session);
        let result = subscribed
            .get_or_try_init(|| self.subscribe_channel(channel))
            .await;
        if let Err(e) = result {
            if created {
                lock(&self.sessions).remove(session);
            }
            return Err(e);
        }
        Ok((receiver, created))
    }

    /// Sets where in-order forwarding starts, once: the first subscriber read the log's
    /// head after its subscription took effect.
    pub(crate) fn prime(&self, session: &SessionId, head: u64) {
        if let Some(entry) = lock(&self.sessions).get_mut(session)
            && entry.last_seq.is_none()
        {
            entry.last_seq = Some(head);
        }
    }

    /// Drops local entries nobody listens to, and unsubscribes their channels.
    pub(crate) fn collect_idle(&self) {
        let mut sessions = lock(&self.sessions);
        let idle: Vec<SessionId> = sessions
            .iter()
            .filter(|(_, e)| e.tx.receiver_count() == 0 && e.subscribed.initialized())
            .map(|(id, _)| id.clone())
            .collect();
        for id in idle {
            sessions.remove(&id);
            let _ = self.commands.send(SubscriptionCommand::Unsubscribe(
                self.keys.session_channel(&id),
            ));
        }
    }

    /// The sessions subscribed here and where their forwarding stands.
    pub(crate) fn positions(&self) -> Vec<(SessionId, u64)> {
        lock(&self.sessions)
            .iter()
            .filter_map(|(id, e)| e.last_seq.map(|s| (id.clone(), s)))
            .collect()
    }

    pub(crate) fn broadcast_last(&self) -> u64 {
        self.broadcast_last.load(Ordering::Acquire)
    }

    pub(crate) fn set_broadcast_last(&self, seq: u64) {
        self.broadcast_last.fetch_max(seq, Ordering::AcqRel);
    }

    /// Forwards one session event if it is the next in sequence. Returns false when it
    /// revealed a gap (the caller catches up from the log).
    pub(crate) fn forward_event(&self, session: &SessionId, event: SessionEvent) -> bool {
        let mut sessions = lock(&self.sessions);
        let Some(entry) = sessions.get_mut(session) else {
            return true;
        };
        let Some(last) = entry.last_seq else {
            return true;
        };
        if event.seq <= last {
            return true;
        }
        if event.seq != last + 1 {
            return false;
        }
        entry.last_seq = Some(event.seq);
        let _ = entry.tx.send(Live::Event(Arc::new(event)));
        true
    }

    /// Forwards a notice (claim, end) to the session's local streams.
    pub(crate) fn forward_notice(&self, session: &SessionId, notice: Live) {
        let ended = notice == Live::SessionEnded;
        let mut sessions = lock(&self.sessions);
        if let Some(entry) = sessions.get(session) {
            let _ = entry.tx.send(notice);
        }
        if ended && let Some(entry) = sessions.remove(session) {
            drop(entry);
            let _ = self.commands.send(SubscriptionCommand::Unsubscribe(
                self.keys.session_channel(session),
            ));
        }
    }

    /// Forwards a broadcast if it is the next in sequence; false on a gap.
    pub(crate) fn forward_broadcast(&self, event: BroadcastEvent) -> bool {
        let last = self.broadcast_last.load(Ordering::Acquire);
        if event.seq <= last {
            return true;
        }
        if event.seq != last + 1 {
            return false;
        }
        self.broadcast_last.store(event.seq, Ordering::Release);
        let _ = self.broadcasts.send(Arc::new(event));
        true
    }

    /// Routes one pushed pub/sub message. Returns the session (or `None` for the broadcast
    /// log) that needs a catch-up, if the message revealed a gap.
    pub(crate) fn dispatch(&self, channel: &str, payload: &str) -> Option<Option<SessionId>> {
        if let Some(session) = channel.strip_prefix(&self.keys.session_channel_prefix()) {
            let session = self.keys.session_of_channel(session)?;
            let mut parts = payload.splitn(3, ' ');
            match parts.next()? {
                "e" => {
                    let seq: u64 = parts.next()?.parse().ok()?;
                    let stored: StoredEvent = serde_json::from_str(parts.next()?).ok()?;
                    let ok = self.forward_event(&session, stored.into_event(seq));
                    return (!ok).then_some(Some(session));
                }
                "b" => {
                    // A batch: consecutive events from `first`, one payload per line.
                    let first: u64 = parts.next()?.parse().ok()?;
                    for (seq, line) in (first..).zip(parts.next()?.split('\n')) {
                        let Ok(stored) = serde_json::from_str::<StoredEvent>(line) else {
                            // Unreadable: what follows would be a gap; the log repairs it.
                            return Some(Some(session));
                        };
                        if !self.forward_event(&session, stored.into_event(seq)) {
                            return Some(Some(session));
                        }
                    }
                }
                "c" => {
                    let claim: u64 = parts.next()?.parse().ok()?;
                    let stream: StreamTarget = serde_json::from_str(parts.next()?).ok()?;
                    self.forward_notice(&session, Live::StreamClaimed { stream, claim });
                }
                "x" => self.forward_notice(&session, Live::SessionEnded),
                _ => {}
            }
            return None;
        }
        if channel == self.keys.broadcast_channel() {
            let (seq, message) = payload.split_once(' ')?;
            let seq: u64 = seq.parse().ok()?;
            let message = serde_json::from_str(message).ok()?;
            let emitted_ms = crate::now_ms();
            let ok = self.forward_broadcast(BroadcastEvent::new(seq, message, emitted_ms));
            return (!ok).then_some(None);
        }
        // Anything else is a control channel of this process.
        match serde_json::from_str::<Control>(payload) {
            Ok(control) => {
                let _ = self.control.send(control);
            }
            Err(e) => tracing::warn!(error = %e, channel, "unreadable control message"),
        }
        None
    }
}

/// One round of subscribing `channels` again, concurrently; returns those that failed.
///
/// Why the hub does this itself in a cluster: after a reconnect the `redis` client
/// resubscribes a node's sharded channels in one `SSUBSCRIBE`, which Redis refuses
/// (`CROSSSLOT`) as soon as they span several slots (sessions' channels do), silently; and
/// after a failover the channels' slots belong to another node. One `SSUBSCRIBE` per
/// channel, routed by the client to the slot's current owner, works in both cases
/// (subscribing a channel twice is harmless).
async fn resubscribe(conn: &Conn, keys: &Keys, channels: HashSet<String>) -> HashSet<String> {
    let mut tasks = tokio::task::JoinSet::new();
    for channel in channels {
        let conn = conn.clone();
        let sharded = keys.is_sharded_channel(&channel);
        tasks.spawn(async move {
            let result = conn.subscribe(&channel, sharded).await;
            (channel, result)
        });
    }
    let mut failed = HashSet::new();
    while let Some(done) = tasks.join_next().await {
        if let Ok((channel, Err(e))) = done {
            tracing::debug!(error = %e, channel, "subscribing again failed; retrying");
            failed.insert(channel);
        }
    }
    if failed.is_empty() {
        tracing::info!("pub/sub channels subscribed again after a cluster node was lost");
    }
    failed
}

/// Reads a session's log after `after` and forwards it in order.
pub(crate) async fn catch_up_session(
    hub: &Hub,
    conn: &mut Conn,
    keys: &Keys,
    session: &SessionId,
    after: u64,
) -> Result<(), BusError> {
    let reply: StreamRangeReply = conn
        .xrange(keys.log(session), format!("{}-0", after + 1), "+")
        .await
        .map_err(redis_err)?;
    for entry in reply.ids {
        let Some(event) = super::parse_log_entry(&entry) else {
            continue;
        };
        hub.forward_event(session, event);
    }
    Ok(())
}

/// Reads the broadcast log after what was forwarded and forwards it in order.
pub(crate) async fn catch_up_broadcasts(
    hub: &Hub,
    conn: &mut Conn,
    keys: &Keys,
) -> Result<(), BusError> {
    let after = hub.broadcast_last();
    let reply: StreamRangeReply = conn
        .xrange(keys.broadcast_log(), format!("{}-0", after + 1), "+")
        .await
        .map_err(redis_err)?;
    for entry in reply.ids {
        if let Some(event) = super::parse_broadcast_entry(&entry) {
            hub.forward_broadcast(event);
        }
    }
    Ok(())
}

/// Turns pushed messages into hub deliveries; catches up after disconnections, overflows
/// and gaps.
pub(crate) async fn dispatch_pushes(
    hub: Arc<Hub>,
    commands: Conn,
    pubsub: Conn,
    keys: Keys,
    mut pushes: mpsc::Receiver<PushInfo>,
    overflowed: Arc<AtomicBool>,
) {
    while let Some(push) = pushes.recv().await {
        let mut catch_up: Vec<Option<SessionId>> = Vec::new();
        match push.kind {
            PushKind::Message | PushKind::SMessage => {
                let mut data = push.data.into_iter();
                let channel: Option<String> =
                    data.next().and_then(|v| redis::from_redis_value(v).ok());
                let payload: Option<String> =
                    data.next().and_then(|v| redis::from_redis_value(v).ok());
                if let (Some(channel), Some(payload)) = (channel, payload)
                    && let Some(target) = hub.dispatch(&channel, &payload)
                {
                    catch_up.push(target);
                }
            }
            PushKind::SUnsubscribe if keys.is_sharded() => {
                // Ours, or Redis dropping a channel whose slot moved: if we still want it,
                // the hub subscribes it again (and then catches up).
                let channel: Option<String> = push
                    .data
                    .into_iter()
                    .next()
                    .and_then(|v| redis::from_redis_value(v).ok());
                if let Some(channel) = channel {
                    hub.resubscribe(Some(channel));
                }
            }
            PushKind::Other(kind) if kind == RESUBSCRIBED => {
                let hub = hub.clone();
                let conn = commands.clone();
                let keys = keys.clone();
                tokio::spawn(async move { catch_up_all_when_back(&hub, conn, &keys).await });
            }
            PushKind::Disconnection => {
                super::metrics::RECONNECTS.inc();
                if keys.is_sharded() {
                    hub.resubscribe(None);
                }
                tracing::warn!(
                    "pub/sub connection lost; catching up from the logs once it is back"
                );
                let hub = hub.clone();
                let conn = commands.clone();
                let keys = keys.clone();
                tokio::spawn(async move { catch_up_all_when_back(&hub, conn, &keys).await });
                // A command on the pub/sub connection: if its master is gone, the failed
                // command sets the connection after the new one (Sentinel).
                let probe = pubsub.clone();
                tokio::spawn(async move {
                    // Until it answers (for at most 30 s; upkeep probes it every heartbeat).
                    for _ in 0..30 {
                        if probe.probe(std::time::Duration::from_secs(1)).await {
                            return;
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    }
                });
            }
            _ => {}
        }
        if overflowed.swap(false, Ordering::Relaxed) {
            tracing::warn!("pub/sub push queue overflowed; catching up from the logs");
            let hub = hub.clone();
            let conn = commands.clone();
            let keys = keys.clone();
            tokio::spawn(async move { catch_up_all_when_back(&hub, conn, &keys).await });
        }
        for target in catch_up {
            let mut conn = commands.clone();
            let result = match &target {
                Some(session) => {
                    let after = hub
                        .positions()
                        .into_iter()
                        .find(|(id, _)| id == session)
                        .map(|(_, s)| s);
                    match after {
                        Some(after) => {
                            catch_up_session(&hub, &mut conn, &keys, session, after).await
                        }
                        None => Ok(()),
                    }
                }
                None => catch_up_broadcasts(&hub, &mut conn, &keys).await,
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "catch-up after a gap failed; the periodic check will retry");
            }
        }
    }
}

/// Waits until Redis answers, then catches every subscribed session and the broadcast log
/// up from the logs.
pub(crate) async fn catch_up_all_when_back(hub: &Hub, mut conn: Conn, keys: &Keys) {
    let mut delay = std::time::Duration::from_millis(50);
    loop {
        if redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .is_ok()
        {
            if let Err(e) = catch_up_all(hub, &mut conn, keys).await {
                tracing::warn!(error = %e, "catch-up failed; the periodic check will retry");
            }
            return;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(std::time::Duration::from_secs(1));
    }
}

/// Catches every subscribed session and the broadcast log up from the logs.
pub(crate) async fn catch_up_all(hub: &Hub, conn: &mut Conn, keys: &Keys) -> Result<(), BusError> {
    catch_up_broadcasts(hub, conn, keys).await?;
    for (session, after) in hub.positions() {
        catch_up_session(hub, conn, keys, &session, after).await?;
    }
    Ok(())
}
