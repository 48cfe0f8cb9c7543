//! The seed's commands as tool calls: each one records its outcome on the feed, and a
//! failure that leaves the session usable is kept apart from one that does not.

use crate::connection::Connection;
use crate::events::{Event, Outcome};
use crate::failure::Failure;
use crate::feed::Feed;
use serde_json::{Map, Value, json};
use std::time::Instant;

/// The commands, bound to a session and a feed.
pub struct Actions {
    conn: Connection,
    feed: Feed,
}

impl Actions {
    /// Commands on `conn`, recorded on `feed`.
    pub fn new(conn: Connection, feed: Feed) -> Self {
        Self { conn, feed }
    }

    /// The feed the commands record on.
    pub fn feed(&self) -> &Feed {
        &self.feed
    }

    /// Ends the session.
    pub async fn close(self) {
        self.conn.close().await;
    }

    /// `notify <text> [level]`: a log message on this call's own stream.
    pub async fn notify(&self, text: &str, level: Option<&str>) -> Result<String, Failure> {
        let mut args = json!({"message": text});
        if let Some(level) = level {
            args["level"] = json!(level);
        }
        self.call("notify", "send_notification", args, None).await
    }

    /// `broadcast <text>`: a log message to every session's standalone stream.
    pub async fn broadcast(&self, text: &str, level: Option<&str>) -> Result<String, Failure> {
        let mut args = json!({"message": text});
        if let Some(level) = level {
            args["level"] = json!(level);
        }
        self.call("broadcast", "broadcast", args, None).await
    }

    /// `operation [steps] [step_ms]`: a long call whose progress drives a bar.
    pub async fn operation(
        &self,
        steps: Option<u32>,
        step_ms: Option<u64>,
    ) -> Result<String, Failure> {
        let mut args = Map::new();
        if let Some(steps) = steps {
            args.insert("steps".into(), json!(steps));
        }
        if let Some(step_ms) = step_ms {
            args.insert("step_ms".into(), json!(step_ms));
        }
        self.call(
            "operation",
            "long_running_operation",
            Value::Object(args),
            Some("operation"),
        )
        .await
    }

    /// `task <name> [count] [interval_ms]`: starts a background task whose ticks arrive on
    /// the standalone stream (logger `task/<name>`).
    pub async fn task(
        &self,
        name: &str,
        count: Option<u32>,
        interval_ms: Option<u64>,
    ) -> Result<String, Failure> {
        let mut args = json!({"name": name});
        if let Some(count) = count {
            args["count"] = json!(count);
        }
        if let Some(interval_ms) = interval_ms {
            args["interval_ms"] = json!(interval_ms);
        }
        self.call("task", "start_background_task", args, None).await
    }

    /// `status`: the server's status, parsed when it is JSON.
    pub async fn status(&self) -> Result<String, Failure> {
        let start = Instant::now();
        let result = self.conn.call("server_status", json!({}), None).await;
        let value = result
            .as_ref()
            .ok()
            .and_then(|text| serde_json::from_str::<Value>(text).ok());
        let shown = match (&result, &value) {
            (Ok(_), Some(Value::Object(map))) => Ok(map
                .iter()
                .map(|(k, v)| format!("{} {v}", k.replace('_', " ")))
                .collect::<Vec<_>>()
                .join(", ")),
            _ => result.clone(),
        };
        self.outcome("status", Some("server_status"), &shown, value, start)?;
        result
    }

    /// `tools`: the server's tools.
    pub async fn tools(&self) -> Result<String, Failure> {
        let start = Instant::now();
        let result = self.conn.tools().await;
        let (shown, value) = match &result {
            Ok(tools) => {
                let width = tools.iter().map(|t| t.name.len()).max().unwrap_or(0);
                let lines: Vec<String> = tools
                    .iter()
                    .map(|t| {
                        format!(
                            "\n    {:<width$}  {}",
                            t.name,
                            t.description.as_deref().unwrap_or("")
                        )
                    })
                    .collect();
                let value: Vec<Value> = tools
                    .iter()
                    .map(|t| json!({"name": t.name, "description": t.description}))
                    .collect();
                (
                    Ok(format!("{} tools{}", tools.len(), lines.concat())),
                    Some(Value::Array(value)),
                )
            }
            Err(e) => (Err(e.clone()), None),
        };
        self.outcome("tools", None, &shown, value, start)?;
        shown
    }

    async fn call(
        &self,
        command: &str,
        tool: &str,
        args: Value,
        bar: Option<&str>,
    ) -> Result<String, Failure> {
        let start = Instant::now();
        let result = self.conn.call(tool, args, bar).await;
        self.outcome(command, Some(tool), &result, None, start)?;
        result
    }

    /// Records a command's outcome. A lost connection is not a command's outcome: it is
    /// returned for the caller to end the session with.
    fn outcome(
        &self,
        command: &str,
        tool: Option<&str>,
        result: &Result<String, Failure>,
        value: Option<Value>,
        start: Instant,
    ) -> Result<(), Failure> {
        let result = match result {
            Err(f @ Failure::Connection(_)) => return Err(f.clone()),
            Err(f) => Err(f.sentence().to_owned()),
            Ok(text) => Ok(text.clone()),
        };
        self.feed.record(Event::Outcome(Outcome {
            command: command.to_owned(),
            tool: tool.map(str::to_owned),
            result,
            value,
            took: start.elapsed(),
        }));
        Ok(())
    }

    /// Records a command that could not even be sent (bad arguments, unknown command).
    pub fn rejected(&self, command: &str, sentence: &str) {
        self.feed.record(Event::Outcome(Outcome {
            command: command.to_owned(),
            tool: None,
            result: Err(sentence.to_owned()),
            value: None,
            took: std::time::Duration::ZERO,
        }));
    }
}
