//! `mcp-gateway`: the binary edge. Parses the configuration, sets up logs and traces,
//! binds the listener and runs until SIGTERM or SIGINT.

use anyhow::Context;
use clap::Parser;
use gateway::Config;
use mcp_telemetry::logs::{LogFormat, init};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    // Flushes exported spans when main returns.
    let _telemetry = init("mcp-gateway", LogFormat::parse(&config.log_format))?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    gateway::serve(config, listener, shutdown_signal()).await?;
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
