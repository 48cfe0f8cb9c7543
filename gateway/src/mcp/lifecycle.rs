//! `initialize`: version negotiation and the server's capabilities.

use mcp_protocol::{ErrorObject, ProtocolVersion};
use serde_json::{Value, json};

/// The server's name in `serverInfo`.
pub const SERVER_NAME: &str = "mcp-notify-gateway";

/// What `initialize` asked for, validated.
#[derive(Debug, Clone)]
pub struct InitializeRequest {
    /// The revision we will speak.
    pub version: ProtocolVersion,
    /// The client's capabilities.
    pub capabilities: Value,
    /// The client's `clientInfo`.
    pub client_info: Value,
}

/// Validates `initialize` params and negotiates the revision: the client's if we speak
/// it, else our latest (the client then decides whether it can go on).
pub fn negotiate(params: Option<&Value>) -> Result<InitializeRequest, ErrorObject> {
    let params = params.ok_or_else(|| ErrorObject::invalid_params("initialize needs params"))?;
    let requested = params
        .get("protocolVersion")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ErrorObject::invalid_params("initialize needs params.protocolVersion, a string")
        })?;
    let capabilities = match params.get("capabilities") {
        Some(c @ Value::Object(_)) => c.clone(),
        None => json!({}),
        Some(_) => {
            return Err(ErrorObject::invalid_params(
                "params.capabilities must be an object",
            ));
        }
    };
    let client_info = match params.get("clientInfo") {
        Some(c @ Value::Object(_)) => c.clone(),
        None => json!({}),
        Some(_) => {
            return Err(ErrorObject::invalid_params(
                "params.clientInfo must be an object",
            ));
        }
    };
    Ok(InitializeRequest {
        // 2026-07-28 has no `initialize`: a client asking for it here gets the newest
        // session revision, and may then speak 2026-07-28 by `_meta` instead.
        version: ProtocolVersion::parse(requested)
            .filter(|v| !v.is_stateless())
            .unwrap_or(ProtocolVersion::LATEST),
        capabilities,
        client_info,
    })
}

/// The `InitializeResult`.
pub fn initialize_result(version: ProtocolVersion) -> Value {
    json!({
        "protocolVersion": version.as_str(),
        "capabilities": {
            "tools": {"listChanged": true},
            "resources": {"subscribe": true, "listChanged": true},
            "prompts": {"listChanged": true},
            "completions": {},
            "logging": {},
        },
        "serverInfo": {
            "name": SERVER_NAME,
            "title": "MCP notification gateway",
            "version": env!("CARGO_PKG_VERSION"),
        },
        "instructions": "Tools run on workers behind this gateway. Progress and log notifications arrive on each request's stream; broadcasts and background-task notifications on the session's standalone (GET) stream. Streams resume with Last-Event-ID on any gateway.",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiates_known_and_unknown_versions() {
        let known = negotiate(Some(&json!({"protocolVersion": "2025-03-26"}))).unwrap();
        assert_eq!(known.version, ProtocolVersion::V2025_03_26);
        let unknown = negotiate(Some(&json!({"protocolVersion": "1999-01-01"}))).unwrap();
        assert_eq!(unknown.version, ProtocolVersion::LATEST);
        let stateless = negotiate(Some(&json!({"protocolVersion": "2026-07-28"}))).unwrap();
        assert_eq!(stateless.version, ProtocolVersion::LATEST);
        assert!(negotiate(None).is_err());
        assert!(negotiate(Some(&json!({"protocolVersion": 5}))).is_err());
        assert!(
            negotiate(Some(
                &json!({"protocolVersion": "2025-06-18", "capabilities": []})
            ))
            .is_err()
        );
    }
}
