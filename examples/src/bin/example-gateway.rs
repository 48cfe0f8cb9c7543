//! A gateway binary whose embedded worker serves the user's own tools, with every
//! `mcp-gateway` flag: standalone (no Redis) by default, or `--redis-url` with
//! `--embedded-worker`.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    gateway::cli::run(mcp_examples::toolsets()).await
}
