//! `tasks/get`, `tasks/update` and `tasks/cancel` (the tasks extension of 2026-07-28),
//! answered by any gateway from the task's log on the bus.

use crate::state::AppState;
use mcp_bus::{BusError, Control, EventBody, SessionId, StreamTarget};
use mcp_protocol::stateless::finish_result;
use mcp_protocol::tasks::{self, TaskEvent, TaskState};
use mcp_protocol::{ErrorObject, jsonrpc};
use serde_json::{Map, Value, json};

/// Answers a `tasks/*` request of `principal` whose client capabilities are
/// `capabilities`. The capability is checked first: a client that did not declare the
/// extension learns that, not whether the task exists.
pub async fn answer(
    app: &AppState,
    method: &str,
    params: Option<&Value>,
    capabilities: &Value,
    principal: &str,
) -> Result<Value, ErrorObject> {
    if !tasks::client_declares(capabilities) {
        return Err(tasks::missing_extension(method));
    }
    let (id, state) = load(app, params, principal).await?;
    let mut result = match method {
        "tasks/get" => state.detailed(),
        "tasks/update" => {
            update(app, &id, &state, params).await?;
            json!({})
        }
        _ => {
            cancel(app, &state).await?;
            json!({})
        }
    };
    finish_result(method, &mut result);
    Ok(result)
}

/// The task `params.taskId` names, if `principal` may see it.
async fn load(
    app: &AppState,
    params: Option<&Value>,
    principal: &str,
) -> Result<(SessionId, TaskState), ErrorObject> {
    let task_id = params
        .and_then(|p| p.get("taskId"))
        .and_then(Value::as_str)
        .ok_or_else(|| ErrorObject::invalid_params("params.taskId, a string, is required"))?;
    let not_found = || {
        ErrorObject::invalid_params(format!(
            "Failed to retrieve task: Task not found: {task_id}"
        ))
    };
    let id = SessionId::parse(task_id).ok_or_else(not_found)?;
    let unavailable = |e: BusError| ErrorObject::new(jsonrpc::SERVER_ERROR, e.to_string());
    // A task belongs to whoever started it: to anyone else it does not exist.
    match app.bus.session(&id).await {
        Ok(record) if record.ephemeral && record.principal == principal => {}
        Ok(_) | Err(BusError::SessionNotFound) => return Err(not_found()),
        Err(e) => return Err(unavailable(e)),
    }
    let log = match app.bus.replay(&id, 0, u64::MAX).await {
        Ok(log) => log,
        Err(BusError::SessionNotFound) => return Err(not_found()),
        Err(e) => return Err(unavailable(e)),
    };
    let entries: Vec<&Value> = log
        .events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Message(m) => Some(m),
            _ => None,
        })
        .collect();
    let state = TaskState::fold(task_id, entries).ok_or_else(not_found)?;
    Ok((id, state))
}

/// Records the answers to the task's outstanding input requests; other keys are ignored.
async fn update(
    app: &AppState,
    id: &SessionId,
    state: &TaskState,
    params: Option<&Value>,
) -> Result<(), ErrorObject> {
    let responses = params
        .and_then(|p| p.get("inputResponses"))
        .and_then(Value::as_object)
        .ok_or_else(|| {
            ErrorObject::invalid_params("params.inputResponses, an object, is required")
        })?;
    let answered: Map<String, Value> = responses
        .iter()
        .filter(|(key, _)| state.outstanding.contains_key(*key))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if answered.is_empty() {
        return Ok(());
    }
    let event = TaskEvent::InputResponses {
        at_ms: mcp_bus::now_ms(),
        responses: answered,
    };
    app.bus
        .publish(
            id,
            StreamTarget::Standalone,
            EventBody::Message(event.to_value()),
        )
        .await
        .map(|_| ())
        .map_err(|e| ErrorObject::new(jsonrpc::SERVER_ERROR, e.to_string()))
}

/// Asks the worker running the task to stop; a finished task is left as it is.
async fn cancel(app: &AppState, state: &TaskState) -> Result<(), ErrorObject> {
    if state.status.is_terminal() {
        return Ok(());
    }
    let (session, request_id) = &state.call;
    let session = SessionId::parse(session)
        .ok_or_else(|| ErrorObject::internal("the task's log names no call"))?;
    app.bus
        .send_control(Control::Cancel {
            session,
            request_id: request_id.clone(),
            reason: Some("tasks/cancel".into()),
        })
        .await
        .map_err(|e| ErrorObject::new(jsonrpc::SERVER_ERROR, e.to_string()))
}
