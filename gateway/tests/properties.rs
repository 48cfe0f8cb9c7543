//! Property tests of the SSE event-id codec (`Last-Event-ID`): every id round-trips,
//! encodings are header-safe, and parsing accepts nothing but the id grammar.
//!
//! Fuzzing covers the same parser with coverage guidance (`fuzz/run.sh`, target
//! `event_id`); these run on every `cargo test` in a fraction of a second.

use axum::http::HeaderValue;
use gateway::transport::event_id::EventId;
use mcp_bus::{StandaloneCursor, StreamId};
use proptest::prelude::*;

fn event_id() -> impl Strategy<Value = EventId> {
    // Edges are likelier than from `any::<u64>()` alone: 0, 1, the widest values.
    let n = || {
        prop_oneof![
            any::<u64>(),
            0..=1_000u64,
            Just(u64::MAX),
            Just(u64::MAX - 1)
        ]
    };
    prop_oneof![
        (n(), n()).prop_map(
            |(session_seq, broadcast_seq)| EventId::Standalone(StandaloneCursor {
                session_seq,
                broadcast_seq
            })
        ),
        (prop_oneof![1..=u64::MAX, Just(1u64), Just(u64::MAX)], n()).prop_map(|(stream, seq)| {
            EventId::Request {
                stream: StreamId(stream),
                seq,
            }
        }),
    ]
}

/// The accepted language, written independently of the parser: `s.<dec>.<dec>` or
/// `r.<16 lower-case hex digits, not all zero>.<dec>`, each decimal 1..=20 ASCII digits
/// without leading zeros (`0` itself excepted) and at most `u64::MAX`.
fn grammar(text: &str) -> Option<EventId> {
    let decimal = |t: &str| -> Option<u64> {
        if t.is_empty() || t.len() > 20 || !t.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if t.len() > 1 && t.starts_with('0') {
            return None;
        }
        u64::try_from(t.parse::<u128>().ok()?).ok()
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
        "r" if a.len() == 16 && a.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) => {
            let stream = u64::from_str_radix(a, 16).ok().filter(|s| *s != 0)?;
            Some(EventId::Request {
                stream: StreamId(stream),
                seq: decimal(b)?,
            })
        }
        _ => None,
    }
}

/// One edit of a string: what a proxy, a client bug or an attacker might do to an id.
#[derive(Debug, Clone)]
enum Edit {
    Insert(usize, char),
    Remove(usize),
    Replace(usize, char),
    Truncate(usize),
    Append(String),
    Prefix(String),
}

fn edit() -> impl Strategy<Value = Edit> {
    let c = prop_oneof![
        prop::sample::select(vec![
            '0', '1', '9', 'a', 'f', 'A', 'F', 'g', 's', 'r', '.', '-', '+', ' ', '\t', '\n', '\r',
            '\0', 'é', '٣', '０',
        ]),
        any::<char>(),
    ];
    prop_oneof![
        (any::<usize>(), c.clone()).prop_map(|(i, c)| Edit::Insert(i, c)),
        any::<usize>().prop_map(Edit::Remove),
        (any::<usize>(), c).prop_map(|(i, c)| Edit::Replace(i, c)),
        any::<usize>().prop_map(Edit::Truncate),
        "[.0-9a-z ]{1,4}".prop_map(Edit::Append),
        "[.0-9a-z ]{1,4}".prop_map(Edit::Prefix),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for e in edits {
        let at = |i: usize, len: usize| if len == 0 { 0 } else { i % len };
        match e {
            Edit::Insert(i, c) => {
                let i = at(*i, chars.len() + 1);
                chars.insert(i, *c);
            }
            Edit::Remove(i) if !chars.is_empty() => {
                let i = at(*i, chars.len());
                chars.remove(i);
            }
            Edit::Replace(i, c) if !chars.is_empty() => {
                let i = at(*i, chars.len());
                chars[i] = *c;
            }
            Edit::Truncate(i) => chars.truncate(at(*i, chars.len() + 1)),
            Edit::Append(s) => chars.extend(s.chars()),
            Edit::Prefix(s) => chars.splice(0..0, s.chars()).for_each(drop),
            _ => {}
        }
    }
    chars.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Standalone cursors and request stream positions survive the wire exactly.
    #[test]
    fn every_id_round_trips(id in event_id()) {
        let wire = id.encode();
        prop_assert_eq!(EventId::parse(&wire), Some(id));
        prop_assert_eq!(grammar(&wire), Some(id));
        // What the GET handler does with the header (it trims) changes nothing.
        prop_assert_eq!(EventId::parse(format!(" {wire}\t").trim()), Some(id));
    }

    /// Encoded ids are visible ASCII (no CR, LF, NUL or space that would break the SSE
    /// `id:` line or a `Last-Event-ID` header), short, and valid header values.
    #[test]
    fn encodings_are_visible_ascii(id in event_id()) {
        let wire = id.encode();
        prop_assert!(wire.bytes().all(|b| b.is_ascii_graphic()), "{:?}", wire);
        prop_assert!(wire.len() <= 2 + 20 + 1 + 20, "{:?}", wire);
        prop_assert!(HeaderValue::from_str(&wire).is_ok());
    }

    /// Distinct ids never share an encoding (resuming one stream can never resume another).
    #[test]
    fn encoding_is_injective(a in event_id(), b in event_id()) {
        prop_assert_eq!(a == b, a.encode() == b.encode());
    }

    /// An edited encoding is either refused, or it is exactly the encoding of the id it
    /// parses to: no edit makes the parser read a position other than the one the text
    /// spells, and no second spelling of a position is accepted.
    #[test]
    fn edited_encodings_are_refused_or_exact(id in event_id(), edits in prop::collection::vec(edit(), 1..4)) {
        let edited = apply(&id.encode(), &edits);
        let parsed = EventId::parse(&edited);
        prop_assert_eq!(parsed, grammar(&edited), "{:?}", edited);
        if let Some(other) = parsed {
            prop_assert_eq!(other.encode(), edited);
        }
    }

    /// Arbitrary text, and text made of the id alphabet: the parser accepts exactly the
    /// grammar, and never panics.
    #[test]
    fn parser_accepts_exactly_the_grammar(
        text in prop_oneof![any::<String>(), "[sr]\\.[0-9a-fA-F+ -]{0,22}\\.[0-9+ -]{0,22}", "[sr.0-9a-f]{0,45}"]
    ) {
        prop_assert_eq!(EventId::parse(&text), grammar(&text), "{:?}", text);
    }
}

// `EventId::parse` accepts only what we produce: non-canonical spellings of a position
// (leading zeros, upper-case hex) are refused.
#[test]
fn only_exact_encodings_parse() {
    for spelling in [
        "s.01.2",
        "s.1.002",
        "s.00.0",
        "r.00000000000000AB.1",
        "r.00000000000000ab.01",
    ] {
        assert_eq!(EventId::parse(spelling), None, "{spelling:?}");
    }
}
