//! Errors of bus operations.

/// Why a bus operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The session does not exist (never created, expired, or deleted).
    #[error("session not found")]
    SessionNotFound,
    /// The job queue is full; the caller should answer "try again later".
    #[error("the job queue is full")]
    Overloaded,
    /// The backing store cannot be reached; nothing was done.
    #[error("the bus is unavailable: {0}")]
    Unavailable(String),
    /// The bus is shutting down.
    #[error("the bus is closed")]
    Closed,
    /// A stored message could not be decoded.
    #[error("corrupt bus message: {0}")]
    Corrupt(String),
}
