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

use super::conn::{EdgeIo, linger};
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
use tokio::io::AsyncWriteExt;
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
            tracker.spawn(refuse(tcp));
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

/// Answers a connection past the cap with 503 and closes it (lingering, briefly).
async fn refuse(mut tcp: tokio::net::TcpStream) {
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{REFUSAL}",
        REFUSAL.len()
    );
    if tcp.write_all(response.as_bytes()).await.is_ok() {
        // Long enough for a client's request head to arrive and be discarded.
        linger(tcp, Duration::from_secs(1)).await;
    }
}

/// `None` for 0 seconds (no bound).
pub fn secs(seconds: u64) -> Option<Duration> {
    (seconds != 0).then(|| Duration::from_secs(seconds))
}
