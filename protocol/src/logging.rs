//! Log levels of `notifications/message` (RFC 5424 severities, least severe first).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A log level. Ordered: `Debug < Info < … < Emergency`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Detailed debugging information.
    Debug,
    /// General information.
    Info,
    /// Normal but significant events.
    Notice,
    /// Warning conditions.
    Warning,
    /// Error conditions.
    Error,
    /// Critical conditions.
    Critical,
    /// Action must be taken immediately.
    Alert,
    /// The system is unusable.
    Emergency,
}

/// A plain string enum: clearer to clients and models than one sub-schema per level.
impl JsonSchema for LogLevel {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "LogLevel".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "enum": ["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"],
        })
    }
}

impl LogLevel {
    /// Parses a level name as MCP spells it.
    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
    }

    /// The level name as MCP spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Notice => "notice",
            Self::Warning => "warning",
            Self::Error => "error",
            Self::Critical => "critical",
            Self::Alert => "alert",
            Self::Emergency => "emergency",
        }
    }

    /// Whether a `notifications/message` value reaches a client that set `min` with
    /// `logging/setLevel`. Messages that are not log notifications always pass.
    pub fn message_passes(message: &serde_json::Value, min: Option<LogLevel>) -> bool {
        let Some(min) = min else { return true };
        if message.get("method").and_then(|m| m.as_str()) != Some("notifications/message") {
            return true;
        }
        message
            .get("params")
            .and_then(|p| p.get("level"))
            .and_then(|l| l.as_str())
            .and_then(LogLevel::parse)
            .is_none_or(|level| level >= min)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn orders_and_filters() {
        assert!(LogLevel::Debug < LogLevel::Emergency);
        assert_eq!(LogLevel::parse("warning"), Some(LogLevel::Warning));
        assert_eq!(LogLevel::parse("loud"), None);
        let info = json!({"method":"notifications/message","params":{"level":"info"}});
        assert!(LogLevel::message_passes(&info, None));
        assert!(LogLevel::message_passes(&info, Some(LogLevel::Info)));
        assert!(!LogLevel::message_passes(&info, Some(LogLevel::Warning)));
        let progress = json!({"method":"notifications/progress","params":{}});
        assert!(LogLevel::message_passes(
            &progress,
            Some(LogLevel::Emergency)
        ));
    }
}
