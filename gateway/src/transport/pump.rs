//! Stream pumps: the tasks that turn a session's bus events into one SSE stream's frames.
//!
//! A pump subscribes before it reads the log ("subscribe, then replay"), replays what the
//! client missed, then forwards live events, dropping anything at or before its cursor. It
//! ends when its stream is done, the client goes away, the session ends, another
//! connection claims the stream, the client falls too far behind (bounded queue: the
//! client resumes from its last event id), or the gateway drains.

use crate::state::AppState;
use crate::transport::event_id::EventId;
use crate::transport::listen::ListenFilter;
use mcp_bus::{
    BroadcastEvent, BroadcastSubscription, EventBody, Live, SessionEvent, SessionId,
    SessionSubscription, StandaloneCursor, StreamId, StreamTarget,
};
use mcp_protocol::{ErrorObject, LogLevel, RequestId, jsonrpc};
use mcp_telemetry::DeliveryKind;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// One frame for the client.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The SSE event id.
    pub id: Option<String>,
    /// The JSON-RPC message, or `None` for an empty (priming / reconnect) event.
    pub data: Option<Payload>,
    /// The SSE `retry` hint.
    pub retry: Option<Duration>,
    /// True for a final response.
    pub is_response: bool,
}

/// A frame's JSON-RPC message.
#[derive(Debug, Clone)]
pub enum Payload {
    /// A message as a JSON tree (answers, which a JSON response collects).
    Value(Value),
    /// A message already written as compact JSON for this frame.
    Encoded(String),
    /// A message written once as compact JSON and shared by every stream that sends it (a
    /// broadcast).
    Shared(Arc<str>),
}

impl Payload {
    /// A message written as compact JSON now: one allocation, where cloning the tree would
    /// make one per node.
    fn encoded(message: &Value) -> Self {
        // Serializing a `Value` cannot fail.
        Payload::Encoded(serde_json::to_string(message).unwrap_or_default())
    }

    /// The message as a JSON tree, if the frame carries one.
    pub fn into_value(self) -> Option<Value> {
        match self {
            Payload::Value(value) => Some(value),
            Payload::Encoded(_) | Payload::Shared(_) => None,
        }
    }
}

impl Frame {
    fn message(id: EventId, data: Payload, is_response: bool) -> Self {
        Self {
            id: Some(id.encode()),
            data: Some(data),
            retry: None,
            is_response,
        }
    }

    /// An empty event that carries an id (the 2025-11-25 priming event) and optionally a
    /// retry hint (before the server closes the connection).
    pub fn empty(id: EventId, retry: Option<Duration>) -> Self {
        Self {
            id: Some(id.encode()),
            data: None,
            retry,
            is_response: false,
        }
    }

    /// A notification that is not part of any resumable stream.
    pub fn unlogged_message(data: Value) -> Self {
        Self {
            id: None,
            data: Some(Payload::Value(data)),
            retry: None,
            is_response: false,
        }
    }

    /// A response that is not part of any resumable stream (answered by the gateway).
    pub fn unlogged_response(data: Value) -> Self {
        Self {
            id: None,
            data: Some(Payload::Value(data)),
            retry: None,
            is_response: true,
        }
    }
}

/// How a pump ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PumpEnd {
    /// Every stream it served is done.
    Done,
    /// The client closed the connection.
    ClientGone,
    /// The server closed the connection; the client may resume.
    Interrupted,
    /// The session ended.
    SessionEnded,
}

/// A request stream in flight: its stream id, the client's request id, and the time after
/// which the gateway answers for a worker that never did.
#[derive(Debug, Clone)]
pub struct OpenRequest {
    /// The client's request id.
    pub request_id: Option<RequestId>,
    /// The request's method, when this connection started it (for metrics).
    pub method: Option<String>,
    /// When the gateway gives up on the worker.
    pub give_up_at: Option<Instant>,
    /// The call's audit record and quota slots, when this connection started it.
    pub ticket: Option<Arc<crate::policy::audit::CallTicket>>,
}

