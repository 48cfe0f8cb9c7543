//! One upstream session: the official Rust SDK's client over Streamable HTTP or a stdio
//! child, with its incoming notifications tapped in arrival order and routed to the
//! downstream call (or session) they belong to.

use super::config::{Transport as UpstreamTransport, UpstreamConfig};
use rmcp::model::{ClientConfig, Implementation, ServerJsonRpcMessage};
use rmcp::service::{Peer, RoleClient, RunningService, RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;
use rmcp::{ClientHandler, ServiceExt};
use serde_json::Value;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{Notify, mpsc};

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

/// Where the notifications of one upstream session go.
#[derive(Default)]
pub(crate) struct Router {
    next: AtomicU64,
    calls: Mutex<Calls>,
    /// Messages not tied to a call (the upstream's GET stream): the downstream session's
    /// standalone stream in per-session mode, nowhere for a shared session.
    session: Mutex<Option<mpsc::UnboundedSender<Value>>>,
    /// Woken by the upstream's `notifications/tools/list_changed`.
    pub(crate) list_changed: Arc<Notify>,
}

#[derive(Default)]
struct Calls {
    /// (call number, progress token, sink), in start order.
    running: Vec<(u64, Option<Value>, mpsc::UnboundedSender<Value>)>,
    early: Vec<Value>,
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
            .retain(|(id, _, _)| *id != self.id);
    }
}

impl Router {
    /// Routes the upstream's messages for a call with this progress token to `sink`.
    pub(crate) fn register(
        self: &Arc<Self>,
        token: Value,
        sink: mpsc::UnboundedSender<Value>,
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
        calls.running.push((id, Some(token), sink));
        CallRoute {
            router: self.clone(),
            id,
        }
    }

    /// Sends the session's unsolicited messages to `sink` from now on.
    pub(crate) fn set_session_sink(&self, sink: mpsc::UnboundedSender<Value>) {
        *lock(&self.session) = Some(sink);
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
                    .find(|(_, t, _)| t.as_ref() == Some(token))
                {
                    Some((_, _, sink)) => {
                        let _ = sink.send(value);
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
                if let [(_, _, sink)] = calls.running.as_slice() {
                    let _ = sink.send(value);
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

/// What the worker says it is when it initializes an upstream session.
#[derive(Clone)]
struct Client;

impl ClientHandler for Client {
    fn get_info(&self) -> ClientConfig {
        let mut info = ClientConfig::default();
        info.client_info = Implementation::new("mcp-notify-gateway", env!("CARGO_PKG_VERSION"));
        info
    }
}

/// An open upstream session.
pub(crate) struct Connection {
    pub(crate) peer: Peer<RoleClient>,
    pub(crate) router: Arc<Router>,
    service: Mutex<Option<RunningService<RoleClient, Client>>>,
    /// The stdio child's pid, for logs and tests.
    pub(crate) pid: Option<u32>,
    /// The upstream's name (the sessions-open gauge's label).
    upstream: String,
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
    pub(crate) async fn open(config: &UpstreamConfig) -> Result<Self, ConnectError> {
        let router = Arc::new(Router::default());
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
                (initialize(tapped, timeout).await?, None)
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
                (initialize(tapped, timeout).await?, pid)
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
            upstream: config.name.clone(),
        })
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
    transport: T,
    timeout: std::time::Duration,
) -> Result<RunningService<RoleClient, Client>, ConnectError>
where
    T: Transport<RoleClient> + 'static,
{
    match tokio::time::timeout(timeout, Client.serve(transport)).await {
        Ok(Ok(service)) => Ok(service),
        Ok(Err(e)) => Err(ConnectError::Initialize(e.to_string())),
        Err(_) => Err(ConnectError::Timeout(timeout.as_millis())),
    }
}
