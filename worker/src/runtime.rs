//! The job loop: a worker takes jobs from the bus, runs each under its deadline and the
//! client's cancellation, publishes the outcome to the request's stream, and routes the
//! control messages (cancellations, replies to its requests, session ends) to the calls
//! they concern.

use crate::catalog::{CompletionRequest, ResourceContents};
use crate::context::{TASK_CALL, ToolContext};
use crate::input::{self, StateCodec};
use crate::outbox::Outbox;
use crate::tool::{TaskSupport, ToolError, ToolSet};
use crate::upstream::Upstreams;
use mcp_bus::{
    Bus, BusError, Control, EventBody, Job, SessionId, StreamTarget, WorkerId, WorkerInfo,
};
use mcp_protocol::{
    CallToolResult, ErrorObject, ProtocolVersion, RequestId,
    jsonrpc::{self, REQUEST_TIMEOUT},
    stateless,
    tasks::{self, TaskEvent},
};
use mcp_telemetry::Metrics;
use serde_json::{Map, Value, json};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;
use tokio::sync::{Semaphore, broadcast::error::RecvError, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Jobs run at once; the worker takes no more from the bus while this many run.
    pub max_concurrent_jobs: usize,
    /// How often the worker re-announces itself and its tools.
    pub heartbeat: Duration,
    /// On shutdown, how long running jobs may take to finish.
    pub drain_timeout: Duration,
    /// The key that signs 2026-07-28 `requestState` tokens. Every worker of a cluster
    /// must use the same one; `None` takes the bus's shared secret, made at random by the
    /// first worker (see [`Bus::shared_secret`]).
    pub request_state_key: Option<Vec<u8>>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            max_concurrent_jobs: 1024,
            heartbeat: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(10),
            request_state_key: None,
        }
    }
}

type CallKey = (SessionId, RequestId);

/// Runs of one call (first try included) before a dead worker's call is answered with an
/// error instead of run again.
const MAX_ATTEMPTS: u32 = 3;

/// State shared by the job loop, the control loop and every running call.
pub(crate) struct Shared {
    pub(crate) bus: Arc<dyn Bus>,
    pub(crate) id: WorkerId,
    replies: Mutex<HashMap<CallKey, oneshot::Sender<Value>>>,
    running: Mutex<HashMap<CallKey, CancellationToken>>,
    sessions: Mutex<HashMap<SessionId, CancellationToken>>,
    next_request: AtomicU64,
    jobs_running: AtomicU64,
    shutdown: CancellationToken,
    /// Signs and verifies `requestState`; set before the first job runs.
    state_codec: OnceLock<StateCodec>,
    /// Tools and prompts served but not announced now (`(kind, name)`).
    unlisted: Mutex<BTreeSet<(String, String)>>,
    /// Woken when `unlisted` changes: the worker announces at once.
    listing_changed: tokio::sync::Notify,
    /// Upstream MCP servers whose tools this worker also serves.
    pub(crate) upstreams: OnceLock<Arc<Upstreams>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// Ids of our requests to clients name this worker, so a reply can be routed back to it.
    pub(crate) fn next_server_request_id(&self) -> RequestId {
        let n = self.next_request.fetch_add(1, Ordering::Relaxed);
        RequestId::String(format!("{}-{n}", self.id))
    }

    pub(crate) fn expect_reply(
        self: &Arc<Self>,
        session: &SessionId,
        id: &RequestId,
    ) -> ReplyWaiter {
        let (tx, rx) = oneshot::channel();
        let key = (session.clone(), id.clone());
        lock(&self.replies).insert(key.clone(), tx);
        ReplyWaiter {
            shared: self.clone(),
            key,
            rx: Some(rx),
        }
    }

    /// Whether a tool or prompt is announced now.
    pub(crate) fn is_listed(&self, kind: &str, name: &str) -> bool {
        !lock(&self.unlisted).contains(&(kind.to_owned(), name.to_owned()))
    }