/// The pump of one or more request streams (a POST's SSE stream, or one resumed by GET).
pub struct RequestPump {
    /// Shared gateway state.
    pub app: AppState,
    /// The session.
    pub session: SessionId,
    /// The live subscription (taken before anything was enqueued or replayed).
    pub subscription: SessionSubscription,
    /// Events to send first (a resumption's replay), in order.
    pub prelude: Vec<Arc<SessionEvent>>,
    /// The streams still open.
    pub open: HashMap<StreamId, OpenRequest>,
    /// This connection's claim on its streams.
    pub claim: u64,
    /// The session's log level.
    pub log_level: Option<LogLevel>,
    /// True for SSE: the client can resume, so the pump may close the connection (slow
    /// client, drain). False for a JSON answer, which must be produced on this connection.
    pub resumable: bool,
    /// The last progress value sent per stream: a call retried on another worker starts
    /// its progress over, and the client must only ever see it increase.
    pub last_progress: HashMap<StreamId, f64>,
    /// The connection kind for metrics: `post`, or `get` for a resumption.
    pub kind: &'static str,
}

impl RequestPump {
    /// Runs until the streams are done or the connection ends.
    pub async fn run(self, tx: mpsc::Sender<Frame>) -> PumpEnd {
        let gauge = self
            .app
            .metrics
            .sse_streams_open
            .with_label_values(&[self.kind]);
        gauge.inc();
        let end = self.pump(tx).await;
        gauge.dec();
        end
    }

    async fn pump(mut self, tx: mpsc::Sender<Frame>) -> PumpEnd {
        let mut cursor = self.subscription.head;
        let prelude = std::mem::take(&mut self.prelude);
        self.app
            .metrics
            .events_replayed
            .inc_by(prelude.len() as u64);
        for event in prelude {
            cursor = cursor.max(event.seq);
            if let Some(end) = self.deliver(&event, &tx).await {
                return end;
            }
        }
        if self.open.is_empty() {
            return PumpEnd::Done;
        }
        let mut touch = tokio::time::interval(self.app.touch_interval());
        touch.tick().await;
        // Made once, not per event (each registers a waiter).
        let client_gone = tx.closed();
        let closing = self.app.closing.clone();
        let closing = closing.cancelled();
        tokio::pin!(client_gone, closing);
        loop {
            let give_up_at = self.open.values().filter_map(|r| r.give_up_at).min();
            tokio::select! {
                () = &mut client_gone => return PumpEnd::ClientGone,
                live = self.subscription.receiver.recv() => match live {
                    Ok(Live::Event(event)) => {
                        if event.seq <= cursor {
                            continue;
                        }
                        cursor = event.seq;
                        if let Some(end) = self.deliver(&event, &tx).await {
                            return end;
                        }
                    }
                    Ok(Live::StreamClaimed { stream, claim }) => {
                        if claim != self.claim
                            && let StreamTarget::Request(id) = stream
                            && self.open.remove(&id).is_some()
                            && self.open.is_empty()
                        {
                            return PumpEnd::Interrupted;
                        }
                    }
                    Ok(Live::SessionEnded) | Err(RecvError::Closed) => return PumpEnd::SessionEnded,
                    Err(RecvError::Lagged(missed)) if self.resumable => {
                        self.app.metrics.slow_client_disconnects.inc();
                        tracing::info!(session = %self.session, missed, "request stream fell behind; closing it so the client resumes");
                        return self.interrupt(cursor, &tx).await;
                    }
                    Err(RecvError::Lagged(_)) => {
                        // A JSON answer cannot be resumed by the client: catch up from the log.
                        match self.catch_up(cursor, &tx).await {
                            Ok(new_cursor) => cursor = new_cursor,
                            Err(end) => return end,
                        }
                    }
                },
                () = sleep_until_opt(give_up_at) => self.give_up_overdue().await,
                () = &mut closing, if self.resumable => return self.interrupt(cursor, &tx).await,
                _ = touch.tick() => {
                    let _ = self.app.bus.touch_session(&self.session).await;
                }
            }
        }
    }

