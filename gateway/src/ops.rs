//! What operators see: readiness, metrics, and the gauges kept fresh in the background.

use crate::state::AppState;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header::CONTENT_TYPE};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use mcp_telemetry::Metrics;
use std::time::Duration;

/// How long a readiness probe waits for the bus.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// GET /readyz: 200 when the bus answers and the node is not draining; 503 otherwise, so a
/// load balancer sends new clients elsewhere.
pub async fn readyz(State(app): State<AppState>) -> Response {
    if app.draining.is_cancelled() {
        app.metrics.ready.set(0);
        return (StatusCode::SERVICE_UNAVAILABLE, "draining").into_response();
    }
    match tokio::time::timeout(PROBE_TIMEOUT, app.bus.health()).await {
        Ok(Ok(())) => {
            app.metrics.ready.set(1);
            (StatusCode::OK, "ready").into_response()
        }
        Ok(Err(e)) => {
            app.metrics.ready.set(0);
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("bus unavailable: {e}"),
            )
                .into_response()
        }
        Err(_) => {
            app.metrics.ready.set(0);
            (StatusCode::SERVICE_UNAVAILABLE, "bus did not answer").into_response()
        }
    }
}

/// GET /metrics: the Prometheus text exposition.
pub async fn metrics(State(app): State<AppState>) -> Response {
    (
        [(CONTENT_TYPE, Metrics::content_type())],
        app.metrics.render(),
    )
        .into_response()
}

/// Counts every HTTP request by method and status.
pub async fn count_http(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let method = request.method().as_str().to_owned();
    let response = next.run(request).await;
    app.metrics
        .http_requests
        .with_label_values(&[method.as_str(), response.status().as_str()])
        .inc();
    response
}

/// Keeps the cluster gauges (sessions, readiness) fresh.
pub async fn watch_cluster(app: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        app.limits.forget_idle_buckets();
        if let Ok(Ok(tools)) = tokio::time::timeout(PROBE_TIMEOUT, app.bus.tools()).await {
            let names = tools
                .into_iter()
                .map(|t| {
                    let mirrored = crate::mcp::stateless::mirrored_params(&t.input_schema);
                    (t.name, mirrored)
                })
                .collect();
            *app.tool_names.write().unwrap_or_else(|p| p.into_inner()) = names;
        }
        match tokio::time::timeout(PROBE_TIMEOUT, app.bus.stats()).await {
            Ok(Ok(stats)) => {
                app.metrics.sessions_open.set(stats.sessions as i64);
                app.metrics
                    .ready
                    .set(i64::from(!app.draining.is_cancelled()));
            }
            _ => app.metrics.ready.set(0),
        }
        tokio::select! {
            _ = tick.tick() => {}
            () = app.closing.cancelled() => return,
        }
    }
}

/// Records how many standalone streams of this node each broadcast reached.
pub async fn observe_broadcast_fanout(app: AppState) {
    let Ok(mut subscription) = app.bus.subscribe_broadcasts().await else {
        return;
    };
    let streams = app.metrics.sse_streams_open.with_label_values(&["get"]);
    loop {
        tokio::select! {
            received = subscription.receiver.recv() => match received {
                Ok(_) => app.metrics.broadcast_fanout.observe(streams.get().max(0) as f64),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
            () = app.closing.cancelled() => return,
        }
    }
}
