//! Upkeep: what every process does each heartbeat, in the background.

use super::keys::Keys;
use super::{RedisBus, hub, lock};
use crate::now_ms;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;

/// Background upkeep: gateway heartbeat, subscription checks against the logs, local
/// subscription collection, refreshing running jobs, keeping the pub/sub connection probed.
pub(super) async fn maintain(bus: std::sync::Weak<RedisBus>, mut pubsub: ConnectionManager) {
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
