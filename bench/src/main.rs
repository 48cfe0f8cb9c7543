//! `mcp-bench`: a load tool that speaks raw MCP Streamable HTTP.
//!
//! Workloads: `calls` (tool calls with progress), `fanout` (broadcasts to many open GET
//! streams), `sessions` (session setup rate), `resume` (dropped and resumed streams).
//! Each run prints one human line and one JSON line on stdout.

mod calls;
mod fanout;
mod http;
mod mcp;
mod resume;
mod sessions;
mod stats;

use anyhow::{Result, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};
use std::sync::Arc;

#[derive(Parser, Debug)]
#[command(
    name = "mcp-bench",
    version,
    about = "Load generator for MCP Streamable HTTP servers"
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    workload: Workload,
}

#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Server endpoint(s); sessions are spread over them round-robin (repeatable).
    #[arg(
        long = "url",
        global = true,
        default_value = "http://127.0.0.1:8000/mcp"
    )]
    pub urls: Vec<String>,
    /// Protocol revision asked for at initialize (the server's answer is used afterwards).
    #[arg(long, global = true, default_value = "2025-11-25")]
    pub protocol_version: String,
    /// Loopback source addresses to spread connections over (127.0.0.1..=127.0.0.N);
    /// 0 = as many as the workload needs (one per 20,000 connections).
    #[arg(long, global = true, default_value_t = 0)]
    pub src_ips: usize,
    /// A server process to sample CPU time (and, for `gateway`, RSS) of, as KIND=PID
    /// (repeatable; kinds e.g. gateway, worker, redis, server).
    #[arg(long = "pid", global = true)]
    pub pids: Vec<String>,
    /// A free-form label copied into the JSON line (e.g. the set-up's name).
    #[arg(long, global = true, default_value = "")]
    pub label: String,
    /// Runtime worker threads; 0 = the CPUs this process may run on.
    #[arg(long, global = true, default_value_t = 0)]
    pub threads: usize,
    /// Speak HTTP/2 (prior-knowledge h2c) over this many connections per server, each
    /// client's requests being streams of them, as behind an HTTP/2 proxy; 0 = HTTP/1.1
    /// with a connection per client. The server allows 200 streams per connection.
    #[arg(long, global = true, default_value_t = 0)]
    pub http2_connections: usize,
    /// Connections being set up at once (fanout, setup phases).
    #[arg(long, global = true, default_value_t = 128)]
    pub connect_concurrency: usize,
}

#[derive(Subcommand, Debug)]
enum Workload {
    /// C clients loop tools/call long_running_operation with a progress token.
    Calls(calls::CallsArgs),
    /// N sessions hold GET streams; a publisher calls `broadcast` K times.
    Fanout(fanout::FanoutArgs),
    /// initialize + initialized + GET open, as fast as C workers can.
    Sessions(sessions::SessionsArgs),
    /// Clients drop a tool call's stream midway and resume it with Last-Event-ID.
    Resume(resume::ResumeArgs),
}

/// What every workload gets.
pub struct Ctx {
    pub common: Common,
    pub targets: Vec<http::Target>,
    pub net: http::Net,
    pub procs: stats::Procs,
}

impl Ctx {
    pub fn target(&self, i: usize) -> &http::Target {
        &self.targets[i % self.targets.len()]
    }
}

/// Open streams per HTTP/2 connection the fan-out may hold: below the server's 200 concurrent
/// streams, leaving room for the requests that set sessions up and publish.
const H2_STREAMS_PER_CONNECTION: usize = 150;

fn raise_nofile() -> u64 {
    // Root may raise the hard limit too; anyone may raise the soft limit to the hard one.
    let _ = rlimit::setrlimit(rlimit::Resource::NOFILE, 1_048_576, 1_048_576);
    rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0)
}

/// The 1-minute load average (other work on the machine skews every figure).
fn loadavg() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn allowed_cpus() -> usize {
    // SAFETY: a zeroed cpu_set_t is valid; sched_getaffinity writes at most its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0 {
            let n = libc::CPU_COUNT(&set);
            if n > 0 {
                return n as usize;
            }
        }
    }
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let nofile = raise_nofile();
    let threads = if cli.common.threads == 0 {
        allowed_cpus()
    } else {
        cli.common.threads
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        if cli.common.urls.is_empty() {
            bail!("at least one --url");
        }
        let targets = cli
            .common
            .urls
            .iter()
            .map(|u| http::Target::parse(u))
            .collect::<Result<Vec<_>>>()?;
        let h2 = cli.common.http2_connections * targets.len();
        if let Workload::Fanout(a) = &cli.workload
            && h2 > 0
            && a.sessions.div_ceil(h2) > H2_STREAMS_PER_CONNECTION
        {
            // Open GET streams hold their slots: past the server's limit per connection,
            // the next request on a full connection waits for a slot that never frees.
            bail!(
                "{} streams over {h2} HTTP/2 connections is more than {H2_STREAMS_PER_CONNECTION} per connection (the server allows 200 at once, and requests need room beside the streams): raise --http2-connections",
                a.sessions
            );
        }
        let needed_conns = match &cli.workload {
            _ if h2 > 0 => h2 + 16,
            Workload::Fanout(a) => a.sessions + 16,
            Workload::Calls(a) => a.clients + 16,
            Workload::Sessions(a) => a.clients * 2 + 16,
            Workload::Resume(a) => a.clients * 2 + 16,
        };
        if (nofile as usize) < needed_conns + 64 {
            eprintln!("warning: RLIMIT_NOFILE is {nofile}, the run needs ~{needed_conns} sockets");
        }
        let src_ips = if cli.common.src_ips == 0 {
            needed_conns.div_ceil(20_000).max(1)
        } else {
            cli.common.src_ips
        };
        let ctx = Arc::new(Ctx {
            procs: stats::Procs::parse(&cli.common.pids)?,
            net: http::Net::new(src_ips).with_http2(cli.common.http2_connections),
            targets,
            common: cli.common.clone(),
        });
        let load_start = loadavg();
        let (name, human, mut value) = match cli.workload {
            Workload::Calls(a) => ("calls", calls::run(ctx.clone(), a).await?),
            Workload::Fanout(a) => ("fanout", fanout::run(ctx.clone(), a).await?),
            Workload::Sessions(a) => ("sessions", sessions::run(ctx.clone(), a).await?),
            Workload::Resume(a) => ("resume", resume::run(ctx.clone(), a).await?),
        }
        .flatten3();
        let header = json!({
            "workload": name,
            "label": ctx.common.label,
            "urls": ctx.common.urls,
            "protocol_version": ctx.common.protocol_version,
            "bench_threads": threads,
            "src_ips": src_ips,
            "http2_connections": ctx.common.http2_connections,
            "loadavg_start": load_start,
            "loadavg_end": loadavg(),
            "unix_ms": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0),
        });
        if let (Value::Object(h), Value::Object(v)) = (header, &mut value) {
            for (k, x) in h {
                v.insert(k, x);
            }
        }
        let label = if ctx.common.label.is_empty() { String::new() } else { format!("[{}] ", ctx.common.label) };
        println!("{label}{name}: {human}");
        println!("{}", serde_json::to_string(&value)?);
        Ok(())
    })?;
    // Open connections and streams are abandoned, not drained.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    Ok(())
}

trait Flatten3<A, B, C> {
    fn flatten3(self) -> (A, B, C);
}

impl<B, C> Flatten3<&'static str, B, C> for (&'static str, (B, C)) {
    fn flatten3(self) -> (&'static str, B, C) {
        (self.0, self.1.0, self.1.1)
    }
}
