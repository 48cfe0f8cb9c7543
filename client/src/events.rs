//! What the client saw: one [`Event`] per notification, transport incident or command
//! result, stamped with its arrival time, and the running [`Summary`] of them all.

use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

/// Which SSE stream a transport incident concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// The session's standalone GET stream (broadcasts, background tasks).
    Standalone,
    /// A tool call's own response stream (its progress, its logs, its result).
    Request,
}

impl StreamKind {
    /// The name used in output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Standalone => "standalone",
            Self::Request => "request",
        }
    }
}

/// How a stream that is being resumed had ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The connection failed (reset, cut, truncated).
    Dropped,
    /// The server ended the stream on purpose and asked the client to come back.
    Closed,
}

/// A server notification, reduced to what a user or a script looks at.
#[derive(Debug, Clone)]
pub enum Notification {
    /// `notifications/progress`.
    Progress {
        /// The progress token, as text.
        token: String,
        /// Progress so far.
        progress: f64,
        /// The total, when the server knows it.
        total: Option<f64>,
        /// The server's description of the step.
        message: Option<String>,
    },
    /// `notifications/message` (a log message).
    Message {
        /// The level (`info`, `warning`, ...).
        level: String,
        /// The logger, when the server names one.
        logger: Option<String>,
        /// The payload, any JSON.
        data: Value,
    },
    /// Any other notification (list changes, resource updates, cancellations, ...).
    Other {
        /// The JSON-RPC method.
        method: String,
        /// Its parameters.
        params: Value,
    },
}

/// Something that happened to the connection underneath the MCP session.
#[derive(Debug, Clone)]
pub enum Transport {
    /// A stream failed mid-way; the client will try to resume it.
    Dropped {
        /// Which stream.
        stream: StreamKind,
        /// The last event id seen on it (where it will resume from).
        last_event_id: Option<String>,
        /// Why, in a few words.
        error: String,
    },
    /// A stream was reopened with `Last-Event-ID` and the server accepted it.
    Resumed {
        /// Which stream.
        stream: StreamKind,
        /// The cursor sent in `Last-Event-ID` (`None`: reopened without one).
        last_event_id: Option<String>,
        /// How the previous connection ended.
        ending: Ending,
        /// Which attempt succeeded (1 = the first).
        attempt: u32,
    },
    /// A resumption attempt failed; another will follow unless the policy gives up.
    ResumeFailed {
        /// The cursor that was sent.
        last_event_id: Option<String>,
        /// Which attempt failed.
        attempt: u32,
        /// Why.
        error: String,
    },
    /// The retry policy gave up on a stream: what it would have carried is lost.
    GaveUp {
        /// Failed attempts made.
        attempts: usize,
    },
}

/// The outcome of one command (one tool call or list request).
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The command as the user would type it (`notify`, `task`, ...).
    pub command: String,
    /// The tool it called, if any.
    pub tool: Option<String>,
    /// `Ok(text)` or `Err(sentence)`.
    pub result: Result<String, String>,
    /// Structured value for scripts (parsed status, tool list), if any.
    pub value: Option<Value>,
    /// How long the call took.
    pub took: Duration,
}

/// Everything that can be reported.
#[derive(Debug, Clone)]
pub enum Event {
    /// Connected: the server's name, version and the negotiated protocol revision.
    Connected {
        /// `serverInfo.name`.
        server: String,
        /// `serverInfo.version`.
        version: String,
        /// The negotiated revision.
        protocol: String,
    },
    /// A server notification.
    Notification(Notification),
    /// A transport incident.
    Transport(Transport),
    /// A command's outcome.
    Outcome(Outcome),
    /// The list of interactive commands was asked for.
    Help,
    /// A fatal error, as one sentence (the session cannot go on).
    Fatal(String),
}

/// An event and when it arrived, counted from the client's start.
#[derive(Debug, Clone)]
pub struct Record {
    /// Time since the client started.
    pub at: Duration,
    /// What happened.
    pub event: Event,
}

/// Per-command statistics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CommandStats {
    /// Times run.
    pub runs: u64,
    /// Times it failed.
    pub failed: u64,
    /// Total time spent in it.
    pub total: Duration,
    /// The slowest run.
    pub max: Duration,
}

/// Counts of everything received, by kind, and timing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// `notifications/progress` received.
    pub progress: u64,
    /// `notifications/message` received.
    pub messages: u64,
    /// Messages by level.
    pub by_level: BTreeMap<String, u64>,
    /// Messages by logger (`-` for none).
    pub by_logger: BTreeMap<String, u64>,
    /// Other notifications by method.
    pub other: BTreeMap<String, u64>,
    /// Streams resumed after a drop or a server close.
    pub reconnects: u64,
    /// Streams the client gave up on.
    pub lost_streams: u64,
    /// Commands run, by command.
    pub commands: BTreeMap<String, CommandStats>,
    /// When the first notification arrived.
    pub first_notification: Option<Duration>,
    /// When the last notification arrived.
    pub last_notification: Option<Duration>,
}

impl Summary {
    /// Every notification received, of any kind.
    pub fn notifications(&self) -> u64 {
        self.progress + self.messages + self.other.values().sum::<u64>()
    }

