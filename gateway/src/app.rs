//! Wiring: the router and its layers, the bus, the embedded worker, graceful shutdown.

use crate::config::Config;
use crate::console;
use crate::http::auth::{self, Authenticator};
use crate::http::cors::{self, Cors};
use crate::http::guard::{OriginPolicy, check_origin};
use crate::http::limits::{self, Limits};
use crate::http::serve::{self, EdgeConfig, EdgeMetrics};
use crate::ops;
use crate::state::AppState;
use crate::transport;
use axum::Router;
use axum::routing::get;
use mcp_bus::{Bus, MemoryBus, MemoryBusConfig, RedisBus, RedisBusConfig};
use mcp_telemetry::{Metrics, Role};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::trace::TraceLayer;
use worker::{Toolsets, Worker, WorkerConfig};

/// Why the gateway could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// A configuration value is wrong.
    #[error("configuration: {0}")]
    Config(String),
    /// The bus failed at start-up.
    #[error("bus: {0}")]
    Bus(#[from] mcp_bus::BusError),
    /// The listener failed.
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
}

/// The router: `/mcp` behind the Host/Origin guard; the console page at `/`; `/healthz`, `/readyz` and
/// `/metrics` for operators; HTTP metrics and tracing around everything.
pub fn router(state: AppState) -> Router {
    let policy = Arc::new(OriginPolicy::from_config(&state.config));
    let cors_rules = Arc::new(Cors::new(policy.clone()));
    // Layers run outside in: the Origin/Host guard, CORS for allowed browser origins
    // (preflights end there, before authentication: they carry no credentials),
    // authentication, then the rate limit (which keys on the principal).
    let mcp = Router::new()
        .route(
            "/mcp",
            axum::routing::post(transport::post::post)
                .get(transport::get::get)
                .delete(transport::delete::delete),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limits::rate_limit,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_auth,
        ))
        .layer(axum::middleware::from_fn_with_state(
            cors_rules.clone(),
            cors::cors,
        ))
        .layer(axum::middleware::from_fn_with_state(
            policy.clone(),
            check_origin,
        ))
        .with_state(state.clone());
    // The console page is static: the Host/Origin guard, no authentication (the page asks
    // for a token and sends it only to /mcp).
    let console = if state.config.no_console {
        Router::new()
    } else {
        console::routes().layer(axum::middleware::from_fn_with_state(policy, check_origin))
    };
    let metadata = Router::new()
        .route(
            "/.well-known/oauth-protected-resource",
            get(auth::protected_resource_metadata),
        )
        .route(
            "/.well-known/oauth-protected-resource/mcp",
            get(auth::protected_resource_metadata),
        )
        // A browser client on an allowed origin discovers the authorization server here.
        .layer(axum::middleware::from_fn_with_state(cors_rules, cors::cors))
        .with_state(state.auth.clone());
    let ops = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .with_state(state.clone());
    Router::new()
        .merge(mcp)
        .merge(console)
        .merge(metadata)
        .merge(ops)
        .layer(axum::middleware::from_fn_with_state(state, ops::count_http))
        .layer(TraceLayer::new_for_http())
}

/// Serves the gateway on `listener` until `shutdown` resolves, then drains: standalone
/// streams close at once (clients reconnect elsewhere), request streams get the drain
/// timeout to finish, then everything closes.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), GatewayError> {
    serve_with(config, Toolsets::builtin(), listener, shutdown).await
}

