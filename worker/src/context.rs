//! What a running tool can do. Every message it sends goes through the bus to whichever
//! gateway holds the client's stream.

use crate::input::InputRequest;
use crate::outbox::Outbox;
use crate::runtime::Shared;
use crate::tool::ToolError;
use mcp_bus::{EventBody, Job, SessionId, StreamTarget};
use mcp_protocol::stateless;
use mcp_protocol::tasks::{self, TaskEvent, TaskState};
use mcp_protocol::{ErrorObject, LogLevel, ProtocolVersion, RequestId, jsonrpc};
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

/// The context of one tool call. Cheap to clone.
#[derive(Clone)]
pub struct ToolContext {
    call: Arc<CallState>,
}

struct CallState {
    shared: Arc<Shared>,
    job: Job,
    version: ProtocolVersion,
    cancel: CancellationToken,
    last_progress: Mutex<Option<f64>>,
    /// 2026-07-28: the client's answers to input requests (this round's and earlier ones).
    answers: Map<String, Value>,
    /// The answers this run has used so far: what the next `requestState` must carry.
    used: Mutex<Map<String, Value>>,
    /// Keys for input requests made with [`ToolContext::request`], which names none.
    next_key: AtomicUsize,
    /// Set once the call became a task.
    task: Mutex<Option<Arc<TaskHandle>>>,
    /// Everything sent on the request's stream goes through it, in order.
    outbox: Arc<Outbox>,
}

/// A call that became a task: its log on the bus, and the input the client sent to it.
pub(crate) struct TaskHandle {
    /// The task id (the id of the log's bus session).
    pub(crate) id: SessionId,
    /// The task log's live events (where `tasks/update` input arrives), kept from before
    /// the client knew the task; each wait for input takes its own copy.
    events: Mutex<mcp_bus::live::LiveReceiver<mcp_bus::Live>>,
}

/// How often a task's client should poll (`pollIntervalMs`).
pub const TASK_POLL_INTERVAL_MS: u64 = 500;

/// The request id a task's call runs under once it is a task (its session is the task's).
pub(crate) const TASK_CALL: &str = "task";

impl ToolContext {
    pub(crate) fn new(
        shared: Arc<Shared>,
        job: Job,
        cancel: CancellationToken,
        answers: Map<String, Value>,
        outbox: Arc<Outbox>,
    ) -> Self {
        let version =
            ProtocolVersion::parse(&job.protocol_version).unwrap_or(ProtocolVersion::LATEST);
        Self {
            call: Arc::new(CallState {
                shared,
                job,
                version,
                cancel,
                last_progress: Mutex::new(None),
                answers,
                used: Mutex::new(Map::new()),
                next_key: AtomicUsize::new(0),
                task: Mutex::new(None),
                outbox,
            }),
        }
    }