    /// Messages received from `logger`.
    pub fn messages_from(&self, logger: &str) -> u64 {
        self.by_logger.get(logger).copied().unwrap_or(0)
    }

    /// Commands that failed.
    pub fn failures(&self) -> u64 {
        self.commands.values().map(|c| c.failed).sum()
    }

    /// Counts one record.
    pub fn count(&mut self, record: &Record) {
        match &record.event {
            Event::Notification(n) => {
                self.first_notification.get_or_insert(record.at);
                self.last_notification = Some(record.at);
                match n {
                    Notification::Progress { .. } => self.progress += 1,
                    Notification::Message { level, logger, .. } => {
                        self.messages += 1;
                        *self.by_level.entry(level.clone()).or_default() += 1;
                        let logger = logger.clone().unwrap_or_else(|| "-".to_owned());
                        *self.by_logger.entry(logger).or_default() += 1;
                    }
                    Notification::Other { method, .. } => {
                        *self.other.entry(method.clone()).or_default() += 1;
                    }
                }
            }
            Event::Transport(Transport::Resumed { .. }) => self.reconnects += 1,
            Event::Transport(Transport::GaveUp { .. }) => self.lost_streams += 1,
            Event::Outcome(o) => {
                let stats = self.commands.entry(o.command.clone()).or_default();
                stats.runs += 1;
                if o.result.is_err() {
                    stats.failed += 1;
                }
                stats.total += o.took;
                stats.max = stats.max.max(o.took);
            }
            Event::Transport(_) | Event::Connected { .. } | Event::Help | Event::Fatal(_) => {}
        }
    }

    /// The summary as one JSON object (`"type": "summary"`), `elapsed` since the start.
    pub fn to_json(&self, elapsed: Duration) -> Value {
        let commands: Map<String, Value> = self
            .commands
            .iter()
            .map(|(name, c)| {
                (
                    name.clone(),
                    json!({
                        "runs": c.runs,
                        "failed": c.failed,
                        "total_ms": millis(c.total),
                        "max_ms": millis(c.max),
                    }),
                )
            })
            .collect();
        json!({
            "type": "summary",
            "notifications": self.notifications(),
            "progress": self.progress,
            "messages": {
                "total": self.messages,
                "by_level": self.by_level,
                "by_logger": self.by_logger,
            },
            "other": {
                "total": self.other.values().sum::<u64>(),
                "by_method": self.other,
            },
            "reconnects": self.reconnects,
            "lost_streams": self.lost_streams,
            "commands": commands,
            "failed_commands": self.failures(),
            "timing": {
                "elapsed_ms": millis(elapsed),
                "first_notification_ms": self.first_notification.map(millis),
                "last_notification_ms": self.last_notification.map(millis),
            },
        })
    }
}

/// Milliseconds, as scripts want them.
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64, event: Event) -> Record {
        Record {
            at: Duration::from_millis(ms),
            event,
        }
    }

    fn message(level: &str, logger: Option<&str>) -> Event {
        Event::Notification(Notification::Message {
            level: level.into(),
            logger: logger.map(str::to_owned),
            data: json!("x"),
        })
    }

    #[test]
    fn the_summary_counts_every_kind_and_the_timing() {
        let mut s = Summary::default();
        s.count(&at(5, message("info", Some("notify"))));
        s.count(&at(
            7,
            Event::Notification(Notification::Progress {
                token: "t".into(),
                progress: 1.0,
                total: Some(2.0),
                message: None,
            }),
        ));
        s.count(&at(9, message("warning", Some("task/a"))));
        s.count(&at(10, message("warning", None)));
        s.count(&at(
            12,
            Event::Notification(Notification::Other {
                method: "notifications/tools/list_changed".into(),
                params: Value::Null,
            }),
        ));
        s.count(&at(
            13,
            Event::Transport(Transport::Resumed {
                stream: StreamKind::Standalone,
                last_event_id: Some("s.1.0".into()),
                ending: Ending::Dropped,
                attempt: 1,
            }),
        ));
        s.count(&at(
            14,
            Event::Outcome(Outcome {
                command: "notify".into(),
                tool: Some("send_notification".into()),
                result: Err("tool failed".into()),
                value: None,
                took: Duration::from_millis(3),
            }),
        ));

        assert_eq!(s.notifications(), 5);
        assert_eq!(s.messages_from("task/a"), 1);
        assert_eq!(s.messages_from("-"), 1);
        assert_eq!(s.by_level.get("warning"), Some(&2));
        assert_eq!(s.failures(), 1);
        let v = s.to_json(Duration::from_millis(20));
        assert_eq!(v["type"], "summary");
        assert_eq!(v["messages"]["total"], 3);
        assert_eq!(v["messages"]["by_logger"]["notify"], 1);
        assert_eq!(
            v["other"]["by_method"]["notifications/tools/list_changed"],
            1
        );
        assert_eq!(v["reconnects"], 1);
        assert_eq!(v["commands"]["notify"]["failed"], 1);
        assert_eq!(v["failed_commands"], 1);
        assert_eq!(v["timing"]["first_notification_ms"], 5);
        assert_eq!(v["timing"]["last_notification_ms"], 12);
        assert_eq!(v["timing"]["elapsed_ms"], 20);
    }
}
