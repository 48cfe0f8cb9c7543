//! The messages that travel on the bus. All are serde types: the Redis bus stores them
//! as JSON, so a worker in another language can speak the same formats (see `docs/`).

use crate::ids::{SessionId, StreamId, WorkerId};
use mcp_protocol::{LogLevel, Prompt, RequestId, Resource, ResourceTemplate, Tool};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What the bus knows of a session. Gateways may cache it; the bus's copy is the truth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The session id.
    pub id: SessionId,
    /// The negotiated protocol revision, as a string (e.g. `2025-11-25`).
    pub protocol_version: String,
    /// The client's `capabilities` from `initialize`.
    pub client_capabilities: Value,
    /// The client's `clientInfo` from `initialize`.
    pub client_info: Value,
    /// The minimum level of `notifications/message` the client wants (`logging/setLevel`).
    pub log_level: Option<LogLevel>,
    /// Who created the session (the authenticated principal; empty when auth is off).
    pub principal: String,
    /// Creation time, ms since the epoch.
    pub created_ms: u64,
    /// Where a fresh standalone (GET) stream starts: everything after it that was meant for
    /// the standalone stream has not been delivered on one yet.
    pub standalone_cursor: StandaloneCursor,
    /// True for the throwaway sessions a stateless gateway makes for one request.
    #[serde(default)]
    pub ephemeral: bool,
}

/// A position on a session's standalone stream: in its session log and in the broadcast log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StandaloneCursor {
    /// Last session-log sequence number covered.
    pub session_seq: u64,
    /// Last broadcast-log sequence number covered.
    pub broadcast_seq: u64,
}

/// Which SSE stream of a session an event belongs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamTarget {
    /// The session's standalone stream (the GET stream).
    Standalone,
    /// The response stream of one request (a POST's SSE stream).
    Request(StreamId),
}

/// What an event carries to the client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "message", rename_all = "snake_case")]
pub enum EventBody {
    /// A JSON-RPC notification or server-to-client request.
    Message(Value),
    /// The final JSON-RPC response of a request; the request's stream ends after it.
    Response(Value),
    /// The request's stream ends without a response (the request was cancelled).
    End,
    /// The server closes the connection but not the stream: the client should reconnect
    /// with `Last-Event-ID` after `retry_ms` (2025-11-25 polling).
    Reconnect {
        /// How long the client should wait before reconnecting.
        retry_ms: u64,
    },
}

/// One entry of a session's event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionEvent {
    /// Position in the session's log: strictly increasing, never reused within a session.
    pub seq: u64,
    /// The stream it belongs on.
    pub stream: StreamTarget,
    /// What it carries.
    pub body: EventBody,
    /// When the emitter produced it (ms since the epoch), for delivery-latency metrics.
    pub emitted_ms: u64,
}

/// One entry of the broadcast log: a notification for every session's standalone stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BroadcastEvent {
    /// Position in the broadcast log: strictly increasing.
    pub seq: u64,
    /// The JSON-RPC notification.
    pub message: Value,
    /// When it was published (ms since the epoch).
    pub emitted_ms: u64,
    /// `message` as compact JSON, made by the first stream that writes it.
    #[serde(skip)]
    json: JsonCache,
}

impl BroadcastEvent {
    /// A broadcast log entry.
    pub fn new(seq: u64, message: Value, emitted_ms: u64) -> Self {
        Self {
            seq,
            message,
            emitted_ms,
            json: JsonCache::default(),
        }
    }

    /// The message as compact JSON, serialized once however many streams write it: a
    /// gateway sends one broadcast to every open stream it holds.
    pub fn json(&self) -> std::sync::Arc<str> {
        self.json
            .0
            .get_or_init(|| {
                serde_json::to_string(&self.message)
                    .unwrap_or_default()
                    .into()
            })
            .clone()
    }
}

/// A value derived from the event, so it takes no part in equality or debug output.
#[derive(Clone, Default)]
struct JsonCache(std::sync::OnceLock<std::sync::Arc<str>>);

impl PartialEq for JsonCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for JsonCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JsonCache")
    }
}

/// What a live session subscription yields.
#[derive(Debug, Clone, PartialEq)]
pub enum Live {
    /// An event appended to the session's log.
    Event(std::sync::Arc<SessionEvent>),
    /// A connection claimed one of the session's streams (it opened or resumed it); holders
    /// of the same stream with any other claim close theirs, so a message is never sent on
    /// two connections.
    StreamClaimed {
        /// The stream.
        stream: StreamTarget,
        /// The new holder's claim.
        claim: u64,
    },
    /// The session ended; every stream of it closes.
    SessionEnded,
}

