//! Upstream MCP servers behind the cluster: a worker is the client of existing MCP
//! servers (Streamable HTTP, or stdio children) and serves their tools beside its own.
//!
//! - [`config`]: the flags and the TOML file.
//! - `catalog`: the upstream's tools, resources, templates and prompts, listed, prefixed
//!   and routed; its resource updates relayed.
//! - `connection`: one upstream session (the official Rust SDK's client), its
//!   notifications routed in order to the downstream call or session they belong to.
//! - `stdio`: children that die with their worker.
//!
//! Every upstream message a call receives is published through the call's
//! [`ToolContext`], so it is on the bus: delivered by whichever gateway holds the
//! client's stream, resumable there. See docs/upstreams.md.

mod catalog;
pub mod config;
mod connection;
pub mod metrics;
mod relay;
mod stdio;

pub use config::{SessionMode, UpstreamArgs, UpstreamConfig};

use crate::context::ToolContext;
use crate::tool::ToolError;
use catalog::Listing;
use connection::Connection;
use mcp_bus::{Bus, EventBody, SessionId, StreamTarget};
use mcp_protocol::{ErrorObject, LogLevel, Tool, jsonrpc};
use rmcp::model::{CallToolRequest, CallToolRequestParams, ClientRequest, ServerResult};
use rmcp::service::{PeerRequestOptions, ServiceError};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{Notify, OnceCell, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Every upstream of a worker.
pub struct Upstreams {
    all: Vec<Arc<Upstream>>,
    /// Woken when an upstream's tools change or it goes up or down: the worker announces.
    pub(crate) changed: Arc<Notify>,
    /// (upstream, URI or name) pairs already warned about as duplicates.
    warned: Mutex<std::collections::HashSet<(String, String)>>,
}

/// What `server_status` and readiness say about one upstream.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UpstreamStatus {
    /// Its name.
    pub name: String,
    /// Reachable now.
    pub up: bool,
    /// Tools it contributes.
    pub tools: usize,
    /// Resources it lists (a URI another source serves first included).
    pub resources: usize,
    /// Resource templates it lists.
    pub resource_templates: usize,
    /// Prompts it lists.
    pub prompts: usize,
    /// Upstream sessions open on this worker.
    pub sessions: usize,
}

