//! The tasks extension (`io.modelcontextprotocol/tasks`, SEP-2663) of protocol
//! 2026-07-28: a long `tools/call` answered at once with a task handle, whose state the
//! client polls with `tasks/get` on any gateway, feeds with `tasks/update` and stops with
//! `tasks/cancel`.
//!
//! A task's state is a log of [`TaskEvent`]s (kept on the bus, so every gateway reads the
//! same): the worker running the tool appends status changes and the outcome, gateways
//! append the client's input responses, and [`TaskState::fold`] turns the log into what
//! `tasks/get` answers.

use crate::jsonrpc::{ErrorObject, RequestId};
use chrono::{DateTime, SecondsFormat};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// The extension's identifier, in `capabilities.extensions`.
pub const EXTENSION: &str = "io.modelcontextprotocol/tasks";

/// Whether the client capabilities of a request declare the extension.
pub fn client_declares(client_capabilities: &Value) -> bool {
    client_capabilities
        .get("extensions")
        .and_then(|e| e.get(EXTENSION))
        .is_some_and(Value::is_object)
}

/// The `-32021` error for a client that did not declare the extension.
pub fn missing_extension(what: &str) -> ErrorObject {
    ErrorObject::new(
        crate::jsonrpc::MISSING_REQUIRED_CLIENT_CAPABILITY,
        format!("{what} needs the {EXTENSION} extension, which the request's client capabilities do not declare"),
    )
    .with_data(json!({"requiredCapabilities": {"extensions": {EXTENSION: {}}}}))
}

/// One entry of a task's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TaskEvent {
    /// The task exists; it is working.
    Created {
        /// Creation time, ms since the epoch.
        at_ms: u64,
        /// How long the task is kept after its last change (`null`: unlimited).
        ttl_ms: Option<u64>,
        /// How often the client should poll.
        poll_interval_ms: u64,
        /// The session of the worker's call, for cancellation.
        call_session: String,
        /// The request id of the worker's call, for cancellation.
        call_request: RequestId,
    },
    /// Working again (after input arrived).
    Working {
        /// When.
        at_ms: u64,
    },
    /// The tool needs input from the client.
    InputRequired {
        /// When.
        at_ms: u64,
        /// `inputRequests`: key → `{method, params}`.
        input_requests: Map<String, Value>,
    },
    /// The client answered some input requests (`tasks/update`).
    InputResponses {
        /// When.
        at_ms: u64,
        /// `inputResponses`: key → result.
        responses: Map<String, Value>,
    },
    /// The tool finished with this `CallToolResult` (a tool error included).
    Completed {
        /// When.
        at_ms: u64,
        /// The result.
        result: Value,
    },
    /// The request failed with this JSON-RPC error.
    Failed {
        /// When.
        at_ms: u64,
        /// The error.
        error: ErrorObject,
    },
    /// The task was cancelled.
    Cancelled {
        /// When.
        at_ms: u64,
    },
}

impl TaskEvent {
    /// The event as a log entry.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    fn at_ms(&self) -> u64 {
        match self {
            Self::Created { at_ms, .. }
            | Self::Working { at_ms }
            | Self::InputRequired { at_ms, .. }
            | Self::InputResponses { at_ms, .. }
            | Self::Completed { at_ms, .. }
            | Self::Failed { at_ms, .. }
            | Self::Cancelled { at_ms } => *at_ms,
        }
    }
}

/// A task's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStatus {
    /// Running.
    Working,
    /// Waiting for `tasks/update`.
    InputRequired,
    /// Done; `result` holds the `CallToolResult`.
    Completed,
    /// Failed; `error` holds the JSON-RPC error.
    Failed,
    /// Cancelled.
    Cancelled,
}

impl TaskStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Working => "working",
            Self::InputRequired => "input_required",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// No further change will happen.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

/// A task as its log describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskState {
    /// The task id.
    pub task_id: String,
    /// The status.
    pub status: TaskStatus,
    /// Creation time, ms.
    pub created_ms: u64,
    /// Last change, ms.
    pub updated_ms: u64,
    /// How long the task is kept after its last change.
    pub ttl_ms: Option<u64>,
    /// How often to poll.
    pub poll_interval_ms: u64,
    /// Input requests not answered yet.
    pub outstanding: Map<String, Value>,
    /// The outcome of a completed task.
    pub result: Option<Value>,
    /// The error of a failed task.
    pub error: Option<ErrorObject>,
    /// The worker call to cancel: its session and request id.
    pub call: (String, RequestId),
}

