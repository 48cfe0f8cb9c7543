//! What the quota and audit sections of the contract trade in, the GCRA arithmetic both
//! implementations share, and the in-memory stores of the memory bus.
//!
//! GCRA (the generic cell rate algorithm) keeps one number per budget, the theoretical
//! arrival time `tat` of the next call: a call at `now` is admitted when
//! `tat - now <= period * (burst - 1)`, and moves `tat` to `max(tat, now) + period`. So
//! `burst` calls may come at once, then one per period. The Redis bus runs the same
//! arithmetic in a Lua script (`redis::scripts::QUOTA_TAKE`) on the server's clock.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The answer to [`Bus::quota_take`](crate::Bus::quota_take).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RateVerdict {
    /// The call is admitted and drawn from the budget.
    Admitted,
    /// The budget is used up; the next call would be admitted after this long.
    Wait(Duration),
}

/// One audit record: field names and values, in order.
pub type AuditFields = Vec<(String, String)>;

/// GCRA: the new `tat` if a call at `now` is admitted, else how long to wait. Times in ms.
pub fn gcra(tat: Option<f64>, now: f64, period: f64, burst: u32) -> Result<f64, f64> {
    let tat = tat.unwrap_or(now).max(now);
    let tolerance = period * f64::from(burst.max(1) - 1);
    let wait = tat - now - tolerance;
    if wait > 0.0 {
        Err(wait)
    } else {
        Ok(tat + period)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Budgets held by more entries than this are swept of the ones that are full again
/// (rates) or hold no live slot (running calls), so the maps hold budgets in use only.
const SWEEP_ABOVE: usize = 10_000;

/// Rate and running-call budgets in this process (the memory bus).
#[derive(Debug, Default)]
pub(crate) struct MemoryQuotas {
    /// Budget → its `tat`, in ms on [`MemoryQuotas::now_ms`]'s clock.
    tats: Mutex<HashMap<String, f64>>,
    /// Budget → slot id → when its lease runs out.
    slots: Mutex<HashMap<String, HashMap<String, Instant>>>,
    epoch: std::sync::OnceLock<Instant>,
}

impl MemoryQuotas {
    /// Milliseconds on a monotonic clock (no wall time needed in one process).
    fn now_ms(&self) -> f64 {
        self.epoch.get_or_init(Instant::now).elapsed().as_secs_f64() * 1000.0
    }

    pub(crate) fn take(&self, budget: &str, period: Duration, burst: u32) -> RateVerdict {
        let now = self.now_ms();
        let period = period.as_secs_f64() * 1000.0;
        let mut tats = lock(&self.tats);
        let verdict = gcra(tats.get(budget).copied(), now, period, burst);
        if let Ok(tat) = verdict {
            tats.insert(budget.to_owned(), tat);
        }
        if tats.len() > SWEEP_ABOVE {
            tats.retain(|_, tat| *tat > now);
        }
        match verdict {
            Ok(_) => RateVerdict::Admitted,
            Err(wait) => RateVerdict::Wait(Duration::from_secs_f64(wait.max(0.0) / 1000.0)),
        }
    }

    pub(crate) fn acquire(&self, budget: &str, slot: &str, limit: u32, lease: Duration) -> bool {
        let now = Instant::now();
        let mut budgets = lock(&self.slots);
        if budgets.len() > SWEEP_ABOVE {
            budgets.retain(|_, held| {
                held.retain(|_, until| *until > now);
                !held.is_empty()
            });
        }
        let held = budgets.entry(budget.to_owned()).or_default();
        held.retain(|_, until| *until > now);
        if held.len() >= limit as usize {
            if held.is_empty() {
                budgets.remove(budget);
            }
            return false;
        }
        held.insert(slot.to_owned(), now + lease);
        true
    }

    pub(crate) fn release(&self, budget: &str, slot: &str) {
        let mut budgets = lock(&self.slots);
        if let Some(held) = budgets.get_mut(budget) {
            held.remove(slot);
            if held.is_empty() {
                budgets.remove(budget);
            }
        }
    }
}

/// The audit log of the memory bus, trimmed to exactly `max_len` records.
#[derive(Debug, Default)]
pub(crate) struct MemoryAudit {
    log: Mutex<VecDeque<AuditFields>>,
}

impl MemoryAudit {
    pub(crate) fn append(&self, records: Vec<AuditFields>, max_len: usize) {
        let mut log = lock(&self.log);
        log.extend(records);
        while log.len() > max_len.max(1) {
            log.pop_front();
        }
    }

    pub(crate) fn tail(&self, count: usize) -> Vec<AuditFields> {
        let log = lock(&self.log);
        log.iter()
            .skip(log.len().saturating_sub(count))
            .cloned()
            .collect()
    }
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
}
