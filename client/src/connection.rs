//! The MCP session: rmcp's client over its streamable HTTP transport, with our headers and
//! auth, a handler that records every notification on the [`Feed`], and tool calls that
//! come back as text or a [`Failure`].
//!
//! rmcp marks logging (`notifications/message`) deprecated: SEP-2577 drops it after the
//! session protocol. This client pins the session protocol (2025-11-25), where logging is
//! current and is how the gateway's tools talk, so the deprecation does not apply here.
#![allow(deprecated)]

use crate::events::{Event, Notification};
use crate::failure::{self, Failure};
use crate::feed::Feed;
use crate::reconnect::{Backoff, WatchedHttp};
use http::{HeaderName, HeaderValue};
use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResult, CancelledNotificationParam,
    ClientCapabilities, ClientConfig, ClientRequest, CustomNotification, Implementation,
    LoggingMessageNotificationParam, NumberOrString, ProgressNotificationParam, ProgressToken,
    ProtocolVersion, ResourceUpdatedNotificationParam, ServerResult, Tool,
};
use rmcp::service::{
    NotificationContext, PeerRequestOptions, RoleClient, RunningService, ServiceError,
};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientHandler, ServiceExt};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// How long `initialize` may take before the server counts as not answering.
const INITIALIZE_TIMEOUT: Duration = Duration::from_secs(30);

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Options {
    /// The MCP endpoint.
    pub url: String,
    /// Extra headers on every request.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// A bearer token for `Authorization`.
    pub bearer: Option<String>,
}

/// Receives the server's notifications and records them.
pub struct Recorder {
    feed: Feed,
}

impl Recorder {
    fn other(&self, method: &str, params: Value) {
        self.feed.record(Event::Notification(Notification::Other {
            method: method.to_owned(),
            params,
        }));
    }
}

fn token_text(token: &ProgressToken) -> String {
    match &token.0 {
        NumberOrString::String(s) => s.to_string(),
        NumberOrString::Number(n) => n.to_string(),
    }
}

fn to_json(value: &impl serde::Serialize) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

impl ClientHandler for Recorder {
    async fn on_progress(&self, p: ProgressNotificationParam, _: NotificationContext<RoleClient>) {
        self.feed
            .record(Event::Notification(Notification::Progress {
                token: token_text(&p.progress_token),
                progress: p.progress,
                total: p.total,
                message: p.message,
            }));
    }

    async fn on_logging_message(
        &self,
        p: LoggingMessageNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        let level = match to_json(&p.level) {
            Value::String(s) => s,
            other => other.to_string(),
        };
        self.feed.record(Event::Notification(Notification::Message {
            level,
            logger: p.logger,
            data: p.data,
        }));
    }

    async fn on_cancelled(
        &self,
        p: CancelledNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        self.other("notifications/cancelled", to_json(&p));
    }

    async fn on_resource_updated(
        &self,
        p: ResourceUpdatedNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        self.other("notifications/resources/updated", to_json(&p));
    }

    async fn on_resource_list_changed(&self, _: NotificationContext<RoleClient>) {
        self.other("notifications/resources/list_changed", Value::Null);
    }

    async fn on_tool_list_changed(&self, _: NotificationContext<RoleClient>) {
        self.other("notifications/tools/list_changed", Value::Null);
    }

    async fn on_prompt_list_changed(&self, _: NotificationContext<RoleClient>) {
        self.other("notifications/prompts/list_changed", Value::Null);
    }

    async fn on_custom_notification(
        &self,
        n: CustomNotification,
        _: NotificationContext<RoleClient>,
    ) {
        self.other(&n.method, n.params.unwrap_or(Value::Null));
    }

    fn get_info(&self) -> ClientConfig {
        // rmcp 3.11 defaults to the stateless 2026-07-28 protocol, which has no sessions,
        // no standalone stream and no resumption: everything this client is about.
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("mcp-notify", env!("CARGO_PKG_VERSION")),
        )
        .with_protocol_version(ProtocolVersion::V_2025_11_25)
    }
}

/// A live MCP session.
pub struct Connection {
    service: RunningService<RoleClient, Recorder>,
    feed: Feed,
    url: String,
}

