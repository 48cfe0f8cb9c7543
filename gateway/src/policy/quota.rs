//! Quotas: a call rate per budget (GCRA) and a number of calls running at once, drawn
//! from the bus's quota section (`mcp_bus::Bus::quota_take`, `quota_acquire`,
//! `quota_release`): on the Redis bus every gateway of a cluster draws on one budget, on
//! the memory bus (the standalone gateway) the same arithmetic runs in the process.
//!
//! A running-call slot is leased for the job deadline plus a grace: a gateway that dies
//! holding slots does not hold them past their lease.

use crate::policy::file::Quota;
use mcp_bus::{Bus, RateVerdict};
use std::sync::Arc;
use std::time::Duration;

/// Why a call was not admitted.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// The quota's rate is used up; retry after this long.
    Rate {
        /// The quota.
        quota: String,
        /// When the next call would be allowed.
        retry_after: Duration,
    },
    /// The quota's calls running at once are all taken.
    Concurrent {
        /// The quota.
        quota: String,
        /// Its limit.
        limit: u32,
    },
    /// The store could not be asked (Redis unreachable): the call is refused, not let
    /// through, so an outage cannot lift every quota.
    Unavailable(String),
}

/// Where budgets are counted: the bus.
pub struct QuotaStore {
    bus: Arc<dyn Bus>,
}

/// Calls-running slots a call holds; released when dropped.
pub struct Slots {
    bus: Arc<dyn Bus>,
    held: Vec<String>,
    slot: String,
}

impl Drop for Slots {
    fn drop(&mut self) {
        if self.held.is_empty() {
            return;
        }
        let held = std::mem::take(&mut self.held);
        let bus = self.bus.clone();
        let slot = self.slot.clone();
        // A release that fails is not lost for long: the slot's lease runs out.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                for budget in &held {
                    if let Err(e) = bus.quota_release(budget, &slot).await {
                        tracing::debug!(error = %e, budget, "could not release a quota slot; its lease runs out");
                    }
                }
            });
        }
    }
}

impl QuotaStore {
    /// Budgets counted on `bus`.
    pub fn new(bus: Arc<dyn Bus>) -> Self {
        Self { bus }
    }

    /// Admits one call drawing on `budgets` (each quota with its budget key), or says
    /// which quota refused it. Slots are taken first (they can be given back), rates last
    /// (a rate, once drawn, stays drawn). `lease` bounds how long a slot outlives a
    /// gateway that died holding it.
    pub async fn admit(
        &self,
        budgets: &[(Quota, String)],
        lease: Duration,
    ) -> Result<Slots, Refusal> {
        // Dropped on a refusal, `slots` gives back what it took so far.
        let mut slots = Slots {
            bus: self.bus.clone(),
            held: Vec::new(),
            slot: format!("{:032x}", rand::random::<u128>()),
        };
        let unavailable = |e: mcp_bus::BusError| Refusal::Unavailable(e.to_string());
        for (quota, budget) in budgets {
            let Some(limit) = quota.concurrent else {
                continue;
            };
            let taken = self
                .bus
                .quota_acquire(budget, &slots.slot, limit, lease)
                .await
                .map_err(unavailable)?;
            if !taken {
                return Err(Refusal::Concurrent {
                    quota: quota.name.clone(),
                    limit,
                });
            }
            slots.held.push(budget.clone());
        }
        for (quota, budget) in budgets {
            let Some(rate) = quota.rate else { continue };
            let period = Duration::from_secs_f64(1.0 / rate);
            match self
                .bus
                .quota_take(budget, period, quota.burst)
                .await
                .map_err(unavailable)?
            {
                RateVerdict::Admitted => {}
                RateVerdict::Wait(retry_after) => {
                    return Err(Refusal::Rate {
                        quota: quota.name.clone(),
                        retry_after,
                    });
                }
            }
        }
        Ok(slots)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcp_bus::{MemoryBus, MemoryBusConfig};

    #[tokio::test]
    async fn slots_are_released_on_drop() {
        let policy =
            crate::policy::file::Policy::parse("[[quota]]\nname = \"c\"\nconcurrent = 1\n", "t")
                .unwrap();
        let quota = policy.quotas()[0].clone();
        let store = QuotaStore::new(MemoryBus::new(MemoryBusConfig::default()));
        let budgets = vec![(quota, "c|alice".to_owned())];
        let lease = Duration::from_secs(60);
        let held = store.admit(&budgets, lease).await.unwrap();
        assert!(matches!(
            store.admit(&budgets, lease).await,
            Err(Refusal::Concurrent { limit: 1, .. })
        ));
        drop(held);
        // The release is spawned: it has run once a later task gets its turn.
        tokio::task::yield_now().await;
        assert!(store.admit(&budgets, lease).await.is_ok());
    }
}
