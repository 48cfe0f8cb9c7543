//! Every Redis key and channel the bus uses, in one place (documented in `docs/redis.md`).
//!
//! Keys of one session share the hash tag `{<session id>}` so a Redis Cluster keeps them
//! on one node and the Lua scripts that touch several of them stay legal.

use crate::ids::{SessionId, WorkerId};

/// Key and channel names under one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
    sharded: bool,
}

impl Keys {
    /// Names under `prefix` (several deployments can share one Redis).
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            sharded: false,
        }
    }

    /// Names for a Redis Cluster: session channels are sharded (`SPUBLISH`/`SSUBSCRIBE`)
    /// and carry the session's hash tag, so each stays on the shard of the session's keys
    /// (and the scripts that publish on them touch one slot).
    pub fn sharded(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            sharded: true,
        }
    }

    /// Whether session channels are sharded (a Redis Cluster).
    pub fn is_sharded(&self) -> bool {
        self.sharded
    }

    /// The command that publishes on a session channel: `SPUBLISH` in a cluster (the
    /// message stays on the shard), else `PUBLISH`.
    pub fn session_publish(&self) -> &'static str {
        if self.sharded { "SPUBLISH" } else { "PUBLISH" }
    }

    /// Whether `channel` is subscribed with `SSUBSCRIBE`.
    pub fn is_sharded_channel(&self, channel: &str) -> bool {
        self.sharded && channel.starts_with(&self.session_channel_prefix())
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
    /// Pub/sub channel of one session's live events and notices (`P:ch:s:SID`; in a
    /// cluster `P:ch:s:{SID}`, a sharded channel in the slot of the session's keys).
    pub fn session_channel(&self, id: &SessionId) -> String {
        if self.sharded {
            format!("{}:ch:s:{{{}}}", self.prefix, id)
        } else {
            format!("{}:ch:s:{}", self.prefix, id)
        }
    }

    /// The session a session channel's name (after [`Keys::session_channel_prefix`]) names.
    pub fn session_of_channel(&self, rest: &str) -> Option<SessionId> {
        let rest = if self.sharded {
            rest.strip_prefix('{')?.strip_suffix('}')?
        } else {
            rest
        };
        SessionId::parse(rest)
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
    /// On one Redis the only job stream; in a cluster see [`Keys::job_stream`].
    pub fn jobs(&self) -> String {
        format!("{}:{{jobs}}:stream", self.prefix)
    }
    /// How many job streams there are: one on one Redis, [`Keys::CLUSTER_JOB_STREAMS`] in a
    /// cluster (every process of a deployment must agree, so it is not a setting).
    pub fn job_streams(&self) -> usize {
        if self.sharded {
            Self::CLUSTER_JOB_STREAMS
        } else {
            1
        }
    }
    /// Job streams in a cluster: eight hash tags (`{jobs:0}` .. `{jobs:7}`), whose slots
    /// fall in all three thirds of the slot space, so a 3-master cluster made by
    /// `redis-cli --cluster create` carries jobs on every master (2, 2 and 4 streams).
    pub const CLUSTER_JOB_STREAMS: usize = 8;
    /// STREAM `i` of the job queue: [`Keys::jobs`] on one Redis, `P:{jobs:i}:stream` in a
    /// cluster.
    pub fn job_stream(&self, i: usize) -> String {
        if self.sharded {
            format!("{}:{{jobs:{i}}}:stream", self.prefix)
        } else {
            self.jobs()
        }
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
