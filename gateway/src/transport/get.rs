//! GET /mcp: the standalone stream, and resumption of any stream with `Last-Event-ID`.

use crate::http::auth::Principal;
use crate::http::error::HttpError;
use crate::http::limits::{self, Load};
use crate::http::negotiate::Accepts;
use crate::policy::caller::Caller;
use crate::state::AppState;
use crate::transport::event_id::EventId;
use crate::transport::pump::{OpenRequest, RequestPump, StandalonePump, progress_sent};
use crate::transport::respond;
use crate::transport::session::{LAST_EVENT_ID, SessionContext, require_session};
use axum::Extension;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use mcp_bus::{EventBody, StandaloneCursor, StreamId, StreamTarget};
use std::collections::HashMap;
use tokio::sync::mpsc;
use tracing::Instrument;

/// Handles GET /mcp.
pub async fn get(
    State(app): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Response {
    let span = tracing::info_span!("mcp.get", resume = headers.contains_key(LAST_EVENT_ID));
    let result = handle(app, headers, principal, caller)
        .instrument(span)
        .await;
    match result {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn handle(
    app: AppState,
    headers: HeaderMap,
    principal: Principal,
    caller: Caller,
) -> Result<Response, HttpError> {
    if app.config.stateless {
        return Err(HttpError::MethodNotAllowed("POST"));
    }
    if !Accepts::from_headers(&headers).sse {
        return Err(HttpError::NotAcceptable(
            "GET opens an SSE stream: the client must accept text/event-stream",
        ));
    }
    if app.draining.is_cancelled() {
        return Err(HttpError::Unavailable(
            "the gateway is shutting down; reconnect to another node".into(),
        ));
    }
    let session = require_session(&app, &headers, &principal).await?;
    match headers.get(LAST_EVENT_ID) {
        None => standalone(app, session, None, caller).await,
        Some(value) => {
            let id = value
                .to_str()
                .ok()
                .and_then(|v| EventId::parse(v.trim()))
                .ok_or(HttpError::BadLastEventId)?;
            match id {
                EventId::Standalone(cursor) => standalone(app, session, Some(cursor), caller).await,
                EventId::Request { stream, seq } => resume_request(app, session, stream, seq).await,
            }
        }
    }
}

async fn standalone(
    app: AppState,
    session: SessionContext,
    resume_from: Option<StandaloneCursor>,
    caller: Caller,
) -> Result<Response, HttpError> {
    let id = session.record.id.clone();
    let held = limits::claim(&app, &id, Load::Stream)?;
    let subscription = app.bus.subscribe(&id).await?;
    let broadcasts = app.bus.subscribe_broadcasts().await?;
    let claim = rand::random();
    app.bus
        .claim_stream(&id, StreamTarget::Standalone, claim)
        .await?;
    let cursor = match resume_from {
        None => session.record.standalone_cursor,
        Some(cursor) => {
            if cursor.session_seq > subscription.head || cursor.broadcast_seq > broadcasts.head {
                return Err(HttpError::BadLastEventId);
            }
            let session_log = app
                .bus
                .replay(&id, cursor.session_seq, subscription.head)
                .await?;
            let broadcast_log = app
                .bus
                .replay_broadcasts(cursor.broadcast_seq, broadcasts.head)
                .await?;
            if !session_log.complete || !broadcast_log.complete {
                return Err(HttpError::CursorTrimmed);
            }
            cursor
        }
    };
    let pump = StandalonePump {
        app: app.clone(),
        session: id,
        subscription,
        broadcasts,
        cursor,
        claim,
        log_level: session.record.log_level,
        priming: session.version.sse_priming(),
        listen: None,
        caller,
    };
    let (tx, rx) = mpsc::channel(32);
    let pumped = async move {
        let _held = held;
        pump.run(tx).await
    };
    tokio::spawn(pumped.instrument(tracing::Span::current()));
    Ok(respond::sse(&app, rx, None))
}

async fn resume_request(
    app: AppState,
    session: SessionContext,
    stream: StreamId,
    seq: u64,
) -> Result<Response, HttpError> {
    let id = session.record.id.clone();
    let held = limits::claim(&app, &id, Load::Stream)?;
    let subscription = app.bus.subscribe(&id).await?;
    if seq > subscription.head {
        return Err(HttpError::BadLastEventId);
    }
    let claim = rand::random();
    app.bus
        .claim_stream(&id, StreamTarget::Request(stream), claim)
        .await?;
    let log = app.bus.replay(&id, 0, subscription.head).await?;
    let ours =
        |e: &&std::sync::Arc<mcp_bus::SessionEvent>| e.stream == StreamTarget::Request(stream);
    let already_ended = log
        .events
        .iter()
        .filter(ours)
        .any(|e| e.seq <= seq && matches!(e.body, EventBody::Response(_) | EventBody::End));
    let (tx, rx) = mpsc::channel(32);
    if already_ended {
        // Everything of that stream was delivered: an empty stream that ends at once.
        drop(tx);
        return Ok(respond::sse(&app, rx, None));
    }
    let first_retained = log.events.first().map(|e| e.seq);
    let trimmed = match first_retained {
        Some(first) => first > seq + 1,
        None => subscription.head > seq,
    };
    if trimmed {
        return Err(HttpError::CursorTrimmed);
    }
    let (seen, unseen): (Vec<_>, Vec<_>) = log
        .events
        .iter()
        .filter(ours)
        .cloned()
        .partition(|e| e.seq <= seq);
    // A call retried on another worker starts its progress over: the progress the client
    // already has (on whichever gateway it got it) must not come again after it resumes.
    let last_progress = progress_sent(&seen, stream)
        .map(|p| HashMap::from([(stream, p)]))
        .unwrap_or_default();
    let pump = RequestPump {
        app: app.clone(),
        session: id,
        subscription,
        prelude: unseen,
        open: HashMap::from([(
            stream,
            OpenRequest {
                request_id: None,
                method: None,
                give_up_at: None,
                ticket: None,
            },
        )]),
        claim,
        log_level: session.record.log_level,
        resumable: true,
        last_progress,
        kind: "get",
    };
    let pumped = async move {
        let _held = held;
        pump.run(tx).await
    };
    tokio::spawn(pumped.instrument(tracing::Span::current()));
    Ok(respond::sse(&app, rx, None))
}
