//! The MCP methods the gateway answers itself, and how everything else becomes a job.
//!
//! - [`lifecycle`]: `initialize` (version negotiation, capabilities, the new session).
//! - [`methods`]: routing a request: answered here (`ping`, `logging/setLevel`, the
//!   lists, resource subscriptions), sent to a worker as a job (`tools/call`,
//!   `resources/read`, `prompts/get`, `completion/complete`), or unknown (`-32601`); and
//!   the client's notifications and responses.
//! - [`stateless`]: revision 2026-07-28: which requests speak it, the checks of its
//!   `_meta` and mirrored headers, `server/discover`.
//! - [`tasks`]: `tasks/get`, `tasks/update`, `tasks/cancel` from a task's log on the bus.

pub mod lifecycle;
pub mod methods;
pub mod stateless;
pub mod tasks;