    /// The task this call became, if it did.
    pub(crate) fn task(&self) -> Option<Arc<TaskHandle>> {
        self.call
            .task
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The id of the task this call became, if it did.
    pub fn task_id(&self) -> Option<String> {
        self.task().map(|t| t.id.as_str().to_owned())
    }

    /// True when the client can take a task handle: a 2026-07-28 request that declares the
    /// tasks extension.
    pub fn client_takes_tasks(&self) -> bool {
        self.call.version.is_stateless() && tasks::client_declares(self.client_capabilities())
    }

    /// Turns this call into a task (tasks extension): the client gets a task handle now,
    /// polls `tasks/get` on any gateway for the outcome, and answers input requests with
    /// `tasks/update`. Returns false (and changes nothing) for a client that cannot take
    /// a task: the call goes on and answers directly. Calling it again does nothing.
    pub async fn start_task(&self) -> Result<bool, ToolError> {
        if self.task().is_some() {
            return Ok(true);
        }
        if !self.client_takes_tasks() {
            return Ok(false);
        }
        let bus = &self.call.shared.bus;
        let job = &self.call.job;
        let id = self.call.shared.task_id(job);
        bus.create_session(mcp_bus::SessionRecord {
            id: id.clone(),
            protocol_version: self.call.version.as_str().to_owned(),
            client_capabilities: job.client_capabilities.clone(),
            client_info: json!({}),
            log_level: None,
            principal: job.principal.clone(),
            created_ms: mcp_bus::now_ms(),
            standalone_cursor: mcp_bus::StandaloneCursor::default(),
            ephemeral: true,
        })
        .await?;
        // Subscribe before the client can know the task: no input can be missed.
        let events = bus.subscribe(&id).await?;
        let created = TaskEvent::Created {
            at_ms: mcp_bus::now_ms(),
            ttl_ms: Some(bus.session_idle_ttl().as_millis() as u64),
            poll_interval_ms: TASK_POLL_INTERVAL_MS,
            call_session: id.as_str().to_owned(),
            call_request: RequestId::String(TASK_CALL.into()),
        };
        bus.publish(
            &id,
            StreamTarget::Standalone,
            EventBody::Message(created.to_value()),
        )
        .await?;
        self.answer_to_task(&id).await?;
        let state = TaskState::fold(id.as_str(), [&created.to_value()])
            .ok_or_else(|| ToolError::failed("could not create the task"))?;
        let mut result = state.create_result();
        stateless::finish_result(&job.method, &mut result);
        // Through the outbox: the answer follows what the call queued before it.
        self.call
            .outbox
            .finish(EventBody::Response(jsonrpc::response_ok(
                &job.request_id,
                result,
            )))
            .await?;
        self.set_task(id, events.receiver);
        Ok(true)
    }

    /// The call answers to the task's id from now on (cancellation included): the
    /// request's own session ends with its response, and must not take the task down.
    async fn answer_to_task(&self, id: &SessionId) -> Result<(), ToolError> {
        let job = &self.call.job;
        let call = RequestId::String(TASK_CALL.into());
        self.call.shared.rekey_call(
            (job.session.clone(), job.request_id.clone()),
            (id.clone(), call.clone()),
        );
        self.call
            .shared
            .bus
            .adopt_call(&self.call.shared.id, id, &call)
            .await?;
        Ok(())
    }

    fn set_task(&self, id: SessionId, events: mcp_bus::live::LiveReceiver<mcp_bus::Live>) {
        *self.call.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(TaskHandle {
            id,
            events: Mutex::new(events),
        }));
    }

