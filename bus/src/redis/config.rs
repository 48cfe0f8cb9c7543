//! How the Redis bus connects and what it keeps.

use super::connection::RedisMode;
use std::time::Duration;

/// The session idle TTL a process follows before any process has set the cluster's.
pub const DEFAULT_SESSION_IDLE_TTL: Duration = Duration::from_secs(1800);

/// How the Redis bus connects and what it keeps.
#[derive(Debug, Clone)]
pub struct RedisBusConfig {
    /// `redis://host:port/db`; with [`RedisMode::Sentinel`], the sentinels' URLs, comma
    /// separated.
    pub url: String,
    /// How `url` is read: one Redis, or the sentinels of a master.
    pub mode: RedisMode,
    /// The master's name the sentinels monitor (for [`RedisMode::Sentinel`]).
    pub sentinel_master: String,
    /// Prefix of every key and channel.
    pub prefix: String,
    /// Events kept per session log.
    pub session_log_len: usize,
    /// Broadcasts kept in the broadcast log.
    pub broadcast_log_len: usize,
    /// Live events a local subscriber may fall behind.
    pub live_queue_len: usize,
    /// Jobs queued or running before `enqueue` refuses more.
    pub job_queue_len: usize,
    /// The cluster-wide idle TTL of sessions, set by the processes that own the setting
    /// (gateways: `--session-idle-ttl-secs`). `Some`: this process writes it to Redis at
    /// start (a change is logged, never silent). `None`: this process follows whatever is in
    /// Redis (workers), and [`DEFAULT_SESSION_IDLE_TTL`] until something has been set.
    pub session_idle_ttl: Option<Duration>,
    /// A job whose worker has not refreshed it for this long is claimed by another worker.
    pub job_claim_idle: Duration,
    /// How often a worker or gateway heartbeats, refreshes its running jobs and checks its
    /// subscriptions against the logs.
    pub heartbeat: Duration,
    /// Set for a gateway process: it announces itself under this id (for `stats`).
    pub gateway_id: Option<String>,
}

impl RedisBusConfig {
    /// Defaults for `url`.
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            mode: RedisMode::Single,
            sentinel_master: "mymaster".into(),
            prefix: "mcpgw".into(),
            session_log_len: 1024,
            broadcast_log_len: 1024,
            live_queue_len: 256,
            job_queue_len: 10_000,
            session_idle_ttl: None,
            job_claim_idle: Duration::from_secs(15),
            heartbeat: Duration::from_secs(5),
            gateway_id: None,
        }
    }

    pub(super) fn liveness(&self) -> Duration {
        self.heartbeat * 3
    }
}