impl TaskState {
    /// Folds a task's log; `None` if it does not start with [`TaskEvent::Created`].
    /// Entries that are not task events are skipped; nothing follows a terminal event.
    pub fn fold<'a>(task_id: &str, log: impl IntoIterator<Item = &'a Value>) -> Option<Self> {
        let mut events = log
            .into_iter()
            .filter_map(|v| serde_json::from_value::<TaskEvent>(v.clone()).ok());
        let Some(TaskEvent::Created {
            at_ms,
            ttl_ms,
            poll_interval_ms,
            call_session,
            call_request,
        }) = events.next()
        else {
            return None;
        };
        let mut state = Self {
            task_id: task_id.to_owned(),
            status: TaskStatus::Working,
            created_ms: at_ms,
            updated_ms: at_ms,
            ttl_ms,
            poll_interval_ms,
            outstanding: Map::new(),
            result: None,
            error: None,
            call: (call_session, call_request),
        };
        for event in events {
            if state.status.is_terminal() {
                break;
            }
            state.updated_ms = state.updated_ms.max(event.at_ms());
            match event {
                TaskEvent::Created { .. } => {}
                TaskEvent::Working { .. } => {
                    state.status = TaskStatus::Working;
                    state.outstanding.clear();
                }
                TaskEvent::InputRequired { input_requests, .. } => {
                    state.status = TaskStatus::InputRequired;
                    state.outstanding = input_requests;
                }
                TaskEvent::InputResponses { responses, .. } => {
                    for key in responses.keys() {
                        state.outstanding.remove(key);
                    }
                    if state.status == TaskStatus::InputRequired && state.outstanding.is_empty() {
                        // Everything asked for is answered: the tool resumes.
                        state.status = TaskStatus::Working;
                    }
                }
                TaskEvent::Completed { result, .. } => {
                    state.status = TaskStatus::Completed;
                    state.result = Some(result);
                }
                TaskEvent::Failed { error, .. } => {
                    state.status = TaskStatus::Failed;
                    state.error = Some(error);
                }
                TaskEvent::Cancelled { .. } => state.status = TaskStatus::Cancelled,
            }
        }
        if state.status.is_terminal() {
            state.outstanding.clear();
        }
        Some(state)
    }

    /// The `Task` fields (`CreateTaskResult` adds `resultType: "task"`).
    pub fn task(&self) -> Map<String, Value> {
        let mut task = Map::new();
        task.insert("taskId".into(), json!(self.task_id));
        task.insert("status".into(), json!(self.status.as_str()));
        task.insert("createdAt".into(), json!(iso8601(self.created_ms)));
        task.insert("lastUpdatedAt".into(), json!(iso8601(self.updated_ms)));
        task.insert("ttlMs".into(), json!(self.ttl_ms));
        task.insert("pollIntervalMs".into(), json!(self.poll_interval_ms));
        task
    }

    /// The `CreateTaskResult`.
    pub fn create_result(&self) -> Value {
        let mut task = self.task();
        task.insert("resultType".into(), json!("task"));
        Value::Object(task)
    }

    /// The `DetailedTask` of `tasks/get`: the task, with what its status carries.
    pub fn detailed(&self) -> Value {
        let mut task = self.task();
        match self.status {
            TaskStatus::InputRequired => {
                task.insert(
                    "inputRequests".into(),
                    Value::Object(self.outstanding.clone()),
                );
            }
            TaskStatus::Completed => {
                task.insert("result".into(), self.result.clone().unwrap_or(Value::Null));
            }
            TaskStatus::Failed => {
                if let Some(error) = &self.error {
                    task.insert("statusMessage".into(), json!(error.message));
                    task.insert("error".into(), json!(error));
                }
            }
            TaskStatus::Working | TaskStatus::Cancelled => {}
        }
        Value::Object(task)
    }
}

/// RFC 3339 / ISO 8601 UTC time of `ms` since the epoch.
pub fn iso8601(ms: u64) -> String {
    DateTime::from_timestamp_millis(ms as i64)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created() -> Value {
        TaskEvent::Created {
            at_ms: 1_000,
            ttl_ms: Some(60_000),
            poll_interval_ms: 200,
            call_session: "s".into(),
            call_request: RequestId::Number(1),
        }
        .to_value()
    }

    #[test]
    fn folds_a_log_into_what_tasks_get_answers() {
        let ask = |keys: &[&str]| {
            TaskEvent::InputRequired {
                at_ms: 2_000,
                input_requests: keys
                    .iter()
                    .map(|k| {
                        (
                            (*k).to_owned(),
                            json!({"method": "elicitation/create", "params": {}}),
                        )
                    })
                    .collect(),
            }
            .to_value()
        };
        let answer = |key: &str| {
            TaskEvent::InputResponses {
                at_ms: 3_000,
                responses: [(key.to_owned(), json!({"action": "accept"}))]
                    .into_iter()
                    .collect(),
            }
            .to_value()
        };
        let log = [created()];
        let state = TaskState::fold("t", &log).unwrap();
        assert_eq!(state.status, TaskStatus::Working);
        assert_eq!(state.create_result()["resultType"], "task");
        assert_eq!(state.task()["createdAt"], "1970-01-01T00:00:01.000Z");

        let log = [created(), ask(&["a", "b"]), answer("a")];
        let state = TaskState::fold("t", &log).unwrap();
        assert_eq!(state.status, TaskStatus::InputRequired);
        let detailed = state.detailed();
        assert_eq!(detailed["inputRequests"].as_object().unwrap().len(), 1);
        assert!(detailed["inputRequests"]["b"].is_object());

        let log = [created(), ask(&["a", "b"]), answer("a"), answer("b")];
        assert_eq!(
            TaskState::fold("t", &log).unwrap().status,
            TaskStatus::Working
        );

        let done = TaskEvent::Completed {
            at_ms: 4_000,
            result: json!({"content": [], "isError": true}),
        };
        let log = [
            created(),
            done.to_value(),
            TaskEvent::Cancelled { at_ms: 5_000 }.to_value(),
        ];
        let state = TaskState::fold("t", &log).unwrap();
        assert_eq!(
            state.status,
            TaskStatus::Completed,
            "nothing follows a terminal event"
        );
        assert_eq!(state.detailed()["result"]["isError"], true);
        assert_eq!(state.updated_ms, 4_000);

        assert!(TaskState::fold("t", &[json!({"type": "working", "at_ms": 1})]).is_none());
    }

    #[test]
    fn reads_the_extension_from_client_capabilities() {
        assert!(client_declares(&json!({"extensions": {EXTENSION: {}}})));
        assert!(!client_declares(&json!({})));
        assert!(!client_declares(&json!({"extensions": {EXTENSION: true}})));
        let error = missing_extension("this tool");
        assert_eq!(
            error.data.unwrap()["requiredCapabilities"]["extensions"][EXTENSION],
            json!({})
        );
    }
}