    /// The id of the task `job` becomes. Derived from the request (its per-request session
    /// and id) with the cluster's key, so a worker that takes over the job after its first
    /// worker died finds the same task instead of leaving it `working` for ever.
    pub(crate) fn task_id(&self, job: &Job) -> SessionId {
        match self.state_codec.get() {
            Some(codec) => {
                let request = serde_json::to_string(&job.request_id).unwrap_or_default();
                SessionId::from_bytes(codec.derive("task", &[job.session.as_str(), &request]))
            }
            None => SessionId::generate(),
        }
    }

    /// Moves a running call to another key (a call that became a task answers to the
    /// task's id from then on).
    pub(crate) fn rekey_call(&self, from: CallKey, to: CallKey) {
        let mut running = lock(&self.running);
        if let Some(token) = running.remove(&from) {
            running.insert(to, token);
        }
    }

    /// A token cancelled when the session ends or the worker stops.
    pub(crate) fn session_token(&self, session: &SessionId) -> CancellationToken {
        lock(&self.sessions)
            .entry(session.clone())
            .or_insert_with(|| self.shutdown.child_token())
            .clone()
    }

    fn handle_control(&self, message: Control) {
        match message {
            Control::Cancel {
                session,
                request_id,
                reason,
            } => {
                if let Some(token) = lock(&self.running).get(&(session, request_id.clone())) {
                    tracing::debug!(request = %request_id, reason = reason.as_deref().unwrap_or(""), "request cancelled by the client");
                    token.cancel();
                }
            }
            Control::ClientResponse {
                session,
                request_id,
                response,
            } => {
                if let Some(tx) = lock(&self.replies).remove(&(session, request_id)) {
                    let _ = tx.send(response);
                }
            }
            Control::SetListed { kind, name, listed } => {
                let mut unlisted = lock(&self.unlisted);
                let changed = if listed {
                    unlisted.remove(&(kind, name))
                } else {
                    unlisted.insert((kind, name))
                };
                drop(unlisted);
                if changed {
                    self.listing_changed.notify_one();
                }
            }
            Control::SessionEnded { session } => {
                if let Some(token) = lock(&self.sessions).remove(&session) {
                    token.cancel();
                }
                for ((s, _), token) in lock(&self.running).iter() {
                    if *s == session {
                        token.cancel();
                    }
                }
                lock(&self.replies).retain(|(s, _), _| *s != session);
                if let Some(upstreams) = self.upstreams.get() {
                    upstreams.session_ended(&session);
                }
            }
        }
    }
}

/// Waits for the client's reply to one server-to-client request; forgets the request if
/// dropped first.
pub(crate) struct ReplyWaiter {
    shared: Arc<Shared>,
    key: CallKey,
    rx: Option<oneshot::Receiver<Value>>,
}

impl ReplyWaiter {
    /// The whole JSON-RPC response, or `None` if the session ended first.
    pub(crate) async fn receive(mut self) -> Option<Value> {
        self.rx.take()?.await.ok()
    }
}

impl Drop for ReplyWaiter {
    fn drop(&mut self) {
        lock(&self.shared.replies).remove(&self.key);
    }
}

/// A worker: serves a [`ToolSet`] to every gateway on the bus.
pub struct Worker {
    shared: Arc<Shared>,
    tools: Arc<ToolSet>,
    config: WorkerConfig,
    metrics: Option<Arc<Metrics>>,
}

impl Worker {
    /// A worker serving `tools` over `bus`.
    pub fn new(bus: Arc<dyn Bus>, tools: ToolSet, config: WorkerConfig) -> Self {
        Self {
            shared: Arc::new(Shared {
                bus,
                id: WorkerId::generate(),
                replies: Mutex::new(HashMap::new()),
                running: Mutex::new(HashMap::new()),
                sessions: Mutex::new(HashMap::new()),
                next_request: AtomicU64::new(1),
                jobs_running: AtomicU64::new(0),
                shutdown: CancellationToken::new(),
                state_codec: OnceLock::new(),
                unlisted: Mutex::new(tools.initially_unlisted()),
                listing_changed: tokio::sync::Notify::new(),
                upstreams: OnceLock::new(),
            }),
            tools: Arc::new(tools),
            config,
            metrics: None,
        }
    }

    /// Records job metrics (running, completed by tool and outcome, duration) in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Also serves the tools of these upstream MCP servers (connected when the worker
    /// starts; see [`crate::upstream`]).
    pub fn with_upstreams(self, upstreams: Arc<Upstreams>) -> Self {
        let _ = self.shared.upstreams.set(upstreams);
        self
    }

