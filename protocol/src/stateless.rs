//! What protocol revision 2026-07-28 adds at the message level: the request `_meta` that
//! replaces `initialize`, the result fields every response carries (`resultType`, cache
//! hints, the server's identity), and the Base64 sentinel of its mirrored headers.

use crate::jsonrpc::ErrorObject;
use crate::logging::LogLevel;
use base64::Engine;
use serde_json::{Map, Value, json};

/// `_meta` key: the revision a request is written in.
pub const PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// `_meta` key: the client's capabilities, on every request.
pub const CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
/// `_meta` key: the client's name and version (optional).
pub const CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
/// `_meta` key: the lowest `notifications/message` level the request wants to see.
pub const LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
/// Result `_meta` key: the server's name and version.
pub const SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
/// Notification `_meta` key: the id of the `subscriptions/listen` request whose stream
/// carries the notification.
pub const SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";

/// The server's name in `serverInfo`.
pub const SERVER_NAME: &str = "mcp-notify-gateway";

/// How long a client may reuse a list result (`ttlMs`). Lists change only when workers
/// with other tool sets join or leave, which listeners learn at once; this bounds how
/// long a client that does not listen can miss it.
pub const LIST_TTL_MS: u64 = 30_000;

/// The server's `Implementation`: name, title and version.
pub fn server_info() -> Value {
    json!({
        "name": SERVER_NAME,
        "title": "MCP notification gateway",
        "version": env!("CARGO_PKG_VERSION"),
    })
}

/// The `_meta` of a stateless request, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestMeta {
    /// The revision the request is written in (not necessarily one we speak).
    pub protocol_version: String,
    /// The client's capabilities (an object).
    pub client_capabilities: Value,
    /// The client's `Implementation`, when it sent one.
    pub client_info: Option<Value>,
    /// The level from which `notifications/message` may be sent for this request; `None`
    /// means none at all.
    pub log_level: Option<LogLevel>,
}

impl RequestMeta {
    /// The protocol version a request declares in `params._meta`, if any (a quick look
    /// that decides which generation of the protocol serves it).
    pub fn declared_version(params: Option<&Value>) -> Option<&str> {
        params?.get("_meta")?.get(PROTOCOL_VERSION)?.as_str()
    }

    /// Reads and checks `params._meta`; every failure is `-32602`, as the revision asks.
    pub fn from_params(params: Option<&Value>) -> Result<Self, ErrorObject> {
        let meta = params
            .and_then(|p| p.get("_meta"))
            .and_then(Value::as_object)
            .ok_or_else(|| {
                ErrorObject::invalid_params(format!(
                    "params._meta is required: it carries {PROTOCOL_VERSION} and {CLIENT_CAPABILITIES}"
                ))
            })?;
        let protocol_version = meta
            .get(PROTOCOL_VERSION)
            .and_then(Value::as_str)
            .ok_or_else(|| {
                ErrorObject::invalid_params(format!(
                    "params._meta.{PROTOCOL_VERSION}, a string, is required"
                ))
            })?
            .to_owned();
        let client_capabilities = match meta.get(CLIENT_CAPABILITIES) {
            Some(c @ Value::Object(_)) => c.clone(),
            _ => {
                return Err(ErrorObject::invalid_params(format!(
                    "params._meta.{CLIENT_CAPABILITIES}, an object, is required"
                )));
            }
        };
        let client_info = match meta.get(CLIENT_INFO) {
            None | Some(Value::Null) => None,
            Some(c @ Value::Object(_)) => Some(c.clone()),
            Some(_) => {
                return Err(ErrorObject::invalid_params(format!(
                    "params._meta.{CLIENT_INFO} must be an object"
                )));
            }
        };
        let log_level = match meta.get(LOG_LEVEL) {
            None | Some(Value::Null) => None,
            Some(Value::String(level)) => Some(LogLevel::parse(level).ok_or_else(|| {
                ErrorObject::invalid_params(format!(
                    "unknown {LOG_LEVEL} {level:?} (debug, info, notice, warning, error, critical, alert, emergency)"
                ))
            })?),
            Some(_) => {
                return Err(ErrorObject::invalid_params(format!(
                    "params._meta.{LOG_LEVEL} must be a string"
                )));
            }
        };
        Ok(Self {
            protocol_version,
            client_capabilities,
            client_info,
            log_level,
        })
    }
}

/// Whether the result of `method` is a `CacheableResult` (`ttlMs`, `cacheScope`).
pub fn is_cacheable(method: &str) -> bool {
    matches!(
        method,
        "tools/list"
            | "prompts/list"
            | "resources/list"
            | "resources/templates/list"
            | "resources/read"
            | "server/discover"
    )
}

