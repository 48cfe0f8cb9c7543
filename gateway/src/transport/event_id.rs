//! SSE event ids. Each names its stream and a position in it, so a `Last-Event-ID` sent
//! to any gateway says exactly which stream to resume and from where.
//!
//! - standalone stream: `s.<session seq>.<broadcast seq>`: the stream merges the session's
//!   log and the broadcast log, so its position is a pair.
//! - a request's stream: `r.<stream id, 16 hex>.<session seq>`.
//!
//! Ids are not secrets: a stream is only ever resumed within the session whose id the
//! request also carries.

use mcp_bus::{StandaloneCursor, StreamId};

/// A decoded event id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventId {
    /// A position on the session's standalone stream.
    Standalone(StandaloneCursor),
    /// A position on one request's stream.
    Request {
        /// The request's stream.
        stream: StreamId,
        /// The session-log position.
        seq: u64,
    },
}

impl EventId {
    /// The wire form.
    pub fn encode(&self) -> String {
        match self {
            Self::Standalone(c) => format!("s.{}.{}", c.session_seq, c.broadcast_seq),
            Self::Request { stream, seq } => format!("r.{:016x}.{seq}", stream.0),
        }
    }

    /// Parses the wire form; `None` for anything we did not produce.
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.split('.');
        let kind = parts.next()?;
        let a = parts.next()?;
        let b = parts.next()?;
        if parts.next().is_some() {
            return None;
        }
        // Only the canonical spelling we produce: no leading zeros, lower-case hex.
        let decimal = |t: &str| -> Option<u64> {
            let canonical = !t.is_empty()
                && t.len() <= 20
                && t.bytes().all(|c| c.is_ascii_digit())
                && (t == "0" || !t.starts_with('0'));
            canonical.then(|| t.parse().ok()).flatten()
        };
        match kind {
            "s" => Some(Self::Standalone(StandaloneCursor {
                session_seq: decimal(a)?,
                broadcast_seq: decimal(b)?,
            })),
            "r" => {
                if a.len() != 16
                    || !a
                        .bytes()
                        .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
                {
                    return None;
                }
                let stream = u64::from_str_radix(a, 16).ok().filter(|s| *s != 0)?;
                Some(Self::Request {
                    stream: StreamId(stream),
                    seq: decimal(b)?,
                })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let ids = [
            EventId::Standalone(StandaloneCursor {
                session_seq: 0,
                broadcast_seq: 0,
            }),
            EventId::Standalone(StandaloneCursor {
                session_seq: u64::MAX,
                broadcast_seq: 17,
            }),
            EventId::Request {
                stream: StreamId(1),
                seq: 42,
            },
            EventId::Request {
                stream: StreamId(u64::MAX),
                seq: u64::MAX,
            },
        ];
        for id in ids {
            assert_eq!(EventId::parse(&id.encode()), Some(id), "{}", id.encode());
        }
    }

    #[test]
    fn refuses_foreign_ids() {
        for bad in [
            "",
            "s",
            "s.1",
            "s.1.2.3",
            "s.-1.2",
            "s.1.x",
            "s.99999999999999999999999.1",
            "r.12.1",
            "r.000000000000000g.1",
            "r.0000000000000000.1",
            "x.1.2",
            "s.+1.2",
            "s. 1.2",
        ] {
            assert_eq!(EventId::parse(bad), None, "{bad:?}");
        }
    }
}
