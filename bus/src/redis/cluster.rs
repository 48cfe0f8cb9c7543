//! Cluster-wide settings and views (the contract's last methods): the session idle TTL,
//! shared secrets, `stats` and the health probe.

use super::{RedisBus, redis_err};
use crate::error::BusError;
use crate::message::ClusterStats;
use crate::now_ms;
use std::time::Duration;

impl RedisBus {
    pub(super) async fn stats(&self) -> Result<ClusterStats, BusError> {
        let workers = self.live_workers().await?.len() as u64;
        let mut conn = self.conn();
        let live_since = now_ms().saturating_sub(self.config.liveness().as_millis() as u64);
        let mut pipe = redis::pipe();
        pipe.zcount(self.keys.gateway_heartbeats(), live_since, "+inf")
            .zcount(self.keys.session_index(), now_ms(), "+inf");
        for stream in 0..self.keys.job_streams() {
            pipe.xlen(self.keys.job_stream(stream));
        }
        let counts: Vec<u64> = pipe.query_async(&mut conn).await.map_err(redis_err)?;
        let (gateways, sessions) = (
            counts.first().copied().unwrap_or(0),
            counts.get(1).copied().unwrap_or(0),
        );
        let jobs = counts.iter().skip(2).sum();
        Ok(ClusterStats {
            gateways,
            sessions,
            workers,
            jobs_in_flight: jobs,
        })
    }

    pub(super) fn session_idle_ttl(&self) -> Duration {
        Duration::from_millis(self.ttl_ms())
    }

    pub(super) async fn shared_secret(&self, name: &str) -> Result<Vec<u8>, BusError> {
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

    pub(super) async fn exchange_value(
        &self,
        name: &str,
        value: &str,
    ) -> Result<Option<String>, BusError> {
        let mut conn = self.conn();
        // SET ... GET (Redis >= 6.2): one atomic step.
        redis::cmd("SET")
            .arg(self.keys.value(name))
            .arg(value)
            .arg("GET")
            .query_async(&mut conn)
            .await
            .map_err(redis_err)
    }

    pub(super) async fn health(&self) -> Result<(), BusError> {
        let mut conn = self.conn();
        let _: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        Ok(())
    }
}
