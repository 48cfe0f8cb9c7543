//! `mcp-worker`: runs the built-in tools for every gateway on a shared Redis bus (the
//! edge itself is [`worker::cli`], so other binaries can serve their own tool sets).

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    worker::cli::run(worker::toolsets::Toolsets::builtin()).await
}
