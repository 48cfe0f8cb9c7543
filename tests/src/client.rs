//! A raw Streamable HTTP client: every status, header and SSE event is visible.

use anyhow::{Context, anyhow, bail};
use eventsource_stream::Eventsource;
use futures::{Stream, StreamExt};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};
use std::pin::Pin;
use std::time::Duration;

/// The revision tests speak unless they say otherwise.
pub const LATEST: &str = "2025-11-25";

/// One SSE event as the client saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    /// The `id` field ("" when absent).
    pub id: String,
    /// The `data` field.
    pub data: String,
    /// The `retry` field.
    pub retry: Option<Duration>,
}

impl SseEvent {
    /// The data as JSON (`Null` for empty data).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or(Value::Null)
    }
}

type EventStream = Pin<Box<dyn Stream<Item = anyhow::Result<SseEvent>> + Send>>;

/// Reads an SSE response event by event.
pub struct SseReader {
    events: EventStream,
}

impl SseReader {
    /// Wraps a `text/event-stream` response.
    pub fn new(response: reqwest::Response) -> Self {
        let events = response.bytes_stream().eventsource().map(|e| {
            e.map(|e| SseEvent {
                id: e.id,
                data: e.data,
                retry: e.retry,
            })
            .map_err(|e| anyhow!("SSE: {e}"))
        });
        Self {
            events: Box::pin(events),
        }
    }

    /// The next event, `None` when the server ended the stream. Fails after `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> anyhow::Result<Option<SseEvent>> {
        match tokio::time::timeout(timeout, self.events.next()).await {
            Ok(Some(Ok(event))) => Ok(Some(event)),
            Ok(Some(Err(e))) => Err(e),
            Ok(None) => Ok(None),
            Err(_) => bail!("no SSE event within {timeout:?}"),
        }
    }

    /// The next event, telling apart a stream the server ended, a broken connection and a
    /// quiet spell (the reader stays usable after [`Read::Quiet`]).
    pub async fn read(&mut self, wait: Duration) -> Read {
        match tokio::time::timeout(wait, self.events.next()).await {
            Ok(Some(Ok(event))) => Read::Event(event),
            Ok(Some(Err(e))) => Read::Broken(e.to_string()),
            Ok(None) => Read::End,
            Err(_) => Read::Quiet,
        }
    }

    /// The next event that carries a JSON message (skips priming and retry events).
    pub async fn next_message(
        &mut self,
        timeout: Duration,
    ) -> anyhow::Result<Option<(SseEvent, Value)>> {
        loop {
            match self.next(timeout).await? {
                None => return Ok(None),
                Some(e) if e.data.is_empty() => continue,
                Some(e) => {
                    let v = e.json();
                    return Ok(Some((e, v)));
                }
            }
        }
    }

    /// The next `notifications/message` (other notifications, such as
    /// `tools/list_changed`, are skipped).
    pub async fn next_log(
        &mut self,
        timeout: Duration,
    ) -> anyhow::Result<Option<(SseEvent, Value)>> {
        loop {
            match self.next_message(timeout).await? {
                None => return Ok(None),
                Some((e, m)) if m["method"] == "notifications/message" => return Ok(Some((e, m))),
                Some(_) => continue,
            }
        }
    }

    /// Every remaining event until the server ends the stream.
    pub async fn collect(mut self, timeout: Duration) -> anyhow::Result<Vec<SseEvent>> {
        let mut all = Vec::new();
        while let Some(e) = self.next(timeout).await? {
            all.push(e);
        }
        Ok(all)
    }
}

/// What [`SseReader::read`] saw.
#[derive(Debug)]
pub enum Read {
    /// An event.
    Event(SseEvent),
    /// The server ended the stream.
    End,
    /// The connection broke (as when the gateway serving it dies).
    Broken(String),
    /// No event within the wait.
    Quiet,
}