    /// The worker's upstreams (none unless [`Worker::with_upstreams`] gave some).
    pub fn upstreams(&self) -> Option<Arc<Upstreams>> {
        self.shared.upstreams.get().cloned()
    }

    /// This worker's id.
    pub fn id(&self) -> &WorkerId {
        &self.shared.id
    }

    /// Runs until `shutdown` is cancelled: announces the tools, takes jobs, and on shutdown
    /// lets running jobs finish (up to the drain timeout) and withdraws from the registry.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), BusError> {
        self.start(shutdown).await?.await.unwrap_or(Ok(()))
    }

    /// Announces the tools and subscribes to control messages, then runs the job loop in a
    /// task. When this returns, `tools/list` already shows the worker's tools.
    pub async fn start(
        self,
        shutdown: CancellationToken,
    ) -> Result<tokio::task::JoinHandle<Result<(), BusError>>, BusError> {
        if let Some(upstreams) = self.shared.upstreams.get() {
            upstreams.start(self.shared.bus.clone(), self.shared.shutdown.clone());
        }
        // Redis may be down at start-up, or go down during it: keep trying, as the job
        // loop does later, until it works or we are told to stop.
        let mut delay = Duration::from_millis(50);
        let control = loop {
            let attempt = async {
                if self.shared.state_codec.get().is_none() {
                    let key = match &self.config.request_state_key {
                        Some(key) => key.clone(),
                        None => self.shared.bus.shared_secret("request-state").await?,
                    };
                    let _ = self.shared.state_codec.set(StateCodec::new(key));
                }
                let control = self.shared.bus.subscribe_control(&self.shared.id).await?;
                self.announce().await?;
                Ok::<_, BusError>(control)
            };
            match attempt.await {
                Ok(control) => break control,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot join the bus yet; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = shutdown.cancelled() => return Err(BusError::Closed),
                    }
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
            }
        };
        Ok(tokio::spawn(self.serve(control, shutdown)))
    }

    async fn serve(
        self,
        mut control: tokio::sync::broadcast::Receiver<Control>,
        shutdown: CancellationToken,
    ) -> Result<(), BusError> {
        let shared = self.shared.clone();
        let bus = shared.bus.clone();

        let control_loop = {
            let shared = shared.clone();
            let stop = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        msg = control.recv() => match msg {
                            Ok(msg) => shared.handle_control(msg),
                            Err(RecvError::Lagged(n)) => tracing::warn!(missed = n, "control messages lagged; some cancellations may be missed"),
                            Err(RecvError::Closed) => break,
                        },
                        () = stop.cancelled() => break,
                    }
                }
            })
        };
        let heartbeat = {
            let worker = self.clone_handle();
            let stop = shutdown.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(worker.config.heartbeat);
                tick.tick().await;
                let upstreams_changed = worker
                    .shared
                    .upstreams
                    .get()
                    .map(|u| u.changed.clone())
                    .unwrap_or_default();
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        () = worker.shared.listing_changed.notified() => {}
                        () = upstreams_changed.notified() => {}
                        () = stop.cancelled() => break,
                    }
                    if let Err(e) = worker.announce().await {
                        tracing::warn!(error = %e, "worker heartbeat failed");
                    }
                }
            })
        };

        let slots = Arc::new(Semaphore::new(self.config.max_concurrent_jobs.max(1)));
        loop {
            let permit = tokio::select! {
                p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                () = shutdown.cancelled() => break,
            };
            let job = tokio::select! {
                job = bus.next_job(&shared.id) => job,
                () = shutdown.cancelled() => break,
            };
            match job {
                Ok(job) => {
                    let shared = shared.clone();
                    let tools = self.tools.clone();
                    let metrics = self.metrics.clone();
                    let span = tracing::info_span!(
                        "tool.call",
                        session = %job.session,
                        request = %job.request_id,
                        method = %job.method,
                        tool = tracing::field::Empty,
                        attempt = job.attempt,
                    );
                    mcp_telemetry::propagation::set_parent(&span, job.traceparent.as_deref());
                    tokio::spawn(
                        async move {
                            run_job(&shared, &tools, metrics.as_deref(), job).await;
                            drop(permit);
                        }
                        .instrument(span),
                    );
                }
                Err(BusError::Closed) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "taking a job failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }

        let all = u32::try_from(self.config.max_concurrent_jobs.max(1)).unwrap_or(u32::MAX);
        if tokio::time::timeout(self.config.drain_timeout, slots.acquire_many(all))
            .await
            .is_err()
        {
            tracing::warn!("jobs still running after the drain timeout");
        }
        shared.shutdown.cancel();
        heartbeat.abort();
        control_loop.abort();
        // Without Redis the registry entry ages out on its own (three missed heartbeats).
        if let Err(e) = bus.deregister_worker(&shared.id).await {
            tracing::warn!(error = %e, "could not withdraw from the registry; it will expire");
        }
        Ok(())
    }

    fn clone_handle(&self) -> Worker {
        Worker {
            shared: self.shared.clone(),
            tools: self.tools.clone(),
            config: self.config.clone(),
            metrics: self.metrics.clone(),
        }
    }

    async fn announce(&self) -> Result<(), BusError> {
        let mut resources = self.tools.resource_descriptors();
        let mut resource_templates = self.tools.template_descriptors();
        let mut prompts: Vec<_> = self
            .tools
            .prompt_descriptors()
            .into_iter()
            .filter(|p| self.shared.is_listed("prompt", &p.name))
            .collect();
        if let Some(upstreams) = self.shared.upstreams.get() {
            upstreams.extend_catalog(&mut resources, &mut resource_templates, &mut prompts);
        }
        self.shared
            .bus
            .register_worker(WorkerInfo {
                id: self.shared.id.clone(),
                tools: {
                    let mut tools: Vec<_> = self
                        .tools
                        .descriptors()
                        .into_iter()
                        .filter(|t| self.shared.is_listed("tool", &t.name))
                        .collect();
                    if let Some(upstreams) = self.shared.upstreams.get() {
                        tools.extend(upstreams.tools());
                        tools.sort_by(|a, b| a.name.cmp(&b.name));
                    }
                    tools
                },
                resources,
                resource_templates,
                prompts,
                jobs_running: self.shared.jobs_running.load(Ordering::Relaxed),
            })
            .await
    }
}