/// Completes a result for a 2026-07-28 client: `resultType` (`"complete"` unless the
/// producer set it), the server's identity in `_meta`, and cache hints on cacheable
/// results when the producer gave none. `resources/read` defaults to no reuse
/// (`ttlMs: 0`, private): a resource can change at any time and may depend on the caller.
pub fn finish_result(method: &str, result: &mut Value) {
    let Value::Object(fields) = result else {
        return;
    };
    fields
        .entry("resultType")
        .or_insert_with(|| Value::String("complete".into()));
    if is_cacheable(method) && fields.get("resultType") == Some(&json!("complete")) {
        let (ttl, scope) = if method == "resources/read" {
            (0, "private")
        } else {
            (LIST_TTL_MS, "public")
        };
        fields.entry("ttlMs").or_insert_with(|| json!(ttl));
        fields.entry("cacheScope").or_insert_with(|| json!(scope));
    }
    let meta = fields
        .entry("_meta")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(meta) = meta {
        meta.entry(SERVER_INFO).or_insert_with(server_info);
    }
}

/// A header value that is not a valid mirror of a body value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderValueError {
    /// The `=?base64?…?=` sentinel wraps something that is not canonical, padded Base64.
    #[error("the value is not valid Base64 inside =?base64?…?=")]
    BadBase64,
    /// The decoded bytes are not UTF-8.
    #[error("the Base64 value does not decode to UTF-8")]
    NotUtf8,
}

/// Decodes a mirrored header value (`Mcp-Name`, `Mcp-Param-*`): optional whitespace
/// around it is dropped, and a value wrapped as `=?base64?…?=` is decoded, strictly (the
/// standard alphabet with padding). Anything else is the literal value.
pub fn decode_header_value(raw: &str) -> Result<String, HeaderValueError> {
    let value = raw.trim_matches([' ', '\t']);
    match value
        .strip_prefix("=?base64?")
        .and_then(|rest| rest.strip_suffix("?="))
    {
        Some(encoded) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|_| HeaderValueError::BadBase64)?;
            String::from_utf8(bytes).map_err(|_| HeaderValueError::NotUtf8)
        }
        None => Ok(value.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(fields: Value) -> Option<Value> {
        Some(json!({"_meta": fields}))
    }

    #[test]
    fn reads_request_meta_and_refuses_what_is_missing() {
        let ok = RequestMeta::from_params(
            meta(json!({
                PROTOCOL_VERSION: "2026-07-28",
                CLIENT_CAPABILITIES: {"sampling": {}},
                LOG_LEVEL: "warning",
            }))
            .as_ref(),
        )
        .unwrap();
        assert_eq!(ok.protocol_version, "2026-07-28");
        assert_eq!(ok.log_level, Some(LogLevel::Warning));
        assert_eq!(ok.client_info, None);

        for bad in [
            None,
            Some(json!({})),
            meta(json!({CLIENT_CAPABILITIES: {}})),
            meta(json!({PROTOCOL_VERSION: "2026-07-28"})),
            meta(json!({PROTOCOL_VERSION: "2026-07-28", CLIENT_CAPABILITIES: []})),
            meta(
                json!({PROTOCOL_VERSION: "2026-07-28", CLIENT_CAPABILITIES: {}, LOG_LEVEL: "loud"}),
            ),
        ] {
            let error = RequestMeta::from_params(bad.as_ref()).unwrap_err();
            assert_eq!(error.code, crate::jsonrpc::INVALID_PARAMS, "{bad:?}");
        }
    }

    #[test]
    fn finishes_results_without_overriding_the_producer() {
        let mut list = json!({"tools": []});
        finish_result("tools/list", &mut list);
        assert_eq!(list["resultType"], "complete");
        assert_eq!(list["ttlMs"], LIST_TTL_MS);
        assert_eq!(list["cacheScope"], "public");
        assert_eq!(list["_meta"][SERVER_INFO]["name"], SERVER_NAME);

        let mut pending = json!({"resultType": "input_required", "requestState": "s"});
        finish_result("resources/read", &mut pending);
        assert_eq!(pending["resultType"], "input_required");
        assert!(pending.get("ttlMs").is_none());

        let mut call = json!({"content": [], "_meta": {"x": 1}});
        finish_result("tools/call", &mut call);
        assert!(call.get("ttlMs").is_none());
        assert_eq!(call["_meta"]["x"], 1);
    }

    #[test]
    fn decodes_header_values_strictly() {
        assert_eq!(decode_header_value("  plain\t").unwrap(), "plain");
        assert_eq!(decode_header_value("=?base64?SGVsbG8=?=").unwrap(), "Hello");
        assert_eq!(
            decode_header_value("=?base64?SGVsbG8?="),
            Err(HeaderValueError::BadBase64)
        );
        assert_eq!(
            decode_header_value("=?base64?SGVs!!!bG8=?="),
            Err(HeaderValueError::BadBase64)
        );
        // Without both markers the value is literal.
        assert_eq!(
            decode_header_value("=?base64?SGVsbG8=").unwrap(),
            "=?base64?SGVsbG8="
        );
        assert_eq!(decode_header_value("SGVsbG8=").unwrap(), "SGVsbG8=");
    }
}
