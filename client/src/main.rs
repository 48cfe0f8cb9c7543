//! `mcp-notify`: a notification client for any MCP server that speaks Streamable HTTP,
//! built on the official Rust SDK's client (`rmcp`), so the protocol side is not ours.
//!
//! `mcp-notify --url URL demo` runs the seed's demo sequence (a notification, a broadcast,
//! a long operation with a live progress bar, a background task on the standalone stream,
//! the server status) and a summary of everything received. `mcp-notify --url URL
//! interactive` takes the seed's commands from a prompt, or from a pipe for scripts.
//! `--json` prints one JSON object per line, the summary last. A dropped stream is
//! resumed with `Last-Event-ID` and the resumption is reported.
//!
//! # Layout
//! - `main.rs` (this file): the command line, the runtime, exit codes.
//! - [`connection`]: the rmcp client: headers and auth, the notification handler, calls.
//! - [`reconnect`]: watches rmcp's SSE resumption (an HTTP client wrapper and the retry
//!   policy) so drops and resumptions can be reported.
//! - [`events`]: what was seen ([`events::Event`]) and the running [`events::Summary`].
//! - [`feed`]: the single path every event takes: stamped, counted, printed in order.
//! - [`output`]: text or JSON lines, progress bars, and where lines go.
//! - [`actions`]: the seed's commands as tool calls, with their outcomes.
//! - [`command`]: parsing interactive command lines; the help text.
//! - [`demo`]: the demo sequence.
//! - [`interactive`]: the prompt (or the pipe) and the command loop.
//! - [`failure`]: errors as one sentence and an exit code.

mod actions;
mod command;
mod connection;
mod demo;
mod events;
mod failure;
mod feed;
mod interactive;
mod output;
mod reconnect;

use crate::events::Event;
use crate::failure::{EXIT_COMMAND, EXIT_USAGE, Failure};
use crate::feed::Feed;
use crate::output::{Format, Renderer};
use clap::{Parser, Subcommand};
use http::{HeaderName, HeaderValue};
use std::io::IsTerminal;
use std::process::ExitCode;

/// A notification client for MCP servers over Streamable HTTP.
///
/// Exit status: 0 success, 1 a command or tool failed, 2 bad usage, 3 the server could not
/// be reached or the session was lost, 130 interrupted (Ctrl-C).
#[derive(Debug, Parser)]
#[command(name = "mcp-notify", version)]
struct Cli {
    /// The MCP endpoint.
    #[arg(
        long,
        env = "MCP_NOTIFY_URL",
        default_value = "http://127.0.0.1:8000/mcp",
        global = true
    )]
    url: String,
    /// Machine-readable output: one JSON object per line, the summary last.
    #[arg(long, global = true)]
    json: bool,
    /// An extra request header, `NAME:VALUE` (repeatable).
    #[arg(long = "header", value_name = "NAME:VALUE", value_parser = parse_header, global = true)]
    headers: Vec<(HeaderName, HeaderValue)>,
    /// A bearer token sent as `Authorization: Bearer TOKEN` (prefer the environment
    /// variable: command lines are visible to other users).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "MCP_NOTIFY_BEARER",
        hide_env_values = true,
        global = true
    )]
    bearer: Option<String>,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// The demo sequence: every kind of notification, then a summary.
    Demo(demo::Plan),
    /// Commands from a prompt, or line by line from a pipe (`help` lists them).
    Interactive,
}

/// Headers the transport sets itself and must not be overridden.
const RESERVED: [&str; 4] = [
    "accept",
    "mcp-session-id",
    "mcp-protocol-version",
    "last-event-id",
];

fn parse_header(s: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| format!("expected NAME:VALUE, got {s:?}"))?;
    let name = HeaderName::try_from(name.trim())
        .map_err(|_| format!("{:?} is not a valid header name", name.trim()))?;
    if RESERVED.contains(&name.as_str()) {
        return Err(format!("{name} is set by the client itself"));
    }
    let value = HeaderValue::try_from(value.trim())
        .map_err(|_| format!("the value of {name} is not a valid header value"))?;
    Ok((name, value))
}

