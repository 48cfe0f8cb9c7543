//! Which session (and protocol revision) a request belongs to, from its headers.

use crate::http::auth::Principal;
use crate::http::error::HttpError;
use crate::state::AppState;
use axum::http::HeaderMap;
use mcp_bus::{SessionId, SessionRecord};
use mcp_protocol::ProtocolVersion;

/// `Mcp-Session-Id`.
pub const SESSION_HEADER: &str = "mcp-session-id";
/// `MCP-Protocol-Version`.
pub const VERSION_HEADER: &str = "mcp-protocol-version";
/// `Last-Event-ID`.
pub const LAST_EVENT_ID: &str = "last-event-id";

/// A request's session, loaded from the bus.
#[derive(Debug, Clone)]
pub struct SessionContext {
    /// The session's record.
    pub record: SessionRecord,
    /// The negotiated revision.
    pub version: ProtocolVersion,
}

/// The `MCP-Protocol-Version` header: `Ok(None)` if absent, 400 if it names a revision we
/// do not speak. A supported revision other than the negotiated one is accepted: some
/// clients send their default on every request.
pub fn version_header(headers: &HeaderMap) -> Result<Option<ProtocolVersion>, HttpError> {
    let Some(value) = headers.get(VERSION_HEADER) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or("");
    ProtocolVersion::parse(text.trim())
        .map(Some)
        .ok_or_else(|| {
            HttpError::UnsupportedVersion(String::from_utf8_lossy(value.as_bytes()).into_owned())
        })
}

/// The `Mcp-Session-Id` header, if present. An id we could never have issued is unknown.
pub fn session_header(headers: &HeaderMap) -> Result<Option<SessionId>, HttpError> {
    match headers.get(SESSION_HEADER) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .ok()
            .and_then(SessionId::parse)
            .map(Some)
            .ok_or(HttpError::UnknownSession),
    }
}

/// Loads the session a non-initialize request names: 400 without the header, 404 for an
/// unknown or ended session, and 404 for a session another principal created (a session
/// id is no capability: it works only with its creator's credentials).
pub async fn require_session(
    app: &AppState,
    headers: &HeaderMap,
    principal: &Principal,
) -> Result<SessionContext, HttpError> {
    let header_version = version_header(headers)?;
    let id = session_header(headers)?.ok_or(HttpError::MissingSession)?;
    let record = app.bus.session(&id).await?;
    if record.ephemeral || record.principal != principal.0 {
        return Err(HttpError::UnknownSession);
    }
    let version = ProtocolVersion::parse(&record.protocol_version)
        .or(header_version)
        .unwrap_or(ProtocolVersion::LATEST);
    Ok(SessionContext { record, version })
}