    /// Sends one event if it belongs to an open stream; `Some` when the pump must stop.
    async fn deliver(&mut self, event: &SessionEvent, tx: &mpsc::Sender<Frame>) -> Option<PumpEnd> {
        let StreamTarget::Request(stream) = event.stream else {
            return None;
        };
        if !self.open.contains_key(&stream) {
            return None;
        }
        let id = EventId::Request {
            stream,
            seq: event.seq,
        };
        let frame = match &event.body {
            EventBody::Message(message) => {
                if !LogLevel::message_passes(message, self.log_level) {
                    return None;
                }
                if let Some(progress) = progress_of(message) {
                    let last = self
                        .last_progress
                        .entry(stream)
                        .or_insert(f64::NEG_INFINITY);
                    if progress <= *last {
                        return None;
                    }
                    *last = progress;
                }
                record_delivery(&self.app, message, event.emitted_ms);
                Frame::message(id, Payload::encoded(message), false)
            }
            EventBody::Response(response) => {
                let request = self.open.remove(&stream);
                if let Some(ticket) = request.as_ref().and_then(|r| r.ticket.as_ref()) {
                    ticket.finish_with(response);
                }
                if let Some(method) = request.and_then(|r| r.method) {
                    let outcome = if response.get("error").is_some() {
                        "error"
                    } else {
                        "ok"
                    };
                    self.app
                        .metrics
                        .jsonrpc_requests
                        .with_label_values(&[method.as_str(), outcome])
                        .inc();
                }
                record_delivery(&self.app, response, event.emitted_ms);
                Frame::message(id, Payload::Value(response.clone()), true)
            }
            EventBody::End => {
                // A stream that ends without a response: the client cancelled the call.
                if let Some(ticket) = self.open.remove(&stream).and_then(|r| r.ticket) {
                    ticket.finish(crate::policy::audit::Outcome::Cancelled, None);
                }
                return self.open.is_empty().then_some(PumpEnd::Done);
            }
            EventBody::Reconnect { retry_ms } => {
                let frame = Frame::empty(id, Some(Duration::from_millis(*retry_ms)));
                return Some(match tx.send(frame).await {
                    Ok(()) => PumpEnd::Interrupted,
                    Err(_) => PumpEnd::ClientGone,
                });
            }
        };
        if tx.send(frame).await.is_err() {
            return Some(PumpEnd::ClientGone);
        }
        self.open.is_empty().then_some(PumpEnd::Done)
    }

    /// Re-subscribes and replays what the lagging subscription skipped.
    async fn catch_up(&mut self, cursor: u64, tx: &mpsc::Sender<Frame>) -> Result<u64, PumpEnd> {
        let bus = self.app.bus.clone();
        self.subscription = bus
            .subscribe(&self.session)
            .await
            .map_err(|_| PumpEnd::SessionEnded)?;
        let head = self.subscription.head;
        let replay = bus
            .replay(&self.session, cursor, head)
            .await
            .map_err(|_| PumpEnd::SessionEnded)?;
        for event in replay.events {
            if let Some(end) = self.deliver(&event, tx).await {
                return Err(end);
            }
        }
        Ok(head.max(cursor))
    }

    /// Closes the connection but not the streams: a retry hint carrying the last position,
    /// so the client resumes with `Last-Event-ID`.
    async fn interrupt(&self, cursor: u64, tx: &mpsc::Sender<Frame>) -> PumpEnd {
        if let Some(stream) = self.open.keys().next() {
            let id = EventId::Request {
                stream: *stream,
                seq: cursor,
            };
            send_retry_hint(tx, Frame::empty(id, Some(self.app.sse_retry()))).await;
        }
        PumpEnd::Interrupted
    }

    /// A worker that never answered (it died, or the job was lost) gets answered for: the
    /// error goes into the session log, so a client resuming elsewhere sees it too.
    async fn give_up_overdue(&mut self) {
        let now = Instant::now();
        for (stream, request) in self.open.iter_mut() {
            if request.give_up_at.is_some_and(|t| t <= now) {
                request.give_up_at = None;
                let Some(id) = &request.request_id else {
                    continue;
                };
                let error = ErrorObject::new(
                    jsonrpc::REQUEST_TIMEOUT,
                    "the request was not answered before its deadline",
                );
                let body = EventBody::Response(jsonrpc::response_err(Some(id), error));
                if let Err(e) = self
                    .app
                    .bus
                    .publish(&self.session, StreamTarget::Request(*stream), body)
                    .await
                {
                    tracing::warn!(error = %e, "could not publish a timeout response");
                }
            }
        }
    }
}

/// The pump of a session's standalone (GET) stream: session events meant for it, and
/// broadcasts.
pub struct StandalonePump {
    /// Shared gateway state.
    pub app: AppState,
    /// The session.
    pub session: SessionId,
    /// The session subscription.
    pub subscription: SessionSubscription,
    /// The broadcast subscription.
    pub broadcasts: BroadcastSubscription,
    /// Where the stream starts.
    pub cursor: StandaloneCursor,
    /// This connection's claim on the stream.
    pub claim: u64,
    /// The session's log level.
    pub log_level: Option<LogLevel>,
    /// Whether to send the priming event first.
    pub priming: bool,
    /// For a `subscriptions/listen` stream: what it carries, and its tag.
    pub listen: Option<ListenFilter>,
    /// Who opened the stream: a policy change reaches it only if what this caller may
    /// see changed.
    pub caller: crate::policy::caller::Caller,
}