/// A raw MCP client bound to one endpoint (or a rotation of gateways) and, after
/// [`RawClient::initialize`], one session.
#[derive(Clone)]
pub struct RawClient {
    http: reqwest::Client,
    /// The MCP endpoint (the first of the rotation).
    pub url: String,
    /// Other gateways' endpoints: each request goes to the next one in turn.
    rotation: Vec<String>,
    turn: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// The session id, once initialized.
    pub session: Option<String>,
    /// The revision sent in `MCP-Protocol-Version`.
    pub version: String,
    /// A bearer token sent on every request.
    pub bearer: Option<String>,
}

impl RawClient {
    /// A client for `url` speaking the latest revision.
    pub fn new(url: &str) -> Self {
        Self {
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .expect("reqwest client"),
            url: url.to_owned(),
            rotation: Vec::new(),
            turn: Default::default(),
            session: None,
            version: LATEST.to_owned(),
            bearer: None,
        }
    }

    /// The same client speaking HTTP/2 without TLS (prior knowledge, as a fronting HTTP/2
    /// proxy does): its requests and streams share one connection per gateway.
    pub fn over_http2(mut self) -> Self {
        self.http = reqwest::Client::builder()
            .http2_prior_knowledge()
            .build()
            .expect("reqwest client");
        self
    }

    /// A client whose requests rotate over `urls`, one after the other.
    pub fn rotating(urls: &[String]) -> Self {
        let mut client = Self::new(&urls[0]);
        client.rotation = urls.to_vec();
        client
    }

    /// The same client (session, version, token) bound to the one endpoint `url`.
    pub fn at(&self, url: &str) -> Self {
        let mut client = self.clone();
        client.url = url.to_owned();
        client.rotation.clear();
        client
    }

    /// The endpoint for the next request.
    pub fn next_url(&self) -> String {
        if self.rotation.len() < 2 {
            return self.url.clone();
        }
        let n = self.turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.rotation[n % self.rotation.len()].clone()
    }

