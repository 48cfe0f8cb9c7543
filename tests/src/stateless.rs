//! A raw client of protocol 2026-07-28: every request stands alone, carries its `_meta`
//! and the mirrored headers, and may go to any gateway.

use crate::client::SseReader;
use anyhow::{Context, bail};
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The stateless revision.
pub const STATELESS: &str = "2026-07-28";

/// A stateless client over one or more gateways, used in turn.
pub struct StatelessClient {
    http: reqwest::Client,
    urls: Vec<String>,
    next: AtomicUsize,
    /// The `clientCapabilities` every request declares.
    pub capabilities: Value,
    /// A bearer token sent with every request.
    pub bearer: Option<String>,
}

impl StatelessClient {
    /// A client sending each request to the next of `urls`, declaring sampling,
    /// elicitation and roots.
    pub fn rotating(urls: &[String]) -> Self {
        Self {
            http: reqwest::Client::new(),
            urls: urls.to_vec(),
            next: AtomicUsize::new(0),
            capabilities: json!({"sampling": {}, "elicitation": {}, "roots": {}}),
            bearer: None,
        }
    }

    /// The URL the next request goes to (and moves the rotation on).
    pub fn next_url(&self) -> String {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        self.urls[i % self.urls.len()].clone()
    }

    /// `params` with this client's `_meta` added (and `extra_meta` merged in).
    pub fn with_meta(&self, mut params: Value, extra_meta: Value) -> Value {
        let mut meta = json!({
            "io.modelcontextprotocol/protocolVersion": STATELESS,
            "io.modelcontextprotocol/clientInfo": {"name": "e2e-tests", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": self.capabilities,
        });
        if let (Some(meta), Some(extra)) = (meta.as_object_mut(), extra_meta.as_object()) {
            meta.extend(extra.clone());
        }
        if let Some(fields) = params.as_object_mut() {
            fields.insert("_meta".into(), meta);
        }
        params
    }

    /// The headers the revision requires for this request.
    pub fn headers(method: &str, params: &Value) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.insert(
            "accept",
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        headers.insert("mcp-protocol-version", HeaderValue::from_static(STATELESS));
        if let Ok(v) = HeaderValue::from_str(method) {
            headers.insert("mcp-method", v);
        }
        let name = match method {
            "tools/call" | "prompts/get" => params["name"].as_str(),
            "resources/read" => params["uri"].as_str(),
            "tasks/get" | "tasks/update" | "tasks/cancel" => params["taskId"].as_str(),
            _ => None,
        };
        if let Some(name) = name.and_then(|n| HeaderValue::from_str(n).ok()) {
            headers.insert("mcp-name", name);
        }
        headers
    }

    /// Sends one request (params already complete) to `url`.
    pub async fn send_to(
        &self,
        url: &str,
        id: impl Into<Value>,
        method: &str,
        params: Value,
    ) -> anyhow::Result<reqwest::Response> {
        let body = json!({"jsonrpc": "2.0", "id": id.into(), "method": method, "params": params});
        let mut request = self
            .http
            .post(url)
            .headers(Self::headers(method, &params))
            .json(&body);
        if let Some(token) = &self.bearer {
            request = request.bearer_auth(token);
        }
        request
            .send()
            .await
            .with_context(|| format!("POST {method} to {url}"))
    }

    /// Sends a request to the next gateway and returns its final response and the
    /// notifications that came before it.
    pub async fn call(
        &self,
        id: i64,
        method: &str,
        params: Value,
        extra_meta: Value,
    ) -> anyhow::Result<(Value, Vec<Value>)> {
        let url = self.next_url();
        let response = self
            .send_to(&url, id, method, self.with_meta(params, extra_meta))
            .await?;
        let is_sse = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !is_sse {
            return Ok((response.json().await?, Vec::new()));
        }
        let mut reader = SseReader::new(response);
        let mut notifications = Vec::new();
        while let Some((event, message)) = reader.next_message(Duration::from_secs(20)).await? {
            if !event.id.is_empty() {
                bail!("a 2026-07-28 stream carried an event id: {event:?}");
            }
            if message.get("id") == Some(&json!(id)) {
                return Ok((message, notifications));
            }
            notifications.push(message);
        }
        bail!("the stream of {method} ended without a response")
    }

    /// A request to the next gateway, without notifications.
    pub async fn request(&self, id: i64, method: &str, params: Value) -> anyhow::Result<Value> {
        Ok(self.call(id, method, params, json!({})).await?.0)
    }

    /// Opens a `subscriptions/listen` stream on `url` and reads up to its acknowledgement.
    pub async fn listen(
        &self,
        url: &str,
        id: impl Into<Value>,
        notifications: Value,
    ) -> anyhow::Result<(SseReader, Value)> {
        let params = self.with_meta(json!({"notifications": notifications}), json!({}));
        let response = self
            .send_to(url, id, "subscriptions/listen", params)
            .await?;
        if !response.status().is_success() {
            bail!("listen refused: {}", response.status());
        }
        let mut reader = SseReader::new(response);
        let (_, ack) = reader
            .next_message(Duration::from_secs(10))
            .await?
            .context("the listen stream ended before its acknowledgement")?;
        Ok((reader, ack))
    }
}