/// [`serve`], with the embedded worker's `--toolset` names resolved in `toolsets` (a
/// library user's own tool sets beside, or instead of, the built-in ones).
pub async fn serve_with(
    config: Config,
    toolsets: Toolsets,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), GatewayError> {
    let tools = toolsets
        .build(&config.toolsets)
        .map_err(GatewayError::Config)?;
    let upstreams = config
        .upstreams
        .load()
        .map_err(|e| GatewayError::Config(e.to_string()))?;
    let authenticator = Arc::new(
        Authenticator::from_config(&config)
            .map_err(|e| GatewayError::Config(format!("authentication: {e}")))?,
    );
    if config.jwt_jwks_url.is_some() {
        authenticator
            .refresh_keys()
            .await
            .map_err(|e| GatewayError::Config(format!("authentication: {e}")))?;
        tokio::spawn(authenticator.clone().keep_keys_fresh());
    }
    let node = format!("g-{:08x}", rand::random::<u32>());
    let metrics = Arc::new(Metrics::new(Role::Gateway, &node));
    let bus: Arc<dyn Bus> = match &config.redis_url {
        None => MemoryBus::new(MemoryBusConfig {
            session_log_len: config.event_log_len.max(1),
            broadcast_log_len: config.event_log_len.max(1),
            live_queue_len: config.stream_queue_len.max(1),
            job_queue_len: config.job_queue_len.max(1),
            session_idle_ttl: config.session_idle_ttl(),
        }),
        Some(url) => {
            let mut redis = RedisBusConfig::new(url);
            redis.prefix = config.redis_prefix.clone();
            redis.mode = config
                .redis_mode
                .parse()
                .map_err(|e: String| GatewayError::Config(e))?;
            redis.sentinel_master = config.redis_sentinel_master.clone();
            redis.session_log_len = config.event_log_len.max(1);
            redis.broadcast_log_len = config.event_log_len.max(1);
            redis.live_queue_len = config.stream_queue_len.max(1);
            redis.job_queue_len = config.job_queue_len.max(1);
            redis.session_idle_ttl = Some(config.session_idle_ttl());
            redis.gateway_id = Some(node.clone());
            metrics.register(mcp_bus::redis::metrics::collectors());
            RedisBus::connect(redis).await?
        }
    };

    // Standalone, the gateway runs the tools itself; with Redis, workers do, unless asked.
    let worker_stop = CancellationToken::new();
    let worker_task = if config.redis_url.is_none() || config.embedded_worker {
        let worker = Worker::new(
            bus.clone(),
            tools,
            WorkerConfig {
                max_concurrent_jobs: config.worker_concurrency.max(1),
                drain_timeout: config.drain_timeout(),
                ..WorkerConfig::default()
            },
        )
        .with_metrics(metrics.clone());
        let worker = if upstreams.is_empty() {
            worker
        } else {
            metrics.register(worker::upstream::metrics::collectors());
            worker.with_upstreams(Arc::new(worker::upstream::Upstreams::new(upstreams)))
        };
        Some(worker.start(worker_stop.clone()).await?)
    } else {
        None
    };

    let limits = Arc::new(Limits::from_config(&config));
    // A malformed policy file stops the start here, with the line or field at fault.
    metrics.register(crate::policy::metrics::collectors());
    let policies = Arc::new(
        crate::policy::Policies::from_config(&config, &node, bus.clone())
            .await
            .map_err(GatewayError::Config)?,
    );
    tokio::spawn(
        policies
            .clone()
            .watch(bus.clone(), Duration::from_millis(config.policy_poll_ms)),
    );
    let state = AppState {
        bus,
        config: Arc::new(config),
        metrics,
        auth: authenticator,
        limits,
        policies,
        tool_names: Default::default(),
        draining: CancellationToken::new(),
        closing: CancellationToken::new(),
    };
    tokio::spawn(ops::watch_cluster(state.clone()));
    tokio::spawn(ops::observe_broadcast_fanout(state.clone()));
    {
        let state = state.clone();
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!(drain_timeout = ?state.config.drain_timeout(), "shutting down: draining streams");
            state.draining.cancel();
            state.metrics.ready.set(0);
            tokio::time::sleep(state.config.drain_timeout()).await;
            state.closing.cancel();
        });
    }

    let bus_kind = if state.config.redis_url.is_some() {
        "redis"
    } else {
        "memory"
    };
    tracing::info!(listen = %listener.local_addr()?, bus = bus_kind, "gateway serving /mcp");
    let edge = EdgeConfig {
        header_read_timeout: serve::secs(state.config.header_read_timeout_secs),
        idle_timeout: serve::secs(state.config.idle_timeout_secs),
        max_connections: state.config.max_connections,
    };
    let (edge_metrics, collectors) = EdgeMetrics::new();
    state.metrics.register(collectors);
    let draining = state.draining.clone();
    let closing = state.closing.clone();
    let server = serve::serve(listener, router(state), edge, edge_metrics, draining);
    tokio::select! {
        () = server => {}
        // Connections that outlive the drain (a plain-JSON call still waiting for its
        // worker) do not hold the process past it.
        () = async { closing.cancelled().await; tokio::time::sleep(Duration::from_secs(1)).await } => {
            tracing::warn!("connections still open after the drain timeout; closing them");
        }
    }
    worker_stop.cancel();
    if let Some(task) = worker_task {
        match task.await {
            Ok(Err(e)) => tracing::warn!(error = %e, "embedded worker stopped with an error"),
            Err(e) => tracing::warn!(error = %e, "embedded worker panicked"),
            Ok(Ok(())) => {}
        }
    }
    tracing::info!("gateway stopped");
    Ok(())
}
