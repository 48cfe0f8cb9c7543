//! Broadcasts (the contract's "broadcasts" section): one cluster-wide log (`{bcast}:log`)
//! with its sequence number (`{bcast}:seq`) and one channel, written by one Lua script;
//! every process subscribes to the channel once and each gateway fans out locally.

use super::{RedisBus, field_string, redis_err, scripts, seq_of_entry_id};
use crate::contract::{BroadcastSubscription, Replay};
use crate::error::BusError;
use crate::message::BroadcastEvent;
use crate::now_ms;
use redis::AsyncCommands;
use redis::streams::{StreamId as RedisStreamId, StreamRangeReply};
use serde_json::Value;
use std::sync::Arc;

/// A broadcast log entry as the event it stores; `None` for an unreadable entry.
pub(crate) fn parse_broadcast_entry(entry: &RedisStreamId) -> Option<BroadcastEvent> {
    let seq = seq_of_entry_id(&entry.id)?;
    let message = serde_json::from_str(&field_string(entry, "m")?).ok()?;
    Some(BroadcastEvent::new(seq, message, now_ms()))
}

impl RedisBus {
    pub(super) async fn ensure_broadcasts(&self) -> Result<(), BusError> {
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

    pub(super) async fn broadcast(&self, message: Value) -> Result<u64, BusError> {
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

    pub(super) async fn subscribe_broadcasts(&self) -> Result<BroadcastSubscription, BusError> {
        self.ensure_broadcasts().await?;
        let receiver = self.hub.broadcasts.subscribe();
        let head = self.broadcast_head().await?;
        Ok(BroadcastSubscription { head, receiver })
    }

    pub(super) async fn broadcast_head(&self) -> Result<u64, BusError> {
        let mut conn = self.conn();
        let head: Option<u64> = conn
            .get(self.keys.broadcast_seq())
            .await
            .map_err(redis_err)?;
        Ok(head.unwrap_or(0))
    }

    pub(super) async fn replay_broadcasts(
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
}
