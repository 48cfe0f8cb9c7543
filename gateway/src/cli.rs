//! The gateway binary's edge (configuration, logs and traces, the listener, signals), as a
//! library function so that a user's own binary embeds a worker serving their tool sets:
//! `gateway::cli::run(Toolsets::builtin().with("mine", my_tools)).await`.

use crate::Config;
use anyhow::Context;
use clap::Parser;
use mcp_telemetry::logs::{LogFormat, init};
use worker::Toolsets;

/// Parses the command line and serves until SIGTERM or SIGINT; the embedded worker's
/// `--toolset` names are resolved in `toolsets`.
pub async fn run(toolsets: Toolsets) -> anyhow::Result<()> {
    run_with(Config::parse(), toolsets).await
}

/// [`run`] with the configuration already parsed.
pub async fn run_with(config: Config, toolsets: Toolsets) -> anyhow::Result<()> {
    // Flushes exported spans when this returns.
    let _telemetry = init("mcp-gateway", LogFormat::parse(&config.log_format))?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    crate::serve_with(config, toolsets, listener, shutdown_signal()).await?;
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