/// Opens a session: initialize, then rmcp opens the standalone GET stream by itself.
pub async fn connect(options: &Options, feed: &Feed) -> Result<Connection, Failure> {
    let url = options.url.clone();
    let http = reqwest::Client::builder()
        // A fresh connection per request, as rmcp's own default client does: reusing one
        // whose SSE body was not read to the end stalls on delayed ACKs.
        .pool_max_idle_per_host(0)
        .connect_timeout(Duration::from_secs(10))
        // Redirects would replay our headers and token elsewhere; an MCP endpoint has a
        // fixed URL, so a redirect shows up as an error instead.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| {
            Failure::Connection(format!("cannot set up HTTP: {}", failure::root_cause(&e)))
        })?;
    let headers: HashMap<HeaderName, HeaderValue> = options.headers.iter().cloned().collect();
    let mut config = StreamableHttpClientTransportConfig::with_uri(url.as_str())
        .custom_headers(headers)
        // A 404 means the server forgot the session (expired, or deleted); a silent new
        // session would hide that its background tasks and pending notifications are gone.
        .reinit_on_expired_session(false);
    config.retry_config = Arc::new(Backoff::new(feed.clone()));
    if let Some(token) = &options.bearer {
        config = config.auth_header(token.clone());
    }
    let transport =
        StreamableHttpClientTransport::with_client(WatchedHttp::new(http, feed.clone()), config);
    let recorder = Recorder { feed: feed.clone() };
    let service = match tokio::time::timeout(INITIALIZE_TIMEOUT, recorder.serve(transport)).await {
        Ok(Ok(service)) => service,
        Ok(Err(e)) => return Err(failure::from_initialize(&e, &url)),
        Err(_) => {
            return Err(Failure::Connection(format!(
                "{url} did not answer initialize within {} s",
                INITIALIZE_TIMEOUT.as_secs()
            )));
        }
    };
    if let Some(info) = service.peer_info() {
        let (server, version) = info
            .server_info
            .as_ref()
            .map(|s| (s.name.clone(), s.version.clone()))
            .unwrap_or_else(|| ("an unnamed server".into(), String::new()));
        feed.record(Event::Connected {
            server,
            version,
            protocol: info.protocol_version.to_string(),
        });
    }
    Ok(Connection {
        service,
        feed: feed.clone(),
        url,
    })
}

impl Connection {
    /// Calls `tool`. With a `bar` label, the call's progress drives a progress bar. Returns
    /// the result's text, or why it failed (a tool error is a [`Failure::Command`]).
    pub async fn call(
        &self,
        tool: &str,
        arguments: Value,
        bar: Option<&str>,
    ) -> Result<String, Failure> {
        let arguments: Map<String, Value> = match arguments {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        let what = format!("tool {tool}");
        let fail = |e: ServiceError| failure::from_service(&e, &self.url, &what);
        let request = ClientRequest::CallToolRequest(CallToolRequest::new(
            CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments),
        ));
        // rmcp puts a progress token of its own on every request (it overwrites one set in
        // the params), so the bar follows the token this request actually carries.
        let handle = self
            .service
            .send_request_with_option(request, PeerRequestOptions::no_options())
            .await
            .map_err(fail)?;
        let token = token_text(&handle.progress_token);
        if let Some(label) = bar {
            self.feed.start_bar(&token, label);
        }
        let response = handle.await_response().await;
        if bar.is_some() {
            self.feed.end_bar(&token);
        }
        let result = match response.map_err(fail)? {
            ServerResult::CallToolResult(result) => result,
            _ => {
                return Err(Failure::Command(format!(
                    "{what} answered with something other than a tool result"
                )));
            }
        };
        let text = result_text(&result);
        if result.is_error == Some(true) {
            return Err(Failure::Command(format!("{what} failed: {text}")));
        }
        Ok(text)
    }

    /// Every tool the server offers.
    pub async fn tools(&self) -> Result<Vec<Tool>, Failure> {
        self.service
            .list_all_tools()
            .await
            .map_err(|e| failure::from_service(&e, &self.url, "tools/list"))
    }

    /// Ends the session (DELETE), waiting a bounded time for the server.
    pub async fn close(self) {
        let _ = self.service.cancel().await;
    }
}

/// The text contents of a result, joined by newlines.
fn result_text(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}
