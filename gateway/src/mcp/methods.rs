//! Routing a client's request, and handling its notifications and responses.

use crate::policy::caller::Caller;
use crate::state::AppState;
use mcp_bus::{Control, SessionId};
use mcp_protocol::{ErrorObject, LogLevel, RequestId, jsonrpc};
use serde_json::{Value, json};

/// Where a request is answered.
#[derive(Debug)]
pub enum Route {
    /// By the gateway, with this result or error.
    Local(Result<Value, ErrorObject>),
    /// By a worker: the request becomes a job.
    Job,
}

/// Methods of the protocol this gateway knows (a metrics label must not be a client's
/// free text).
pub fn is_known(method: &str) -> bool {
    is_job(method)
        || matches!(
            method,
            "initialize"
                | "ping"
                | "logging/setLevel"
                | "tools/list"
                | "resources/list"
                | "resources/templates/list"
                | "resources/subscribe"
                | "resources/unsubscribe"
                | "prompts/list"
        )
}

/// Methods workers answer.
pub fn is_job(method: &str) -> bool {
    matches!(
        method,
        "tools/call" | "resources/read" | "prompts/get" | "completion/complete"
    )
}

/// Routes one request. `session` is `None` on a stateless gateway. Lists show only what
/// the policy lets `caller` use.
pub async fn route(
    app: &AppState,
    session: Option<&SessionId>,
    caller: &Caller,
    method: &str,
    params: Option<&Value>,
) -> Route {
    if is_job(method) {
        return Route::Job;
    }
    Route::Local(match method {
        "ping" => Ok(jsonrpc::empty_result()),
        "logging/setLevel" => set_level(app, session, params).await,
        "tools/list" | "resources/list" | "resources/templates/list" | "prompts/list" => {
            match app.bus.catalog().await {
                Ok(catalog) => {
                    let mut list = match method {
                        "tools/list" => json!({"tools": catalog.tools}),
                        "resources/list" => json!({"resources": catalog.resources}),
                        "resources/templates/list" => {
                            json!({"resourceTemplates": catalog.resource_templates})
                        }
                        _ => json!({"prompts": catalog.prompts}),
                    };
                    app.policies.filter_list(caller, method, &mut list);
                    // `cacheScope` is a 2026-07-28 field; session revisions do not have it.
                    if let Value::Object(fields) = &mut list {
                        fields.remove("cacheScope");
                    }
                    Ok(list)
                }
                Err(e) => Err(ErrorObject::new(
                    jsonrpc::SERVER_ERROR,
                    format!("the registry is unavailable: {e}"),
                )),
            }
        }
        "resources/subscribe" | "resources/unsubscribe" => {
            resource_subscription(
                app,
                session,
                caller,
                method == "resources/subscribe",
                params,
            )
            .await
        }
        "initialize" => Err(ErrorObject::invalid_request(
            "initialize must be sent alone and without Mcp-Session-Id",
        )),
        other => Err(ErrorObject::method_not_found(other)),
    })
}

async fn resource_subscription(
    app: &AppState,
    session: Option<&SessionId>,
    caller: &Caller,
    subscribe: bool,
    params: Option<&Value>,
) -> Result<Value, ErrorObject> {
    let uri = params
        .and_then(|p| p.get("uri"))
        .and_then(Value::as_str)
        .ok_or_else(|| ErrorObject::invalid_params("params.uri, a string, is required"))?;
    let Some(session) = session else {
        return Err(ErrorObject::invalid_request(
            "resource subscriptions need a session; this gateway is stateless",
        ));
    };
    let done = if subscribe {
        if !app.policies.may_read(caller, uri) {
            return Ok(jsonrpc::empty_result());
        }
        app.bus.subscribe_resource(session, uri).await
    } else {
        app.bus.unsubscribe_resource(session, uri).await
    };
    done.map(|()| jsonrpc::empty_result())
        .map_err(|e| ErrorObject::new(jsonrpc::SERVER_ERROR, e.to_string()))
}

async fn set_level(
    app: &AppState,
    session: Option<&SessionId>,
    params: Option<&Value>,
) -> Result<Value, ErrorObject> {
    let level = params
        .and_then(|p| p.get("level"))
        .and_then(Value::as_str)
        .ok_or_else(|| ErrorObject::invalid_params("logging/setLevel needs params.level"))?;
    let level = LogLevel::parse(level).ok_or_else(|| {
        ErrorObject::invalid_params(format!(
            "unknown log level {level:?} (debug, info, notice, warning, error, critical, alert, emergency)"
        ))
    })?;
    let Some(session) = session else {
        return Err(ErrorObject::invalid_request(
            "logging/setLevel needs a session; this gateway is stateless",
        ));
    };
    app.bus
        .set_log_level(session, level)
        .await
        .map(|()| jsonrpc::empty_result())
        .map_err(|e| ErrorObject::new(jsonrpc::SERVER_ERROR, e.to_string()))
}

/// Handles a client notification. Unknown notifications are ignored, as JSON-RPC asks.
pub async fn notification(
    app: &AppState,
    session: Option<&SessionId>,
    method: &str,
    params: Option<&Value>,
) -> Result<(), ErrorObject> {
    match method {
        "notifications/cancelled" => {
            let request_id = params
                .and_then(|p| p.get("requestId"))
                .and_then(RequestId::from_value)
                .ok_or_else(|| {
                    ErrorObject::invalid_params("notifications/cancelled needs params.requestId")
                })?;
            let reason = params
                .and_then(|p| p.get("reason"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            if let Some(session) = session {
                app.bus
                    .send_control(Control::Cancel {
                        session: session.clone(),
                        request_id,
                        reason,
                    })
                    .await
                    .map_err(|e| ErrorObject::new(jsonrpc::SERVER_ERROR, e.to_string()))?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Routes the client's answer to a server-to-client request back to the waiting worker.
pub async fn client_response(
    app: &AppState,
    session: Option<&SessionId>,
    id: RequestId,
    outcome: Result<Value, ErrorObject>,
) -> Result<(), ErrorObject> {
    let Some(session) = session else {
        return Err(ErrorObject::invalid_request(
            "a response needs the session whose request it answers",
        ));
    };
    let response = match outcome {
        Ok(result) => jsonrpc::response_ok(&id, result),
        Err(error) => jsonrpc::response_err(Some(&id), error),
    };
    app.bus
        .send_control(Control::ClientResponse {
            session: session.clone(),
            request_id: id,
            response,
        })
        .await
        .map_err(|e| ErrorObject::new(jsonrpc::SERVER_ERROR, e.to_string()))
}
