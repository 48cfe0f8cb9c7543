//! The HTTP edge: what every request passes through before the MCP transport sees it.
//!
//! - [`guard`]: the `Host` / `Origin` allow-lists (DNS-rebinding protection), as a layer.
//! - [`cors`]: CORS for browser clients on allowed origins, as a layer inside the guard.
//! - [`auth`]: bearer tokens (static or JWT), protected resource metadata, 401/403.
//! - [`limits`]: rate, concurrency, stream and session limits (429).
//! - [`negotiate`]: `Accept` and `Content-Type` checks.
//! - [`serve`]: the accept loop: connection cap, header-read and idle timeouts, graceful
//!   shutdown; [`conn`]: one connection's IO (activity, lingering close).
//! - [`error`]: [`HttpError`](error::HttpError), the one mapping of errors to HTTP statuses
//!   and JSON-RPC errors.

pub mod auth;
pub mod conn;
pub mod cors;
pub mod error;
pub mod guard;
pub mod limits;
pub mod negotiate;
pub mod serve;
