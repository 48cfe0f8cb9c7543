//! The Streamable HTTP transport: the session protocol (2025-03-26 … 2025-11-25) and the
//! stateless one (2026-07-28) on the same endpoint.
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
//! - [`stateless`]: POST /mcp for 2026-07-28 requests (chosen per request by `_meta`).
//! - [`listen`]: `subscriptions/listen` streams (2026-07-28).

pub mod delete;
pub mod event_id;
pub mod get;
pub mod listen;
pub mod post;
pub mod pump;
pub mod respond;
pub mod session;
pub mod stateless;
