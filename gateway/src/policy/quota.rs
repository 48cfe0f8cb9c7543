//! Quotas: a call rate per budget (GCRA) and a number of calls running at once, counted
//! in Redis so every gateway of a cluster draws on one budget, or in memory for the
//! standalone gateway. Both stores run the same arithmetic.
//!
//! GCRA (the generic cell rate algorithm) keeps one number per budget, the theoretical
//! arrival time `tat` of the next call: a call at `now` is allowed when
//! `tat - now <= period * (burst - 1)`, and moves `tat` to `max(tat, now) + period`, with
//! `period = 1 / rate`. So `burst` calls may come at once, then one per period. In Redis
//! it is one Lua script per call, timed by the server's own clock (`TIME`), so gateways
//! with skewed clocks still share one budget exactly.
//!
//! Calls running at once are a sorted set of slots per budget, each scored with the time
//! it expires (the job deadline plus a grace): a gateway that dies holding slots does not
//! hold them past that, because every admission first drops expired slots.

use crate::policy::file::Quota;
use redis::Script;
use redis::aio::ConnectionManager;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

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

/// GCRA: the new `tat` if a call at `now` is allowed, or how long to wait. Times in ms.
fn gcra(tat: Option<f64>, now: f64, period: f64, burst: u32) -> Result<f64, f64> {
    let tat = tat.unwrap_or(now).max(now);
    let tolerance = period * f64::from(burst.max(1) - 1);
    let wait = tat - now - tolerance;
    if wait > 0.0 {
        Err(wait)
    } else {
        Ok(tat + period)
    }
}

static GCRA: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local period = tonumber(ARGV[1])
local tolerance = period * (tonumber(ARGV[2]) - 1)
local tat = now
local stored = redis.call('GET', KEYS[1])
if stored then tat = math.max(tonumber(stored), now) end
local wait = tat - now - tolerance
if wait > 0 then return {0, tostring(wait)} end
local nxt = tat + period
redis.call('SET', KEYS[1], tostring(nxt), 'PX', math.ceil(nxt - now) + 1)
return {1, '0'}
",
    )
});

static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
",
    )
});

/// Where budgets are counted.
pub enum QuotaStore {
    /// In this process (the standalone gateway).
    Memory(MemoryStore),
    /// In Redis, shared by every gateway.
    Redis {
        /// The connection.
        conn: ConnectionManager,
        /// Prefix of the keys (the deployment's Redis prefix).
        prefix: String,
    },
}

/// Budgets in memory.
#[derive(Default)]
pub struct MemoryStore {
    tats: Mutex<HashMap<String, f64>>,
    running: Mutex<HashMap<String, u32>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Calls running that a call holds; released when dropped.
pub struct Slots {
    store: Arc<QuotaStore>,
    held: Vec<String>,
    slot: String,
}

impl Drop for Slots {
    fn drop(&mut self) {
        if self.held.is_empty() {
            return;
        }
        let held = std::mem::take(&mut self.held);
        match &*self.store {
            QuotaStore::Memory(memory) => {
                let mut running = lock(&memory.running);
                for key in held {
                    if let Some(n) = running.get_mut(&key) {
                        *n = n.saturating_sub(1);
                        if *n == 0 {
                            running.remove(&key);
                        }
                    }
                }
            }
            QuotaStore::Redis { conn, .. } => {
                let mut conn = conn.clone();
                let slot = self.slot.clone();
                // A release that fails is not lost for long: the slot expires by itself.
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(async move {
                        let mut pipe = redis::pipe();
                        for key in &held {
                            pipe.zrem(key, &slot).ignore();
                        }
                        if let Err(e) = pipe.query_async::<()>(&mut conn).await {
                            tracing::debug!(error = %e, "could not release quota slots; they expire");
                        }
                    });
                }
            }
        }
    }
}

impl QuotaStore {
    fn rate_key(&self, budget: &str) -> String {
        match self {
            QuotaStore::Memory(_) => budget.to_owned(),
            QuotaStore::Redis { prefix, .. } => format!("{prefix}:quota:rate:{{{budget}}}"),
        }
    }

    fn running_key(&self, budget: &str) -> String {
        match self {
            QuotaStore::Memory(_) => budget.to_owned(),
            QuotaStore::Redis { prefix, .. } => format!("{prefix}:quota:running:{{{budget}}}"),
        }
    }

