//! Seeing rmcp's stream resumption, so it can be reported honestly.
//!
//! rmcp's streamable HTTP transport already resumes a broken SSE stream: it remembers the
//! last event id and reopens the stream with a GET carrying `Last-Event-ID`, following a
//! retry policy. It does all that silently. We keep its logic and watch it from the two
//! seams it offers:
//! - [`WatchedHttp`] implements rmcp's `StreamableHttpClient` around reqwest: it sees every
//!   SSE stream end (an error is a drop, a clean end is the server closing it) and every
//!   GET that carries a `Last-Event-ID` (a resumption), and whether the server took it.
//! - [`Backoff`] is the retry policy: it knows when rmcp gives up on a stream.

use crate::events::{Ending, Event, StreamKind, Transport};
use crate::failure::{root_cause, transport_cause};
use crate::feed::Feed;
use futures::stream::{BoxStream, Stream, StreamExt};
use http::{HeaderName, HeaderValue};
use rmcp::model::ClientJsonRpcMessage;
use rmcp::transport::common::client_side_sse::SseRetryPolicy;
use rmcp::transport::streamable_http_client::{
    SseError, StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
    StreamableHttpResponseLimits,
};
use sse_stream::Sse;
use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

type SseStream = BoxStream<'static, Result<Sse, SseError>>;
type HttpResult<T> = Result<T, StreamableHttpError<reqwest::Error>>;

/// How many ended streams are remembered: only the latest ones can still be resumed.
const ENDINGS_KEPT: usize = 64;

/// What the watcher remembers between a stream's end and its resumption.
#[derive(Default)]
struct Memory {
    /// Ended streams by their last event id: which stream it was and how it ended.
    ended: VecDeque<(String, StreamKind, Ending)>,
    /// Failed resumption attempts by cursor, to number the attempts.
    attempts: HashMap<Option<String>, u32>,
    /// Whether the standalone stream was opened once already (a second GET without a
    /// cursor is a reopening, not the first open).
    standalone_opened: bool,
}

impl Memory {
    fn ended(&mut self, last_event_id: String, kind: StreamKind, ending: Ending) {
        self.ended.retain(|(id, ..)| *id != last_event_id);
        if self.ended.len() == ENDINGS_KEPT {
            self.ended.pop_front();
        }
        self.ended.push_back((last_event_id, kind, ending));
    }

    fn how_ended(&self, last_event_id: &str) -> Option<(StreamKind, Ending)> {
        self.ended
            .iter()
            .rev()
            .find(|(id, ..)| id == last_event_id)
            .map(|(_, kind, ending)| (*kind, ending.clone()))
    }
}

/// reqwest, as rmcp's HTTP client, with every stream watched.
#[derive(Clone)]
pub struct WatchedHttp {
    inner: reqwest::Client,
    feed: Feed,
    memory: Arc<Mutex<Memory>>,
}