async fn run_job(shared: &Arc<Shared>, tools: &ToolSet, metrics: Option<&Metrics>, job: Job) {
    let key = (job.session.clone(), job.request_id.clone());
    let cancel = CancellationToken::new();
    lock(&shared.running).insert(key.clone(), cancel.clone());
    shared.jobs_running.fetch_add(1, Ordering::Relaxed);
    // The tool name labels metrics only when it names a tool we serve: clients choose it,
    // and must not be able to grow the number of series.
    let tool = match job.params.get("name").and_then(Value::as_str) {
        Some(name)
            if job.method == "tools/call"
                && (tools.get(name).is_some()
                    || shared
                        .upstreams
                        .get()
                        .is_some_and(|u| u.find(name).is_some())) =>
        {
            name.to_owned()
        }
        _ if job.method == "tools/call" => "unknown".to_owned(),
        _ => job.method.clone(),
    };
    tracing::Span::current().record("tool", tool.as_str());
    if let Some(m) = metrics {
        m.jobs_running.inc();
    }
    let started = std::time::Instant::now();

    let version = ProtocolVersion::parse(&job.protocol_version).unwrap_or(ProtocolVersion::LATEST);
    let remaining = Duration::from_millis(job.deadline_ms.saturating_sub(mcp_bus::now_ms()));
    let outbox = Outbox::new(
        shared.bus.clone(),
        job.session.clone(),
        StreamTarget::Request(job.stream),
    );
    let round_trips = version.is_stateless() && takes_input(&job.method);
    let answers = match shared.state_codec.get() {
        Some(codec) if round_trips => input::answers_of(
            codec,
            &job.method,
            &job.params,
            &job.principal,
            mcp_bus::now_ms(),
        ),
        _ => Ok(Map::new()),
    };
    let (ctx, answers_error) = match answers {
        Ok(answers) => (
            ToolContext::new(
                shared.clone(),
                job.clone(),
                cancel.clone(),
                answers,
                outbox.clone(),
            ),
            None,
        ),
        Err(error) => (
            ToolContext::new(
                shared.clone(),
                job.clone(),
                cancel.clone(),
                Map::new(),
                outbox.clone(),
            ),
            Some(error),
        ),
    };
    if job.attempt > 0
        && let Err(e) = ctx.resume_task().await
    {
        tracing::warn!(error = %e, "could not look for a task to take over");
    }
    let outcome = tokio::select! {
        outcome = async {
            match answers_error {
                Some(error) => Err(ToolError::Protocol(error)),
                None => execute(tools, shared.upstreams.get().map(|u| &**u), ctx.clone(), &job).await,
            }
        } => outcome,
        () = cancel.cancelled() => Err(ToolError::Cancelled),
        () = tokio::time::sleep(remaining) => Err(ToolError::Protocol(ErrorObject::new(
            REQUEST_TIMEOUT,
            format!("the request did not finish within its deadline ({} ms)", remaining.as_millis()),
        ))),
    };

    lock(&shared.running).remove(&key);
    let task = ctx.task();
    if let Some(task) = &task {
        lock(&shared.running).remove(&(task.id.clone(), RequestId::String(TASK_CALL.into())));
    }
    shared.jobs_running.fetch_sub(1, Ordering::Relaxed);
    if let Some(m) = metrics {
        m.jobs_running.dec();
        let outcome = match &outcome {
            Ok(result) if result.get("isError") == Some(&Value::Bool(true)) => "tool_error",
            Ok(_) => "ok",
            Err(ToolError::Cancelled) => "cancelled",
            Err(ToolError::InputRequired(_)) => "input_required",
            Err(ToolError::Failed(_)) => "tool_error",
            Err(ToolError::InvalidArguments(_)) if version.validation_errors_are_tool_errors() => {
                "tool_error"
            }
            Err(ToolError::Protocol(e)) if e.code == REQUEST_TIMEOUT => "timeout",
            Err(_) => "error",
        };
        m.jobs_completed
            .with_label_values(&[tool.as_str(), outcome])
            .inc();
        m.job_duration
            .with_label_values(&[tool.as_str()])
            .observe(started.elapsed().as_secs_f64());
    }

    if let Some(task) = task {
        finish_task(shared, &job, &task.id, outcome).await;
        if let Err(e) =
            crate::outbox::retry_unavailable(|| shared.bus.finish_job(&shared.id, &job)).await
        {
            tracing::warn!(error = %e, "could not mark a job finished");
        }
        return;
    }
    let id = &job.request_id;
    // Every result a 2026-07-28 client gets carries `resultType` and the server's identity.
    let ok = |mut result: Value| {
        if version.is_stateless() {
            stateless::finish_result(&job.method, &mut result);
        }
        EventBody::Response(jsonrpc::response_ok(id, result))
    };
    let body = match outcome {
        Ok(result) => ok(result),
        Err(ToolError::Cancelled) => EventBody::End,
        Err(ToolError::InputRequired(requests)) => match shared.state_codec.get() {
            Some(codec) if round_trips => {
                let input_requests: Map<String, Value> = requests
                    .iter()
                    .map(|r| (r.key.clone(), r.to_value()))
                    .collect();
                let state = codec.seal(
                    &job.principal,
                    &input::binding(&job.method, &job.params),
                    &ctx.used_answers(),
                    mcp_bus::now_ms(),
                );
                ok(json!({
                    "resultType": "input_required",
                    "inputRequests": input_requests,
                    "requestState": state,
                }))
            }
            _ => EventBody::Response(jsonrpc::response_err(
                Some(id),
                ErrorObject::internal(format!(
                    "{} cannot ask the client for input in this protocol revision",
                    job.method
                )),
            )),
        },
        Err(ToolError::InvalidArguments(msg)) if version.validation_errors_are_tool_errors() => {
            ok(CallToolResult::error(format!("invalid arguments: {msg}")).to_value())
        }
        Err(ToolError::InvalidArguments(msg)) => EventBody::Response(jsonrpc::response_err(
            Some(id),
            ErrorObject::invalid_params(format!("invalid arguments: {msg}")),
        )),
        Err(ToolError::Failed(msg)) => ok(CallToolResult::error(msg).to_value()),
        Err(ToolError::Protocol(mut error)) => {
            // 2026-07-28 moved "resource not found" to invalid params.
            if version.is_stateless() && error.code == jsonrpc::RESOURCE_NOT_FOUND {
                error.code = jsonrpc::INVALID_PARAMS;
            }
            EventBody::Response(jsonrpc::response_err(Some(id), error))
        }
        Err(ToolError::Bus(e)) => EventBody::Response(jsonrpc::response_err(
            Some(id),
            ErrorObject::internal(format!("the tool could not reach the client: {e}")),
        )),
    };
    // The outcome follows everything the call queued, usually in the same round trip; a
    // failed notification does not stop it from being attempted.
    if let Err(e) = outbox.finish(body).await {
        tracing::debug!(error = %e, session = %job.session, "could not publish a job's outcome");
    }
    if let Err(e) =
        crate::outbox::retry_unavailable(|| shared.bus.finish_job(&shared.id, &job)).await
    {
        tracing::warn!(error = %e, "could not mark a job finished");
    }
}

