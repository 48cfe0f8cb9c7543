//! The MCP notification gateway: terminates MCP's Streamable HTTP transport and hands
//! tool calls to workers through the bus.
//!
//! # Layout (the request path, outside in)
//! - [`cli`]: the binary's edge as a function, [`cli::run`], so a user's own binary
//!   embeds a worker serving their [`worker::Toolsets`] (see `examples/`).
//! - [`config`]: the command line and its `MCPGW_*` environment twins.
//! - [`app`]: the router and its layers (Host/Origin guard, tracing), and [`serve`], which
//!   wires the bus, the embedded worker and graceful shutdown.
//! - [`http`]: the HTTP edge: DNS-rebinding guard, content negotiation, and the one
//!   mapping of errors to HTTP statuses and JSON-RPC errors.
//! - [`transport`]: Streamable HTTP itself: POST/GET/DELETE on `/mcp`, sessions, SSE
//!   streams, event ids and resumption.
//! - [`mcp`]: the protocol methods the gateway answers itself; everything else is a job.
//! - [`policy`]: who may see and use what (the policy file), quotas shared by the
//!   cluster, and the audit record of every call; asked by [`mcp`] and [`transport`].
//! - [`console`]: the console page at `/`, a browser MCP client of `/mcp` (embedded).
//! - [`ops`]: what operators see: `/readyz`, `/metrics`, HTTP metrics, cluster gauges.
//! - [`state`]: what handlers share: the bus, the configuration, the shutdown signals.
//!
//! Every stream is fed from the bus, never from local state another node could not
//! rebuild: a client may send each request, and resume each stream, on any gateway.

pub mod app;
pub mod cli;
pub mod config;
pub mod console;
pub mod http;
pub mod mcp;
pub mod ops;
pub mod policy;
pub mod state;
pub mod transport;

pub use app::{GatewayError, serve, serve_with};
pub use config::Config;
