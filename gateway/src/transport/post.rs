//! POST /mcp.

use crate::http::auth::Principal;
use crate::http::error::HttpError;
use crate::http::limits::{self, Load};
use crate::http::negotiate::{Accepts, require_json_body};
use crate::mcp::lifecycle;
use crate::mcp::methods::{self, Route};
use crate::mcp::stateless;
use crate::policy::Refused;
use crate::policy::audit::{CallTicket, Outcome};
use crate::policy::caller::Caller;
use crate::state::AppState;
use crate::transport::event_id::EventId;
use crate::transport::pump::{Frame, OpenRequest, RequestPump};
use crate::transport::respond;
use crate::transport::session::{require_session, version_header};
use axum::Extension;
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header::CONTENT_LENGTH};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use mcp_bus::{Job, SessionId, SessionRecord, StandaloneCursor, StreamId};
use mcp_protocol::{ErrorObject, Message, ProtocolVersion, RequestId, jsonrpc};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::Instrument;

/// How long past a job's deadline the gateway waits for the worker's own answer before
/// answering for it.
const DEADLINE_GRACE: Duration = Duration::from_secs(2);

/// Handles POST /mcp.
pub async fn post(
    State(app): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let span = tracing::info_span!("mcp.post");
    mcp_telemetry::propagation::set_parent(&span, incoming_traceparent(&headers));
    let result = handle(app.clone(), headers, body, principal, caller)
        .instrument(span)
        .await;
    if let Err(HttpError::PayloadTooLarge(_)) = &result {
        app.metrics
            .limit_rejections
            .with_label_values(&["body_size"])
            .inc();
    }
    match result {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

/// A request that becomes a job.
pub(crate) struct PendingJob {
    /// The client's request id.
    pub id: RequestId,
    /// The method.
    pub method: String,
    /// The params.
    pub params: Option<Value>,
    /// Writes the call's audit record and holds its quota slots until it ends.
    pub ticket: Option<Arc<CallTicket>>,
}

async fn handle(
    app: AppState,
    headers: HeaderMap,
    body: Body,
    principal: Principal,
    caller: Caller,
) -> Result<Response, HttpError> {
    if app.draining.is_cancelled() {
        return Err(HttpError::Unavailable(
            "the gateway is shutting down; retry on another node".into(),
        ));
    }
    require_json_body(&headers)?;
    let accepts = Accepts::from_headers(&headers);
    if !accepts.json && !accepts.sse {
        return Err(HttpError::NotAcceptable(
            "the client must accept application/json and/or text/event-stream",
        ));
    }
    let bytes = read_body(body, app.config.max_body_bytes, &headers).await?;
    let value: Value =
        serde_json::from_slice(&bytes).map_err(|e| HttpError::Parse(e.to_string()))?;
    let (items, batch) = match value {
        Value::Array(items) if items.is_empty() => {
            return Err(HttpError::InvalidRequest("an empty JSON-RPC batch".into()));
        }
        Value::Array(items) => (items, true),
        single => (vec![single], false),
    };
    let mut messages: Vec<_> = items.into_iter().map(Message::classify).collect();

    if !batch && let Some(Err((id, error))) = messages.first() {
        return Ok(bad_request(id.as_ref(), error.clone()));
    }
    let for_stateless = matches!(messages.as_slice(), [Ok(message)]
        if !batch && stateless::is_stateless(&headers, message.method(), message.params()));
    if for_stateless && let Some(Ok(message)) = messages.pop() {
        return crate::transport::stateless::post(
            app, headers, accepts, message, principal, caller,
        )
        .await;
    }
    if batch && stateless::is_stateless(&headers, None, None) {
        return Err(HttpError::InvalidRequest(
            "JSON-RPC batches are not part of protocol revision 2026-07-28".into(),
        ));
    }
    let is_initialize = |m: &Result<Message, _>| matches!(m, Ok(Message::Request { method, .. }) if method == "initialize");
    if messages.iter().any(is_initialize) {
        if batch {
            return Err(HttpError::InvalidRequest(
                "initialize must not be part of a JSON-RPC batch".into(),
            ));
        }
        if let Some(Ok(Message::Request { id, params, .. })) = messages.pop() {
            return initialize(&app, &headers, accepts, id, params, &principal).await;
        }
    }

    let (session, version) = if app.config.stateless {
        let version = version_header(&headers)?.unwrap_or(ProtocolVersion::V2025_03_26);
        (None, version)
    } else {
        let ctx = require_session(&app, &headers, &principal).await?;
        (Some(ctx.record), ctx.version)
    };
    if batch && !version.allows_batches() {
        return Err(HttpError::InvalidRequest(format!(
            "JSON-RPC batches are not part of protocol revision {version}"
        )));
    }
    let session_id = session.as_ref().map(|r| r.id.clone());

    let mut immediate = Vec::new();
    let mut jobs = Vec::new();
    let trace_id = request_trace_id(&headers);
    for message in messages {
        match message {
            Err((id, error)) => immediate.push(jsonrpc::response_err(id.as_ref(), error)),
            Ok(Message::Notification { method, params }) => {
                let handled =
                    methods::notification(&app, session_id.as_ref(), &method, params.as_ref())
                        .await;
                if let Err(error) = handled {
                    if !batch {
                        return Ok(bad_request(None, error));
                    }
                    tracing::debug!(method, error = %error.message, "ignored a bad notification in a batch");
                }
            }
            Ok(Message::Response { id, outcome }) => {
                if let Err(error) =
                    methods::client_response(&app, session_id.as_ref(), id, outcome).await
                {
                    if !batch {
                        return Ok(bad_request(None, error));
                    }
                    tracing::debug!(error = %error.message, "ignored a bad response in a batch");
                }
            }
            Ok(Message::Request { id, method, params }) => {
                let route =
                    methods::route(&app, session_id.as_ref(), &caller, &method, params.as_ref())
                        .await;
                let known = methods::is_known(&method);
                let count = |outcome| app.count_request(&method, known, outcome);
                match route {
                    Route::Local(Ok(result)) => {
                        count("ok");
                        immediate.push(jsonrpc::response_ok(&id, result));
                    }
                    Route::Local(Err(error)) => {
                        count("error");
                        immediate.push(jsonrpc::response_err(Some(&id), error));
                    }
                    Route::Job => {
                        let admitted = app
                            .policies
                            .admit(
                                &caller,
                                session_id.as_ref(),
                                &method,
                                &id,
                                params.as_ref(),
                                trace_id.as_deref(),
                                false,
                            )
                            .await;
                        match admitted {
                            Ok(ticket) => jobs.push(PendingJob {
                                id,
                                method,
                                params,
                                ticket,
                            }),
                            Err(refused) => {
                                count("error");
                                match refusal_error(refused) {
                                    Err(http) if !batch => return Err(http),
                                    Err(http) => immediate.push(jsonrpc::response_err(
                                        Some(&id),
                                        ErrorObject::new(http.code(), http.to_string()),
                                    )),
                                    Ok(error) => {
                                        immediate.push(jsonrpc::response_err(Some(&id), error))
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    if jobs.is_empty() {
        if immediate.is_empty() {
            return Ok(StatusCode::ACCEPTED.into_response());
        }
        if !accepts.json {
            let (tx, rx) = mpsc::channel(immediate.len());
            for response in immediate {
                let _ = tx.try_send(Frame::unlogged_response(response));
            }
            return Ok(respond::sse(&app, rx, None));
        }
        return Ok(respond::json(immediate, batch, None));
    }
    let session = match session {
        Some(record) => JobSession {
            record,
            ephemeral: false,
        },
        None => {
            let record = new_record(&app, version, json!({}), json!({}), true).await?;
            app.bus.create_session(record.clone()).await?;
            JobSession {
                record,
                ephemeral: true,
            }
        }
    };
    let streaming = accepts.sse;
    start_jobs(
        app, session, version, streaming, batch, immediate, jobs, &headers, &principal,
    )
    .await
}

/// The session a request's jobs run in: the client's own, or one made for this request
/// alone (stateless requests), which ends with the request.
pub(crate) struct JobSession {
    /// The session's record.
    pub record: SessionRecord,
    /// True when the session exists only for this request.
    pub ephemeral: bool,
}

/// Enqueues the jobs of one POST and answers with their stream (SSE when `streaming`,
/// else one JSON answer once every job is done).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn start_jobs(
    app: AppState,
    session: JobSession,
    version: ProtocolVersion,
    streaming: bool,
    batch: bool,
    mut immediate: Vec<Value>,
    jobs: Vec<PendingJob>,
    headers: &HeaderMap,
    principal: &Principal,
) -> Result<Response, HttpError> {
    let JobSession { record, ephemeral } = session;
    // 2026-07-28 streams cannot be resumed: no event ids, and nothing closes them early
    // for the client to come back.
    let resumable = streaming && !version.is_stateless();
    // Subscribe before any job exists, so not even its first event can be missed.
    let subscription = app.bus.subscribe(&record.id).await?;
    // Our span's context when spans are exported, else the caller's, so a trace crosses
    // the gateway even when only the client and the workers export.
    let traceparent = mcp_telemetry::propagation::traceparent_of(&tracing::Span::current())
        .or_else(|| incoming_traceparent(headers).map(str::to_owned));
    let deadline = app.config.job_timeout();
    let mut open = HashMap::new();
    let mut first_stream = None;
    let single = !batch && immediate.is_empty() && jobs.len() == 1;
    // Claims on this session's limits, held until the streams end.
    let mut guards = Vec::new();
    if streaming && !ephemeral {
        guards.push(limits::claim(&app, &record.id, Load::Stream)?);
    }
    for pending in jobs {
        let claim = if ephemeral {
            None
        } else {
            match limits::claim(&app, &record.id, Load::Request) {
                Ok(guard) => Some(guard),
                Err(error) if single => {
                    finish_refused(&pending, "requests_per_session");
                    return Err(error);
                }
                Err(error) => {
                    finish_refused(&pending, "requests_per_session");
                    immediate.push(jsonrpc::response_err(
                        Some(&pending.id),
                        ErrorObject::new(jsonrpc::SERVER_ERROR, error.to_string()),
                    ));
                    continue;
                }
            }
        };
        let stream = StreamId::generate();
        let method = pending.method.clone();
        let tool = app.known_tool(pending.params.as_ref());
        let ticket = pending.ticket.clone();
        let job = Job {
            session: record.id.clone(),
            stream,
            request_id: pending.id.clone(),
            progress_token: jsonrpc::progress_token(pending.params.as_ref()),
            method: pending.method,
            params: pending.params.unwrap_or_else(jsonrpc::empty_result),
            protocol_version: version.as_str().to_owned(),
            client_capabilities: record.client_capabilities.clone(),
            log_level: record.log_level,
            deadline_ms: mcp_bus::now_ms() + deadline.as_millis() as u64,
            traceparent: traceparent.clone(),
            attempt: 0,
            streaming,
            session_stream: !ephemeral,
            delivery_id: None,
            principal: principal.0.clone(),
        };
        match app.bus.enqueue(job).await {
            Ok(()) => {
                guards.extend(claim);
                app.metrics
                    .jobs_enqueued
                    .with_label_values(&[tool.as_str()])
                    .inc();
                open.insert(
                    stream,
                    OpenRequest {
                        request_id: Some(pending.id),
                        method: Some(method),
                        give_up_at: Some(Instant::now() + deadline + DEADLINE_GRACE),
                        ticket,
                    },
                );
                first_stream.get_or_insert(stream);
            }
            Err(error) if single => {
                if let Some(ticket) = &ticket {
                    ticket.finish(Outcome::Unavailable, None);
                }
                if ephemeral {
                    let _ = app.bus.end_session(&record.id).await;
                }
                return Err(error.into());
            }
            Err(error) => {
                if let Some(ticket) = &ticket {
                    ticket.finish(Outcome::Unavailable, None);
                }
                immediate.push(jsonrpc::response_err(
                    Some(&pending.id),
                    ErrorObject::new(jsonrpc::SERVER_ERROR, error.to_string()),
                ))
            }
        }
    }
    let Some(first_stream) = first_stream else {
        return Ok(respond::json(immediate, batch, None));
    };

    let (tx, rx) = mpsc::channel(32 + immediate.len());
    if streaming && version.sse_priming() {
        let priming = EventId::Request {
            stream: first_stream,
            seq: subscription.head,
        };
        let _ = tx.try_send(Frame::empty(priming, None));
    }
    for response in immediate {
        let _ = tx.try_send(Frame::unlogged_response(response));
    }
    let pump = RequestPump {
        app: app.clone(),
        session: record.id.clone(),
        subscription,
        prelude: Vec::new(),
        open,
        claim: rand::random(),
        log_level: record.log_level,
        resumable,
        last_progress: HashMap::new(),
        kind: "post",
    };
    let bus = app.bus.clone();
    let session_id = record.id.clone();
    tokio::spawn(
        async move {
            let _claims = guards;
            pump.run(tx).await;
            if ephemeral {
                let _ = bus.end_session(&session_id).await;
            }
        }
        .instrument(tracing::Span::current()),
    );
    Ok(match (streaming, version.is_stateless()) {
        (true, false) => respond::sse(&app, rx, None),
        (true, true) => respond::sse_without_ids(&app, rx),
        (false, stateless) => respond::json_from_frames(rx, batch, stateless).await,
    })
}

async fn initialize(
    app: &AppState,
    headers: &HeaderMap,
    accepts: Accepts,
    id: RequestId,
    params: Option<Value>,
    principal: &Principal,
) -> Result<Response, HttpError> {
    // The version is negotiated in the body; the header is only defined for the requests
    // that follow. A stale Mcp-Session-Id is ignored too: the client is starting over, as
    // a 404 told it to.
    let _ = headers;
    let counter = |outcome| {
        app.metrics
            .jsonrpc_requests
            .with_label_values(&["initialize", outcome])
    };
    let request = match lifecycle::negotiate(params.as_ref()) {
        Ok(request) => request,
        Err(error) => {
            counter("error").inc();
            return Ok(bad_request(Some(&id), error));
        }
    };
    if !app.config.stateless {
        check_session_limit(app, principal).await?;
    }
    counter("ok").inc();
    let session = if app.config.stateless {
        None
    } else {
        let mut record = new_record(
            app,
            request.version,
            request.capabilities,
            request.client_info,
            false,
        )
        .await?;
        record.principal = principal.0.clone();
        app.bus.create_session(record.clone()).await?;
        // Debug, not info: a line per session cost ~2% of a set-up's CPU under load.
        tracing::debug!(session = %record.id, version = %request.version, "session created");
        Some(record.id)
    };
    let response = jsonrpc::response_ok(&id, lifecycle::initialize_result(request.version));
    if accepts.json {
        return Ok(respond::json(vec![response], false, session.as_ref()));
    }
    let (tx, rx) = mpsc::channel(1);
    let _ = tx.try_send(Frame::unlogged_response(response));
    Ok(respond::sse(app, rx, session.as_ref()))
}

pub(crate) async fn new_record(
    app: &AppState,
    version: ProtocolVersion,
    client_capabilities: Value,
    client_info: Value,
    ephemeral: bool,
) -> Result<SessionRecord, HttpError> {
    let broadcast_seq = app.bus.broadcast_head().await?;
    Ok(SessionRecord {
        id: SessionId::generate(),
        protocol_version: version.as_str().to_owned(),
        client_capabilities,
        client_info,
        log_level: None,
        principal: String::new(),
        created_ms: mcp_bus::now_ms(),
        standalone_cursor: StandaloneCursor {
            session_seq: 0,
            broadcast_seq,
        },
        ephemeral,
    })
}

/// 429 when `principal` already holds as many sessions (and listen streams, and tasks) as
/// it may: cluster-wide, so the limit holds whichever gateway is asked.
pub(crate) async fn check_session_limit(
    app: &AppState,
    principal: &Principal,
) -> Result<(), HttpError> {
    let max = app.config.max_sessions_per_principal;
    if max > 0 && app.bus.count_sessions(&principal.0).await? >= max {
        app.metrics
            .limit_rejections
            .with_label_values(&["sessions_per_principal"])
            .inc();
        return Err(HttpError::TooManyRequests(format!(
            "this principal already holds {max} sessions (session-protocol sessions, listen streams and tasks); end one or let one expire"
        )));
    }
    Ok(())
}

/// How a refused call is answered: a JSON-RPC error (the policy denied it), or an HTTP
/// error (a quota: 429 with `Retry-After`; the quota store unavailable: 503).
pub(crate) fn refusal_error(refused: Refused) -> Result<ErrorObject, HttpError> {
    match refused {
        Refused::Denied(error) => Ok(error),
        Refused::Quota {
            message,
            retry_after,
        } => Err(HttpError::QuotaExceeded {
            message,
            retry_after,
        }),
        Refused::Unavailable(message) => Err(HttpError::Unavailable(message)),
    }
}

/// Writes the audit record of a call a per-session limit refused.
fn finish_refused(pending: &PendingJob, reason: &str) {
    if let Some(ticket) = &pending.ticket {
        ticket.set_reason(reason);
        ticket.finish(Outcome::Quota, None);
    }
}

/// The trace id of this request for audit records: our span's when spans are exported,
/// else the caller's `traceparent`.
pub(crate) fn request_trace_id(headers: &HeaderMap) -> Option<String> {
    let ours = mcp_telemetry::propagation::traceparent_of(&tracing::Span::current());
    let traceparent = ours.or_else(|| incoming_traceparent(headers).map(str::to_owned));
    crate::policy::trace_id_of(traceparent.as_deref()).map(str::to_owned)
}

/// The W3C `traceparent` header of the client's request.
pub(crate) fn incoming_traceparent(headers: &HeaderMap) -> Option<&str> {
    headers.get("traceparent").and_then(|v| v.to_str().ok())
}

/// 400 with a JSON-RPC error body (the request's id when it could be read).
fn bad_request(id: Option<&RequestId>, error: ErrorObject) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(jsonrpc::response_err(id, error)),
    )
        .into_response()
}

async fn read_body(body: Body, limit: usize, headers: &HeaderMap) -> Result<Bytes, HttpError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(HttpError::PayloadTooLarge(limit));
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(HttpError::PayloadTooLarge(limit))
        }
        Err(e) => Err(HttpError::InvalidRequest(format!(
            "could not read the body: {e}"
        ))),
    }
}
