//! Every error a client can see, mapped to one HTTP status and one JSON-RPC error, here
//! and nowhere else.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use mcp_protocol::ErrorObject;
use mcp_protocol::jsonrpc::{self, INVALID_REQUEST, PARSE_ERROR, SERVER_ERROR, SESSION_NOT_FOUND};

/// An error answered before (or instead of) any JSON-RPC processing.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The `Accept` header rules out every form we could answer in.
    #[error("Not Acceptable: {0}")]
    NotAcceptable(&'static str),
    /// The body is not `application/json`.
    #[error("Unsupported Media Type: the body must be application/json")]
    UnsupportedMediaType,
    /// The body is larger than the configured limit.
    #[error("Payload Too Large: the body exceeds {0} bytes")]
    PayloadTooLarge(usize),
    /// The body is not JSON.
    #[error("Parse error: {0}")]
    Parse(String),
    /// The body is JSON but not an acceptable JSON-RPC message (or batch).
    #[error("Invalid Request: {0}")]
    InvalidRequest(String),
    /// A non-initialize request without `Mcp-Session-Id`.
    #[error("Bad Request: Mcp-Session-Id header is required")]
    MissingSession,
    /// An `Mcp-Session-Id` that names no live session.
    #[error("Session not found")]
    UnknownSession,
    /// An `MCP-Protocol-Version` we do not speak.
    #[error(
        "Bad Request: unsupported MCP-Protocol-Version {0:?} (supported: 2025-03-26, 2025-06-18, 2025-11-25)"
    )]
    UnsupportedVersion(String),
    /// A malformed `Last-Event-ID`.
    #[error("Bad Request: malformed Last-Event-ID")]
    BadLastEventId,
    /// The events after a `Last-Event-ID` are no longer retained.
    #[error(
        "Conflict: events after this Last-Event-ID are no longer retained; open a new stream without Last-Event-ID"
    )]
    CursorTrimmed,
    /// `Origin` or `Host` outside the allow-list.
    #[error("Forbidden: {0}")]
    Forbidden(String),
    /// GET or DELETE on a stateless gateway.
    #[error("Method Not Allowed: {0}")]
    MethodNotAllowed(&'static str),
    /// A limit refused the request.
    #[error("Too Many Requests: {0}")]
    TooManyRequests(String),
    /// A quota of the policy refused the request; retry after this many seconds.
    #[error("Too Many Requests: {message}")]
    QuotaExceeded {
        /// What the client is told.
        message: String,
        /// The `Retry-After` value, in seconds.
        retry_after: u64,
    },
    /// The bus cannot take the request now (overloaded, unreachable, draining).
    #[error("Service Unavailable: {0}")]
    Unavailable(String),
}

impl HttpError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Parse(_)
            | Self::InvalidRequest(_)
            | Self::MissingSession
            | Self::UnsupportedVersion(_)
            | Self::BadLastEventId => StatusCode::BAD_REQUEST,
            Self::UnknownSession => StatusCode::NOT_FOUND,
            Self::CursorTrimmed => StatusCode::CONFLICT,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::TooManyRequests(_) | Self::QuotaExceeded { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// The JSON-RPC error code of the body.
    pub fn code(&self) -> i64 {
        match self {
            Self::Parse(_) => PARSE_ERROR,
            Self::UnknownSession => SESSION_NOT_FOUND,
            Self::Unavailable(_)
            | Self::Forbidden(_)
            | Self::TooManyRequests(_)
            | Self::QuotaExceeded { .. } => SERVER_ERROR,
            _ => INVALID_REQUEST,
        }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = jsonrpc::response_err(None, ErrorObject::new(self.code(), self.to_string()));
        let mut response = (status, axum::Json(body)).into_response();
        if let Self::QuotaExceeded { retry_after, .. } = &self
            && let Ok(value) = retry_after.to_string().parse()
        {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, value);
        }
        if let Self::MethodNotAllowed(allow) = self
            && let Ok(value) = allow.parse()
        {
            response
                .headers_mut()
                .insert(axum::http::header::ALLOW, value);
        }
        response
    }
}

impl From<mcp_bus::BusError> for HttpError {
    fn from(e: mcp_bus::BusError) -> Self {
        match e {
            mcp_bus::BusError::SessionNotFound => Self::UnknownSession,
            other => Self::Unavailable(other.to_string()),
        }
    }
}