impl Upstreams {
    /// Upstreams for these configurations (none connected yet: see [`Upstreams::start`]).
    pub fn new(configs: Vec<UpstreamConfig>) -> Self {
        let changed = Arc::new(Notify::new());
        Self {
            all: configs
                .into_iter()
                .map(|config| Arc::new(Upstream::new(config, changed.clone())))
                .collect(),
            changed,
            warned: Mutex::default(),
        }
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// Connects each upstream and keeps its catalog fresh until `stop` (a task each).
    pub(crate) fn start(&self, bus: Arc<dyn Bus>, stop: CancellationToken) {
        for upstream in &self.all {
            let _ = upstream.bus.set(bus.clone());
            tokio::spawn(upstream.clone().watch(stop.clone()));
        }
    }

    /// The tools of the upstreams that are up, under their prefixes.
    pub fn tools(&self) -> Vec<Tool> {
        self.all.iter().flat_map(|u| u.listed_tools()).collect()
    }

    /// The upstream serving the cluster tool `name`, and the tool's upstream name.
    pub(crate) fn find(&self, name: &str) -> Option<(Arc<Upstream>, String)> {
        self.all.iter().find_map(|u| {
            let original = name.strip_prefix(u.config.prefix.as_str())?;
            let known = lock(&u.listing).tools.iter().any(|t| t.name == original);
            known.then(|| (u.clone(), original.to_owned()))
        })
    }

    /// Closes the upstream sessions of a downstream session that ended.
    pub(crate) fn session_ended(&self, session: &SessionId) {
        for upstream in &self.all {
            upstream.close_session(session);
        }
    }

    /// Each upstream's state.
    pub fn status(&self) -> Vec<UpstreamStatus> {
        self.all
            .iter()
            .map(|u| {
                let (tools, resources, resource_templates, prompts) = {
                    let l = lock(&u.listing);
                    (
                        l.tools.len(),
                        l.resources.len(),
                        l.templates.len(),
                        l.prompts.len(),
                    )
                };
                UpstreamStatus {
                    name: u.config.name.clone(),
                    up: u.up.load(Ordering::Relaxed),
                    tools,
                    resources,
                    resource_templates,
                    prompts,
                    sessions: lock(&u.sessions).len(),
                }
            })
            .collect()
    }
}

type Slot = Arc<OnceCell<Arc<Connection>>>;

/// One upstream server.
pub(crate) struct Upstream {
    pub(crate) config: UpstreamConfig,
    bus: OnceCell<Arc<dyn Bus>>,
    /// The worker's own session: catalog, health, and every call in shared mode.
    main: Mutex<Slot>,
    /// Per-session mode: the downstream session's upstream session.
    sessions: Mutex<HashMap<SessionId, Slot>>,
    /// What the upstream serves (upstream names), as last listed; not shown while down.
    listing: Mutex<Listing>,
    /// Woken by the upstream's `notifications/{resources,prompts}/list_changed`.
    relist: Arc<Notify>,
    /// Resources the worker's own session is subscribed to upstream, and in which session.
    subscribed: Mutex<catalog::Subscribed>,
    up: AtomicBool,
    calls: Arc<Semaphore>,
    changed: Arc<Notify>,
    /// Woken when a call saw the upstream fail: check it now.
    suspect: Notify,
    /// The worker's own session was open once (opening it again is a restart).
    opened: AtomicBool,
    /// Cancelled when the upstream is found down: the calls running in it fail at once
    /// instead of waiting for their timeout (the SDK keeps retrying a broken stream).
    outage: Mutex<CancellationToken>,
}

impl Upstream {
    fn new(config: UpstreamConfig, changed: Arc<Notify>) -> Self {
        Self {
            calls: Arc::new(Semaphore::new(config.max_concurrency)),
            config,
            bus: OnceCell::new(),
            main: Mutex::new(Arc::new(OnceCell::new())),
            sessions: Mutex::new(HashMap::new()),
            listing: Mutex::default(),
            relist: Arc::new(Notify::new()),
            subscribed: Mutex::default(),
            up: AtomicBool::new(false),
            changed,
            suspect: Notify::new(),
            outage: Mutex::new(CancellationToken::new()),
            opened: AtomicBool::new(false),
        }
    }

    fn listed_tools(&self) -> Vec<Tool> {
        if !self.up.load(Ordering::Relaxed) {
            return Vec::new();
        }
        lock(&self.listing)
            .tools
            .iter()
            .map(|t| Tool {
                name: format!("{}{}", self.config.prefix, t.name),
                ..t.clone()
            })
            .collect()
    }

    fn retryable(&self, name: &str) -> bool {
        self.config.retryable.iter().any(|r| r == name)
    }

    /// The worker's own session, opened if needed.
    async fn main_connection(&self) -> Result<Arc<Connection>, ConnectFailure> {
        let slot = lock(&self.main).clone();
        let conn = slot
            .get_or_try_init(|| async {
                let conn = Connection::open(&self.config, connection::capabilities_for(None))
                    .await
                    .map(Arc::new)
                    .map_err(|e| ConnectFailure(e.to_string()))?;
                if self.opened.swap(true, Ordering::Relaxed) {
                    metrics::RESTARTS
                        .with_label_values(&[self.config.name.as_str()])
                        .inc();
                }
                self.route_own_messages(&conn);
                Ok(conn)
            })
            .await?
            .clone();
        if conn.is_closed() {
            self.reset_main(&slot);
            return Err(ConnectFailure("the connection closed".into()));
        }
        Ok(conn)
    }

    fn reset_main(&self, failed: &Slot) {
        let mut main = lock(&self.main);
        if Arc::ptr_eq(&main, failed) {
            if let Some(conn) = main.get().cloned() {
                tokio::spawn(async move { conn.close().await });
            }
            *main = Arc::new(OnceCell::new());
        }
    }

