//! The interactive commands: parsing a line into a [`Command`], and the help text.

/// The log levels a notification may carry.
pub const LEVELS: [&str; 8] = [
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

/// Every command: its usage and what it does.
pub const HELP: [(&str, &str); 10] = [
    (
        "notify <text> [level]",
        "a log message on this call's own stream (level: debug .. emergency)",
    ),
    (
        "broadcast <text>",
        "a log message to every session's standalone stream",
    ),
    (
        "task <name> [count] [interval_ms]",
        "a background task: `count` messages on the standalone stream",
    ),
    (
        "operation [steps] [step_ms]",
        "a long operation with a live progress bar",
    ),
    ("status", "the server's status"),
    ("summary", "what was received so far, by kind, and timing"),
    ("tools", "the server's tools"),
    (
        "wait",
        "wait until every background task started here has delivered all its messages",
    ),
    ("help", "this list"),
    ("quit", "end the session (also: exit, Ctrl-D, end of input)"),
];

/// One parsed command.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// `notify <text> [level]`.
    Notify {
        /// The message.
        text: String,
        /// Its level, if given.
        level: Option<String>,
    },
    /// `broadcast <text>`.
    Broadcast {
        /// The message.
        text: String,
    },
    /// `task <name> [count] [interval_ms]`.
    Task {
        /// The task's name.
        name: String,
        /// How many messages.
        count: Option<u32>,
        /// Milliseconds between them.
        interval_ms: Option<u64>,
    },
    /// `operation [steps] [step_ms]`.
    Operation {
        /// Steps.
        steps: Option<u32>,
        /// Milliseconds per step.
        step_ms: Option<u64>,
    },
    /// `status`.
    Status,
    /// `summary`.
    Summary,
    /// `tools`.
    Tools,
    /// `wait`.
    Wait,
    /// `help`.
    Help,
    /// `quit`.
    Quit,
}

/// Parses one line. `Ok(None)` for a blank line or a `#` comment (handy in scripts);
/// `Err` is a sentence saying what is wrong, with the usage.
pub fn parse(line: &str) -> Result<Option<Command>, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let (word, rest) = match line.split_once(char::is_whitespace) {
        Some((word, rest)) => (word, rest.trim()),
        None => (line, ""),
    };
    let args: Vec<&str> = rest.split_whitespace().collect();
    let usage = |u: &str| format!("usage: {u}");
    let command = match word.to_ascii_lowercase().as_str() {
        "notify" => {
            if args.is_empty() {
                return Err(usage(HELP[0].0));
            }
            // The last word is the level when it names one and is not the whole message.
            match args.split_last() {
                Some((last, first)) if !first.is_empty() && is_level(last) => Command::Notify {
                    text: first.join(" "),
                    level: Some(last.to_ascii_lowercase()),
                },
                _ => Command::Notify {
                    text: rest.to_owned(),
                    level: None,
                },
            }
        }
        "broadcast" => {
            if rest.is_empty() {
                return Err(usage(HELP[1].0));
            }
            Command::Broadcast {
                text: rest.to_owned(),
            }
        }
        "task" => match args.as_slice() {
            [name, more @ ..] if more.len() <= 2 => Command::Task {
                name: (*name).to_owned(),
                count: number(more.first(), "count")?,
                interval_ms: number(more.get(1), "interval_ms")?,
            },
            _ => return Err(usage(HELP[2].0)),
        },
        "operation" if args.len() <= 2 => Command::Operation {
            steps: number(args.first(), "steps")?,
            step_ms: number(args.get(1), "step_ms")?,
        },
        "operation" => return Err(usage(HELP[3].0)),
        "status" => Command::Status,
        "summary" => Command::Summary,
        "tools" => Command::Tools,
        "wait" => Command::Wait,
        "help" | "?" => Command::Help,
        "quit" | "exit" => Command::Quit,
        other => return Err(format!("unknown command {other:?}; type help for the list")),
    };
    Ok(Some(command))
}

fn is_level(word: &str) -> bool {
    LEVELS.iter().any(|l| l.eq_ignore_ascii_case(word))
}

fn number<T: std::str::FromStr>(word: Option<&&str>, name: &str) -> Result<Option<T>, String> {
    match word {
        None => Ok(None),
        Some(w) => w
            .parse()
            .map(Some)
            .map_err(|_| format!("{name} must be a whole number, not {w:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_takes_a_trailing_level_only_when_it_names_one() {
        assert_eq!(
            parse("notify disk almost full warning"),
            Ok(Some(Command::Notify {
                text: "disk almost full".into(),
                level: Some("warning".into())
            }))
        );
        assert_eq!(
            parse("notify warning"),
            Ok(Some(Command::Notify {
                text: "warning".into(),
                level: None
            }))
        );
        assert_eq!(
            parse("notify all  good"),
            Ok(Some(Command::Notify {
                text: "all  good".into(),
                level: None
            }))
        );
    }

    #[test]
    fn numbers_are_checked_and_usage_is_shown() {
        assert_eq!(
            parse("task t 3 50"),
            Ok(Some(Command::Task {
                name: "t".into(),
                count: Some(3),
                interval_ms: Some(50)
            }))
        );
        assert_eq!(
            parse("operation"),
            Ok(Some(Command::Operation {
                steps: None,
                step_ms: None
            }))
        );
        assert!(parse("task t x").unwrap_err().contains("count"));
        assert!(parse("task").unwrap_err().starts_with("usage: task"));
        assert!(parse("operation 1 2 3").unwrap_err().starts_with("usage"));
        assert!(parse("frobnicate").unwrap_err().contains("unknown command"));
        assert_eq!(parse("  # a comment"), Ok(None));
        assert_eq!(parse("QUIT"), Ok(Some(Command::Quit)));
    }
}
