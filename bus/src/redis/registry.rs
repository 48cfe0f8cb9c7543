//! The worker registry (the contract's "registry" section): each worker's info in the
//! `workers` hash and its heartbeat in `worker_heartbeats`; a worker whose heartbeat
//! stopped is pruned, and a change of the union of what live workers serve is broadcast as
//! `notifications/*/list_changed`.

use super::{RedisBus, corrupt, redis_err};
use crate::error::BusError;
use crate::ids::WorkerId;
use crate::message::{Catalog, WorkerInfo};
use crate::now_ms;
use mcp_protocol::jsonrpc;
use redis::AsyncCommands;
use serde_json::json;
use std::collections::BTreeMap;

impl RedisBus {
    pub(super) async fn live_workers(&self) -> Result<BTreeMap<WorkerId, WorkerInfo>, BusError> {
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

    pub(super) async fn live_catalog(&self) -> Result<Catalog, BusError> {
        Ok(Catalog::union(self.live_workers().await?.values()))
    }

    pub(super) async fn announce_changes(
        &self,
        before: &Catalog,
        after: &Catalog,
    ) -> Result<(), BusError> {
        for method in before.changes(after) {
            self.broadcast(jsonrpc::notification(method, json!({})))
                .await?;
        }
        Ok(())
    }

    /// Removes workers whose heartbeat stopped.
    pub(super) async fn prune_dead_workers(&self) -> Result<(), BusError> {
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

    pub(super) async fn register_worker(&self, info: WorkerInfo) -> Result<(), BusError> {
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

    pub(super) async fn deregister_worker(&self, id: &WorkerId) -> Result<(), BusError> {
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

    pub(super) async fn catalog(&self) -> Result<Catalog, BusError> {
        self.live_catalog().await
    }
}
