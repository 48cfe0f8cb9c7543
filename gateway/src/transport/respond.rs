//! Shaping answers: SSE streams from frames, or plain JSON.

use crate::state::AppState;
use crate::transport::pump::{Frame, Payload};
use crate::transport::session::SESSION_HEADER;
use axum::Json;
use axum::body::Body;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use mcp_bus::SessionId;
use mcp_protocol::jsonrpc;
use serde_json::Value;
use std::convert::Infallible;
use tokio::sync::mpsc;

/// Encodes one frame as an SSE event. axum's `Event` cannot write the empty `data:` field
/// the priming event needs (it omits empty data, and parsers then dispatch nothing), and
/// every payload here is one line of compact JSON, so the framing is written directly.
pub fn encode_frame(frame: &Frame) -> Bytes {
    let mut out = Vec::with_capacity(256);
    append_frame(frame, true, &mut out);
    Bytes::from(out)
}

/// Appends one frame's SSE event to `out`; without `event_ids` (2026-07-28 streams) the id
/// and retry fields are left out, and an id-only frame writes nothing. The JSON is written
/// straight into the buffer: serde_json's compact form escapes every newline inside
/// strings, so it is always a single `data:` line.
fn append_frame(frame: &Frame, event_ids: bool, out: &mut Vec<u8>) {
    if event_ids {
        if let Some(id) = &frame.id {
            out.extend_from_slice(b"id: ");
            out.extend_from_slice(id.as_bytes());
            out.push(b'\n');
        }
        if let Some(retry) = frame.retry {
            out.extend_from_slice(format!("retry: {}\n", retry.as_millis()).as_bytes());
        }
    } else if frame.data.is_none() {
        // An id-only event: nothing to say without ids.
        return;
    }
    out.extend_from_slice(b"data: ");
    match &frame.data {
        // Serializing a `Value` into a Vec cannot fail.
        Some(Payload::Value(data)) => drop(serde_json::to_writer(&mut *out, data)),
        Some(Payload::Encoded(json)) => out.extend_from_slice(json.as_bytes()),
        Some(Payload::Shared(json)) => out.extend_from_slice(json.as_bytes()),
        None => {}
    }
    out.extend_from_slice(b"\n\n");
}

const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

/// Frames already queued when one is written join it in one body chunk, up to about this
/// many bytes: a burst of progress becomes one `writev` instead of one per event (the
/// kernel's send path was ~a quarter of the gateway's CPU per tool call), while a lone
/// frame still goes out at once.
const COALESCE_BYTES: usize = 16 * 1024;

/// An SSE response fed by `frames`; it ends when the sender side is dropped. An idle
/// stream gets a keep-alive comment every interval, so proxies do not cut it.
pub fn sse(app: &AppState, frames: mpsc::Receiver<Frame>, session: Option<&SessionId>) -> Response {
    with_session(sse_stream(app, frames, true), session)
}

/// An SSE response without event ids, for 2026-07-28 clients: their streams cannot be
/// resumed, so ids (and the empty events that only carry one) would promise what the
/// server does not do.
pub fn sse_without_ids(app: &AppState, frames: mpsc::Receiver<Frame>) -> Response {
    sse_stream(app, frames, false)
}

fn sse_stream(app: &AppState, frames: mpsc::Receiver<Frame>, event_ids: bool) -> Response {
    // Ticks at half the interval; a tick sends a comment only if nothing went out since the
    // tick before, so a stream is never silent for longer than the interval. The timer is
    // not re-armed per frame: moving a timer entry on every event of every stream cost more
    // than these ticks.
    let half = app.config.keepalive() / 2;
    let keep_alive = tokio::time::interval_at(tokio::time::Instant::now() + half, half);
    let body = futures::stream::unfold(
        (frames, keep_alive, false),
        move |(mut frames, mut keep_alive, mut sent)| async move {
            let chunk = loop {
                tokio::select! {
                    frame = frames.recv() => {
                        let frame = frame?;
                        sent = true;
                        break frame_chunk(frame, &mut frames, event_ids);
                    }
                    _ = keep_alive.tick() => {
                        if !std::mem::take(&mut sent) {
                            break Bytes::from_static(KEEP_ALIVE);
                        }
                    }
                }
            };
            Some((Ok::<_, Infallible>(chunk), (frames, keep_alive, sent)))
        },
    );
    let mut response = Response::new(Body::from_stream(body));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-transform"),
    );
    // Proxies such as nginx buffer responses unless told not to, which stalls SSE.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// One body chunk: `first`, and what is already queued behind it.
