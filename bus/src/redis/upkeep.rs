//! Upkeep: what every process does each heartbeat, in the background. Besides
//! heartbeats and subscription checks, it is where idle expiry becomes visible: Redis
//! drops an idle session's hash by itself, and the sweep here tells the session's
//! subscribers and every worker, and removes what the session left in shared sets.

use super::connection::Conn;
use super::keys::Keys;
use super::{RedisBus, corrupt, hub, lock, redis_err};
use crate::error::BusError;
use crate::ids::SessionId;
use crate::message::Control;
use crate::now_ms;
use redis::AsyncCommands;

/// Background upkeep: gateway heartbeat, subscription checks against the logs, local
/// subscription collection, refreshing running jobs, keeping the pub/sub connection probed.
pub(super) async fn maintain(bus: std::sync::Weak<RedisBus>, pubsub: Conn) {
    let period = match bus.upgrade() {
        Some(bus) => bus.config.heartbeat,
        None => return,
    };
    let mut tick = tokio::time::interval(period);
    loop {
        tick.tick().await;
        let Some(bus) = bus.upgrade() else { return };
        // An idle pub/sub connection is probed so a dead one is noticed and re-established
        // (or, with Sentinel, moved to the new master). Bounded: upkeep must go on (its
        // log checks deliver what pub/sub misses) while Redis is away.
        if !pubsub
            .probe(period.min(std::time::Duration::from_secs(1)))
            .await
        {
            tracing::debug!("pub/sub probe failed");
        }
        bus.hub.collect_idle();
        let mut conn = bus.conn();
        if let Some(id) = &bus.config.gateway_id {
            let _: redis::RedisResult<()> =
                conn.zadd(bus.keys.gateway_heartbeats(), id, now_ms()).await;
        }
        // Gateways that stopped heartbeating (each start has a new id) leave the set.
        let gone_before = now_ms().saturating_sub(bus.config.liveness().as_millis() as u64);
        let _: redis::RedisResult<()> = conn
            .zrembyscore(
                bus.keys.gateway_heartbeats(),
                "-inf",
                format!("({gone_before}"),
            )
            .await;
        if let Err(e) = bus.refresh_idle_ttl().await {
            tracing::debug!(error = %e, "reading the session idle TTL failed");
        }
        if let Err(e) = sweep_expired(&bus).await {
            tracing::debug!(error = %e, "sweeping expired sessions failed");
        }
        let running: Vec<String> = lock(&bus.running_jobs).iter().cloned().collect();
        let mut by_stream: std::collections::BTreeMap<usize, Vec<&str>> = Default::default();
        for delivery in &running {
            let (stream, id) = super::jobs::parse_delivery(delivery);
            by_stream.entry(stream).or_default().push(id);
        }
        for (stream, ids) in by_stream {
            // XCLAIM to ourselves resets the idle time: the job is alive.
            let refreshed: redis::RedisResult<redis::Value> = redis::cmd("XCLAIM")
                .arg(bus.keys.job_stream(stream))
                .arg(Keys::JOB_GROUP)
                .arg(running_owner(&bus))
                .arg(0)
                .arg(&ids)
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

/// Sessions looked at per sweep: a backlog is worked off over several heartbeats.
const SWEEP_BATCH: isize = 256;

/// Finds sessions whose idle TTL ran out (Redis removed their hash) and ends them as
/// `end_session` would: their subscribers get `SessionEnded`, every worker gets
/// `Control::SessionEnded`, and their index entries, principal-set members, resource
/// subscriptions and remaining keys go. Every process sweeps; the one whose `ZREM` takes
/// the session out of the index announces it, so each expiry is announced once.
async fn sweep_expired(bus: &RedisBus) -> Result<(), BusError> {
    let mut conn = bus.conn();
    let raw: Vec<String> = conn
        .zrangebyscore_limit(bus.keys.session_index(), "-inf", now_ms(), 0, SWEEP_BATCH)
        .await
        .map_err(redis_err)?;
    let (due, unreadable): (Vec<_>, Vec<_>) = raw
        .iter()
        .map(|id| (id, SessionId::parse(id)))
        .partition(|(_, parsed)| parsed.is_some());
    if !unreadable.is_empty() {
        let ids: Vec<&String> = unreadable.into_iter().map(|(id, _)| id).collect();
        let _: i64 = conn
            .zrem(bus.keys.session_index(), ids)
            .await
            .map_err(redis_err)?;
    }
    let due: Vec<SessionId> = due.into_iter().filter_map(|(_, parsed)| parsed).collect();
    if due.is_empty() {
        return Ok(());
    }
    let mut pipe = redis::pipe();
    for session in &due {
        pipe.cmd("PTTL").arg(bus.keys.session(session));
    }
    let ttls: Vec<i64> = pipe.query_async(&mut conn).await.map_err(redis_err)?;
    for (session, pttl) in due.into_iter().zip(ttls) {
        if pttl != -2 {
            // Alive, kept so by events published (which cannot touch the index, another
            // slot): its deadline moves to what the hash says. (-2: no such key; -1, no
            // TTL, cannot happen to a session hash, but it is alive all the same.)
            let left = u64::try_from(pttl).unwrap_or(bus.ttl_ms());
            let _: redis::RedisResult<()> = redis::cmd("ZADD")
                .arg(bus.keys.session_index())
                .arg("XX")
                .arg(now_ms() + left)
                .arg(session.as_str())
                .query_async(&mut conn)
                .await;
            continue;
        }
        let removed: i64 = conn
            .zrem(bus.keys.session_index(), session.as_str())
            .await
            .map_err(redis_err)?;
        if removed == 0 {
            continue;
        }
        tracing::debug!(session = %session, "session expired after idle timeout");
        bus.forget_session(&session).await?;
        let control = serde_json::to_string(&Control::SessionEnded {
            session: session.clone(),
        })
        .map_err(corrupt)?;
        let () = redis::pipe()
            .cmd(bus.keys.session_publish())
            .arg(bus.keys.session_channel(&session))
            .arg("x")
            .ignore()
            .publish(bus.keys.control_channel(), control)
            .ignore()
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
    }
    Ok(())
}