impl WatchedHttp {
    /// Wraps `inner`; incidents are recorded on `feed`.
    pub fn new(inner: reqwest::Client, feed: Feed) -> Self {
        Self {
            inner,
            feed,
            memory: Arc::default(),
        }
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, Memory> {
        // The memory holds plain data: a panic elsewhere cannot leave it inconsistent.
        self.memory
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn watch(&self, stream: SseStream, kind: StreamKind, cursor: Option<String>) -> SseStream {
        Watched {
            inner: stream,
            kind,
            last_event_id: cursor,
            finished: false,
            feed: self.feed.clone(),
            memory: self.memory.clone(),
        }
        .boxed()
    }

    fn watch_post(&self, response: StreamableHttpPostResponse) -> StreamableHttpPostResponse {
        match response {
            StreamableHttpPostResponse::Sse(stream, session) => StreamableHttpPostResponse::Sse(
                self.watch(stream, StreamKind::Request, None),
                session,
            ),
            other => other,
        }
    }
}

impl StreamableHttpClient for WatchedHttp {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> HttpResult<StreamableHttpPostResponse> {
        self.post_message_with_response_limits(
            uri,
            message,
            session_id,
            auth_header,
            custom_headers,
            StreamableHttpResponseLimits::default(),
        )
        .await
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> HttpResult<StreamableHttpPostResponse> {
        let mut limits = StreamableHttpResponseLimits::default();
        limits.max_sse_event_size = max_sse_event_size;
        self.post_message_with_response_limits(
            uri,
            message,
            session_id,
            auth_header,
            custom_headers,
            limits,
        )
        .await
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> HttpResult<StreamableHttpPostResponse> {
        self.inner
            .post_message_with_response_limits(
                uri,
                message,
                session_id,
                auth_header,
                custom_headers,
                limits,
            )
            .await
            .map(|response| self.watch_post(response))
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> HttpResult<()> {
        self.inner
            .delete_session(uri, session_id, auth_header, custom_headers)
            .await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> HttpResult<SseStream> {
        self.get_stream_with_max_sse_event_size(
            uri,
            session_id,
            last_event_id,
            auth_header,
            custom_headers,
            StreamableHttpResponseLimits::default().max_sse_event_size,
        )
        .await
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> HttpResult<SseStream> {
        // A GET without a cursor is the standalone stream's first open; any other GET is
        // rmcp resuming a stream it lost.
        let first_open = last_event_id.is_none() && {
            let mut memory = self.memory();
            !std::mem::replace(&mut memory.standalone_opened, true)
        };
        let result = self
            .inner
            .get_stream_with_max_sse_event_size(
                uri,
                session_id,
                last_event_id.clone(),
                auth_header,
                custom_headers,
                max_sse_event_size,
            )
            .await;
        if first_open {
            return result.map(|s| self.watch(s, StreamKind::Standalone, None));
        }
        let (kind, ending) = last_event_id
            .as_deref()
            .and_then(|id| self.memory().how_ended(id))
            .unwrap_or((StreamKind::Standalone, Ending::Dropped));
        let attempt = {
            let mut memory = self.memory();
            let n = memory.attempts.entry(last_event_id.clone()).or_insert(0);
            *n += 1;
            *n
        };
        match result {
            Ok(stream) => {
                self.memory().attempts.remove(&last_event_id);
                self.feed.record(Event::Transport(Transport::Resumed {
                    stream: kind,
                    last_event_id: last_event_id.clone(),
                    ending,
                    attempt,
                }));
                Ok(self.watch(stream, kind, last_event_id))
            }
            Err(error) => {
                self.feed.record(Event::Transport(Transport::ResumeFailed {
                    last_event_id,
                    attempt,
                    error: transport_cause(&error),
                }));
                Err(error)
            }
        }
    }
}

/// An SSE stream that tells the feed how it ended.
struct Watched {
    inner: SseStream,
    kind: StreamKind,
    last_event_id: Option<String>,
    finished: bool,
    feed: Feed,
    memory: Arc<Mutex<Memory>>,
}

impl Watched {
    fn remember(&self, ending: Ending) {
        if let Some(id) = &self.last_event_id {
            self.memory
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .ended(id.clone(), self.kind, ending);
        }
    }
}

impl Stream for Watched {
    type Item = Result<Sse, SseError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.finished {
            return Poll::Ready(None);
        }
        let item = std::task::ready!(this.inner.poll_next_unpin(cx));
        match &item {
            Some(Ok(sse)) => {
                if let Some(id) = &sse.id {
                    this.last_event_id = Some(id.clone());
                }
            }
            Some(Err(error)) => {
                this.finished = true;
                this.remember(Ending::Dropped);
                this.feed.record(Event::Transport(Transport::Dropped {
                    stream: this.kind,
                    last_event_id: this.last_event_id.clone(),
                    error: root_cause(error),
                }));
            }
            // The server ended it. Said nothing yet: for a call's stream that is the normal
            // end; if rmcp resumes it, the resumption is reported with this cause.
            None => {
                this.finished = true;
                this.remember(Ending::Closed);
            }
        }
        Poll::Ready(item)
    }
}

/// rmcp's retry policy for lost streams: exponential backoff, capped, with a bounded
/// number of attempts; reports when it gives up.
#[derive(Debug)]
pub struct Backoff {
    feed: Feed,
    attempts: usize,
    base: Duration,
    cap: Duration,
}

impl Backoff {
    /// Up to 8 attempts: the first at once, then 250 ms doubling to at most 5 s between
    /// them (about 18 s in all): long enough for a gateway restart behind a load balancer,
    /// short enough to say so.
    pub fn new(feed: Feed) -> Self {
        Self {
            feed,
            attempts: 8,
            base: Duration::from_millis(250),
            cap: Duration::from_secs(5),
        }
    }
}

impl SseRetryPolicy for Backoff {
    /// `failed` is 0 when a stream ended cleanly (and the server gave no `retry` hint),
    /// otherwise the number of failed attempts so far.
    fn retry(&self, failed: usize) -> Option<Duration> {
        if failed >= self.attempts {
            self.feed
                .record(Event::Transport(Transport::GaveUp { attempts: failed }));
            return None;
        }
        let doublings = u32::try_from(failed.saturating_sub(1)).unwrap_or(u32::MAX);
        let delay = self
            .base
            .saturating_mul(2u32.saturating_pow(doublings))
            .min(self.cap);
        Some(delay)
    }
}