/// Writes a task's outcome to its log, where `tasks/get` finds it on any gateway: a tool
/// error completes the task (with `isError`), a protocol error fails it.
async fn finish_task(
    shared: &Arc<Shared>,
    job: &Job,
    task: &SessionId,
    outcome: Result<Value, ToolError>,
) {
    let at_ms = mcp_bus::now_ms();
    let completed = |mut result: Value| {
        stateless::finish_result(&job.method, &mut result);
        TaskEvent::Completed { at_ms, result }
    };
    let event = match outcome {
        Ok(result) => completed(result),
        Err(ToolError::Failed(msg)) => completed(CallToolResult::error(msg).to_value()),
        Err(ToolError::InvalidArguments(msg)) => {
            completed(CallToolResult::error(format!("invalid arguments: {msg}")).to_value())
        }
        Err(ToolError::Cancelled) => TaskEvent::Cancelled { at_ms },
        Err(ToolError::Protocol(error)) => TaskEvent::Failed { at_ms, error },
        Err(ToolError::InputRequired(_)) => TaskEvent::Failed {
            at_ms,
            error: ErrorObject::internal("the task asked for input in a way it cannot receive"),
        },
        Err(ToolError::Bus(e)) => TaskEvent::Failed {
            at_ms,
            error: ErrorObject::internal(format!("the task lost the bus: {e}")),
        },
    };
    if let Err(e) = shared
        .bus
        .publish(
            task,
            StreamTarget::Standalone,
            EventBody::Message(event.to_value()),
        )
        .await
    {
        tracing::warn!(error = %e, task = %task, "could not record a task's outcome");
    }
}

