//! A job's outbox: the messages one call sends on its request stream, published in order
//! and batched.
//!
//! A tool that reports progress in a tight loop would otherwise wait one bus round trip per
//! notification (a Lua script call on Redis). Here a message is queued and the call goes
//! on; one flusher task per job publishes what is queued with `publish_batch`, so messages
//! queued while the previous batch was in flight leave together in one round trip. An idle
//! outbox adds no latency: the first message starts a flush at once. The queue is bounded:
//! a sender waits while it is full. A failed publish is reported to the next sender (or to
//! [`Outbox::flushed`]), as the failed call itself has already returned.

use mcp_bus::{Bus, BusError, EventBody, SessionId, StreamTarget};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;
use tracing::Instrument;

/// Messages a job may have queued before a sender waits for the flusher.
const MAX_QUEUED: usize = 64;

/// How long a publish or a job's acknowledgement is retried while the bus is unavailable.
/// A Redis failover (Sentinel: ~2.5 s until a replica is promoted, then the bus follows it)
/// would otherwise lose a finished call's response: its job stays pending until another
/// worker reclaims it after `--job-claim-idle-ms` (15 s), and the client waits that long.
pub(crate) const BUS_RETRY: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs `attempt` until it succeeds, fails with anything but [`BusError::Unavailable`], or
/// [`BUS_RETRY`] has passed (backing off from 100 ms to 1 s).
pub(crate) async fn retry_unavailable<T, F, Fut>(mut attempt: F) -> Result<T, BusError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, BusError>>,
{
    let deadline = tokio::time::Instant::now() + BUS_RETRY;
    let mut delay = std::time::Duration::from_millis(100);
    loop {
        match attempt().await {
            Err(BusError::Unavailable(e)) if tokio::time::Instant::now() + delay < deadline => {
                tracing::debug!(error = %e, "the bus is unavailable; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(1));
            }
            other => return other,
        }
    }
}

pub(crate) struct Outbox {
    bus: Arc<dyn Bus>,
    session: SessionId,
    stream: StreamTarget,
    state: Mutex<State>,
    /// Signalled when the flusher takes a batch or stops.
    changed: Notify,
}

#[derive(Default)]
struct State {
    queued: Vec<EventBody>,
    flushing: bool,
    failed: Option<BusError>,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Outbox {
    /// An empty outbox for one stream of one session.
    pub(crate) fn new(bus: Arc<dyn Bus>, session: SessionId, stream: StreamTarget) -> Arc<Self> {
        Arc::new(Self {
            bus,
            session,
            stream,
            state: Mutex::new(State::default()),
            changed: Notify::new(),
        })
    }

    /// Queues `body` behind everything queued before it. Returns once it is queued, or with
    /// the error of an earlier publish that failed since the last report.
    pub(crate) async fn send(self: &Arc<Self>, body: EventBody) -> Result<(), BusError> {
        self.enqueue(body, true).await
    }

    /// Queues the call's last message (its outcome) behind everything else, whatever
    /// happened to earlier ones, and waits until all of it is published: the outcome then
    /// usually shares the round trip of the last notifications.
    pub(crate) async fn finish(self: &Arc<Self>, body: EventBody) -> Result<(), BusError> {
        if let Some(e) = lock(&self.state).failed.take() {
            tracing::debug!(error = %e, session = %self.session, "a job's notification was not published");
        }
        self.enqueue(body, false).await?;
        self.flushed().await
    }

    async fn enqueue(self: &Arc<Self>, body: EventBody, report: bool) -> Result<(), BusError> {
        let mut body = Some(body);
        loop {
            // Registered before the state is read, so a wake-up in between is not lost.
            let changed = self.changed.notified();
            {
                let mut state = lock(&self.state);
                if report && let Some(e) = state.failed.take() {
                    return Err(e);
                }
                if state.queued.len() < MAX_QUEUED {
                    if let Some(body) = body.take() {
                        state.queued.push(body);
                    }
                    if !state.flushing {
                        state.flushing = true;
                        let outbox = self.clone();
                        tokio::spawn(async move { outbox.flush().await }.in_current_span());
                    }
                    return Ok(());
                }
            }
            changed.await;
        }
    }

    /// Waits until everything queued so far is published; the error of a failed publish
    /// not yet reported, if any.
    pub(crate) async fn flushed(&self) -> Result<(), BusError> {
        loop {
            let changed = self.changed.notified();
            {
                let mut state = lock(&self.state);
                if !state.flushing {
                    return state.failed.take().map_or(Ok(()), Err);
                }
            }
            changed.await;
        }
    }

    /// Publishes batches until the queue is empty.
    async fn flush(&self) {
        loop {
            let batch = {
                let mut state = lock(&self.state);
                if state.queued.is_empty() {
                    state.flushing = false;
                    drop(state);
                    self.changed.notify_waiters();
                    return;
                }
                std::mem::take(&mut state.queued)
            };
            // Room in the queue again.
            self.changed.notify_waiters();
            // Retried while the bus is unavailable (a failover), so a finished call's
            // response is not lost to a switch of Redis master. (A publish whose reply was
            // lost after Redis ran it may then appear twice; gateways keep the first
            // response of a request.)
            if let Err(e) = retry_unavailable(|| {
                self.bus
                    .publish_batch(&self.session, self.stream, batch.clone())
            })
            .await
            {
                lock(&self.state).failed = Some(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcp_bus::{MemoryBus, MemoryBusConfig, SessionRecord, StandaloneCursor, StreamId};
    use serde_json::json;

    fn record() -> SessionRecord {
        SessionRecord {
            id: SessionId::generate(),
            protocol_version: "2025-11-25".into(),
            client_capabilities: json!({}),
            client_info: json!({"name": "outbox test"}),
            log_level: None,
            principal: String::new(),
            created_ms: mcp_bus::now_ms(),
            standalone_cursor: StandaloneCursor::default(),
            ephemeral: false,
        }
    }

    #[tokio::test]
    async fn messages_arrive_in_order_and_flushed_waits_for_them() {
        let bus: Arc<dyn Bus> = MemoryBus::new(MemoryBusConfig::default());
        let record = record();
        bus.create_session(record.clone()).await.unwrap();
        let stream = StreamTarget::Request(StreamId::generate());
        let outbox = Outbox::new(bus.clone(), record.id.clone(), stream);
        for n in 0..200u64 {
            outbox
                .send(EventBody::Message(json!({"n": n})))
                .await
                .unwrap();
        }
        outbox.flushed().await.unwrap();
        let replay = bus.replay(&record.id, 0, 200).await.unwrap();
        let ns: Vec<u64> = replay
            .events
            .iter()
            .map(|e| match &e.body {
                EventBody::Message(m) => m["n"].as_u64().unwrap(),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(ns, (0..200).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_failed_publish_is_reported_once() {
        let bus: Arc<dyn Bus> = MemoryBus::new(MemoryBusConfig::default());
        let stream = StreamTarget::Request(StreamId::generate());
        let outbox = Outbox::new(bus, SessionId::generate(), stream);
        outbox.send(EventBody::End).await.unwrap();
        assert!(matches!(
            outbox.flushed().await,
            Err(BusError::SessionNotFound)
        ));
        assert!(outbox.flushed().await.is_ok());
    }
}
