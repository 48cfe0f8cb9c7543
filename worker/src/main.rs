//! `mcp-worker`: runs tools for every gateway on a shared Redis bus. The binary edge:
//! configuration, logging, signals.

use anyhow::Context;
use clap::Parser;
use mcp_bus::{RedisBus, RedisBusConfig};
use std::io::Write;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;
use worker::{Worker, WorkerConfig};

/// Serves tools to every gateway on a shared Redis bus.
#[derive(Parser, Debug)]
#[command(name = "mcp-worker", version, about)]
struct Args {
    /// Redis URL of the bus shared with the gateways.
    #[arg(long, env = "MCPGW_REDIS_URL")]
    redis_url: Option<String>,
    /// Prefix of every Redis key and channel (the gateways' `--redis-prefix`).
    #[arg(long, env = "MCPGW_REDIS_PREFIX", default_value = "mcpgw")]
    redis_prefix: String,
    /// Built-in tool sets to serve (repeatable or comma-separated).
    #[arg(long = "toolset", env = "MCPGW_TOOLSET", value_delimiter = ',', default_value = "demo")]
    toolsets: Vec<String>,
    /// Jobs run at once.
    #[arg(long, env = "MCPGW_WORKER_CONCURRENCY", default_value_t = 1024)]
    concurrency: usize,
    /// A job whose worker stopped refreshing it for this long is taken over by another
    /// worker, in milliseconds.
    #[arg(long, env = "MCPGW_JOB_CLAIM_IDLE_MS", default_value_t = 15_000)]
    job_claim_idle_ms: u64,
    /// Heartbeat period (registry, running-job refresh), in milliseconds.
    #[arg(long, env = "MCPGW_HEARTBEAT_MS", default_value_t = 5_000)]
    heartbeat_ms: u64,
    /// On SIGTERM/SIGINT, seconds running jobs get to finish.
    #[arg(long, env = "MCPGW_DRAIN_TIMEOUT_SECS", default_value_t = 10)]
    drain_timeout_secs: u64,
    /// Log format: `text` or `json`.
    #[arg(long, env = "MCPGW_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// Print the tools this worker would serve, as JSON, and exit.
    #[arg(long)]
    list_tools: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let tools = worker::toolsets::build(&args.toolsets).map_err(anyhow::Error::msg)?;
    if args.list_tools {
        let list = serde_json::json!({"tools": tools.descriptors()});
        let text = serde_json::to_string_pretty(&list)?;
        // A closed pipe (`| head`) is not an error worth a panic.
        let _ = writeln!(std::io::stdout(), "{text}");
        return Ok(());
    }
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if args.log_format == "json" {
        logs.json().init();
    } else {
        logs.init();
    }
    let url = args.redis_url.context(
        "--redis-url is required: a worker serves gateways over a shared bus \
         (for one process, run mcp-gateway without --redis-url; it embeds a worker)",
    )?;
    let mut config = RedisBusConfig::new(&url);
    config.prefix = args.redis_prefix;
    config.job_claim_idle = Duration::from_millis(args.job_claim_idle_ms.max(100));
    config.heartbeat = Duration::from_millis(args.heartbeat_ms.max(50));
    let bus = RedisBus::connect(config)
        .await
        .with_context(|| format!("cannot reach Redis at {url}"))?;
    let worker = Worker::new(
        bus,
        tools,
        WorkerConfig {
            max_concurrent_jobs: args.concurrency.max(1),
            heartbeat: Duration::from_millis(args.heartbeat_ms.max(50)),
            drain_timeout: Duration::from_secs(args.drain_timeout_secs),
        },
    );
    tracing::info!(worker = %worker.id(), "worker serving jobs");
    let stop = CancellationToken::new();
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
