//! Identifiers that cross process boundaries.

use rand::Rng;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A session id: 128 bits from the operating system's CSPRNG, as 32 lowercase hex
/// characters (visible ASCII, as the transport requires).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionId(String);

impl SessionId {
    /// A fresh random id.
    pub fn generate() -> Self {
        let bytes: [u8; 16] = rand::rng().random();
        Self(hex(&bytes))
    }

    /// An id made from 128 bits the caller derived with a keyed MAC: as unguessable as a
    /// random one to anyone without the key, and the same each time it is derived (a task
    /// taken over by another worker keeps its id).
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(hex(&bytes))
    }

    /// Accepts a client-supplied id if it has the shape we generate. Anything else cannot
    /// name a session of ours, so it is refused before it reaches a store.
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == 32
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
        .then(|| Self(s.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Names one SSE stream of a request within a session (a POST's response stream). Random,
/// so any gateway can create one without coordination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StreamId(pub u64);

impl StreamId {
    /// A fresh random stream id (never 0).
    pub fn generate() -> Self {
        Self(rand::rng().random_range(1..=u64::MAX))
    }
}

/// Names one worker process (or the embedded worker of a standalone gateway).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WorkerId(pub String);

impl WorkerId {
    /// A fresh random worker id.
    pub fn generate() -> Self {
        let bytes: [u8; 6] = rand::rng().random();
        Self(format!("w-{}", hex(&bytes)))
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_are_128_bit_hex_and_parse_back() {
        let a = SessionId::generate();
        let b = SessionId::generate();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 32);
        assert_eq!(SessionId::parse(a.as_str()), Some(a));
        assert_eq!(SessionId::parse("not-a-session"), None);
        assert_eq!(SessionId::parse(&"A".repeat(32)), None);
    }
}
