//! Rendering: each record as a line of text or one JSON object, live progress bars
//! (`indicatif`) for operations on a terminal, and where the lines go (stdout, or the line
//! editor's printer so that notifications never garble the prompt).

use crate::command::HELP;
use crate::events::{Ending, Event, Notification, Outcome, Record, Summary, Transport, millis};
use crate::feed::Item;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};
use std::io::Write;
use std::time::Duration;

/// How records are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Lines for people, with progress bars on a terminal.
    Text,
    /// One JSON object per line for scripts; the summary is the last line.
    Json,
}

/// Where output lines go.
pub trait Sink: Send {
    /// Writes one line (without its newline).
    fn line(&mut self, line: &str);
}

/// Plain standard output.
pub struct Stdout;

impl Sink for Stdout {
    fn line(&mut self, line: &str) {
        let mut out = std::io::stdout().lock();
        // A closed pipe (`mcp-notify ... | head`) is not an error worth a panic.
        let _ = writeln!(out, "{line}").and_then(|()| out.flush());
    }
}

/// Renders records; lives on the render thread.
pub struct Renderer {
    format: Format,
    sink: Box<dyn Sink>,
    /// Draw bars (text mode with a terminal on stderr); otherwise progress is printed as lines.
    bars_enabled: bool,
    /// The bar being drawn and the progress token it follows (commands run one at a time).
    bar: Option<(String, ProgressBar)>,
}

impl Renderer {
    /// A renderer writing to stdout; `bars_enabled` when stderr is a terminal.
    pub fn new(format: Format, bars_enabled: bool) -> Self {
        Self {
            format,
            sink: Box::new(Stdout),
            bars_enabled: bars_enabled && format == Format::Text,
            bar: None,
        }
    }

    pub(crate) fn handle(&mut self, item: Item) {
        match item {
            Item::Record(record) => self.record(&record),
            Item::StartBar { token, label } => self.start_bar(token, label),
            Item::EndBar(token) => {
                if let Some((t, bar)) = self.bar.take() {
                    if t == token {
                        // The result line that follows says how it ended; a bar left on
                        // screen would be overwritten by it anyway (the cursor is still on
                        // the bar's line).
                        bar.finish_and_clear();
                    } else {
                        self.bar = Some((t, bar));
                    }
                }
            }
            Item::Summary(summary, elapsed) => self.summary(&summary, elapsed),
            Item::SetSink(sink) => self.sink = sink,
            Item::Flush(done) => {
                let _ = done.send(());
            }
        }
    }

    fn start_bar(&mut self, token: String, label: String) {
        if !self.bars_enabled {
            return;
        }
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{prefix} [{bar:30.cyan/blue}] {pos}/{len} {msg} ({elapsed})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(label);
        bar.enable_steady_tick(Duration::from_millis(200));
        self.bar = Some((token, bar));
    }

    /// Writes a line to the sink, lifting the bar out of the way while it does.
    fn out(&mut self, line: &str) {
        match &self.bar {
            Some((_, bar)) => {
                let sink = &mut self.sink;
                bar.suspend(|| sink.line(line));
            }
            None => self.sink.line(line),
        }
    }

    /// Writes an error sentence to stderr (text mode), out of the bar's way.
    fn err(&self, sentence: &str) {
        let write = || {
            let mut e = std::io::stderr().lock();
            let _ = writeln!(e, "error: {sentence}");
        };
        match &self.bar {
            Some((_, bar)) => bar.suspend(write),
            None => write(),
        }
    }

    fn record(&mut self, record: &Record) {
        // Progress of the bar's token moves the bar instead of printing a line.
        if let (
            Format::Text,
            Some((bar_token, bar)),
            Event::Notification(Notification::Progress {
                token,
                progress,
                total,
                message,
            }),
        ) = (self.format, &self.bar, &record.event)
            && bar_token == token
        {
            if let Some(total) = total {
                bar.set_length(to_u64(*total));
            }
            bar.set_position(to_u64(*progress));
            bar.set_message(message.clone().unwrap_or_default());
            return;
        }
        match self.format {
            Format::Json => {
                let line = json_line(record).to_string();
                self.out(&line);
                // The sentence also goes to stderr, for the person running the script.
                if let Event::Fatal(sentence)
                | Event::Outcome(Outcome {
                    result: Err(sentence),
                    ..
                }) = &record.event
                {
                    eprintln!("mcp-notify: {sentence}");
                }
            }
            Format::Text => match &record.event {
                Event::Fatal(sentence) => self.err(sentence),
                Event::Help => {
                    let width = HELP.iter().map(|(u, _)| u.len()).max().unwrap_or(0);
                    for (usage, what) in HELP {
                        let line = format!("  {usage:<width$}  {what}");
                        self.out(&line);
                    }
                }
                Event::Outcome(Outcome {
                    result: Err(sentence),
                    ..
                }) => self.err(sentence),
                _ => {
                    let line = text_line(record);
                    self.out(&line);
                }
            },
        }
    }