    /// Lists tools, marks the upstream up or down, and says so when that changed the
    /// catalog; then waits for the next check (the interval, a `list_changed`, or a call
    /// that saw a failure).
    async fn watch(self: Arc<Self>, stop: CancellationToken) {
        let mut delay = Duration::from_millis(100);
        // Whether this outage was logged at warn already (the first failure at start is
        // worth a warning too, the retries are not).
        let mut warned = false;
        loop {
            let listed = match self.main_connection().await {
                Ok(conn) => {
                    match tokio::time::timeout(self.config.connect_timeout, self.list(&conn))
                        .await
                        .unwrap_or_else(|_| Err("listing timed out".into()))
                    {
                        Ok(listing) => Ok((conn, listing)),
                        Err(e) => {
                            // (The slot is cloned first: `reset_main` locks it again.)
                            let slot = lock(&self.main).clone();
                            self.reset_main(&slot);
                            Err(e)
                        }
                    }
                }
                Err(e) => Err(e.0),
            };
            let list_changed = match listed {
                Ok((conn, listing)) => {
                    delay = Duration::from_millis(100);
                    warned = false;
                    let was_up = self.up.swap(true, Ordering::Relaxed);
                    metrics::UP
                        .with_label_values(&[self.config.name.as_str()])
                        .set(1);
                    let changed = {
                        let mut current = lock(&self.listing);
                        let changed = *current != listing;
                        *current = listing;
                        changed
                    };
                    self.subscribe_upstream(&conn).await;
                    if !was_up {
                        tracing::info!(upstream = %self.config.name, "upstream is up");
                    }
                    if changed || !was_up {
                        self.changed.notify_one();
                    }
                    Some(conn.router.list_changed.clone())
                }
                Err(e) => {
                    // Calls running in it fail now; its sessions are dropped (the next
                    // call of a session opens a new one).
                    std::mem::take(&mut *lock(&self.outage)).cancel();
                    let sessions: Vec<Slot> =
                        lock(&self.sessions).drain().map(|(_, s)| s).collect();
                    for conn in sessions.iter().filter_map(|s| s.get().cloned()) {
                        tokio::spawn(async move { conn.close().await });
                    }
                    let was_up = self.up.swap(false, Ordering::Relaxed);
                    metrics::UP
                        .with_label_values(&[self.config.name.as_str()])
                        .set(0);
                    if was_up {
                        self.changed.notify_one();
                    }
                    if was_up || !warned {
                        warned = true;
                        tracing::warn!(upstream = %self.config.name, error = %e, "upstream is down; its tools are not listed until it answers");
                    } else {
                        tracing::debug!(upstream = %self.config.name, error = %e, "upstream still down");
                    }
                    None
                }
            };
            let wait = if list_changed.is_some() {
                self.config.health_interval
            } else {
                let d = delay;
                delay = (delay * 2).min(self.config.health_interval);
                d
            };
            let never = Notify::new();
            let list_changed = list_changed.as_deref().unwrap_or(&never);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = list_changed.notified() => {}
                () = self.relist.notified() => {}
                () = self.suspect.notified() => {}
                () = stop.cancelled() => break,
            }
        }
        let main = lock(&self.main).get().cloned();
        if let Some(conn) = main {
            conn.close().await;
        }
        let sessions: Vec<Slot> = lock(&self.sessions).drain().map(|(_, s)| s).collect();
        for slot in sessions {
            if let Some(conn) = slot.get() {
                conn.close().await;
            }
        }
    }

    /// The upstream session a call of this downstream session uses.
    async fn connection_for(
        &self,
        ctx: &ToolContext,
        stateless: bool,
    ) -> Result<Arc<Connection>, ToolError> {
        if self.config.session_mode == SessionMode::Shared || stateless {
            return self
                .main_connection()
                .await
                .map_err(|e| self.unavailable(&e.0));
        }
        let session = ctx.session_id().clone();
        let slot = {
            let mut sessions = lock(&self.sessions);
            if !sessions.contains_key(&session) && sessions.len() >= self.config.max_sessions {
                return Err(ToolError::Protocol(ErrorObject::internal(format!(
                    "upstream {} has {} sessions open on this worker, its limit (max_sessions); try again later",
                    self.config.name, self.config.max_sessions
                ))));
            }
            sessions.entry(session.clone()).or_default().clone()
        };
        let result = slot
            .get_or_try_init(|| async {
                let conn = Arc::new(
                    Connection::open(
                        &self.config,
                        connection::capabilities_for(Some(ctx.client_capabilities())),
                    )
                        .await
                        .map_err(|e| ConnectFailure(e.to_string()))?,
                );
                self.route_session_messages(&conn, ctx);
                tracing::debug!(upstream = %self.config.name, session = %session, pid = conn.pid.unwrap_or(0), "upstream session opened");
                Ok::<_, ConnectFailure>(conn)
            })
            .await
            .cloned();
        match result {
            Ok(conn) if !conn.is_closed() => Ok(conn),
            Ok(_) => {
                self.forget_session(&session, &slot);
                Err(self.unavailable("its session closed; the next call opens a new one"))
            }
            Err(e) => {
                self.forget_session(&session, &slot);
                Err(self.unavailable(&e.0))
            }
        }
    }

