//! DELETE /mcp: ends the session on every gateway; its jobs are cancelled and its log goes.

use crate::http::auth::Principal;
use crate::http::error::HttpError;
use crate::state::AppState;
use crate::transport::session::require_session;
use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

/// Handles DELETE /mcp.
pub async fn delete(
    State(app): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
) -> Response {
    match handle(app, headers, principal).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn handle(
    app: AppState,
    headers: HeaderMap,
    principal: Principal,
) -> Result<Response, HttpError> {
    if app.config.stateless {
        return Err(HttpError::MethodNotAllowed("POST"));
    }
    let session = require_session(&app, &headers, &principal).await?;
    if !app.bus.end_session(&session.record.id).await? {
        return Err(HttpError::UnknownSession);
    }
    tracing::info!(session = %session.record.id, "session deleted by the client");
    Ok(StatusCode::NO_CONTENT.into_response())
}