/// A unit of work for a worker: one client request the gateway does not answer itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// The session the request belongs to.
    pub session: SessionId,
    /// The stream the worker's output for this request goes to.
    pub stream: StreamId,
    /// The client's JSON-RPC request id.
    pub request_id: RequestId,
    /// The JSON-RPC method (e.g. `tools/call`).
    pub method: String,
    /// The request's params.
    pub params: Value,
    /// The client's progress token, if the request carried one.
    pub progress_token: Option<Value>,
    /// The negotiated protocol revision.
    pub protocol_version: String,
    /// The client's capabilities (so a tool knows whether it may ask for sampling).
    pub client_capabilities: Value,
    /// The session's log level when the job was made.
    pub log_level: Option<LogLevel>,
    /// Deadline, ms since the epoch: the worker stops the tool and answers with an error.
    pub deadline_ms: u64,
    /// W3C `traceparent` of the gateway's span, if tracing is on.
    pub traceparent: Option<String>,
    /// How many times this job was handed to a worker before (0 on the first try).
    #[serde(default)]
    pub attempt: u32,
    /// False when the client asked for a plain JSON response: it will see only the final
    /// response, so notifications and requests on the request's stream cannot reach it.
    pub streaming: bool,
    /// False when the session has no standalone stream (a stateless gateway's requests).
    pub session_stream: bool,
    /// The authenticated principal that sent the request (its name, never its token):
    /// state a tool hands the client to echo back is bound to it.
    #[serde(default)]
    pub principal: String,
    /// The bus's handle on this delivery (the Redis stream entry id); not part of the job.
    #[serde(skip)]
    pub delivery_id: Option<String>,
}

/// Messages from gateways to workers that are not jobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Control {
    /// The client cancelled a request (`notifications/cancelled`).
    Cancel {
        /// The session.
        session: SessionId,
        /// The cancelled request.
        request_id: RequestId,
        /// The client's reason, if any.
        reason: Option<String>,
    },
    /// The client answered a server-to-client request.
    ClientResponse {
        /// The session.
        session: SessionId,
        /// The id of the server's request.
        request_id: RequestId,
        /// The whole JSON-RPC response (`result` or `error`).
        response: Value,
    },
    /// The session ended: background work for it stops.
    SessionEnded {
        /// The session.
        session: SessionId,
    },
    /// Every worker shows (or hides) a tool or prompt in what it announces, so the
    /// cluster's lists change (and `list_changed` goes out) at run time.
    SetListed {
        /// `tool` or `prompt`.
        kind: String,
        /// Its name.
        name: String,
        /// Whether it is listed from now on.
        listed: bool,
    },
}

/// What a worker announces about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// The worker's id.
    pub id: WorkerId,
    /// The tools it serves.
    pub tools: Vec<Tool>,
    /// The resources it serves.
    #[serde(default)]
    pub resources: Vec<Resource>,
    /// The resource templates it serves.
    #[serde(default)]
    pub resource_templates: Vec<ResourceTemplate>,
    /// The prompts it serves.
    #[serde(default)]
    pub prompts: Vec<Prompt>,
    /// Jobs it is running now.
    pub jobs_running: u64,
}

/// Everything the live workers serve: the union of their announcements, each list sorted
/// by name (or URI), so list results are deterministic.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    /// Tools, by name.
    pub tools: Vec<Tool>,
    /// Resources, by URI.
    pub resources: Vec<Resource>,
    /// Resource templates, by URI template.
    pub resource_templates: Vec<ResourceTemplate>,
    /// Prompts, by name.
    pub prompts: Vec<Prompt>,
}

impl Catalog {
    /// The union of `workers`' announcements (the first announcement of a name wins).
    pub fn union<'a>(workers: impl IntoIterator<Item = &'a WorkerInfo>) -> Self {
        use std::collections::BTreeMap;
        let mut tools = BTreeMap::new();
        let mut resources = BTreeMap::new();
        let mut templates = BTreeMap::new();
        let mut prompts = BTreeMap::new();
        for w in workers {
            for t in &w.tools {
                tools.entry(t.name.clone()).or_insert_with(|| t.clone());
            }
            for r in &w.resources {
                resources.entry(r.uri.clone()).or_insert_with(|| r.clone());
            }
            for r in &w.resource_templates {
                templates
                    .entry(r.uri_template.clone())
                    .or_insert_with(|| r.clone());
            }
            for p in &w.prompts {
                prompts.entry(p.name.clone()).or_insert_with(|| p.clone());
            }
        }
        Self {
            tools: tools.into_values().collect(),
            resources: resources.into_values().collect(),
            resource_templates: templates.into_values().collect(),
            prompts: prompts.into_values().collect(),
        }
    }

    /// The `notifications/*/list_changed` methods that going from `self` to `next` calls for.
    pub fn changes(&self, next: &Catalog) -> Vec<&'static str> {
        let mut methods = Vec::new();
        if self.tools != next.tools {
            methods.push("notifications/tools/list_changed");
        }
        if self.resources != next.resources || self.resource_templates != next.resource_templates {
            methods.push("notifications/resources/list_changed");
        }
        if self.prompts != next.prompts {
            methods.push("notifications/prompts/list_changed");
        }
        methods
    }
}

/// A cluster-wide snapshot for `server_status` and operators.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterStats {
    /// Live gateway nodes.
    pub gateways: u64,
    /// Live sessions.
    pub sessions: u64,
    /// Live workers.
    pub workers: u64,
    /// Jobs enqueued and not yet finished.
    pub jobs_in_flight: u64,
}
