//! `mcp-gateway`: the binary. Its edge (configuration, logs, listener, signals) is
//! [`gateway::cli`], so other binaries can embed a worker with their own tool sets.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    gateway::cli::run(worker::Toolsets::builtin()).await
}