    /// For a call run again after its worker died: if the first run had made it a task,
    /// this run takes the task over (its log, its input, its cancellation), so the task
    /// ends with this run's outcome instead of staying `working` until it expires. The
    /// client already holds the task handle; nothing is sent on the request's stream.
    pub(crate) async fn resume_task(&self) -> Result<bool, ToolError> {
        if self.task().is_some() || !self.call.version.is_stateless() {
            return Ok(self.task().is_some());
        }
        let bus = &self.call.shared.bus;
        let job = &self.call.job;
        let id = self.call.shared.task_id(job);
        match bus.session(&id).await {
            Ok(_) => {}
            Err(mcp_bus::BusError::SessionNotFound) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        let events = bus.subscribe(&id).await?;
        self.answer_to_task(&id).await?;
        tracing::info!(task = %id, attempt = job.attempt, "took over a task whose worker stopped");
        self.set_task(id, events.receiver);
        Ok(true)
    }

    /// Task mode of [`ToolContext::inputs`]: the task waits in `input_required` for
    /// `tasks/update` to bring every answer.
    async fn task_inputs(
        &self,
        task: &TaskHandle,
        requests: Vec<InputRequest>,
    ) -> Result<Vec<Value>, ToolError> {
        let bus = &self.call.shared.bus;
        // Listen before reading the log: an answer appended in between is not missed.
        let mut events = task
            .events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .resubscribe();
        let answers_in_log = || async {
            let log = bus.replay(&task.id, 0, u64::MAX).await?;
            let mut answers = Map::new();
            for event in &log.events {
                if let EventBody::Message(m) = &event.body
                    && let Ok(TaskEvent::InputResponses { responses, .. }) =
                        serde_json::from_value::<TaskEvent>(m.clone())
                {
                    answers.extend(responses);
                }
            }
            Ok::<_, ToolError>(answers)
        };
        let mut answers = answers_in_log().await?;
        let missing: Map<String, Value> = requests
            .iter()
            .filter(|r| !answers.contains_key(&r.key))
            .map(|r| (r.key.clone(), r.to_value()))
            .collect();
        if !missing.is_empty() {
            let asked = TaskEvent::InputRequired {
                at_ms: mcp_bus::now_ms(),
                input_requests: missing,
            };
            bus.publish(
                &task.id,
                StreamTarget::Standalone,
                EventBody::Message(asked.to_value()),
            )
            .await?;
            while !requests.iter().all(|r| answers.contains_key(&r.key)) {
                tokio::select! {
                    _ = events.recv() => {}
                    () = self.call.cancel.cancelled() => return Err(ToolError::Cancelled),
                }
                // Whatever arrived (or was missed by a lagging receiver) is in the log.
                answers = answers_in_log().await?;
            }
            let resumed = TaskEvent::Working {
                at_ms: mcp_bus::now_ms(),
            };
            bus.publish(
                &task.id,
                StreamTarget::Standalone,
                EventBody::Message(resumed.to_value()),
            )
            .await?;
        }
        Ok(requests.iter().map(|r| answers[&r.key].clone()).collect())
    }

    /// The answers this run used (for the `requestState` of an `InputRequiredResult`).
    pub(crate) fn used_answers(&self) -> Map<String, Value> {
        self.call
            .used
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Asks the client for one input (see [`crate::input`]) and returns its answer.
    pub async fn input(&self, request: InputRequest) -> Result<Value, ToolError> {
        let mut answers = self.inputs(vec![request]).await?;
        Ok(answers.pop().unwrap_or(Value::Null))
    }

    /// Asks the client for several inputs at once; the answers come in the same order.
    /// Under 2026-07-28 a missing answer ends the call with an `InputRequiredResult`
    /// naming every missing one; the client's retry runs the tool again.
    pub async fn inputs(&self, requests: Vec<InputRequest>) -> Result<Vec<Value>, ToolError> {
        for request in &requests {
            if let Some(capability) = request.capability()
                && self.client_capabilities().get(capability).is_none()
            {
                return Err(if self.call.version.is_stateless() {
                    ToolError::Protocol(crate::input::missing_capability(capability))
                } else {
                    ToolError::failed(format!(
                        "the client does not support {capability}, which {} needs",
                        request.method
                    ))
                });
            }
        }
        if let Some(task) = self.task() {
            return self.task_inputs(&task, requests).await;
        }
        if !self.call.version.is_stateless() {
            let mut answers = Vec::with_capacity(requests.len());
            for request in requests {
                answers.push(self.send_request(&request.method, request.params).await?);
            }
            return Ok(answers);
        }
        let missing: Vec<InputRequest> = requests
            .iter()
            .filter(|r| !self.call.answers.contains_key(&r.key))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(ToolError::InputRequired(missing));
        }
        let mut used = self.call.used.lock().unwrap_or_else(|p| p.into_inner());
        Ok(requests
            .iter()
            .map(|r| {
                let answer = self.call.answers[&r.key].clone();
                used.insert(r.key.clone(), answer.clone());
                answer
            })
            .collect())
    }

    /// The session this call belongs to.
    pub fn session_id(&self) -> &SessionId {
        &self.call.job.session
    }

    /// The negotiated protocol revision.
    pub fn protocol_version(&self) -> ProtocolVersion {
        self.call.version
    }

    /// The client's declared capabilities.
    pub fn client_capabilities(&self) -> &Value {
        &self.call.job.client_capabilities
    }

    /// The session's minimum log level (`logging/setLevel`), if it set one.
    pub fn log_level(&self) -> Option<mcp_protocol::LogLevel> {
        self.call.job.log_level
    }

    /// True when the client asked for progress (its request carried a progress token).
    pub fn wants_progress(&self) -> bool {
        self.call.job.progress_token.is_some() && self.call.job.streaming
    }

    /// Reports progress. Sent only if the request carried a progress token; `progress` must
    /// increase with every call, as the protocol requires.
    pub async fn progress(
        &self,
        progress: f64,
        total: Option<f64>,
        message: Option<&str>,
    ) -> Result<(), ToolError> {
        let Some(token) = &self.call.job.progress_token else {
            return Ok(());
        };
        {
            let mut last = self
                .call
                .last_progress
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|last| progress <= last) {
                return Err(ToolError::failed(format!(
                    "progress must increase: {progress} after {}",
                    last.unwrap_or_default()
                )));
            }
            *last = Some(progress);
        }
        if !self.call.job.streaming {
            return Ok(());
        }
        let mut params = json!({"progressToken": token, "progress": progress});
        if let Some(total) = total {
            params["total"] = json!(total);
        }
        if let Some(message) = message {
            params["message"] = json!(message);
        }
        self.send_on_request_stream(jsonrpc::notification("notifications/progress", params))
            .await
    }

    /// Sends a `notifications/message` on the request's stream, unless the session's log
    /// level filters it out.
    pub async fn log(
        &self,
        level: LogLevel,
        logger: &str,
        data: impl Serialize,
    ) -> Result<(), ToolError> {
        if self.call.job.log_level.is_some_and(|min| level < min) || !self.call.job.streaming {
            return Ok(());
        }
        self.send_on_request_stream(log_message(level, logger, data))
            .await
    }