impl StandalonePump {
    /// Runs until the connection ends; records how far it got so a later fresh stream
    /// starts there.
    pub async fn run(mut self, tx: mpsc::Sender<Frame>) -> PumpEnd {
        let gauge = self
            .app
            .metrics
            .sse_streams_open
            .with_label_values(&["get"]);
        gauge.inc();
        let end = self.pump(&tx).await;
        gauge.dec();
        if end != PumpEnd::SessionEnded {
            let _ = self
                .app
                .bus
                .advance_standalone_cursor(&self.session, self.cursor)
                .await;
        }
        end
    }

    async fn pump(&mut self, tx: &mpsc::Sender<Frame>) -> PumpEnd {
        if self.priming
            && tx
                .send(Frame::empty(EventId::Standalone(self.cursor), None))
                .await
                .is_err()
        {
            return PumpEnd::ClientGone;
        }
        // Replay what this stream has not delivered yet, then go live.
        let session_head = self.subscription.head;
        match self
            .app
            .bus
            .replay(&self.session, self.cursor.session_seq, session_head)
            .await
        {
            Ok(replay) => {
                self.app
                    .metrics
                    .events_replayed
                    .inc_by(replay.events.len() as u64);
                for event in replay.events {
                    if let Some(end) = self.deliver_session_event(&event, tx).await {
                        return end;
                    }
                }
            }
            Err(_) => return PumpEnd::SessionEnded,
        }
        self.cursor.session_seq = self.cursor.session_seq.max(session_head);
        let broadcast_head = self.broadcasts.head;
        if let Ok(replay) = self
            .app
            .bus
            .replay_broadcasts(self.cursor.broadcast_seq, broadcast_head)
            .await
        {
            self.app
                .metrics
                .events_replayed
                .inc_by(replay.events.len() as u64);
            for event in replay.events {
                if let Some(end) = self.deliver_broadcast(&event, tx).await {
                    return end;
                }
            }
        }
        self.cursor.broadcast_seq = self.cursor.broadcast_seq.max(broadcast_head);

        let mut touch = tokio::time::interval(self.app.touch_interval());
        touch.tick().await;
        // Made once, not per event: each registers a waiter, and 10,000 streams re-arming
        // them on every broadcast was measurable.
        let client_gone = tx.closed();
        let draining = self.app.draining.clone();
        let draining = draining.cancelled();
        tokio::pin!(client_gone, draining);
        loop {
            tokio::select! {
                () = &mut client_gone => return PumpEnd::ClientGone,
                live = self.subscription.receiver.recv() => match live {
                    Ok(Live::Event(event)) => {
                        if let Some(end) = self.deliver_session_event(&event, tx).await {
                            return end;
                        }
                    }
                    Ok(Live::StreamClaimed { stream: StreamTarget::Standalone, claim }) if claim != self.claim => {
                        return PumpEnd::Interrupted;
                    }
                    Ok(Live::StreamClaimed { .. }) => {}
                    Ok(Live::SessionEnded) | Err(RecvError::Closed) => return PumpEnd::SessionEnded,
                    Err(RecvError::Lagged(missed)) => {
                        self.app.metrics.slow_client_disconnects.inc();
                        tracing::info!(session = %self.session, missed, "standalone stream fell behind; closing it so the client resumes");
                        return self.interrupt(tx).await;
                    }
                },
                live = self.broadcasts.receiver.recv() => match live {
                    Ok(event) => {
                        if let Some(end) = self.deliver_broadcast(&event, tx).await {
                            return end;
                        }
                    }
                    Err(RecvError::Lagged(missed)) => {
                        self.app.metrics.slow_client_disconnects.inc();
                        tracing::info!(session = %self.session, missed, "standalone stream fell behind on broadcasts; closing it so the client resumes");
                        return self.interrupt(tx).await;
                    }
                    Err(RecvError::Closed) => return PumpEnd::Interrupted,
                },
                () = &mut draining => return self.interrupt(tx).await,
                _ = touch.tick() => {
                    if self.listen.is_some() {
                        let _ = self.app.bus.touch_session(&self.session).await;
                    }
                    match self.app.bus.session(&self.session).await {
                        Ok(record) => self.log_level = record.log_level,
                        Err(mcp_bus::BusError::SessionNotFound) => return PumpEnd::SessionEnded,
                        Err(_) => {}
                    }
                }
            }
        }
    }