    fn forget_session(&self, session: &SessionId, slot: &Slot) {
        let mut sessions = lock(&self.sessions);
        if sessions.get(session).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            sessions.remove(session);
        }
    }

    /// The upstream's own messages to this session (its GET stream: background work,
    /// broadcasts) go to the downstream session's standalone stream, filtered by the
    /// session's log level.
    fn route_session_messages(&self, conn: &Connection, ctx: &ToolContext) {
        let (Some(bus), Some(handle)) = (self.bus.get().cloned(), ctx.session()) else {
            return;
        };
        let (requests, incoming) = mpsc::unbounded_channel();
        conn.router.set_session_requests(requests);
        relay::serve_session_requests(handle.clone(), incoming);
        let (tx, mut rx) = mpsc::unbounded_channel::<Value>();
        conn.router.set_session_sink(tx);
        let min_level = ctx.log_level();
        let session = handle.id().clone();
        tokio::spawn(async move {
            while let Some(message) = rx.recv().await {
                // The worker's own session hears list changes too and re-announces the
                // cluster's lists; passing the upstream's on as well would say it twice.
                // Resource updates reach the sessions subscribed to the URI through the
                // worker's own session and the bus (this session never subscribed
                // upstream, so an update here was not asked for).
                if message["method"].as_str().is_some_and(|m| {
                    m.ends_with("/list_changed") || m == "notifications/resources/updated"
                }) {
                    continue;
                }
                if message["method"] == "notifications/message"
                    && let (Some(min), Some(level)) =
                        (min_level, parse_level(&message["params"]["level"]))
                    && level < min
                {
                    continue;
                }
                if let Err(e) = bus
                    .publish(
                        &session,
                        StreamTarget::Standalone,
                        EventBody::Message(message),
                    )
                    .await
                {
                    tracing::debug!(error = %e, "an upstream message for a session was lost");
                }
            }
        });
    }

    fn close_session(&self, session: &SessionId) {
        let slot = lock(&self.sessions).remove(session);
        if let Some(conn) = slot.and_then(|s| s.get().cloned()) {
            let name = self.config.name.clone();
            tokio::spawn(async move {
                conn.close().await;
                tracing::debug!(upstream = %name, "upstream session closed");
            });
        }
    }

    fn unavailable(&self, why: &str) -> ToolError {
        ToolError::Protocol(ErrorObject::internal(format!(
            "upstream {} is unavailable: {why}",
            self.config.name
        )))
    }

    /// Runs `tools/call` upstream; its progress and log messages go to the call's stream
    /// through `ctx` as they arrive, and a downstream cancellation cancels it upstream.
    pub(crate) async fn call(
        &self,
        ctx: &ToolContext,
        name: &str,
        arguments: Value,
        attempt: u32,
    ) -> Result<Value, ToolError> {
        let started = std::time::Instant::now();
        let label = self.config.name.as_str();
        // Dropped before it finishes: the client cancelled (or the deadline passed).
        let mut outcome = Outcome {
            label,
            kind: "cancelled",
        };
        let result = self.call_inner(ctx, name, arguments, attempt).await;
        outcome.kind = match &result {
            Ok(v) if v.get("isError") == Some(&Value::Bool(true)) => "tool_error",
            Ok(_) => "ok",
            Err(ToolError::Protocol(e)) if e.code == jsonrpc::REQUEST_TIMEOUT => "timeout",
            Err(ToolError::Protocol(e)) if e.message.contains(" is unavailable: ") => "unavailable",
            Err(_) => "error",
        };
        metrics::LATENCY
            .with_label_values(&[label])
            .observe(started.elapsed().as_secs_f64());
        result
    }

    async fn call_inner(
        &self,
        ctx: &ToolContext,
        name: &str,
        arguments: Value,
        attempt: u32,
    ) -> Result<Value, ToolError> {
        if attempt > 0 && !self.retryable(name) {
            return Err(ToolError::Protocol(ErrorObject::internal(format!(
                "the worker running this call of {}{name} stopped before answering; the upstream tool is not marked retryable, so it was not run again",
                self.config.prefix
            ))));
        }
        let mut params = CallToolRequestParams::new(name.to_owned());
        if let Value::Object(map) = arguments {
            params = params.with_arguments(map);
        }
        let request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
        match self.exchange(ctx, request, "the call").await? {
            ServerResult::CallToolResult(result) => {
                serde_json::to_value(result).map_err(|e| ToolError::failed(e.to_string()))
            }
            _ => Err(ToolError::Protocol(ErrorObject::internal(format!(
                "upstream {} answered tools/call with something other than a tool result",
                self.config.name
            )))),
        }
    }

    /// Sends one request upstream in the session `ctx` uses (its own in per-session mode,
    /// else the worker's), within the call timeout and the concurrency limit. Progress and
    /// log messages go to the request's stream through `ctx` as they arrive; a downstream
    /// cancellation cancels it upstream. `what` names it in the outage error.
    async fn exchange(
        &self,
        ctx: &ToolContext,
        request: ClientRequest,
        what: &str,
    ) -> Result<ServerResult, ToolError> {
        let timeout = self.config.call_timeout;
        let _permit = tokio::time::timeout(timeout, self.calls.clone().acquire_owned())
            .await
            .map_err(|_| {
                ToolError::Protocol(ErrorObject::new(
                    jsonrpc::REQUEST_TIMEOUT,
                    format!(
                        "upstream {} is busy ({} calls running); no slot within {} ms",
                        self.config.name,
                        self.config.max_concurrency,
                        timeout.as_millis()
                    ),
                ))
            })?
            .map_err(|_| self.unavailable("shutting down"))?;
        let stateless = ctx.protocol_version().is_stateless();
        let conn = self.connection_for(ctx, stateless).await?;
        if self.config.session_mode == SessionMode::PerSession && !stateless {
            // The session's own upstream session: its level is the client's to set.
            conn.sync_log_level(ctx.log_level(), self.config.connect_timeout)
                .await;
        }
        let options = PeerRequestOptions::with_timeout(timeout);
        let handle = conn
            .peer
            .send_request_with_option(request, options)
            .await
            .map_err(|e| self.failed(&e))?;
        let outage = lock(&self.outage).clone();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (requests_tx, mut requests_rx) = mpsc::unbounded_channel();
        let (requests, mut ended) = relay::CallRequests::new(ctx);
        let token = serde_json::to_value(&handle.progress_token).unwrap_or(Value::Null);
        let route = conn
            .router
            .register(token, handle.id.clone(), tx, requests_tx);
        let mut guard = CancelGuard {
            peer: Some(conn.peer.clone()),
            id: handle.id.clone(),
            requests: Some(requests),
        };
        let response = handle.await_response();
        tokio::pin!(response);
        let mut probe = tokio::time::interval(connection::PROBE_EVERY);
        probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is immediate: a call that answers within a second costs no probe.
        probe.tick().await;
        let result = loop {
            tokio::select! {
                biased;
                Some(message) = rx.recv() => forward(ctx, message).await,
                Some(request) = requests_rx.recv() => {
                    if let Some(requests) = guard.requests.as_mut() {
                        requests.start(request);
                    }
                }
                Some(error) = ended.recv() => return Err(error),
                result = &mut response => break result,
                _ = probe.tick() => conn.probe(),
                () = outage.cancelled() => {
                    return Err(ToolError::Protocol(ErrorObject::internal(format!(
                        "upstream {} stopped answering during {what} (its health check failed); the outcome is unknown",
                        self.config.name
                    ))));
                }
            }
        };
        guard.peer = None;
        // A request that came after the response belongs to no call any more (the
        // upstream's background work): the session's stream takes it.
        drop(route);
        while let Ok(request) = requests_rx.try_recv() {
            conn.router.to_session(request);
        }
        // Whatever arrived before the response precedes it downstream too.
        while let Ok(message) = rx.try_recv() {
            forward(ctx, message).await;
        }
        result.map_err(|e| self.failed(&e))
    }

    fn failed(&self, error: &ServiceError) -> ToolError {
        match error {
            // rmcp's words when it re-initialized a session the upstream answered 404 for
            // (the upstream restarted or expired it) while this request waited in it.
            ServiceError::McpError(e)
                if e.message
                    .contains("re-initialized before the response arrived") =>
            {
                ToolError::Protocol(ErrorObject::internal(format!(
                    "upstream {} lost the session this call ran in (it answered 404 for its Mcp-Session-Id: restarted or expired); the outcome is unknown; a new upstream session is open for the next call",
                    self.config.name
                )))
            }
            ServiceError::McpError(e) => ToolError::Protocol(ErrorObject {
                code: i64::from(e.code.0),
                message: e.message.to_string(),
                data: e.data.clone(),
            }),
            ServiceError::Timeout { timeout } => ToolError::Protocol(ErrorObject::new(
                jsonrpc::REQUEST_TIMEOUT,
                format!(
                    "upstream {} did not answer within {} ms (its timeout); the call was cancelled upstream",
                    self.config.name,
                    timeout.as_millis()
                ),
            )),
            other => {
                self.suspect.notify_one();
                ToolError::Protocol(ErrorObject::internal(format!(
                    "upstream {} failed during the call: {other}",
                    self.config.name
                )))
            }
        }
    }
}