    /// Sends any notification related to this request on the request's stream.
    pub async fn notify(&self, method: &str, params: Value) -> Result<(), ToolError> {
        if !self.call.job.streaming {
            return Ok(());
        }
        self.send_on_request_stream(jsonrpc::notification(method, params))
            .await
    }

    /// A handle on the session's standalone stream, which outlives this call. `None` when
    /// the session has none (stateless requests).
    pub fn session(&self) -> Option<SessionHandle> {
        if !self.call.job.session_stream {
            return None;
        }
        let closed = self.call.shared.session_token(&self.call.job.session);
        Some(SessionHandle {
            shared: self.call.shared.clone(),
            session: self.call.job.session.clone(),
            closed,
        })
    }

    /// Shows or hides a tool (`kind` "tool") or prompt ("prompt") on every worker: the
    /// cluster's list changes, and clients hear `notifications/{tools,prompts}/list_changed`.
    /// Returns whether it was listed before (as this worker saw it).
    pub async fn set_listed(
        &self,
        kind: &str,
        name: &str,
        listed: bool,
    ) -> Result<bool, ToolError> {
        let before = self.call.shared.is_listed(kind, name);
        self.call
            .shared
            .bus
            .send_control(mcp_bus::Control::SetListed {
                kind: kind.to_owned(),
                name: name.to_owned(),
                listed,
            })
            .await?;
        Ok(before)
    }

    /// Whether a tool or prompt is listed now (as this worker sees it).
    pub fn is_listed(&self, kind: &str, name: &str) -> bool {
        self.call.shared.is_listed(kind, name)
    }

    /// The most recent broadcasts (up to `limit`, oldest first), as the bus retains them.
    pub async fn recent_broadcasts(
        &self,
        limit: u64,
    ) -> Result<Vec<Arc<mcp_bus::BroadcastEvent>>, ToolError> {
        let bus = &self.call.shared.bus;
        let head = bus.broadcast_head().await?;
        Ok(bus
            .replay_broadcasts(head.saturating_sub(limit), head)
            .await?
            .events)
    }

    /// Opens a new log on the bus for work that outlives this call and has no session
    /// stream to report on (2026-07-28): anyone may read it by id, on any worker, until it
    /// has been idle for the bus's session idle time.
    pub async fn open_log(&self) -> Result<WorkLog, ToolError> {
        let record = mcp_bus::SessionRecord {
            id: SessionId::generate(),
            protocol_version: self.call.version.as_str().to_owned(),
            client_capabilities: json!({}),
            client_info: json!({}),
            log_level: None,
            principal: self.call.job.principal.clone(),
            created_ms: mcp_bus::now_ms(),
            standalone_cursor: mcp_bus::StandaloneCursor::default(),
            ephemeral: true,
        };
        let id = record.id.clone();
        self.call.shared.bus.create_session(record).await?;
        Ok(WorkLog {
            shared: self.call.shared.clone(),
            id,
        })
    }