/// The requests that may answer with an `InputRequiredResult` (2026-07-28).
fn takes_input(method: &str) -> bool {
    matches!(method, "tools/call" | "prompts/get" | "resources/read")
}

/// `params.name` (a string) and `params.arguments` (an object; absent or null is `{}`), as
/// `tools/call` and `prompts/get` both take them.
fn name_and_arguments(job: &Job) -> Result<(&str, Value), ToolError> {
    let method = job.method.as_str();
    let name = job
        .params
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ToolError::Protocol(ErrorObject::invalid_params(format!(
                "{method} needs params.name, a string"
            )))
        })?;
    let arguments = match job.params.get("arguments") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(args @ Value::Object(_)) => args.clone(),
        Some(_) => {
            return Err(ToolError::Protocol(ErrorObject::invalid_params(format!(
                "{method} params.arguments must be an object"
            ))));
        }
    };
    Ok((name, arguments))
}

async fn execute(
    tools: &ToolSet,
    upstreams: Option<&Upstreams>,
    ctx: ToolContext,
    job: &Job,
) -> Result<Value, ToolError> {
    match job.method.as_str() {
        "tools/call" => {
            let (name, arguments) = name_and_arguments(job)?;
            if tools.get(name).is_none()
                && let Some((upstream, original)) = upstreams.and_then(|u| u.find(name))
            {
                return upstream.call(&ctx, &original, arguments, job.attempt).await;
            }
            let tool = tools.get(name).ok_or_else(|| {
                ToolError::Protocol(ErrorObject::invalid_params(format!("Unknown tool: {name}")))
            })?;
            if job.attempt > 0 && (!tool.retryable() || job.attempt >= MAX_ATTEMPTS) {
                return Err(ToolError::Protocol(ErrorObject::internal(format!(
                    "the worker running this call of {name} stopped before answering; {}",
                    if tool.retryable() {
                        "it failed too often to try again"
                    } else {
                        "the tool is not marked retryable, so it was not run again"
                    }
                ))));
            }
            tool.validate(&arguments)?;
            let support = tool.task_support();
            if support != TaskSupport::Forbidden && ctx.protocol_version().is_stateless() {
                if support.is_required() && !ctx.client_takes_tasks() {
                    return Err(ToolError::Protocol(tasks::missing_extension(&format!(
                        "the tool {name}"
                    ))));
                }
                if support.starts_at_once() {
                    ctx.start_task().await?;
                }
            }
            let result = tool.call(ctx, arguments).await?;
            Ok(result.to_value())
        }
        "resources/read" => {
            let uri = job
                .params
                .get("uri")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    ToolError::Protocol(ErrorObject::invalid_params(
                        "resources/read needs params.uri, a string",
                    ))
                })?;
            if !tools.serves_resource(uri)
                && let Some(upstream) = upstreams.and_then(|u| u.find_resource(uri))
            {
                return upstream.read_resource(&ctx, uri).await;
            }
            match tools.read_resource(ctx, uri).await {
                Some(contents) => Ok(json!({
                    "contents": contents?.iter().map(ResourceContents::to_value).collect::<Vec<_>>()
                })),
                None => Err(ToolError::Protocol(ErrorObject {
                    code: jsonrpc::RESOURCE_NOT_FOUND,
                    message: format!("Resource not found: {uri}"),
                    data: Some(json!({"uri": uri})),
                })),
            }
        }
        "prompts/get" => {
            let (name, arguments) = name_and_arguments(job)?;
            if !tools.has_prompt(name)
                && let Some((upstream, original)) = upstreams.and_then(|u| u.find_prompt(name))
            {
                return upstream.get_prompt(&ctx, &original, arguments).await;
            }
            match tools.get_prompt(ctx, name, arguments).await {
                Some(Ok(result)) => Ok(result),
                // A prompt's arguments are a protocol matter in every revision.
                Some(Err(ToolError::InvalidArguments(msg))) => {
                    Err(ToolError::Protocol(ErrorObject::invalid_params(format!(
                        "invalid arguments for prompt {name}: {msg}"
                    ))))
                }
                Some(Err(e)) => Err(e),
                None => Err(ToolError::Protocol(ErrorObject::invalid_params(format!(
                    "Unknown prompt: {name}"
                )))),
            }
        }
        "completion/complete" => {
            let argument = job.params.get("argument");
            let name = argument.and_then(|a| a.get("name")).and_then(Value::as_str);
            let value = argument
                .and_then(|a| a.get("value"))
                .and_then(Value::as_str);
            let reference = job.params.get("ref").cloned();
            let (Some(name), Some(value), Some(reference)) = (name, value, reference) else {
                return Err(ToolError::Protocol(ErrorObject::invalid_params(
                    "completion/complete needs params.ref and params.argument {name, value}",
                )));
            };
            if !tools.knows_reference(&reference)
                && let Some((upstream, renamed)) =
                    upstreams.and_then(|u| u.find_reference(&reference))
                && let Value::Object(params) = &job.params
            {
                return upstream.complete(&ctx, renamed, params).await;
            }
            let context = job.params["context"]["arguments"]
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                .collect();
            let request = CompletionRequest {
                reference,
                argument: name.to_owned(),
                value: value.to_owned(),
                context,
            };
            let mut values = tools.complete(ctx, request).await?;
            // The protocol caps one answer at 100 values.
            let total = values.len();
            values.truncate(100);
            Ok(json!({"completion": {"values": values, "total": total, "hasMore": total > 100}}))
        }
        other => Err(ToolError::Protocol(ErrorObject::method_not_found(other))),
    }
}