#[derive(Debug)]
struct ConnectFailure(String);

/// Counts a call's outcome when the call ends, also when it is dropped mid-way.
struct Outcome<'a> {
    label: &'a str,
    kind: &'static str,
}

impl Drop for Outcome<'_> {
    fn drop(&mut self) {
        metrics::CALLS
            .with_label_values(&[self.label, self.kind])
            .inc();
    }
}

/// Sends `notifications/cancelled` upstream when a call is abandoned (the client
/// cancelled, the deadline passed, the session ended).
struct CancelGuard {
    peer: Option<rmcp::service::Peer<rmcp::service::RoleClient>>,
    id: rmcp::model::RequestId,
    /// The call's requests to the client still waiting: dropped (the upstream gets an
    /// error for each) only once the cancellation is sent, so the upstream hears that its
    /// call is cancelled before it hears that its request failed.
    requests: Option<relay::CallRequests>,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        let Some(peer) = self.peer.take() else {
            return;
        };
        let id = self.id.clone();
        let requests = self.requests.take();
        tokio::spawn(async move {
            let params = rmcp::model::CancelledNotificationParam::new(
                Some(id),
                Some("cancelled by the downstream client".into()),
            );
            let _ = peer.notify_cancelled(params).await;
            drop(requests);
        });
    }
}

fn parse_level(value: &Value) -> Option<LogLevel> {
    serde_json::from_value(value.clone()).ok()
}

/// Publishes one upstream notification on the call's stream.
async fn forward(ctx: &ToolContext, message: Value) {
    let params = &message["params"];
    let sent = match message["method"].as_str() {
        Some("notifications/progress") => {
            let Some(progress) = params["progress"].as_f64() else {
                return;
            };
            // A repeated or lower value (the upstream's bug) is dropped, not forwarded.
            match ctx
                .progress(
                    progress,
                    params["total"].as_f64(),
                    params["message"].as_str(),
                )
                .await
            {
                Err(ToolError::Failed(_)) => Ok(()),
                other => other,
            }
        }
        Some("notifications/message") => match parse_level(&params["level"]) {
            Some(level) => {
                ctx.log(
                    level,
                    params["logger"].as_str().unwrap_or(""),
                    params.get("data").cloned().unwrap_or(json!(null)),
                )
                .await
            }
            None => Ok(()),
        },
        _ => Ok(()),
    };
    if let Err(e) = sent {
        tracing::debug!(error = %e, "an upstream notification could not be forwarded");
    }
}