    /// The entries of a log made by [`ToolContext::open_log`], or `None` if there is no
    /// such log (any more).
    pub async fn read_log(&self, id: &str) -> Result<Option<Vec<Value>>, ToolError> {
        let Some(id) = SessionId::parse(id) else {
            return Ok(None);
        };
        match self.call.shared.bus.replay(&id, 0, u64::MAX).await {
            Ok(replay) => Ok(Some(
                replay
                    .events
                    .iter()
                    .filter_map(|e| match &e.body {
                        EventBody::Message(m) => Some(m.clone()),
                        _ => None,
                    })
                    .collect(),
            )),
            Err(mcp_bus::BusError::SessionNotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Sends a notification to every live session's standalone stream, on every gateway.
    pub async fn broadcast(&self, notification: Value) -> Result<(), ToolError> {
        self.call.shared.bus.broadcast(notification).await?;
        Ok(())
    }

    /// Broadcasts a `notifications/message` (each session's log level still applies).
    pub async fn broadcast_log(
        &self,
        level: LogLevel,
        logger: &str,
        data: impl Serialize,
    ) -> Result<(), ToolError> {
        self.broadcast(log_message(level, logger, data)).await
    }

    /// Sends a request to the client (`sampling/createMessage`, `elicitation/create`,
    /// `roots/list`) on this request's stream and waits for its answer, which may reach any
    /// gateway. Fails at once if the client did not declare the capability the method needs.
    ///
    /// Under 2026-07-28 this is [`ToolContext::input`] with a key made from the order of
    /// the call's requests.
    pub async fn request(&self, method: &str, params: Value) -> Result<Value, ToolError> {
        let n = self.call.next_key.fetch_add(1, Ordering::Relaxed);
        self.input(InputRequest::new(format!("request-{n}"), method, params))
            .await
    }

    /// Relays a server-to-client request of an upstream MCP server to this call's client
    /// and returns the client's answer, its JSON-RPC error included (for the upstream, as
    /// is). Under 2026-07-28 (and in a task) this is [`ToolContext::input`] under `key`: a
    /// missing answer ends the call with an `InputRequiredResult`, and the client's retry
    /// runs the call (upstream too) again, this time with the answer.
    pub(crate) async fn relay_request(
        &self,
        key: String,
        method: &str,
        params: Value,
    ) -> Result<Result<Value, ErrorObject>, ToolError> {
        if self.task().is_some() || self.call.version.is_stateless() {
            return self
                .input(InputRequest::new(key, method, params))
                .await
                .map(Ok);
        }
        if let Some(capability) = crate::input::capability_of(method)
            && self.client_capabilities().get(capability).is_none()
        {
            return Ok(Err(ErrorObject::new(
                jsonrpc::METHOD_NOT_FOUND,
                format!(
                    "the client did not declare the {capability} capability, which {method} needs"
                ),
            )));
        }
        self.send_request_raw(method, params).await
    }

    async fn send_request(&self, method: &str, params: Value) -> Result<Value, ToolError> {
        self.send_request_raw(method, params)
            .await?
            .map_err(|error| {
                ToolError::failed(format!(
                    "the client refused {method}: {} ({})",
                    error.message, error.code
                ))
            })
    }

    /// Sends a request on this request's stream; the client's result, or its error.
    async fn send_request_raw(
        &self,
        method: &str,
        params: Value,
    ) -> Result<Result<Value, ErrorObject>, ToolError> {
        if !self.call.job.streaming {
            return Err(ToolError::failed(format!(
                "cannot send {method}: the client asked for a plain JSON response, so no stream carries requests to it"
            )));
        }
        let shared = &self.call.shared;
        let id = shared.next_server_request_id();
        let waiter = shared.expect_reply(&self.call.job.session, &id);
        self.send_on_request_stream(jsonrpc::request(&id, method, params))
            .await?;
        let response = tokio::select! {
            reply = waiter.receive() => reply.ok_or(ToolError::Cancelled)?,
            () = self.call.cancel.cancelled() => return Err(ToolError::Cancelled),
        };
        Ok(client_answer(&response))
    }

    /// Asks the client to close this request's connection and reconnect with
    /// `Last-Event-ID` after `retry_ms` (SSE polling, protocol 2025-11-25 and later). The
    /// request goes on; later messages wait in the session log until the client returns.
    pub async fn close_stream(&self, retry_ms: u64) -> Result<(), ToolError> {
        if !self.call.version.sse_priming() || !self.call.job.streaming {
            return Ok(());
        }
        self.call
            .outbox
            .send(EventBody::Reconnect { retry_ms })
            .await?;
        Ok(())
    }

    /// Resolves when the client cancels this request (or its session ends).
    pub async fn cancelled(&self) {
        self.call.cancel.cancelled().await;
    }

    /// True once the client has cancelled this request.
    pub fn is_cancelled(&self) -> bool {
        self.call.cancel.is_cancelled()
    }

    /// Tells every session subscribed to `uri` that the resource changed
    /// (`notifications/resources/updated`), on whichever gateway it is connected.
    pub async fn resource_updated(&self, uri: &str) -> Result<u64, ToolError> {
        Ok(self.call.shared.bus.resource_updated(uri).await?)
    }

    /// A snapshot of the cluster (gateways, sessions, workers, jobs in flight).
    pub async fn cluster_stats(&self) -> Result<mcp_bus::ClusterStats, ToolError> {
        Ok(self.call.shared.bus.stats().await?)
    }

    /// The upstream MCP servers of the worker running this call, and their state.
    pub fn upstreams(&self) -> Vec<crate::upstream::UpstreamStatus> {
        self.call
            .shared
            .upstreams
            .get()
            .map(|u| u.status())
            .unwrap_or_default()
    }

    /// The JSON-RPC id of the client's request.
    pub fn request_id(&self) -> &RequestId {
        &self.call.job.request_id
    }

    /// Queues a message on the request's stream (see [`Outbox`]): it is published in
    /// order, batched with others queued meanwhile; a failure is reported by a later call.
    async fn send_on_request_stream(&self, message: Value) -> Result<(), ToolError> {
        // A task's request was answered with its handle: nothing more goes on its stream
        // (progress and log messages are not part of the tasks extension).
        if self.task().is_some() {
            return Ok(());
        }
        // 2026-07-28: no log message for a request that did not ask for them with a level.
        if self.call.version.is_stateless()
            && self.call.job.log_level.is_none()
            && message.get("method").and_then(Value::as_str) == Some("notifications/message")
        {
            return Ok(());
        }
        self.call.outbox.send(EventBody::Message(message)).await?;
        Ok(())
    }
}

/// A log on the bus that a tool's background work appends to and anyone can read by id
/// ([`ToolContext::read_log`]), on any worker.
#[derive(Clone)]
pub struct WorkLog {
    shared: Arc<Shared>,
    id: SessionId,
}

impl WorkLog {
    /// The log's id.
    pub fn id(&self) -> &str {
        self.id.as_str()
    }

    /// Appends an entry.
    pub async fn append(&self, entry: Value) -> Result<(), ToolError> {
        self.shared
            .bus
            .publish(
                &self.id,
                StreamTarget::Standalone,
                EventBody::Message(entry),
            )
            .await?;
        Ok(())
    }

    /// Tells every subscriber of `uri` that it changed.
    pub async fn resource_updated(&self, uri: &str) -> Result<u64, ToolError> {
        Ok(self.shared.bus.resource_updated(uri).await?)
    }
}

/// A session's standalone stream, for work that outlives the tool call that started it
/// (background tasks). Messages sent while no standalone stream is open wait in the
/// session's log and are delivered when the client opens one.
#[derive(Clone)]
pub struct SessionHandle {
    shared: Arc<Shared>,
    session: SessionId,
    closed: CancellationToken,
}

impl SessionHandle {
    /// The session id.
    pub fn id(&self) -> &SessionId {
        &self.session
    }

    /// Sends a notification on the standalone stream.
    pub async fn notify(&self, method: &str, params: Value) -> Result<(), ToolError> {
        self.send(jsonrpc::notification(method, params)).await
    }

    /// Sends a `notifications/message` on the standalone stream (the gateway applies the
    /// session's current log level).
    pub async fn log(
        &self,
        level: LogLevel,
        logger: &str,
        data: impl Serialize,
    ) -> Result<(), ToolError> {
        self.send(log_message(level, logger, data)).await
    }

    /// Sends a request to the client on the standalone stream (an upstream's request that
    /// belongs to no call) and waits for its answer, which may reach any gateway: the
    /// client's result, or its JSON-RPC error. Fails when the session ends first.
    pub(crate) async fn relay_request(
        &self,
        method: &str,
        params: Value,
    ) -> Result<Result<Value, ErrorObject>, ToolError> {
        let id = self.shared.next_server_request_id();
        let waiter = self.shared.expect_reply(&self.session, &id);
        self.send(jsonrpc::request(&id, method, params)).await?;
        let response = tokio::select! {
            reply = waiter.receive() => reply.ok_or(ToolError::Cancelled)?,
            () = self.closed.cancelled() => return Err(ToolError::Cancelled),
        };
        Ok(client_answer(&response))
    }

    /// Resolves when the session ends or the worker shuts down.
    pub async fn closed(&self) {
        self.closed.cancelled().await;
    }

    async fn send(&self, message: Value) -> Result<(), ToolError> {
        self.shared
            .bus
            .publish(
                &self.session,
                StreamTarget::Standalone,
                EventBody::Message(message),
            )
            .await?;
        Ok(())
    }
}

/// The result of a client's JSON-RPC response, or its error.
fn client_answer(response: &Value) -> Result<Value, ErrorObject> {
    match response.get("error") {
        Some(error) => Err(serde_json::from_value(error.clone())
            .unwrap_or_else(|_| ErrorObject::internal("the client sent a malformed error"))),
        None => Ok(response.get("result").cloned().unwrap_or(Value::Null)),
    }
}

fn log_message(level: LogLevel, logger: &str, data: impl Serialize) -> Value {
    jsonrpc::notification(
        "notifications/message",
        json!({
            "level": level.as_str(),
            "logger": logger,
            "data": serde_json::to_value(data).unwrap_or(Value::Null),
        }),
    )
}
