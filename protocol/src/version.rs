//! The protocol revisions this project speaks, and the behaviours that depend on them.

use std::fmt;

/// A revision of MCP: the session protocol (2025-03-26 to 2025-11-25), negotiated once by
/// `initialize`, or the stateless one (2026-07-28), declared by every request's `_meta`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProtocolVersion {
    /// 2025-03-26: Streamable HTTP, JSON-RPC batches allowed.
    V2025_03_26,
    /// 2025-06-18: batches removed, `MCP-Protocol-Version` header.
    V2025_06_18,
    /// 2025-11-25: SSE priming events and polling, input validation as tool errors.
    V2025_11_25,
    /// 2026-07-28: no sessions; per-request `_meta`, `server/discover`,
    /// `subscriptions/listen`, multi round-trip requests, `resultType`.
    V2026_07_28,
}

impl ProtocolVersion {
    /// Every revision we speak, oldest first.
    pub const ALL: [ProtocolVersion; 4] = [
        Self::V2025_03_26,
        Self::V2025_06_18,
        Self::V2025_11_25,
        Self::V2026_07_28,
    ];
    /// The newest session revision: what `initialize` answers with when a client asks for
    /// one we do not speak (or for the stateless one, which has no `initialize`).
    pub const LATEST: ProtocolVersion = Self::V2025_11_25;
    /// The stateless revision.
    pub const STATELESS: ProtocolVersion = Self::V2026_07_28;

    /// Parses a revision string; `None` for revisions we do not speak.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "2025-03-26" => Some(Self::V2025_03_26),
            "2025-06-18" => Some(Self::V2025_06_18),
            "2025-11-25" => Some(Self::V2025_11_25),
            "2026-07-28" => Some(Self::V2026_07_28),
            _ => None,
        }
    }

    /// The revision string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V2025_03_26 => "2025-03-26",
            Self::V2025_06_18 => "2025-06-18",
            Self::V2025_11_25 => "2025-11-25",
            Self::V2026_07_28 => "2026-07-28",
        }
    }

    /// True for the stateless revision: no session, every request stands alone.
    pub fn is_stateless(self) -> bool {
        self >= Self::V2026_07_28
    }

    /// JSON-RPC batches exist only in 2025-03-26.
    pub fn allows_batches(self) -> bool {
        self == Self::V2025_03_26
    }

    /// 2025-11-25 clients expect an empty "priming" event that carries the first event id,
    /// and understand a server that closes the connection and lets them poll. Older clients
    /// may try to parse the empty data as JSON, so they do not get it.
    pub fn sse_priming(self) -> bool {
        self >= Self::V2025_11_25 && !self.is_stateless()
    }

    /// From 2025-11-25 a tool's input validation failure is a tool execution error
    /// (`isError: true`) so a model can correct itself; before, it was `-32602`.
    pub fn validation_errors_are_tool_errors(self) -> bool {
        self >= Self::V2025_11_25
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_orders() {
        for v in ProtocolVersion::ALL {
            assert_eq!(ProtocolVersion::parse(v.as_str()), Some(v));
        }
        assert!(ProtocolVersion::V2025_03_26 < ProtocolVersion::LATEST);
        assert_eq!(ProtocolVersion::parse("2024-11-05"), None);
        assert!(ProtocolVersion::V2025_03_26.allows_batches());
        assert!(!ProtocolVersion::V2025_06_18.allows_batches());
        assert!(ProtocolVersion::STATELESS.is_stateless());
        assert!(!ProtocolVersion::LATEST.is_stateless());
    }
}
