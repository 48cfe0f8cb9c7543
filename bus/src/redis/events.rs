//! Session event logs (the contract's "session events" section): each event goes to the
//! session's bounded stream (entry id `<seq>-1`) and its pub/sub channel in one Lua script,
//! with the dense `seq` kept in the session hash. Subscriptions are shared per process
//! through the [`hub`](super::hub), which repairs from the log what pub/sub loses.

use super::{RedisBus, corrupt, field_string, hub, redis_err, scripts, seq_of_entry_id};
use crate::contract::{Replay, SessionSubscription};
use crate::error::BusError;
use crate::ids::SessionId;
use crate::message::{EventBody, SessionEvent, StreamTarget};
use crate::now_ms;
use redis::AsyncCommands;
use redis::streams::{StreamId as RedisStreamId, StreamRangeReply};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

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

/// A session log entry as the event it stores; `None` for an unreadable entry.
pub(crate) fn parse_log_entry(entry: &RedisStreamId) -> Option<SessionEvent> {
    let seq = seq_of_entry_id(&entry.id)?;
    let stored: StoredEvent = serde_json::from_str(&field_string(entry, "e")?).ok()?;
    Some(stored.into_event(seq))
}

impl RedisBus {
    pub(super) async fn publish(
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
            .arg(self.keys.session_publish())
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err)?;
        u64::try_from(seq).map_err(|_| BusError::SessionNotFound)
    }

    pub(super) async fn publish_batch(
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
            .arg(self.ttl_ms())
            .arg(self.keys.session_publish());
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

    pub(super) async fn subscribe(
        &self,
        session: &SessionId,
    ) -> Result<SessionSubscription, BusError> {
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

    pub(super) async fn replay(
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

    pub(super) async fn claim_stream(
        &self,
        session: &SessionId,
        stream: StreamTarget,
        claim: u64,
    ) -> Result<(), BusError> {
        let mut conn = self.conn();
        let stream = serde_json::to_string(&stream).map_err(corrupt)?;
        let _: i64 = redis::cmd(self.keys.session_publish())
            .arg(self.keys.session_channel(session))
            .arg(format!("c {claim} {stream}"))
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        Ok(())
    }
}
