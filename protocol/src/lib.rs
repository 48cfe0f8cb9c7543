//! Wire types of JSON-RPC 2.0 and the Model Context Protocol, shared by the gateway and
//! the workers.
//!
//! # Layout
//! - [`jsonrpc`]: classifying an incoming JSON value as a request, notification or
//!   response, the standard error codes, and building responses.
//! - [`version`]: the protocol revisions this project speaks and what differs between them.
//! - [`logging`]: the syslog-style levels of `notifications/message` and their order.
//! - [`tool`]: the `Tool` descriptor of `tools/list` and the `CallToolResult` of `tools/call`.
//! - [`catalog`]: resources, resource templates and prompts, and URI-template matching.
//! - [`stateless`]: what revision 2026-07-28 adds: request `_meta`, `resultType` and cache
//!   hints on results, the Base64 sentinel of mirrored headers.
//! - [`tasks`]: the tasks extension of 2026-07-28: the task log's events and what
//!   `tasks/get` makes of them.
//!
//! Nothing here does I/O; parsing and behaviour live in the crates that use these types.

pub mod catalog;
pub mod jsonrpc;
pub mod logging;
pub mod stateless;
pub mod tasks;
pub mod tool;
pub mod version;

pub use catalog::{Prompt, PromptArgument, Resource, ResourceTemplate};
pub use jsonrpc::{ErrorObject, Message, RequestId};
pub use logging::LogLevel;
pub use tool::{CallToolResult, Tool};
pub use version::ProtocolVersion;
