//! One upstream session: the official Rust SDK's client over Streamable HTTP or a stdio
//! child, with its incoming notifications tapped in arrival order and routed to the
//! downstream call (or session) they belong to.

// The SDK marks sampling, roots and logging deprecated (SEP-2577); upstreams of the
// protocol revisions the cluster serves still use them.
#![allow(deprecated)]

use super::config::{Transport as UpstreamTransport, UpstreamConfig};
use mcp_protocol::{ErrorObject, LogLevel};
use rmcp::ErrorData as McpError;
use rmcp::model::{
    ClientCapabilities, ClientConfig, CreateMessageRequestParams, CreateMessageResult,
    ElicitRequestParams, ElicitResult, ErrorCode, Implementation, ListRootsResult, RequestId,
    ServerJsonRpcMessage, SetLevelRequestParams,
};
use rmcp::service::{
    InboundStreamOrigin, Peer, RequestContext, RoleClient, RunningService, RxJsonRpcMessage,
    TxJsonRpcMessage,
};
use rmcp::transport::Transport;
use rmcp::{ClientHandler, ServiceExt};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{Notify, mpsc, oneshot};

/// Why an upstream session could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The transport could not be set up (a child that does not start, a bad header).
    #[error("{0}")]
    Setup(String),
    /// `initialize` failed.
    #[error("initialize failed: {0}")]
    Initialize(String),
    /// `initialize` did not finish in time.
    #[error("initialize did not finish within {0} ms")]
    Timeout(u128),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Progress notifications whose token no call has claimed yet (the upstream answered
/// before the call registered), kept this many per connection at most.
const MAX_EARLY: usize = 256;

/// How often a session with a call waiting in it is probed (see [`Connection::probe`]).
pub(crate) const PROBE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// A server-to-client request of the upstream (sampling, elicitation, roots, ping) on its
/// way to a downstream client. The answer goes back on `reply`: the client's result, or a
/// JSON-RPC error the upstream gets as is. Dropping `reply` answers with an error.
pub(crate) struct Relayed {
    /// `sampling/createMessage`, `elicitation/create`, `roots/list` or `ping`.
    pub(crate) method: &'static str,
    /// The request's params, as the upstream sent them (through the SDK's types).
    pub(crate) params: Value,
    /// Where the answer goes.
    pub(crate) reply: oneshot::Sender<Result<Value, ErrorObject>>,
}

/// Where the notifications of one upstream session go.
#[derive(Default)]
pub(crate) struct Router {
    next: AtomicU64,
    calls: Mutex<Calls>,
    /// Messages not tied to a call (the upstream's GET stream): the downstream session's
    /// standalone stream in per-session mode, nowhere for a shared session.
    session: Mutex<Option<mpsc::UnboundedSender<Value>>>,
    /// Requests not tied to a call: the downstream session's standalone stream in
    /// per-session mode; refused with an error for a shared session.
    session_requests: Mutex<Option<mpsc::UnboundedSender<Relayed>>>,
    /// Woken by the upstream's `notifications/tools/list_changed`.
    pub(crate) list_changed: Arc<Notify>,
}

#[derive(Default)]
struct Calls {
    /// In start order.
    running: Vec<Running>,
    early: Vec<Value>,
}

/// A call running in the upstream session.
struct Running {
    id: u64,
    token: Option<Value>,
    /// The id of the worker's request upstream (the stream the upstream's requests for
    /// this call come on names it).
    upstream_id: RequestId,
    sink: mpsc::UnboundedSender<Value>,
    requests: mpsc::UnboundedSender<Relayed>,
}

/// A call's registration; unregisters when dropped.
pub(crate) struct CallRoute {
    router: Arc<Router>,
    id: u64,
}

impl Drop for CallRoute {
    fn drop(&mut self) {
        lock(&self.router.calls)
            .running
            .retain(|running| running.id != self.id);
    }
}

impl Router {
    /// Routes the upstream's messages for a call with this progress token to `sink`, and
    /// its requests to the client to `requests`.
    pub(crate) fn register(
        self: &Arc<Self>,
        token: Value,
        upstream_id: RequestId,
        sink: mpsc::UnboundedSender<Value>,
        requests: mpsc::UnboundedSender<Relayed>,
    ) -> CallRoute {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut calls = lock(&self.calls);
        let early = std::mem::take(&mut calls.early);
        for message in early {
            if message["params"]["progressToken"] == token {
                let _ = sink.send(message);
            } else {
                calls.early.push(message);
            }
        }
        calls.running.push(Running {
            id,
            token: Some(token),
            upstream_id,
            sink,
            requests,
        });
        CallRoute {
            router: self.clone(),
            id,
        }
    }

    /// Sends the session's unsolicited messages to `sink` from now on.
    pub(crate) fn set_session_sink(&self, sink: mpsc::UnboundedSender<Value>) {
        *lock(&self.session) = Some(sink);
    }

    /// Sends the session's requests that belong to no call to `sink` from now on.
    pub(crate) fn set_session_requests(&self, sink: mpsc::UnboundedSender<Relayed>) {
        *lock(&self.session_requests) = Some(sink);
    }

    /// Hands a request to the session's standalone stream; without one (a shared
    /// session) it is dropped, and the upstream gets an error.
    pub(crate) fn to_session(&self, request: Relayed) {
        if let Some(sink) = lock(&self.session_requests).as_ref() {
            let _ = sink.send(request);
        }
    }

    /// Where a server-to-client request goes: the call whose stream it came on; else (a
    /// stdio upstream, or a server that sends it on its GET stream although a call waits
    /// for it, as `server.createMessage` without a related request does) the call running
    /// in this session if there is exactly one; else the session's standalone stream.
    fn route_request(
        &self,
        origin: Option<&InboundStreamOrigin>,
    ) -> Option<mpsc::UnboundedSender<Relayed>> {
        let calls = lock(&self.calls);
        let call = match origin {
            Some(InboundStreamOrigin::OutboundRequest(id)) => {
                calls.running.iter().find(|r| r.upstream_id == *id)
            }
            _ => match calls.running.as_slice() {
                [only] => Some(only),
                _ => None,
            },
        };
        if let Some(call) = call {
            return Some(call.requests.clone());
        }
        drop(calls);
        lock(&self.session_requests).clone()
    }

    /// Takes the messages this router delivers itself; returns the others to the SDK.
    fn tap(&self, message: RxJsonRpcMessage<RoleClient>) -> Option<RxJsonRpcMessage<RoleClient>> {
        let ServerJsonRpcMessage::Notification(_) = &message else {
            return Some(message);
        };
        let Ok(value) = serde_json::to_value(&message) else {
            return Some(message);
        };
        match value["method"].as_str() {
            Some("notifications/progress") => {
                let token = &value["params"]["progressToken"];
                let mut calls = lock(&self.calls);
                match calls
                    .running
                    .iter()
                    .find(|r| r.token.as_ref() == Some(token))
                {
                    Some(running) => {
                        let _ = running.sink.send(value);
                    }
                    None if calls.early.len() < MAX_EARLY => calls.early.push(value),
                    None => tracing::debug!("upstream progress for an unknown token dropped"),
                }
                None
            }
            Some("notifications/message") => {
                // The SDK does not say which stream a message came on. While exactly one
                // call runs it belongs to that call (servers send request-scoped logs on
                // the request's stream); otherwise it goes to the session's stream.
                let calls = lock(&self.calls);
                if let [running] = calls.running.as_slice() {
                    let _ = running.sink.send(value);
                    return None;
                }
                drop(calls);
                if let Some(sink) = lock(&self.session).as_ref() {
                    let _ = sink.send(value);
                }
                None
            }
            Some("notifications/tools/list_changed") => {
                self.list_changed.notify_one();
                // The SDK also sees it: it drops its cached lists.
                Some(message)
            }
            Some(
                "notifications/resources/updated"
                | "notifications/resources/list_changed"
                | "notifications/prompts/list_changed",
            ) => {
                if let Some(sink) = lock(&self.session).as_ref() {
                    let _ = sink.send(value);
                }
                Some(message)
            }
            _ => Some(message),
        }
    }
}

/// A transport whose incoming messages pass through a [`Router`] first, in order: the
/// SDK handles notifications on spawned tasks (unordered), so request-scoped ones are
/// taken here, before the response that follows them reaches the caller.
struct Tapped<T> {
    inner: T,
    router: Arc<Router>,
}

impl<T: Transport<RoleClient>> Transport<RoleClient> for Tapped<T> {
    type Error = T::Error;

    fn name() -> Cow<'static, str> {
        T::name()
    }

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.inner.send(item)
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleClient>> {
        loop {
            let message = self.inner.receive().await?;
            if let Some(message) = self.router.tap(message) {
                return Some(message);
            }
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.inner.close().await
    }
}

/// The worker as the upstream's client: what it declares at `initialize`, and where the
/// upstream's requests to it go (the downstream client, through the call's context).
#[derive(Clone)]
struct Client {
    router: Arc<Router>,
    capabilities: ClientCapabilities,
}

/// What the worker declares upstream: the downstream client's `sampling`, `elicitation`
/// and `roots` (a per-session upstream session serves one client), or all three for a
/// session shared by every client (a client that lacks one gets the upstream an error).
/// `roots.listChanged` is never declared: the client's root changes are not forwarded.
pub(crate) fn capabilities_for(downstream: Option<&Value>) -> ClientCapabilities {
    let mut declared = serde_json::Map::new();
    for name in ["sampling", "elicitation", "roots"] {
        let value = match downstream {
            Some(client) => match client.get(name) {
                Some(Value::Object(_)) if name == "roots" => json!({}),
                Some(v @ Value::Object(_)) => v.clone(),
                _ => continue,
            },
            None => json!({}),
        };
        declared.insert(name.to_owned(), value);
    }
    serde_json::from_value(Value::Object(declared)).unwrap_or_default()
}

impl Client {
    /// Hands a request of the upstream to the downstream call (or session) it belongs to
    /// and waits for the client's answer.
    async fn relay<T: DeserializeOwned>(
        &self,
        method: &'static str,
        params: Value,
        context: &RequestContext<RoleClient>,
    ) -> Result<T, McpError> {
        let origin = context.extensions.get::<InboundStreamOrigin>();
        let Some(target) = self.router.route_request(origin) else {
            return Err(McpError::new(
                ErrorCode::INVALID_REQUEST,
                format!(
                    "{method} cannot reach a client: it came outside any call the gateway can tell, and this upstream session serves no single downstream session"
                ),
                None,
            ));
        };
        let (reply, answer) = oneshot::channel();
        let gone = || {
            McpError::internal_error(
                format!("the downstream call ended before its client answered {method}"),
                None,
            )
        };
        target
            .send(Relayed {
                method,
                params,
                reply,
            })
            .map_err(|_| gone())?;
        let value = tokio::select! {
            answer = answer => answer.map_err(|_| gone())?,
            () = context.ct.cancelled() => return Err(McpError::internal_error("cancelled by the upstream", None)),
        }
        .map_err(|e| {
            McpError::new(
                ErrorCode(i32::try_from(e.code).unwrap_or(ErrorCode::INTERNAL_ERROR.0)),
                e.message,
                e.data,
            )
        })?;
        serde_json::from_value(value).map_err(|e| {
            McpError::internal_error(
                format!("the downstream client's answer to {method} is malformed: {e}"),
                None,
            )
        })
    }
}

impl ClientHandler for Client {
    fn get_info(&self) -> ClientConfig {
        let mut info = ClientConfig::default();
        info.client_info = Implementation::new("mcp-notify-gateway", env!("CARGO_PKG_VERSION"));
        info.capabilities = self.capabilities.clone();
        info
    }

    async fn ping(&self, context: RequestContext<RoleClient>) -> Result<(), McpError> {
        // A ping no call takes is the worker's to answer: it is the upstream's client.
        if self
            .router
            .route_request(context.extensions.get::<InboundStreamOrigin>())
            .is_none()
        {
            return Ok(());
        }
        self.relay::<Value>("ping", json!({}), &context).await?;
        Ok(())
    }

    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, McpError> {
        let params = serde_json::to_value(params)
            .map_err(|e| McpError::invalid_params(e.to_string(), None))?;
        self.relay("sampling/createMessage", params, &context).await
    }

    async fn create_elicitation(
        &self,
        params: ElicitRequestParams,
        context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, McpError> {
        let params = serde_json::to_value(params)
            .map_err(|e| McpError::invalid_params(e.to_string(), None))?;
        self.relay("elicitation/create", params, &context).await
    }

    async fn list_roots(
        &self,
        context: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, McpError> {
        self.relay("roots/list", json!({}), &context).await
    }
}

/// An open upstream session.
pub(crate) struct Connection {
    pub(crate) peer: Peer<RoleClient>,
    pub(crate) router: Arc<Router>,
    service: Mutex<Option<RunningService<RoleClient, Client>>>,
    /// The stdio child's pid, for logs and tests.
    pub(crate) pid: Option<u32>,
    /// Streamable HTTP (the session can be lost upstream, found out by a request's 404).
    http: bool,
    /// When the session was last probed for a call waiting on it.
    probed: Mutex<Option<std::time::Instant>>,
    /// The upstream's name (the sessions-open gauge's label).
    upstream: String,
    /// The log level last sent upstream with `logging/setLevel` (per-session mode).
    level_sent: Mutex<Option<LogLevel>>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        super::metrics::SESSIONS
            .with_label_values(&[self.upstream.as_str()])
            .dec();
    }
}

impl Connection {
    /// Opens a session: HTTP `initialize`, or spawns the child and initializes it. A child
    /// that does not finish `initialize` in time is killed (dropping the transport kills it).
    pub(crate) async fn open(
        config: &UpstreamConfig,
        capabilities: ClientCapabilities,
    ) -> Result<Self, ConnectError> {
        let router = Arc::new(Router::default());
        let client = Client {
            router: router.clone(),
            capabilities,
        };
        let timeout = config.connect_timeout;
        let (service, pid) = match &config.transport {
            UpstreamTransport::Http { url, headers } => {
                let mut custom = HashMap::new();
                for (k, v) in headers {
                    let name = reqwest::header::HeaderName::try_from(k.as_str())
                        .map_err(|e| ConnectError::Setup(format!("header {k}: {e}")))?;
                    let value = reqwest::header::HeaderValue::try_from(v.as_str())
                        .map_err(|e| ConnectError::Setup(format!("header {k}: {e}")))?;
                    custom.insert(name, value);
                }
                let transport_config =
                    rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(
                        url.as_str(),
                    )
                    .custom_headers(custom);
                let transport = rmcp::transport::StreamableHttpClientTransport::with_client(
                    reqwest::Client::new(),
                    transport_config,
                );
                let tapped = Tapped {
                    inner: transport,
                    router: router.clone(),
                };
                (initialize(client, tapped, timeout).await?, None)
            }
            UpstreamTransport::Stdio {
                command,
                args,
                env,
                cwd,
            } => {
                let (transport, stderr) =
                    super::stdio::spawn(command, args, env, cwd.as_deref())
                        .map_err(|e| ConnectError::Setup(format!("cannot start {command}: {e}")))?;
                let pid = transport.id();
                if let Some(stderr) = stderr {
                    super::stdio::log_stderr(config.name.clone(), pid, stderr);
                }
                let tapped = Tapped {
                    inner: transport,
                    router: router.clone(),
                };
                (initialize(client, tapped, timeout).await?, pid)
            }
        };
        super::metrics::SESSIONS
            .with_label_values(&[config.name.as_str()])
            .inc();
        Ok(Self {
            peer: service.peer().clone(),
            router,
            service: Mutex::new(Some(service)),
            pid,
            http: matches!(config.transport, UpstreamTransport::Http { .. }),
            probed: Mutex::new(None),
            upstream: config.name.clone(),
            level_sent: Mutex::new(None),
        })
    }

    /// Whether the upstream declared the `logging` capability (takes `logging/setLevel`).
    pub(crate) fn takes_log_level(&self) -> bool {
        self.peer
            .peer_info()
            .is_some_and(|info| info.capabilities.logging.is_some())
    }

    /// Sends the downstream session's log level upstream (`logging/setLevel`) if the
    /// upstream takes it and it is not the one it has; the cluster still filters too.
    pub(crate) async fn sync_log_level(
        &self,
        level: Option<LogLevel>,
        timeout: std::time::Duration,
    ) {
        let Some(level) = level else {
            return;
        };
        if !self.takes_log_level() || *lock(&self.level_sent) == Some(level) {
            return;
        }
        let Ok(upstream_level) = serde_json::from_value(json!(level.as_str())) else {
            return;
        };
        // Sent once per level, whatever the outcome: an upstream that fails or stalls on
        // setLevel must not cost every later call a wait.
        *lock(&self.level_sent) = Some(level);
        match tokio::time::timeout(
            timeout,
            self.peer
                .set_level(SetLevelRequestParams::new(upstream_level)),
        )
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(upstream = %self.upstream, error = %e, "logging/setLevel upstream failed; the cluster filters")
            }
            Err(_) => {
                tracing::debug!(upstream = %self.upstream, "logging/setLevel upstream timed out; the cluster filters")
            }
        }
    }

    /// Pings an HTTP session a call has been waiting on for a while, at most once per
    /// [`PROBE_EVERY`], without waiting for the answer. An upstream that restarted and
    /// lost the session answers the ping 404: the SDK then opens a new session and fails
    /// the calls that were waiting in the old one (their answers can never come), instead
    /// of leaving them to their timeout.
    pub(crate) fn probe(&self) {
        if !self.http {
            return;
        }
        {
            let mut probed = lock(&self.probed);
            if probed.is_some_and(|at| at.elapsed() < PROBE_EVERY) {
                return;
            }
            *probed = Some(std::time::Instant::now());
        }
        let peer = self.peer.clone();
        tokio::spawn(async move {
            let ping = rmcp::model::ClientRequest::PingRequest(Default::default());
            let _ = tokio::time::timeout(PROBE_EVERY, peer.send_request(ping)).await;
        });
    }

    /// Whether the session is gone (transport closed).
    pub(crate) fn is_closed(&self) -> bool {
        lock(&self.service)
            .as_ref()
            .is_none_or(|s| s.is_closed() || s.peer().is_transport_closed())
    }

    /// Ends the session: HTTP DELETE, or the child's stdin closed and the child stopped.
    pub(crate) async fn close(&self) {
        let service = lock(&self.service).take();
        if let Some(service) = service {
            let _ = service.cancel().await;
        }
    }
}

