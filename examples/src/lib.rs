//! A library user's own tools, served by the cluster without editing this repository.
//!
//! # Layout
//! - [`text_tools`]: the user's [`ToolSet`] (one tool, `word_count`, that logs and
//!   reports progress like any built-in tool).
//! - [`toolsets`]: the registry both binaries use: the built-in sets plus `text`, which is
//!   the default.
//! - `src/bin/example-worker.rs`: a worker binary (`worker::cli::run`) on a Redis bus,
//!   with every `mcp-worker` flag.
//! - `src/bin/example-gateway.rs`: a gateway binary (`gateway::cli::run`) whose embedded
//!   worker serves the same sets: standalone with no Redis, or with `--embedded-worker`.
//! - `tests/examples.rs`: runs both binaries and calls `word_count` through them.

use schemars::JsonSchema;
use serde::Deserialize;
use worker::{CallToolResult, LogLevel, ToolContext, ToolSet, Toolsets};

/// The arguments of `word_count`; its input schema comes from this type.
#[derive(Deserialize, JsonSchema)]
pub struct WordCount {
    /// The text whose words are counted.
    pub text: String,
}

/// The user's tool set: `word_count`.
pub fn text_tools() -> ToolSet {
    ToolSet::new().tool(
        "word_count",
        "Count the words of a text",
        |ctx: ToolContext, args: WordCount| async move {
            let words = args.text.split_whitespace().count();
            ctx.log(LogLevel::Info, "word_count", format!("{words} words"))
                .await?;
            ctx.progress(1.0, Some(1.0), Some("counted")).await?;
            Ok(CallToolResult::text(format!("{words} words")))
        },
    )
}

/// The built-in tool sets plus `text` ([`text_tools`]), `text` served by default.
pub fn toolsets() -> Toolsets {
    Toolsets::builtin()
        .with("text", text_tools)
        .default_to(&["text"])
}
