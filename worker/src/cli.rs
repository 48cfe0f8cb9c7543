//! The worker binary's edge (configuration, logging, signals, the metrics listener), as a
//! library function so that a user's own binary serves their tool sets with the same
//! flags: `worker::cli::run(Toolsets::builtin().with("mine", my_tools)).await`.

use crate::toolsets::Toolsets;
use crate::{Worker, WorkerConfig};
use anyhow::Context;
use axum::extract::State;
use axum::http::{StatusCode, header::CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use clap::Parser;
use mcp_bus::{Bus, RedisBus, RedisBusConfig};
use mcp_telemetry::logs::{LogFormat, init};
use mcp_telemetry::{Metrics, Role};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Serves tools to every gateway on a shared Redis bus.
#[derive(Parser, Debug)]
#[command(name = "mcp-worker", version, about)]
pub struct Args {
    /// Redis URL of the bus shared with the gateways.
    #[arg(long, env = "MCPGW_REDIS_URL")]
    pub redis_url: Option<String>,
    /// How `--redis-url` is read: `single` (one Redis), `sentinel` (`--redis-url` lists
    /// the sentinels, comma separated, e.g. `redis://s1:26379,redis://s2:26379`; the bus
    /// connects to the master they name and follows their failovers) or `cluster` (a
    /// Redis Cluster; `--redis-url` lists seed nodes, comma separated).
    #[arg(long, env = "MCPGW_REDIS_MODE", default_value = "single", value_parser = ["single", "sentinel", "cluster"])]
    pub redis_mode: String,
    /// With `--redis-mode sentinel`: the name of the master the sentinels monitor.
    #[arg(long, env = "MCPGW_REDIS_SENTINEL_MASTER", default_value = "mymaster")]
    pub redis_sentinel_master: String,
    /// Prefix of every Redis key and channel (the gateways' `--redis-prefix`).
    #[arg(long, env = "MCPGW_REDIS_PREFIX", default_value = "mcpgw")]
    pub redis_prefix: String,
    /// Tool sets to serve (repeatable or comma-separated). Default: `demo` in
    /// `mcp-worker`; `none` serves only the worker's upstreams; a custom binary chooses its
    /// own default.
    #[arg(long = "toolset", env = "MCPGW_TOOLSET", value_delimiter = ',')]
    pub toolsets: Vec<String>,
    /// Jobs run at once.
    #[arg(long, env = "MCPGW_WORKER_CONCURRENCY", default_value_t = 1024)]
    pub concurrency: usize,
    /// A job whose worker stopped refreshing it for this long is taken over by another
    /// worker, in milliseconds.
    #[arg(long, env = "MCPGW_JOB_CLAIM_IDLE_MS", default_value_t = 15_000)]
    pub job_claim_idle_ms: u64,
    /// Heartbeat period (registry, running-job refresh), in milliseconds.
    #[arg(long, env = "MCPGW_HEARTBEAT_MS", default_value_t = 5_000)]
    pub heartbeat_ms: u64,
    /// On SIGTERM/SIGINT, seconds running jobs get to finish.
    #[arg(long, env = "MCPGW_DRAIN_TIMEOUT_SECS", default_value_t = 10)]
    pub drain_timeout_secs: u64,
    /// Address for `/metrics`, `/healthz` and `/readyz` (off when not given).
    #[arg(long, env = "MCPGW_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Log format: `text` or `json`.
    #[arg(long, env = "MCPGW_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Key that signs the `requestState` of 2026-07-28 multi round-trip requests; every
    /// worker of a cluster needs the same one. Default: a random secret kept in Redis.
    #[arg(long, env = "MCPGW_REQUEST_STATE_KEY", hide_env_values = true)]
    pub request_state_key: Option<String>,
    /// Upstream MCP servers whose tools this worker serves too (docs/upstreams.md).
    #[command(flatten)]
    pub upstreams: crate::upstream::UpstreamArgs,
    /// Print the tools this worker would serve, as JSON, and exit.
    #[arg(long)]
    pub list_tools: bool,
}

/// Parses the command line and serves until SIGTERM/SIGINT, with the tool sets of
/// `toolsets` selectable by `--toolset`.
pub async fn run(toolsets: Toolsets) -> anyhow::Result<()> {
    run_with(Args::parse(), toolsets).await
}

/// [`run`] with arguments already parsed.
pub async fn run_with(args: Args, toolsets: Toolsets) -> anyhow::Result<()> {
    let tools = toolsets.build(&args.toolsets).map_err(anyhow::Error::msg)?;
    let upstreams = args.upstreams.load()?;
    if args.list_tools {
        let list = serde_json::json!({"tools": tools.descriptors()});
        let text = serde_json::to_string_pretty(&list)?;
        // A closed pipe (`| head`) is not an error worth a panic.
        let _ = writeln!(std::io::stdout(), "{text}");
        return Ok(());
    }
    // Flushes exported spans when main returns.
    let _telemetry = init("mcp-worker", LogFormat::parse(&args.log_format))?;
    let url = args.redis_url.context(
        "--redis-url is required: a worker serves gateways over a shared bus \
         (for one process, run mcp-gateway without --redis-url; it embeds a worker)",
    )?;
    let mut config = RedisBusConfig::new(&url);
    config.prefix = args.redis_prefix;
    config.mode = args.redis_mode.parse().map_err(anyhow::Error::msg)?;
    config.sentinel_master = args.redis_sentinel_master;
    config.job_claim_idle = Duration::from_millis(args.job_claim_idle_ms.max(100));
    config.heartbeat = Duration::from_millis(args.heartbeat_ms.max(50));
    let bus = RedisBus::connect(config)
        .await
        .with_context(|| format!("cannot reach Redis at {url}"))?;
    let worker = Worker::new(
        bus.clone(),
        tools,
        WorkerConfig {
            max_concurrent_jobs: args.concurrency.max(1),
            heartbeat: Duration::from_millis(args.heartbeat_ms.max(50)),
            drain_timeout: Duration::from_secs(args.drain_timeout_secs),
            request_state_key: args.request_state_key.map(String::into_bytes),
        },
    );
    let worker = if upstreams.is_empty() {
        worker
    } else {
        worker.with_upstreams(Arc::new(crate::upstream::Upstreams::new(upstreams)))
    };
    let metrics = Arc::new(Metrics::new(Role::Worker, &worker.id().0));
    metrics.register(mcp_bus::redis::metrics::collectors());
    metrics.register(crate::upstream::metrics::collectors());
    let worker = worker.with_metrics(metrics.clone());
    let stop = CancellationToken::new();
    if let Some(addr) = args.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} for metrics"))?;
        tracing::info!(listen = %listener.local_addr()?, "metrics serving");
        let ops = OpsState {
            upstreams: worker.upstreams(),
            bus,
            metrics,
            stop: stop.clone(),
        };
        let router = axum::Router::new()
            .route("/metrics", axum::routing::get(metrics_text))
            .route("/healthz", axum::routing::get(|| async { "ok" }))
            .route("/readyz", axum::routing::get(readyz))
            .with_state(ops);
        let stopped = stop.clone();
        tokio::spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(stopped.cancelled_owned())
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "metrics listener stopped");
            }
        });
    }
    tracing::info!(worker = %worker.id(), "worker serving jobs");
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("shutting down: finishing running jobs");
            stop.cancel();
        });
    }
    worker.run(stop).await?;
    tracing::info!("worker stopped");
    Ok(())
}

#[derive(Clone)]
struct OpsState {
    upstreams: Option<Arc<crate::upstream::Upstreams>>,
    bus: Arc<RedisBus>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
}

async fn metrics_text(State(ops): State<OpsState>) -> Response {
    (
        [(CONTENT_TYPE, Metrics::content_type())],
        ops.metrics.render(),
    )
        .into_response()
}

/// 200 while the bus answers and the worker is not stopping. The body also says which
/// upstreams answer (`upstream NAME up|down`, a line each): a down upstream does not make
/// the worker unready, its other tools still serve.
async fn readyz(State(ops): State<OpsState>) -> Response {
    let ready = !ops.stop.is_cancelled()
        && matches!(
            tokio::time::timeout(Duration::from_secs(2), ops.bus.health()).await,
            Ok(Ok(()))
        );
    ops.metrics.ready.set(i64::from(ready));
    let mut body = String::from(if ready { "ready" } else { "not ready" });
    for u in ops.upstreams.iter().flat_map(|u| u.status()) {
        body.push_str(&format!(
            "\nupstream {} {}",
            u.name,
            if u.up { "up" } else { "down" }
        ));
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body).into_response()
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = interrupt => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = interrupt.await;
        }
    }
}
