//! The Streamable HTTP transport of the session protocol (2025-03-26 … 2025-11-25).
//!
//! - [`post`]: POST /mcp: initialize, requests (JSON or SSE answers), notifications and
//!   responses (202), batches where the revision allows them.
//! - [`get`]: GET /mcp: the standalone stream, and resumption of any stream with
//!   `Last-Event-ID`.
//! - [`delete`]: DELETE /mcp: ends the session everywhere.
//! - [`session`]: which session and revision a request belongs to.
//! - [`pump`]: the tasks that turn bus events into a stream's frames.
//! - [`respond`]: frames to SSE or JSON responses.
//! - [`event_id`]: the SSE event-id codec.

pub mod delete;
pub mod event_id;
pub mod get;
pub mod post;
pub mod pump;
pub mod respond;
pub mod session;
