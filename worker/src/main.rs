//! `mcp-worker`: runs tools for gateways over a shared bus.

use clap::Parser;
use std::io::Write;
use std::process::ExitCode;

/// Serves tools to every gateway on a shared Redis bus.
#[derive(Parser, Debug)]
#[command(name = "mcp-worker", version, about)]
struct Args {
    /// Redis URL of the bus shared with the gateways.
    #[arg(long, env = "MCPGW_REDIS_URL")]
    redis_url: Option<String>,
    /// Built-in tool sets to serve (repeatable).
    #[arg(
        long = "toolset",
        env = "MCPGW_TOOLSET",
        value_delimiter = ',',
        default_value = "demo"
    )]
    toolsets: Vec<String>,
    /// Print the tools this worker would serve, as JSON, and exit.
    #[arg(long)]
    list_tools: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let tools = match worker::toolsets::build(&args.toolsets) {
        Ok(tools) => tools,
        Err(e) => {
            eprintln!("mcp-worker: {e}");
            return ExitCode::from(2);
        }
    };
    if args.list_tools {
        let list = serde_json::json!({"tools": tools.descriptors()});
        let text = serde_json::to_string_pretty(&list).unwrap_or_default();
        // A closed pipe (`| head`) is not an error worth a panic.
        let _ = writeln!(std::io::stdout(), "{text}");
        return ExitCode::SUCCESS;
    }
    match args.redis_url {
        None => eprintln!(
            "mcp-worker: --redis-url is required: a worker serves gateways over a shared bus. \
             For one process, run mcp-gateway without --redis-url; it embeds a worker."
        ),
        Some(_) => eprintln!(
            "mcp-worker: the Redis bus is not part of this build yet; run mcp-gateway standalone"
        ),
    }
    ExitCode::from(2)
}