    /// The headers of a normal MCP POST within the session.
    pub fn headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("application/json"));
        h.insert(
            "accept",
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        if let Some(s) = &self.session {
            h.insert(
                "mcp-session-id",
                HeaderValue::from_str(s).expect("session id"),
            );
        }
        h.insert(
            "mcp-protocol-version",
            HeaderValue::from_str(&self.version).expect("version"),
        );
        if let Some(token) = &self.bearer {
            h.insert(
                "authorization",
                HeaderValue::from_str(&format!("Bearer {token}")).expect("token"),
            );
        }
        h
    }

    /// POSTs a body with the session headers, overridden by `extra`.
    pub async fn post_with(
        &self,
        body: &Value,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<reqwest::Response> {
        let mut headers = self.headers();
        for (k, v) in extra {
            headers.insert(
                HeaderName::from_bytes(k.as_bytes())?,
                HeaderValue::from_str(v)?,
            );
        }
        Ok(self
            .http
            .post(self.next_url())
            .headers(headers)
            .json(body)
            .send()
            .await?)
    }

    /// POSTs a raw body with exactly these headers.
    pub async fn post_raw(
        &self,
        body: impl Into<reqwest::Body>,
        headers: HeaderMap,
    ) -> anyhow::Result<reqwest::Response> {
        Ok(self
            .http
            .post(self.next_url())
            .headers(headers)
            .body(body)
            .send()
            .await?)
    }

    /// POSTs a JSON-RPC message with the session headers.
    pub async fn post(&self, body: &Value) -> anyhow::Result<reqwest::Response> {
        self.post_with(body, &[]).await
    }

    /// Initializes a session at `version`, sends `notifications/initialized`, and keeps
    /// the session id. Returns the initialize result.
    pub async fn initialize(&mut self, version: &str) -> anyhow::Result<Value> {
        self.initialize_with(version, json!({})).await
    }

    /// Like [`RawClient::initialize`], declaring client capabilities.
    pub async fn initialize_with(
        &mut self,
        version: &str,
        capabilities: Value,
    ) -> anyhow::Result<Value> {
        self.version = version.to_owned();
        self.session = None;
        let body = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
            "protocolVersion": version,
            "capabilities": capabilities,
            "clientInfo": {"name": "e2e-raw", "version": "0"}
        }});
        let response = self.post(&body).await?;
        anyhow::ensure!(
            response.status() == 200,
            "initialize: HTTP {}",
            response.status()
        );
        self.session = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let result: Value = response.json().await?;
        if let Some(negotiated) = result["result"]["protocolVersion"].as_str() {
            self.version = negotiated.to_owned();
        }
        let done = self
            .post(&json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
            .await?;
        anyhow::ensure!(done.status() == 202, "initialized: HTTP {}", done.status());
        result.get("result").cloned().context("initialize result")
    }

    /// A request and its JSON answer (the request must be answered by the gateway itself).
    pub async fn request(&self, id: i64, method: &str, params: Value) -> anyhow::Result<Value> {
        let response = self
            .post(&json!({"jsonrpc":"2.0","id":id,"method":method,"params":params}))
            .await?;
        anyhow::ensure!(
            response.status() == 200,
            "{method}: HTTP {}",
            response.status()
        );
        let ct = content_type(&response);
        if ct.starts_with("text/event-stream") {
            let events = SseReader::new(response)
                .collect(Duration::from_secs(30))
                .await?;
            return events
                .into_iter()
                .map(|e| e.json())
                .find(|v| v.get("id").is_some())
                .context("no response on the stream");
        }
        Ok(response.json().await?)
    }

    /// Calls a tool over SSE and returns its stream.
    pub async fn call_tool_stream(
        &self,
        id: i64,
        name: &str,
        arguments: Value,
        progress_token: Option<&str>,
    ) -> anyhow::Result<SseReader> {
        let mut params = json!({"name": name, "arguments": arguments});
        if let Some(token) = progress_token {
            params["_meta"] = json!({"progressToken": token});
        }
        let response = self
            .post(&json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":params}))
            .await?;
        anyhow::ensure!(
            response.status() == 200,
            "tools/call: HTTP {}",
            response.status()
        );
        anyhow::ensure!(
            content_type(&response).starts_with("text/event-stream"),
            "tools/call answered {} instead of an SSE stream",
            content_type(&response)
        );
        Ok(SseReader::new(response))
    }

    /// Calls a tool and returns every event until the stream ends.
    pub async fn call_tool(
        &self,
        id: i64,
        name: &str,
        arguments: Value,
        progress_token: Option<&str>,
    ) -> anyhow::Result<Vec<SseEvent>> {
        self.call_tool_stream(id, name, arguments, progress_token)
            .await?
            .collect(Duration::from_secs(30))
            .await
    }

    /// Opens a GET stream, optionally resuming after `last_event_id`.
    pub async fn get(&self, last_event_id: Option<&str>) -> anyhow::Result<reqwest::Response> {
        let mut req = self
            .http
            .get(self.next_url())
            .header("accept", "text/event-stream");
        if let Some(s) = &self.session {
            req = req.header("mcp-session-id", s);
        }
        req = req.header("mcp-protocol-version", &self.version);
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        if let Some(token) = &self.bearer {
            req = req.bearer_auth(token);
        }
        Ok(req.send().await?)
    }

    /// Opens a GET stream and checks it is SSE.
    pub async fn open_stream(&self, last_event_id: Option<&str>) -> anyhow::Result<SseReader> {
        let response = self.get(last_event_id).await?;
        anyhow::ensure!(response.status() == 200, "GET: HTTP {}", response.status());
        Ok(SseReader::new(response))
    }

    /// DELETE of the session.
    pub async fn delete(&self) -> anyhow::Result<reqwest::StatusCode> {
        let mut req = self.http.delete(self.next_url());
        if let Some(s) = &self.session {
            req = req.header("mcp-session-id", s);
        }
        if let Some(token) = &self.bearer {
            req = req.bearer_auth(token);
        }
        Ok(req.send().await?.status())
    }
}

/// The response's content type ("" if none).
pub fn content_type(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// The JSON messages of a list of events (priming and retry events left out).
pub fn messages(events: &[SseEvent]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| !e.data.is_empty())
        .map(SseEvent::json)
        .collect()
}
