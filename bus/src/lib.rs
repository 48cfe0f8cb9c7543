//! The bus: the one seam between gateways and workers.
//!
//! Gateways terminate client connections; workers run tools. Everything that passes
//! between them (sessions, jobs, the events a worker emits for a client, broadcasts,
//! cancellations, replies to server-to-client requests, the tool registry) passes
//! through a [`Bus`]. Two implementations keep the same contract: [`MemoryBus`] (one
//! process, the default) and a Redis bus (many gateways and workers).
//!
//! # Layout
//! - [`contract`]: the [`Bus`] trait, where the guarantees are written down.
//! - [`message`]: what travels: [`Job`], [`SessionEvent`], [`BroadcastEvent`],
//!   [`Control`], [`SessionRecord`], [`WorkerInfo`].
//! - [`ids`]: session ids (128-bit CSPRNG) and stream ids.
//! - [`live`]: the per-session live queue, a broadcast channel that allocates on demand.
//! - [`quota`]: what the quota and audit sections trade in, and the shared GCRA arithmetic.
//! - [`memory`]: the in-process implementation.
//! - [`error`]: the bus error type, [`BusError`].
//! - `conformance` (tests only): one test suite every implementation must pass.

pub mod contract;
pub mod error;
pub mod ids;
pub mod live;
pub mod memory;
pub mod message;
pub mod quota;
pub mod redis;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

pub use contract::{BroadcastSubscription, Bus, Replay, SessionSubscription};
pub use error::BusError;
pub use ids::{SessionId, StreamId, WorkerId};
pub use memory::{MemoryBus, MemoryBusConfig};
pub use message::{
    BroadcastEvent, Catalog, ClusterStats, Control, EventBody, Job, Live, SessionEvent,
    SessionRecord, StandaloneCursor, StreamTarget, WorkerInfo,
};
pub use quota::{AuditFields, RateVerdict};
pub use redis::{Conn, RedisBus, RedisBusConfig, RedisMode};

/// Milliseconds since the Unix epoch, the clock of deadlines and latency stamps.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
