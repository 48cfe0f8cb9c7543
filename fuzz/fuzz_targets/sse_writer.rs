//! The SSE writer: `encode_frame` must produce exactly one event that any spec-following
//! client reads back as the same data, id and retry, and a message written ahead of time
//! (a broadcast serialized once for every stream) must come out byte for byte as the same
//! message serialized by the writer.
//!
//! Input format (text): line 1 is the event id (empty: none), line 2 the retry hint in ms
//! (empty or not a number: none), the rest the data: a JSON value, or when it is not JSON,
//! a JSON string holding the raw text (so newlines, CRs and control characters reach the
//! writer); empty: no data (the priming event). Ids the gateway writes come from
//! `EventId::encode`, so ids with CR or NUL are out of scope (the `event_id` target checks
//! that encoded ids never contain them).

#![no_main]

use gateway::transport::pump::{Frame, Payload};
use gateway::transport::respond::encode_frame;
use libfuzzer_sys::fuzz_target;
use mcp_protocol::LogLevel;
use serde_json::Value;
use std::time::Duration;

fuzz_target!(|input: &[u8]| {
    let mut lines = input.splitn(3, |b| *b == b'\n');
    let (Some(id), Some(retry)) = (lines.next(), lines.next()) else {
        return;
    };
    let rest = lines.next().unwrap_or_default();
    let Ok(id) = std::str::from_utf8(id) else {
        return;
    };
    if id.contains(['\r', '\0']) {
        return;
    }
    let id = (!id.is_empty()).then(|| id.to_owned());
    let retry = std::str::from_utf8(retry)
        .ok()
        .and_then(|r| r.parse::<u64>().ok())
        .map(Duration::from_millis);
    let data = (!rest.is_empty()).then(|| {
        serde_json::from_slice::<Value>(rest)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(rest).into_owned()))
    });
    if let Some(data) = &data {
        let _ = LogLevel::message_passes(data, Some(LogLevel::Info));
    }
    let frame = Frame {
        id,
        data: data.clone().map(Payload::Value),
        retry,
        is_response: false,
    };
    let bytes = encode_frame(&frame);
    if let Some(value) = &data {
        for written in [
            Payload::Encoded(value.to_string()),
            Payload::Shared(value.to_string().into()),
        ] {
            let ahead = Frame {
                data: Some(written),
                ..frame.clone()
            };
            assert_eq!(encode_frame(&ahead), bytes, "written ahead differs");
        }
    }
    let text = std::str::from_utf8(&bytes).expect("SSE is UTF-8");
    assert!(text.ends_with("\n\n"), "{text:?}");

    let expected_data = data.as_ref().map(Value::to_string).unwrap_or_default();
    assert!(
        !expected_data.contains(['\n', '\r']),
        "compact JSON has a raw line break"
    );

    let parsed = parse_sse(text);
    assert!(parsed.leftover.is_empty(), "an unterminated line: {text:?}");
    assert_eq!(parsed.events.len(), 1, "{text:?}");
    assert_eq!(parsed.blank_lines, 1, "one event, one blank line: {text:?}");
    let event = &parsed.events[0];
    assert_eq!(event.data, expected_data, "{text:?}");
    assert_eq!(
        event.last_event_id,
        frame.id.clone().unwrap_or_default(),
        "{text:?}"
    );
    assert_eq!(
        parsed.retry,
        frame.retry.map(|r| r.as_millis().to_string()),
        "{text:?}"
    );
    if let Some(data) = &data {
        let back: Value = serde_json::from_str(&event.data).expect("data is JSON");
        assert_eq!(&back, data);
    }

    // Two frames back to back are two events: framing never bleeds into the next one.
    let twice = format!("{text}{text}");
    let parsed = parse_sse(&twice);
    assert_eq!(parsed.events.len(), 2);
    assert_eq!(parsed.events[0], parsed.events[1]);
});

#[derive(Debug, PartialEq)]
struct Event {
    data: String,
    last_event_id: String,
}

struct Parsed {
    events: Vec<Event>,
    retry: Option<String>,
    blank_lines: usize,
    leftover: String,
}

/// A reference parser for `text/event-stream`, after the WHATWG HTML standard
/// ("9.2.6 Interpreting an event stream").
fn parse_sse(text: &str) -> Parsed {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Parsed {
        events: Vec::new(),
        retry: None,
        blank_lines: 0,
        leftover: String::new(),
    };
    let mut data = String::new();
    let mut id_buffer = String::new();
    let mut rest = text;
    loop {
        // A line ends at CRLF, LF or CR; a final line without one is not processed.
        let Some(end) = rest.find(['\r', '\n']) else {
            out.leftover = rest.to_owned();
            break;
        };
        let line = &rest[..end];
        let skip = if rest[end..].starts_with("\r\n") {
            2
        } else {
            1
        };
        rest = &rest[end + skip..];
        if line.is_empty() {
            out.blank_lines += 1;
            // Dispatch sets the last event id, even when no event results.
            let last_event_id = id_buffer.clone();
            if data.is_empty() {
                continue;
            }
            if data.ends_with('\n') {
                data.pop();
            }
            out.events.push(Event {
                data: std::mem::take(&mut data),
                last_event_id,
            });
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.find(':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(' ').unwrap_or(value))
            }
            None => (line, ""),
        };
        match field {
            "data" => {
                data.push_str(value);
                data.push('\n');
            }
            "id" if !value.contains('\0') => id_buffer = value.to_owned(),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                out.retry = Some(value.to_owned());
            }
            _ => {}
        }
    }
    out
}
