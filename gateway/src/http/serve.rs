//! The accept loop: each TCP connection served by hyper-util's HTTP/1.1 + HTTP/2 builder,
//! with the edge's clocks and cap (`--header-read-timeout-secs`, `--idle-timeout-secs`,
//! `--max-connections`), a lingering close ([`conn`](super::conn)) and graceful shutdown.
//!
//! - A request head must be complete within the header-read timeout after the connection
//!   starts waiting for it (a new connection, or a keep-alive one after its last response):
//!   a slowloris client is closed then (hyper's `header_read_timeout`).
//! - A connection with no request in flight and no byte moving for the idle timeout is
//!   closed (both protocols). An open SSE stream is a request in flight: never idle.
//! - Past `--max-connections` open connections, a new one gets `503 Service Unavailable`
//!   with `Retry-After: 1` and a JSON-RPC error, written at once, and is closed.

use super::conn::EdgeIo;
use axum::Router;
use axum::extract::ConnectInfo;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use prometheus::{IntCounterVec, IntGauge, Opts};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// The edge's connection settings (from `Config`).
#[derive(Debug, Clone, Copy)]
pub struct EdgeConfig {
    /// Bound on receiving a complete request head; `None`: unbounded.
    pub header_read_timeout: Option<Duration>,
    /// Bound on a connection with nothing in flight and nothing moving; `None`: unbounded.
    pub idle_timeout: Option<Duration>,
    /// Open connections at most; 0: no cap.
    pub max_connections: usize,
}

/// The connection metrics, per gateway (registered in its registry).
#[derive(Clone)]
pub struct EdgeMetrics {
    /// `mcpgw_http_connections_open`.
    pub open: IntGauge,
    /// `mcpgw_http_connections_refused_total`.
    pub refused: prometheus::IntCounter,
    /// `mcpgw_http_connections_timed_out_total{reason}` (`header`, `idle`).
    pub timed_out: IntCounterVec,
}

impl EdgeMetrics {
    /// New metrics, and their collectors to register.
    pub fn new() -> (Self, Vec<Box<dyn prometheus::core::Collector>>) {
        let open = IntGauge::new(
            "mcpgw_http_connections_open",
            "Open HTTP connections (TCP), including ones closing (lingering)",
        )
        .unwrap_or_else(|e| panic!("invalid metric definition: {e}"));
        let refused = prometheus::IntCounter::new(
            "mcpgw_http_connections_refused_total",
            "Connections refused with 503 because --max-connections were open",
        )
        .unwrap_or_else(|e| panic!("invalid metric definition: {e}"));
        let timed_out = IntCounterVec::new(
            Opts::new(
                "mcpgw_http_connections_timed_out_total",
                "Connections closed by a timeout: header (request head not complete in \
                 --header-read-timeout-secs) or idle (--idle-timeout-secs)",
            ),
            &["reason"],
        )
        .unwrap_or_else(|e| panic!("invalid metric definition: {e}"));
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(open.clone()),
            Box::new(refused.clone()),
            Box::new(timed_out.clone()),
        ];
        (
            Self {
                open,
                refused,
                timed_out,
            },
            collectors,
        )
    }
}

/// One open connection counted; released when the connection is fully closed.
struct Open {
    count: Arc<AtomicUsize>,
    gauge: IntGauge,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::Relaxed);
        self.gauge.dec();
    }
}

const REFUSAL: &str = "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32000,\
                       \"message\":\"too many open connections on this gateway; retry\"}}";