/// Checks the URL before anything else, so a typo is a usage error, not a network one.
fn check_url(url: &str) -> Result<(), Failure> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| Failure::Usage(format!("--url {url:?} is not a URL: {e}")))?;
    match parsed.scheme() {
        "http" => Ok(()),
        "https" => Err(Failure::Usage(format!(
            "this build of mcp-notify speaks plain HTTP only and cannot open {url}"
        ))),
        other => Err(Failure::Usage(format!(
            "--url must be an http:// URL, not {other}://"
        ))),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One thread: rmcp hands each notification to the handler in a task of its own, and a
    // single-threaded runtime runs those tasks in the order they were spawned, so
    // notifications are recorded in arrival order and before the result that follows them.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("mcp-notify: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    ExitCode::from(runtime.block_on(run(cli)))
}

async fn run(cli: Cli) -> u8 {
    let format = if cli.json { Format::Json } else { Format::Text };
    if let Err(f) = check_url(&cli.url) {
        eprintln!("mcp-notify: {f}");
        return EXIT_USAGE;
    }
    let feed = match Feed::start(Renderer::new(format, std::io::stderr().is_terminal())) {
        Ok(feed) => feed,
        Err(e) => {
            eprintln!("mcp-notify: cannot start the output thread: {e}");
            return EXIT_COMMAND;
        }
    };
    let options = connection::Options {
        url: cli.url.clone(),
        headers: cli.headers.clone(),
        bearer: cli.bearer.clone(),
    };
    let conn = match connection::connect(&options, &feed).await {
        Ok(conn) => conn,
        Err(f) => return finish(&feed, format, Err(f), false).await,
    };
    let actions = actions::Actions::new(conn, feed.clone());
    let work = async {
        match &cli.mode {
            Mode::Demo(plan) => demo::run(&actions, plan).await,
            Mode::Interactive => match interactive::run(&actions).await {
                // A script learns from the exit status that something in it failed.
                Ok(ended) if ended.scripted && ended.failed > 0 => Err(Failure::Command(format!(
                    "{} command(s) failed",
                    ended.failed
                ))),
                Ok(_) => Ok(()),
                Err(f) => Err(f),
            },
        }
    };
    // Ctrl-C during a command stops it and still ends the session politely (at the prompt,
    // the line editor takes Ctrl-C as a key and only clears the line).
    let outcome = tokio::select! {
        outcome = work => outcome,
        _ = tokio::signal::ctrl_c() => Err(Failure::Interrupted),
    };
    // A lost session cannot be ended politely; anything else is ended with DELETE.
    let connected = !matches!(outcome, Err(Failure::Connection(_)));
    if connected {
        actions.close().await;
    }
    finish(&feed, format, outcome, true).await
}

/// Reports the outcome, prints the summary (always last), and gives the exit status.
async fn finish(feed: &Feed, format: Format, outcome: Result<(), Failure>, started: bool) -> u8 {
    let code = match &outcome {
        Ok(()) => 0,
        Err(f) => f.exit_code(),
    };
    // What ends the session is said here; a command's failure was printed when it happened
    // and only the count of them is repeated, after everything else.
    let mut last_word = None;
    match outcome {
        Err(f @ (Failure::Connection(_) | Failure::Usage(_) | Failure::Interrupted)) => {
            feed.record(Event::Fatal(f.sentence().to_owned()));
        }
        Err(Failure::Command(sentence)) => last_word = Some(sentence),
        Ok(()) => {}
    }
    // Scripts always get the summary line; people only when something was done.
    if started || format == Format::Json {
        feed.print_summary();
    }
    feed.flush().await;
    if let Some(sentence) = last_word {
        eprintln!("mcp-notify: {sentence}");
    }
    code
}