    fn summary(&mut self, summary: &Summary, elapsed: Duration) {
        match self.format {
            Format::Json => {
                let line = summary.to_json(elapsed).to_string();
                self.out(&line);
            }
            Format::Text => {
                for line in summary_text(summary, elapsed) {
                    self.out(&line);
                }
            }
        }
    }
}

fn to_u64(x: f64) -> u64 {
    if x.is_finite() && x > 0.0 {
        x.round() as u64
    } else {
        0
    }
}

/// Compact text for a JSON value: strings as they are, anything else as JSON.
fn compact(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// One record as a line of text.
pub fn text_line(record: &Record) -> String {
    let at = format!("{:>7.2}s", record.at.as_secs_f64());
    match &record.event {
        Event::Connected {
            server,
            version,
            protocol,
        } => format!("{at}  connected to {server} {version} (protocol {protocol})"),
        Event::Notification(Notification::Message {
            level,
            logger,
            data,
        }) => format!(
            "{at}  {level:<9} {:<14} {}",
            logger.as_deref().unwrap_or("-"),
            compact(data)
        ),
        Event::Notification(Notification::Progress {
            token,
            progress,
            total,
            message,
        }) => {
            let of = total.map(|t| format!("/{}", number(t))).unwrap_or_default();
            let msg = message
                .as_deref()
                .map(|m| format!("  {m}"))
                .unwrap_or_default();
            format!("{at}  progress  {token:<14} {}{of}{msg}", number(*progress))
        }
        Event::Notification(Notification::Other { method, params }) => {
            format!("{at}  {method} {}", compact(params))
        }
        Event::Transport(t) => format!("{at}  ! {}", transport_text(t)),
        Event::Outcome(o) => match &o.result {
            Ok(text) => format!("{at}  ✓ {} ({} ms): {text}", o.command, millis(o.took)),
            Err(sentence) => format!("{at}  ✗ {sentence}"),
        },
        Event::Help => format!("{at}  commands: {}", HELP.map(|(u, _)| u).join(" | ")),
        Event::Fatal(sentence) => format!("{at}  error: {sentence}"),
    }
}

fn transport_text(t: &Transport) -> String {
    let cursor = |id: &Option<String>| id.clone().unwrap_or_else(|| "(none)".into());
    match t {
        Transport::Dropped {
            stream,
            last_event_id,
            error,
        } => format!(
            "{} stream dropped ({error}); resuming from event {}",
            stream.as_str(),
            cursor(last_event_id)
        ),
        Transport::Resumed {
            stream,
            last_event_id: Some(id),
            ending,
            ..
        } => {
            let how = match ending {
                Ending::Dropped => "dropped",
                Ending::Closed => "closed by the server",
            };
            format!("{} stream {how}; resumed from event {id}", stream.as_str())
        }
        Transport::Resumed {
            stream,
            last_event_id: None,
            ..
        } => format!(
            "{} stream reopened without a cursor (it had carried no event yet)",
            stream.as_str()
        ),
        Transport::ResumeFailed {
            last_event_id,
            attempt,
            error,
        } => format!(
            "resuming from event {} failed (attempt {attempt}): {error}",
            cursor(last_event_id)
        ),
        Transport::GaveUp { attempts } => format!(
            "gave up resuming a stream after {attempts} failed attempts: what it would have carried is lost"
        ),
    }
}

/// One record as a JSON object.
pub fn json_line(record: &Record) -> Value {
    let at_ms = millis(record.at);
    match &record.event {
        Event::Connected {
            server,
            version,
            protocol,
        } => json!({"type": "connected", "server": server, "version": version,
                    "protocol": protocol, "at_ms": at_ms}),
        Event::Notification(Notification::Message {
            level,
            logger,
            data,
        }) => json!({"type": "notification", "kind": "message",
                    "method": "notifications/message", "level": level, "logger": logger,
                    "data": data, "at_ms": at_ms}),
        Event::Notification(Notification::Progress {
            token,
            progress,
            total,
            message,
        }) => json!({"type": "notification", "kind": "progress",
                    "method": "notifications/progress", "token": token, "progress": progress,
                    "total": total, "message": message, "at_ms": at_ms}),
        Event::Notification(Notification::Other { method, params }) => {
            json!({"type": "notification", "kind": "other", "method": method,
                   "params": params, "at_ms": at_ms})
        }
        Event::Transport(Transport::Dropped {
            stream,
            last_event_id,
            error,
        }) => json!({"type": "stream_dropped", "stream": stream.as_str(),
                    "last_event_id": last_event_id, "error": error, "at_ms": at_ms}),
        Event::Transport(Transport::Resumed {
            stream,
            last_event_id,
            ending,
            attempt,
        }) => json!({"type": "reconnected", "stream": stream.as_str(),
                    "last_event_id": last_event_id,
                    "after": match ending { Ending::Dropped => "dropped", Ending::Closed => "closed" },
                    "attempt": attempt, "at_ms": at_ms}),
        Event::Transport(Transport::ResumeFailed {
            last_event_id,
            attempt,
            error,
        }) => json!({"type": "resume_failed", "last_event_id": last_event_id,
                    "attempt": attempt, "error": error, "at_ms": at_ms}),
        Event::Transport(Transport::GaveUp { attempts }) => {
            json!({"type": "stream_lost", "attempts": attempts, "at_ms": at_ms})
        }
        Event::Outcome(o) => {
            let mut v = json!({"type": "result", "command": o.command, "tool": o.tool,
                               "ok": o.result.is_ok(), "took_ms": millis(o.took), "at_ms": at_ms});
            match &o.result {
                Ok(text) => v["text"] = json!(text),
                Err(sentence) => v["error"] = json!(sentence),
            }
            if let Some(value) = &o.value {
                v["value"] = value.clone();
            }
            v
        }
        Event::Help => {
            json!({"type": "help", "commands": HELP.map(|(usage, what)| json!({"usage": usage, "what": what}))})
        }
        Event::Fatal(sentence) => json!({"type": "error", "message": sentence, "at_ms": at_ms}),
    }
}

/// The summary as lines of text.
pub fn summary_text(s: &Summary, elapsed: Duration) -> Vec<String> {
    let join = |m: &std::collections::BTreeMap<String, u64>| {
        if m.is_empty() {
            "none".to_owned()
        } else {
            m.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let secs = |d: Option<Duration>| {
        d.map(|d| format!("{:.2}s", d.as_secs_f64()))
            .unwrap_or_else(|| "-".into())
    };
    let mut lines = vec![
        "── summary ──".to_owned(),
        format!(
            "notifications  {} in {:.2}s (first at {}, last at {})",
            s.notifications(),
            elapsed.as_secs_f64(),
            secs(s.first_notification),
            secs(s.last_notification)
        ),
        format!("progress       {}", s.progress),
        format!("messages       {}", s.messages),
        format!("  by level     {}", join(&s.by_level)),
        format!("  by logger    {}", join(&s.by_logger)),
        format!("other          {}", join(&s.other)),
        format!(
            "streams        {} resumed, {} lost",
            s.reconnects, s.lost_streams
        ),
    ];
    for (command, c) in &s.commands {
        let avg = millis(c.total).checked_div(c.runs).unwrap_or(0);
        lines.push(format!(
            "{command:<14} {}x, {} failed, avg {avg} ms, max {} ms",
            c.runs,
            c.failed,
            millis(c.max)
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::StreamKind;

    #[test]
    fn a_resumed_stream_reads_as_one_sentence_and_one_object() {
        let record = Record {
            at: Duration::from_millis(1500),
            event: Event::Transport(Transport::Resumed {
                stream: StreamKind::Standalone,
                last_event_id: Some("s.3.0".into()),
                ending: Ending::Dropped,
                attempt: 1,
            }),
        };
        assert!(
            text_line(&record).ends_with("standalone stream dropped; resumed from event s.3.0"),
            "{}",
            text_line(&record)
        );
        let v = json_line(&record);
        assert_eq!(v["type"], "reconnected");
        assert_eq!(v["last_event_id"], "s.3.0");
        assert_eq!(v["after"], "dropped");
        assert_eq!(v["at_ms"], 1500);
    }

    #[test]
    fn notifications_carry_their_kind_and_method() {
        let record = Record {
            at: Duration::ZERO,
            event: Event::Notification(Notification::Progress {
                token: "op".into(),
                progress: 2.0,
                total: Some(4.0),
                message: Some("step 2/4".into()),
            }),
        };
        let v = json_line(&record);
        assert_eq!(
            (v["type"].as_str(), v["kind"].as_str(), v["method"].as_str()),
            (
                Some("notification"),
                Some("progress"),
                Some("notifications/progress")
            )
        );
        assert!(text_line(&record).contains("2/4  step 2/4"));
    }
}
