//! The tool runtime: how tools are written, and how a worker runs them for clients it
//! never sees directly.
//!
//! A tool is a typed async function. Its argument struct derives `serde::Deserialize` and
//! `schemars::JsonSchema`; the JSON Schema clients see in `tools/list` comes from that type,
//! and arguments are validated against it before the function runs:
//!
//! ```
//! use schemars::JsonSchema;
//! use serde::Deserialize;
//! use worker::{CallToolResult, ToolContext, ToolSet};
//!
//! #[derive(Deserialize, JsonSchema)]
//! struct Greet {
//!     /// Who to greet.
//!     name: String,
//! }
//!
//! let tools = ToolSet::new().tool("greet", "Say hello", |ctx: ToolContext, args: Greet| async move {
//!     ctx.progress(1.0, Some(1.0), Some("greeting")).await?;
//!     Ok(CallToolResult::text(format!("Hello, {}!", args.name)))
//! });
//! assert_eq!(tools.descriptors()[0].name, "greet");
//! ```
//!
//! # Layout
//! - [`tool`]: [`ToolSet`] (registration, schemas, argument validation) and [`ToolError`].
//! - [`catalog`]: resources, resource templates, prompts and completions, registered on
//!   the same [`ToolSet`].
//! - [`context`]: [`ToolContext`], what a running tool can do (progress, logging, the
//!   session's standalone stream, broadcasts, requests to the client, cancellation), and
//!   [`SessionHandle`] for work that outlives the call.
//! - [`input`]: [`InputRequest`], input a tool asks the client for, once for both
//!   protocol generations (server-to-client requests, or multi round-trip requests with
//!   an HMAC-protected `requestState`).
//! - `outbox`: a call's messages on its request stream, published in order and batched
//!   while a publish is in flight.
//! - [`runtime`]: [`Worker`], the job loop: takes jobs from the bus, runs them under their
//!   deadline and cancellation, publishes their results, routes control messages.
//! - [`toolsets`]: [`Toolsets`], the open registry of tool sets by name: the built-in
//!   ones (`demo`, `conformance`) and a library user's own.
//! - [`upstream`]: upstream MCP servers (Streamable HTTP or stdio) whose tools the
//!   worker serves beside its own, their messages routed through the bus.
//! - [`cli`]: the `mcp-worker` binary's edge as a function, so a user's own binary serves
//!   their [`Toolsets`] with the same flags (see `examples/`).

pub mod catalog;
pub mod cli;
pub mod context;
pub mod input;
mod outbox;
pub mod runtime;
pub mod tool;
pub mod toolsets;
pub mod upstream;

pub use catalog::{CompletionRequest, ResourceContents, user_text};
pub use context::{SessionHandle, ToolContext, WorkLog};
pub use input::InputRequest;
pub use mcp_protocol::{CallToolResult, LogLevel, Resource, ResourceTemplate};
pub use runtime::{Worker, WorkerConfig};
pub use tool::{TaskSupport, ToolError, ToolSet};
pub use toolsets::Toolsets;
