//! Every Redis key and channel the bus uses, in one place (documented in `docs/redis.md`).
//!
//! Keys of one session share the hash tag `{<session id>}` so a Redis Cluster keeps them
//! on one node and the Lua scripts that touch several of them stay legal.

use crate::ids::{SessionId, WorkerId};

/// Key and channel names under one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Names under `prefix` (several deployments can share one Redis).
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// HASH: the session record and its counters (`rec`, `level`, `cs`, `cb`, `seq`).
    pub fn session(&self, id: &SessionId) -> String {
        format!("{}:{{{}}}:session", self.prefix, id)
    }
    /// STREAM: the session's event log; entry id `<seq>-1`, field `e`.
    pub fn log(&self, id: &SessionId) -> String {
        format!("{}:{{{}}}:log", self.prefix, id)
    }
    /// HASH: request id (JSON) → id of the worker running it.
    pub fn running(&self, id: &SessionId) -> String {
        format!("{}:{{{}}}:running", self.prefix, id)
    }
    /// HASH: request id (JSON) → 1, for requests cancelled before a worker took them.
    pub fn cancelled(&self, id: &SessionId) -> String {
        format!("{}:{{{}}}:cancelled", self.prefix, id)
    }
    /// SET: the resource URIs the session subscribed to (no TTL: removed with the session,
    /// by its end or by upkeep, which needs it to clean the URIs' subscriber sets).
    pub fn session_resources(&self, id: &SessionId) -> String {
        format!("{}:{{{}}}:resources", self.prefix, id)
    }
    /// SET: the sessions subscribed to one resource URI.
    pub fn resource_subscribers(&self, uri: &str) -> String {
        format!("{}:{{res}}:subscribers:{uri}", self.prefix)
    }
    /// Pub/sub channel of one session's live events and notices.
    pub fn session_channel(&self, id: &SessionId) -> String {
        format!("{}:ch:s:{}", self.prefix, id)
    }
    /// The prefix of session channels, for routing incoming messages.
    pub fn session_channel_prefix(&self) -> String {
        format!("{}:ch:s:", self.prefix)
    }
    /// STRING: the last broadcast sequence number.
    pub fn broadcast_seq(&self) -> String {
        format!("{}:{{bcast}}:seq", self.prefix)
    }
    /// STREAM: the broadcast log; entry id `<seq>-1`, field `m`.
    pub fn broadcast_log(&self) -> String {
        format!("{}:{{bcast}}:log", self.prefix)
    }
    /// Pub/sub channel of broadcasts.
    pub fn broadcast_channel(&self) -> String {
        format!("{}:ch:broadcast", self.prefix)
    }
    /// STREAM: the job queue, read by the consumer group [`Keys::JOB_GROUP`]; field `job`.
    pub fn jobs(&self) -> String {
        format!("{}:{{jobs}}:stream", self.prefix)
    }
    /// The consumer group of workers on the job stream.
    pub const JOB_GROUP: &'static str = "workers";
    /// Pub/sub channel every worker listens on (session ends).
    pub fn control_channel(&self) -> String {
        format!("{}:ch:control", self.prefix)
    }
    /// Pub/sub channel of one worker (cancellations, replies to its requests).
    pub fn worker_channel(&self, id: &WorkerId) -> String {
        format!("{}:ch:w:{}", self.prefix, id)
    }
    /// HASH: worker id → `WorkerInfo` JSON.
    pub fn workers(&self) -> String {
        format!("{}:{{registry}}:workers", self.prefix)
    }
    /// ZSET: worker id → last heartbeat (ms).
    pub fn worker_heartbeats(&self) -> String {
        format!("{}:{{registry}}:worker-heartbeats", self.prefix)
    }
    /// ZSET: gateway id → last heartbeat (ms).
    pub fn gateway_heartbeats(&self) -> String {
        format!("{}:{{registry}}:gateway-heartbeats", self.prefix)
    }
    /// ZSET: session id → creation (ms), the live sessions of one principal (members leave
    /// with the session: its end, or upkeep when it expired).
    pub fn principal_sessions(&self, principal: &str) -> String {
        format!("{}:{{registry}}:principal:{principal}", self.prefix)
    }
    /// STRING: a cluster-wide secret (hex), made by the first node that needs it.
    pub fn secret(&self, name: &str) -> String {
        format!("{}:{{registry}}:secret:{name}", self.prefix)
    }
    /// ZSET: session id → when its idle TTL runs out if nobody uses it (ms): counts live
    /// sessions and tells upkeep which ones to look at (see `upkeep::sweep_expired`).
    pub fn session_index(&self) -> String {
        format!("{}:{{registry}}:sessions", self.prefix)
    }
    /// HASH: session id → principal, so a session that expired can be taken out of its
    /// principal's set (the session hash, which also names it, is gone by then).
    pub fn session_principals(&self) -> String {
        format!("{}:{{registry}}:session-principals", self.prefix)
    }
    /// STRING: a cluster-wide value set by `exchange_value` (one per name, for the life of
    /// the deployment).
    pub fn value(&self, name: &str) -> String {
        format!("{}:{{registry}}:value:{name}", self.prefix)
    }
    /// HASH: cluster-wide settings (`session-idle-ttl-ms`).
    pub fn settings(&self) -> String {
        format!("{}:{{registry}}:settings", self.prefix)
    }
    /// The field of [`Keys::settings`] holding the session idle TTL in ms.
    pub const IDLE_TTL_FIELD: &'static str = "session-idle-ttl-ms";
    /// STRING: a rate budget's GCRA `tat` (ms, Redis clock); expires when the budget is
    /// full again. The budget's own hash tag: each check touches this key alone.
    pub fn quota_rate(&self, budget: &str) -> String {
        format!("{}:{{quota:{budget}}}:rate", self.prefix)
    }
    /// ZSET: slot id → when its lease runs out (ms, Redis clock): the running calls of one
    /// budget; the key expires with its longest lease.
    pub fn quota_slots(&self, budget: &str) -> String {
        format!("{}:{{quota:{budget}}}:slots", self.prefix)
    }
    /// STREAM: the cluster's audit records (one field per record field), trimmed with
    /// `XADD MAXLEN ~` to about the configured length.
    pub fn audit(&self) -> String {
        format!("{}:{{audit}}:stream", self.prefix)
    }
}