    async fn deliver_session_event(
        &mut self,
        event: &SessionEvent,
        tx: &mpsc::Sender<Frame>,
    ) -> Option<PumpEnd> {
        if event.seq <= self.cursor.session_seq {
            return None;
        }
        self.cursor.session_seq = event.seq;
        if event.stream != StreamTarget::Standalone {
            return None;
        }
        let EventBody::Message(message) = &event.body else {
            return None;
        };
        self.send(message, event.emitted_ms, || Payload::encoded(message), tx)
            .await
    }

    async fn deliver_broadcast(
        &mut self,
        event: &BroadcastEvent,
        tx: &mpsc::Sender<Frame>,
    ) -> Option<PumpEnd> {
        if event.seq <= self.cursor.broadcast_seq {
            return None;
        }
        self.cursor.broadcast_seq = event.seq;
        if crate::policy::announce::is_marker(&event.message) {
            let changes = self
                .app
                .policies
                .list_changes(&self.caller, event, &*self.app.bus)
                .await;
            for message in changes {
                let payload = || Payload::encoded(&message);
                if let Some(end) = self.send(&message, event.emitted_ms, payload, tx).await {
                    return Some(end);
                }
            }
            return None;
        }
        let shared = || Payload::Shared(event.json());
        self.send(&event.message, event.emitted_ms, shared, tx)
            .await
    }

    /// Sends `message` (as `payload` makes it, unless a listen filter rewrites it).
    async fn send(
        &self,
        message: &Value,
        emitted_ms: u64,
        payload: impl FnOnce() -> Payload,
        tx: &mpsc::Sender<Frame>,
    ) -> Option<PumpEnd> {
        let frame = match &self.listen {
            Some(filter) => Frame::unlogged_message(filter.admit(message)?),
            None => {
                if !LogLevel::message_passes(message, self.log_level) {
                    return None;
                }
                Frame::message(EventId::Standalone(self.cursor), payload(), false)
            }
        };
        record_delivery(&self.app, message, emitted_ms);
        tx.send(frame).await.err().map(|_| PumpEnd::ClientGone)
    }

    async fn interrupt(&self, tx: &mpsc::Sender<Frame>) -> PumpEnd {
        let hint = Frame::empty(EventId::Standalone(self.cursor), Some(self.app.sse_retry()));
        send_retry_hint(tx, hint).await;
        PumpEnd::Interrupted
    }
}

/// The `progress` of a `notifications/progress` message.
pub fn progress_of(message: &Value) -> Option<f64> {
    if message.get("method").and_then(Value::as_str) != Some("notifications/progress") {
        return None;
    }
    message["params"]["progress"].as_f64()
}

/// The highest progress among `events` of request stream `stream`: what a client that
/// received them holds, since a pump sends only progress above what it sent before.
pub fn progress_sent(events: &[Arc<SessionEvent>], stream: StreamId) -> Option<f64> {
    events
        .iter()
        .filter(|e| e.stream == StreamTarget::Request(stream))
        .filter_map(|e| match &e.body {
            EventBody::Message(message) => progress_of(message),
            _ => None,
        })
        .reduce(f64::max)
}

/// Counts one message written to a client, by kind, and how long it took from its emitter.
fn record_delivery(app: &AppState, message: &Value, emitted_ms: u64) {
    let kind = match (
        message.get("method").and_then(Value::as_str),
        message.get("id"),
    ) {
        (Some(_), Some(_)) => DeliveryKind::Request,
        (Some("notifications/progress"), None) => DeliveryKind::Progress,
        (Some("notifications/message"), None) => DeliveryKind::Message,
        (Some(_), None) => DeliveryKind::Other,
        (None, _) => DeliveryKind::Response,
    };
    let metrics = &app.metrics;
    metrics.delivered(kind).inc();
    let latency_ms = mcp_bus::now_ms().saturating_sub(emitted_ms);
    metrics.delivery_latency.observe(latency_ms as f64 / 1000.0);
}

/// How long a closing stream waits for room to send its `retry` hint. A client too slow
/// to take it in that time reconnects after its own default delay instead.
const RETRY_HINT_WAIT: Duration = Duration::from_millis(250);

async fn send_retry_hint(tx: &mpsc::Sender<Frame>, hint: Frame) {
    let _ = tokio::time::timeout(RETRY_HINT_WAIT, tx.send(hint)).await;
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
