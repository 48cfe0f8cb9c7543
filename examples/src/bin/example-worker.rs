//! A worker binary serving the user's own tools beside the built-in ones, with every
//! `mcp-worker` flag (`--redis-url`, `--toolset text,demo`, ...).

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    worker::cli::run(mcp_examples::toolsets()).await
}