async fn initialize<T>(
    client: Client,
    transport: T,
    timeout: std::time::Duration,
) -> Result<RunningService<RoleClient, Client>, ConnectError>
where
    T: Transport<RoleClient> + 'static,
{
    match tokio::time::timeout(timeout, client.serve(transport)).await {
        Ok(Ok(service)) => Ok(service),
        Ok(Err(e)) => Err(ConnectError::Initialize(e.to_string())),
        Err(_) => Err(ConnectError::Timeout(timeout.as_millis())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upstream_is_told_what_the_client_declared_but_never_roots_list_changed() {
        let told = |client: Option<Value>| {
            serde_json::to_value(capabilities_for(client.as_ref())).expect("serializes")
        };
        assert_eq!(
            told(Some(
                json!({"sampling": {}, "roots": {"listChanged": true}, "experimental": {"x": {}}})
            )),
            json!({"sampling": {}, "roots": {}})
        );
        assert_eq!(
            told(Some(json!({"elicitation": {"form": {}, "url": {}}}))),
            json!({"elicitation": {"form": {}, "url": {}}})
        );
        assert_eq!(told(Some(json!({}))), json!({}));
        assert_eq!(
            told(None),
            json!({"sampling": {}, "elicitation": {}, "roots": {}}),
            "a shared session declares all three"
        );
    }

    #[test]
    fn a_request_goes_to_the_call_of_its_stream_else_the_only_call_else_the_session() {
        let router = Arc::new(Router::default());
        let (sink, _messages) = mpsc::unbounded_channel();
        let (a, _a) = mpsc::unbounded_channel();
        let (b, _b) = mpsc::unbounded_channel();
        let (session, _s) = mpsc::unbounded_channel();
        let on = |id: i64| InboundStreamOrigin::OutboundRequest(RequestId::Number(id));
        let routed = |origin: Option<InboundStreamOrigin>,
                      to: Option<&mpsc::UnboundedSender<Relayed>>| {
            match (router.route_request(origin.as_ref()), to) {
                (Some(got), Some(want)) => got.same_channel(want),
                (None, None) => true,
                _ => false,
            }
        };

        let first = router.register(json!("a"), RequestId::Number(1), sink.clone(), a.clone());
        assert!(routed(Some(on(1)), Some(&a)));
        assert!(routed(None, Some(&a)), "stdio: the only call");
        assert!(
            routed(Some(InboundStreamOrigin::Unassociated), Some(&a)),
            "GET stream: the only call"
        );
        assert!(
            routed(Some(on(9)), None),
            "another request's stream is no call's"
        );

        let _second = router.register(json!("b"), RequestId::Number(2), sink, b.clone());
        assert!(routed(Some(on(2)), Some(&b)));
        assert!(routed(Some(on(1)), Some(&a)));
        assert!(routed(None, None), "two calls: neither is guessed");
        router.set_session_requests(session.clone());
        assert!(routed(
            Some(InboundStreamOrigin::Unassociated),
            Some(&session)
        ));

        drop(first);
        assert!(
            routed(Some(on(1)), Some(&session)),
            "a finished call's request"
        );
        assert!(routed(None, Some(&b)));
    }
}