fn frame_chunk(first: Frame, frames: &mut mpsc::Receiver<Frame>, event_ids: bool) -> Bytes {
    let mut out = Vec::with_capacity(512);
    append_frame(&first, event_ids, &mut out);
    // What is already queued joins this chunk. A closed channel still gets this chunk out;
    // the next `recv` then ends the stream.
    while out.len() < COALESCE_BYTES {
        match frames.try_recv() {
            Ok(next) => append_frame(&next, event_ids, &mut out),
            Err(_) => break,
        }
    }
    Bytes::from(out)
}

/// A JSON response: one message, or an array for a batch.
pub fn json(responses: Vec<Value>, batch: bool, session: Option<&SessionId>) -> Response {
    let body = if batch {
        Value::Array(responses)
    } else {
        responses.into_iter().next().unwrap_or(Value::Null)
    };
    with_session((StatusCode::OK, Json(body)).into_response(), session)
}

/// Collects the final responses of a pump's frames into one JSON answer (for clients that
/// accept only `application/json`; notifications are dropped, as they cannot be carried).
/// For a `stateless` (2026-07-28) request, the errors that revision answers with 400 get
/// that status.
pub async fn json_from_frames(
    mut frames: mpsc::Receiver<Frame>,
    batch: bool,
    stateless: bool,
) -> Response {
    let mut responses = Vec::new();
    while let Some(frame) = frames.recv().await {
        if frame.is_response
            && let Some(data) = frame.data.and_then(Payload::into_value)
        {
            responses.push(data);
        }
    }
    if responses.is_empty() {
        // Every request was cancelled: JSON-RPC sends no response to a cancelled request.
        return StatusCode::ACCEPTED.into_response();
    }
    if stateless
        && let [response] = responses.as_slice()
        && let Some(code) = response["error"]["code"].as_i64()
        && matches!(
            code,
            jsonrpc::HEADER_MISMATCH
                | jsonrpc::MISSING_REQUIRED_CLIENT_CAPABILITY
                | jsonrpc::UNSUPPORTED_PROTOCOL_VERSION
        )
    {
        return (StatusCode::BAD_REQUEST, Json(response.clone())).into_response();
    }
    json(responses, batch, None)
}

fn with_session(mut response: Response, session: Option<&SessionId>) -> Response {
    if let Some(id) = session
        && let Ok(value) = HeaderValue::from_str(id.as_str())
    {
        response.headers_mut().insert(SESSION_HEADER, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::event_id::EventId;
    use mcp_bus::StreamId;
    use serde_json::json;
    use std::time::Duration;

    #[test]
    fn encodes_events_with_ids_retry_and_empty_data() {
        let id = EventId::Request {
            stream: StreamId(1),
            seq: 2,
        };
        let priming = encode_frame(&Frame::empty(id, None));
        assert_eq!(&priming[..], b"id: r.0000000000000001.2\ndata: \n\n");
        let retry = encode_frame(&Frame::empty(id, Some(Duration::from_millis(1500))));
        assert_eq!(
            &retry[..],
            b"id: r.0000000000000001.2\nretry: 1500\ndata: \n\n"
        );
        let message = encode_frame(&Frame::unlogged_response(json!({"a": "x\ny"})));
        assert_eq!(
            &message[..],
            br#"data: {"a":"x\ny"}"#.iter().chain(b"\n\n").copied().collect::<Vec<u8>>().as_slice()
        );
    }
}
