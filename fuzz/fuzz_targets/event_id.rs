//! `Last-Event-ID` parsing: any text a client sends.
//!
//! Input: the header value, as bytes. Invariants: `EventId::parse` never panics; it
//! accepts exactly the grammar below (`s.<dec>.<dec>`, `r.<16 lower-case hex, not all
//! zero>.<dec>`, each decimal 1..=20 digits without leading zeros and at most `u64::MAX`),
//! i.e. exactly the strings `encode` produces; encodings parse back to the same value and
//! are valid header values (visible ASCII only: no CR, LF or NUL, which would break the
//! SSE `id:` line).

#![no_main]

use gateway::transport::event_id::EventId;
use libfuzzer_sys::fuzz_target;
use mcp_bus::{StandaloneCursor, StreamId};

fuzz_target!(|input: &[u8]| {
    if let Ok(text) = std::str::from_utf8(input) {
        let parsed = EventId::parse(text);
        assert_eq!(parsed, grammar(text), "{text:?}");
        if let Some(id) = parsed {
            assert_eq!(id.encode(), text, "only the canonical spelling parses");
            check_wire(id);
        }
    }
    // The same bytes as the fields of an id: encoding then parsing is the identity.
    if input.len() >= 17 {
        let a = u64::from_le_bytes(input[1..9].try_into().unwrap());
        let b = u64::from_le_bytes(input[9..17].try_into().unwrap());
        let id = if input[0] & 1 == 0 {
            EventId::Standalone(StandaloneCursor {
                session_seq: a,
                broadcast_seq: b,
            })
        } else {
            EventId::Request {
                stream: StreamId(a.max(1)),
                seq: b,
            }
        };
        check_wire(id);
    }
});

fn check_wire(id: EventId) {
    let wire = id.encode();
    assert_eq!(EventId::parse(&wire), Some(id), "{wire:?}");
    assert!(wire.bytes().all(|b| b.is_ascii_graphic()), "{wire:?}");
    assert!(http::HeaderValue::from_str(&wire).is_ok(), "{wire:?}");
}

/// The accepted language, written independently of the parser.
fn grammar(text: &str) -> Option<EventId> {
    let decimal = |t: &str| -> Option<u64> {
        if t.is_empty() || t.len() > 20 || !t.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if t.len() > 1 && t.starts_with('0') {
            return None;
        }
        let wide: u128 = t.parse().ok()?;
        u64::try_from(wide).ok()
    };
    let fields: Vec<&str> = text.split('.').collect();
    let [kind, a, b] = fields[..] else {
        return None;
    };
    match kind {
        "s" => Some(EventId::Standalone(StandaloneCursor {
            session_seq: decimal(a)?,
            broadcast_seq: decimal(b)?,
        })),
        "r" => {
            if a.len() != 16 || !a.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                return None;
            }
            let stream = a.bytes().fold(0u64, |acc, d| {
                acc << 4 | u64::from((d as char).to_digit(16).unwrap())
            });
            (stream != 0).then_some(())?;
            Some(EventId::Request {
                stream: StreamId(stream),
                seq: decimal(b)?,
            })
        }
        _ => None,
    }
}