/// Accepts on `listener` and serves `router` until `draining` is cancelled; then asks every
/// connection to finish gracefully and returns once all are closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    edge: EdgeConfig,
    metrics: EdgeMetrics,
    draining: CancellationToken,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(edge.header_read_timeout);
    let open = Arc::new(AtomicUsize::new(0));
    let tracker = TaskTracker::new();
    loop {
        let (tcp, remote) = tokio::select! {
            () = draining.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors (EMFILE) and the like: back off instead of
                    // spinning on the error; connections closing free descriptors.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Small SSE writes must not wait for delayed ACKs (Nagle): ~40 ms per event otherwise.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        if edge.max_connections != 0 && open.load(Ordering::Relaxed) >= edge.max_connections {
            metrics.refused.inc();
            tracker.spawn(refuse(tcp, builder.clone()));
            continue;
        }
        open.fetch_add(1, Ordering::Relaxed);
        metrics.open.inc();
        let held = Open {
            count: open.clone(),
            gauge: metrics.open.clone(),
        };
        let idle_counter = metrics.timed_out.with_label_values(&["idle"]);
        let io = EdgeIo::new(
            tcp,
            edge.idle_timeout,
            Box::new(move || idle_counter.inc()),
            held,
        );
        let activity = io.activity();
        let close = io.activity();
        let router = router.clone();
        let service = tower::service_fn(move |mut request: axum::http::Request<Incoming>| {
            let in_flight = activity.begin();
            request.extensions_mut().insert(ConnectInfo(remote));
            let router = router.clone();
            async move {
                let response = router.oneshot(request.map(axum::body::Body::new)).await?;
                // The request is in flight until its response body is done (or dropped).
                Ok::<_, std::convert::Infallible>(response.map(move |body| {
                    axum::body::Body::new(body.map_frame(move |frame| {
                        let _ = &in_flight;
                        frame
                    }))
                }))
            }
        });
        let builder = builder.clone();
        let draining = draining.clone();
        let timed_out = metrics.timed_out.clone();
        tracker.spawn(async move {
            let connection = builder.serve_connection_with_upgrades(
                TokioIo::new(io),
                TowerToHyperService::new(service),
            );
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                () = draining.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.as_mut().await
                }
            };
            if let Err(e) = result {
                if e.downcast_ref::<hyper::Error>()
                    .is_some_and(hyper::Error::is_timeout)
                {
                    timed_out.with_label_values(&["header"]).inc();
                    close.skip_linger();
                    tracing::debug!(%remote, "request head not received in time; closed");
                } else {
                    tracing::debug!(%remote, error = %e, "connection ended with an error");
                }
            }
        });
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
}

/// How long a connection past the cap is kept to deliver its refusal: enough for the
/// client's first request and the answer, short enough that refused connections cannot
/// pile up.
const REFUSAL_WINDOW: Duration = Duration::from_secs(2);

/// Answers a connection past the cap with 503 and closes it. The answer is served by the
/// same HTTP/1.1 + HTTP/2 builder as any connection, so an HTTP/2 client (prior knowledge)
/// gets a 503 on its own stream and a GOAWAY, not HTTP/1.1 bytes it cannot parse; the
/// close lingers like any other ([`EdgeIo`]).
async fn refuse(tcp: tokio::net::TcpStream, builder: Builder<TokioExecutor>) {
    let io = EdgeIo::new(tcp, Some(REFUSAL_WINDOW), Box::new(|| {}), ());
    let answered = Arc::new(tokio::sync::Notify::new());
    let on_request = answered.clone();
    let service = hyper::service::service_fn(move |_request: hyper::Request<Incoming>| {
        on_request.notify_one();
        std::future::ready(Ok::<_, std::convert::Infallible>(refusal()))
    });
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    let in_time = tokio::time::timeout(REFUSAL_WINDOW, async {
        tokio::select! {
            _ = connection.as_mut() => {}
            () = answered.notified() => {
                // Finish the answer just given (HTTP/2: GOAWAY, then the stream's end),
                // take no other request.
                connection.as_mut().graceful_shutdown();
                let _ = connection.as_mut().await;
            }
        }
    })
    .await;
    if in_time.is_err() {
        tracing::debug!("a refused connection sent no request in time; closed");
    }
}

/// The refusal: 503, `Retry-After: 1` and a JSON-RPC error; the connection closes after it.
fn refusal() -> hyper::Response<axum::body::Body> {
    let mut response = hyper::Response::new(axum::body::Body::from(REFUSAL));
    *response.status_mut() = hyper::StatusCode::SERVICE_UNAVAILABLE;
    let headers = response.headers_mut();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    headers.insert(
        hyper::header::RETRY_AFTER,
        hyper::header::HeaderValue::from_static("1"),
    );
    response
}

/// `None` for 0 seconds (no bound).
pub fn secs(seconds: u64) -> Option<Duration> {
    (seconds != 0).then(|| Duration::from_secs(seconds))
}