    /// Admits one call drawing on `budgets` (each quota with its budget key), or says
    /// which quota refused it. Slots are taken first (they can be given back), rates last
    /// (a rate, once drawn, stays drawn). `hold` bounds how long a slot outlives a
    /// gateway that died holding it.
    pub async fn admit(
        self: &Arc<Self>,
        budgets: &[(Quota, String)],
        hold: Duration,
    ) -> Result<Slots, Refusal> {
        let mut slots = Slots {
            store: self.clone(),
            held: Vec::new(),
            slot: format!("{:032x}", rand::random::<u128>()),
        };
        for (quota, budget) in budgets {
            if let Some(limit) = quota.concurrent {
                let key = self.running_key(budget);
                let taken = match &**self {
                    QuotaStore::Memory(memory) => {
                        let mut running = lock(&memory.running);
                        let n = running.entry(key.clone()).or_default();
                        if *n >= limit {
                            false
                        } else {
                            *n += 1;
                            true
                        }
                    }
                    QuotaStore::Redis { conn, .. } => {
                        let mut conn = conn.clone();
                        ACQUIRE
                            .key(&key)
                            .arg(limit)
                            .arg(hold.as_millis() as u64)
                            .arg(&slots.slot)
                            .invoke_async::<i64>(&mut conn)
                            .await
                            .map_err(|e| Refusal::Unavailable(e.to_string()))?
                            == 1
                    }
                };
                if !taken {
                    return Err(Refusal::Concurrent {
                        quota: quota.name.clone(),
                        limit,
                    });
                }
                slots.held.push(key);
            }
        }
        for (quota, budget) in budgets {
            let Some(rate) = quota.rate else { continue };
            let period = 1000.0 / rate;
            let key = self.rate_key(budget);
            let verdict = match &**self {
                QuotaStore::Memory(memory) => {
                    let now = memory_clock_ms();
                    let mut tats = lock(&memory.tats);
                    let verdict = gcra(tats.get(&key).copied(), now, period, quota.burst);
                    if let Ok(tat) = verdict {
                        tats.insert(key, tat);
                    }
                    // Budgets whose tat has passed are full again: forget them, so the
                    // map holds only budgets in use.
                    if tats.len() > 10_000 {
                        tats.retain(|_, tat| *tat > now);
                    }
                    verdict.map(|_| ())
                }
                QuotaStore::Redis { conn, .. } => {
                    let mut conn = conn.clone();
                    let (allowed, wait): (i64, String) = GCRA
                        .key(&key)
                        .arg(period)
                        .arg(quota.burst)
                        .invoke_async(&mut conn)
                        .await
                        .map_err(|e| Refusal::Unavailable(e.to_string()))?;
                    if allowed == 1 {
                        Ok(())
                    } else {
                        Err(wait.parse::<f64>().unwrap_or(period))
                    }
                }
            };
            if let Err(wait_ms) = verdict {
                return Err(Refusal::Rate {
                    quota: quota.name.clone(),
                    retry_after: Duration::from_secs_f64(wait_ms.max(0.0) / 1000.0),
                });
            }
        }
        Ok(slots)
    }
}

/// Milliseconds on a monotonic clock (the memory store needs no wall time).
fn memory_clock_ms() -> f64 {
    static START: LazyLock<Instant> = LazyLock::new(Instant::now);
    START.elapsed().as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcra_allows_a_burst_then_the_rate() {
        let period = 100.0; // 10 per second
        let mut tat = None;
        for _ in 0..3 {
            tat = Some(gcra(tat, 0.0, period, 3).unwrap());
        }
        let wait = gcra(tat, 0.0, period, 3).unwrap_err();
        assert!((wait - 100.0).abs() < 1e-9, "{wait}");
        // One period later, exactly one more.
        tat = Some(gcra(tat, 100.0, period, 3).unwrap());
        assert!(gcra(tat, 100.0, period, 3).is_err());
        // A long pause refills the burst, no more.
        let idle = gcra(tat, 10_000.0, period, 3).unwrap();
        assert!((idle - 10_100.0).abs() < 1e-9);
    }

    #[tokio::test]
    async fn memory_slots_are_released_on_drop() {
        let policy =
            crate::policy::file::Policy::parse("[[quota]]\nname = \"c\"\nconcurrent = 1\n", "t")
                .unwrap();
        let quota = policy.quotas()[0].clone();
        let store = Arc::new(QuotaStore::Memory(MemoryStore::default()));
        let budgets = vec![(quota, "c|alice".to_owned())];
        let held = store.admit(&budgets, Duration::from_secs(1)).await.unwrap();
        assert!(matches!(
            store.admit(&budgets, Duration::from_secs(1)).await,
            Err(Refusal::Concurrent { limit: 1, .. })
        ));
        drop(held);
        assert!(store.admit(&budgets, Duration::from_secs(1)).await.is_ok());
    }
}
