//! POST /mcp for protocol revision 2026-07-28: every request stands alone. The gateway
//! checks it (`_meta`, mirrored headers), answers discovery and the lists itself, opens
//! `subscriptions/listen` streams, and sends everything else to a worker as a job run in a
//! session made for that request alone.

use crate::http::auth::Principal;
use crate::http::error::HttpError;
use crate::http::negotiate::Accepts;
use crate::mcp::stateless::{self, Rejection};
use crate::policy::caller::Caller;
use crate::state::AppState;
use crate::transport::listen;
use crate::transport::post::{
    JobSession, PendingJob, new_record, refusal_error, request_trace_id, start_jobs,
};
use crate::transport::pump::Frame;
use crate::transport::respond;
use axum::Json;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use mcp_protocol::stateless::{RequestMeta, finish_result};
use mcp_protocol::{ErrorObject, Message, ProtocolVersion, RequestId, jsonrpc};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// Serves one message of a 2026-07-28 client.
pub async fn post(
    app: AppState,
    headers: HeaderMap,
    accepts: Accepts,
    message: Message,
    principal: Principal,
    caller: Caller,
) -> Result<Response, HttpError> {
    match message {
        // The revision defines no client notifications over HTTP (closing the stream
        // cancels); accepting and ignoring them is what JSON-RPC asks.
        Message::Notification { .. } => Ok(StatusCode::ACCEPTED.into_response()),
        Message::Response { .. } => Err(HttpError::InvalidRequest(
            "2026-07-28 clients send no responses: input goes in inputResponses on a retry".into(),
        )),
        Message::Request { id, method, params } => {
            request(app, headers, accepts, id, method, params, principal, caller).await
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn request(
    app: AppState,
    headers: HeaderMap,
    accepts: Accepts,
    id: RequestId,
    method: String,
    params: Option<Value>,
    principal: Principal,
    caller: Caller,
) -> Result<Response, HttpError> {
    let known = stateless::is_known(&method);
    let count = |outcome| app.count_request(&method, known, outcome);
    let meta = match stateless::check(&headers, &method, params.as_ref()) {
        Ok(meta) => meta,
        Err(rejection) => {
            count("error");
            return Ok(reject(&id, rejection));
        }
    };
    if method == "tools/call"
        && let Err(rejection) = check_mirrored(&app, &headers, params.as_ref()).await?
    {
        count("error");
        return Ok(reject(&id, rejection));
    }
    let local = match method.as_str() {
        "server/discover" => Some(Ok(stateless::discover_result())),
        "tools/list" | "resources/list" | "resources/templates/list" | "prompts/list" => {
            Some(list(&app, &caller, &method).await)
        }
        "subscriptions/listen" => {
            return listen::open(app, id, params, meta, &principal, caller).await;
        }
        "tasks/get" | "tasks/update" | "tasks/cancel" => {
            let answer = crate::mcp::tasks::answer(
                &app,
                &method,
                params.as_ref(),
                &meta.client_capabilities,
                &principal.0,
            )
            .await;
            if let Err(error) = &answer
                && error.code == jsonrpc::MISSING_REQUIRED_CLIENT_CAPABILITY
            {
                count("error");
                return Ok(reject(
                    &id,
                    Rejection {
                        status: StatusCode::BAD_REQUEST,
                        error: error.clone(),
                    },
                ));
            }
            Some(answer)
        }
        _ => None,
    };
    // A call the policy or a quota refuses never becomes a job.
    let mut ticket = None;
    let local = match local {
        Some(local) => Some(local),
        None => {
            let trace_id = request_trace_id(&headers);
            let admitted = app
                .policies
                .admit(
                    &caller,
                    None,
                    &method,
                    &id,
                    params.as_ref(),
                    trace_id.as_deref(),
                    true,
                )
                .await;
            match admitted {
                Ok(admitted) => {
                    ticket = admitted;
                    None
                }
                Err(refused) => match refusal_error(refused) {
                    Ok(error) => Some(Err(error)),
                    Err(http) => {
                        count("error");
                        return Err(http);
                    }
                },
            }
        }
    };
    if let Some(outcome) = local {
        count(if outcome.is_ok() { "ok" } else { "error" });
        let response = match outcome {
            Ok(result) => jsonrpc::response_ok(&id, result),
            Err(error) => jsonrpc::response_err(Some(&id), error),
        };
        if !accepts.json {
            let (tx, rx) = mpsc::channel(1);
            let _ = tx.try_send(Frame::unlogged_response(response));
            return Ok(respond::sse_without_ids(&app, rx));
        }
        return Ok(respond::json(vec![response], false, None));
    }
    let pending = PendingJob {
        id,
        method,
        params,
        ticket,
    };
    job(app, headers, accepts, pending, meta, principal).await
}

async fn job(
    app: AppState,
    headers: HeaderMap,
    accepts: Accepts,
    pending: PendingJob,
    meta: RequestMeta,
    principal: Principal,
) -> Result<Response, HttpError> {
    let version = ProtocolVersion::STATELESS;
    let client_info = meta.client_info.clone().unwrap_or_else(|| json!({}));
    let mut record = new_record(
        &app,
        version,
        meta.client_capabilities.clone(),
        client_info,
        true,
    )
    .await?;
    record.log_level = meta.log_level;
    // The session lives as long as the request: it is not one the principal holds (the
    // job carries the principal, for the state it signs and the tasks it starts).
    app.bus.create_session(record.clone()).await?;
    // A stream only when something can travel before the result: progress was asked for,
    // or log messages were. A plain JSON answer is cheaper, and lets an error carry the
    // HTTP status the revision gives it.
    let notifications_possible =
        jsonrpc::progress_token(pending.params.as_ref()).is_some() || meta.log_level.is_some();
    let streaming = accepts.sse && (notifications_possible || !accepts.json);
    start_jobs(
        app,
        JobSession {
            record,
            ephemeral: true,
        },
        version,
        streaming,
        false,
        Vec::new(),
        vec![pending],
        &headers,
        &principal,
    )
    .await
}

/// A list the gateway answers from the registry, with the fields 2026-07-28 adds; only
/// what the policy lets `caller` use (then cached privately: it depends on the caller).
async fn list(app: &AppState, caller: &Caller, method: &str) -> Result<Value, ErrorObject> {
    let catalog = app.bus.catalog().await.map_err(|e| {
        ErrorObject::new(
            jsonrpc::SERVER_ERROR,
            format!("the registry is unavailable: {e}"),
        )
    })?;
    let mut result = match method {
        "tools/list" => json!({"tools": catalog.tools}),
        "resources/list" => json!({"resources": catalog.resources}),
        "resources/templates/list" => json!({"resourceTemplates": catalog.resource_templates}),
        _ => json!({"prompts": catalog.prompts}),
    };
    app.policies.filter_list(caller, method, &mut result);
    finish_result(method, &mut result);
    Ok(result)
}

/// Checks the `Mcp-Param-*` headers of a `tools/call` against the tool's schema. An
/// unknown tool passes here: the worker answers it. A registry that cannot be asked is
/// 503, not a pass: the check must not fail open.
async fn check_mirrored(
    app: &AppState,
    headers: &HeaderMap,
    params: Option<&Value>,
) -> Result<Result<(), Rejection>, HttpError> {
    let Some(name) = params.and_then(|p| p.get("name")).and_then(Value::as_str) else {
        return Ok(Ok(()));
    };
    let mirrored = match app.mirrored_params(name) {
        Some(mirrored) => mirrored,
        // The cache missed (a tool new since the last refresh): ask the registry.
        None => app
            .bus
            .tools()
            .await?
            .iter()
            .find(|t| t.name == name)
            .map(|t| stateless::mirrored_params(&t.input_schema))
            .unwrap_or_default(),
    };
    Ok(stateless::check_mirrored_params(
        headers,
        &mirrored,
        params.and_then(|p| p.get("arguments")),
    ))
}

/// A refused request: its status, and a JSON-RPC error carrying the request's id.
fn reject(id: &RequestId, rejection: Rejection) -> Response {
    (
        rejection.status,
        Json(jsonrpc::response_err(Some(id), rejection.error)),
    )
        .into_response()
}
