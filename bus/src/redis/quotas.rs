//! Quotas (the contract's "quotas" section): a rate budget is one GCRA key, a
//! running-calls budget one sorted set of leased slots; each check is one script on one
//! key (`{quota:<budget>}`), timed by the server's clock.

use super::scripts::{QUOTA_ACQUIRE, QUOTA_TAKE};
use super::{RedisBus, redis_err};
use crate::error::BusError;
use crate::quota::RateVerdict;
use redis::AsyncCommands;
use std::time::Duration;

impl RedisBus {
    pub(super) async fn quota_take(
        &self,
        budget: &str,
        period: Duration,
        burst: u32,
    ) -> Result<RateVerdict, BusError> {
        let period_ms = period.as_secs_f64() * 1000.0;
        let mut conn = self.conn();
        let (admitted, wait): (i64, String) = QUOTA_TAKE
            .key(self.keys.quota_rate(budget))
            .arg(period_ms)
            .arg(burst)
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err)?;
        if admitted == 1 {
            return Ok(RateVerdict::Admitted);
        }
        let wait_ms = wait.parse::<f64>().unwrap_or(period_ms).max(0.0);
        Ok(RateVerdict::Wait(Duration::from_secs_f64(wait_ms / 1000.0)))
    }

    pub(super) async fn quota_acquire(
        &self,
        budget: &str,
        slot: &str,
        limit: u32,
        lease: Duration,
    ) -> Result<bool, BusError> {
        let mut conn = self.conn();
        let taken: i64 = QUOTA_ACQUIRE
            .key(self.keys.quota_slots(budget))
            .arg(limit)
            .arg(lease.as_millis().max(1) as u64)
            .arg(slot)
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err)?;
        Ok(taken == 1)
    }

    pub(super) async fn quota_release(&self, budget: &str, slot: &str) -> Result<(), BusError> {
        let mut conn = self.conn();
        let _: i64 = conn
            .zrem(self.keys.quota_slots(budget), slot)
            .await
            .map_err(redis_err)?;
        Ok(())
    }
}
