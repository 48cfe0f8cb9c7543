//! Protocol revision 2026-07-28 at the gateway: which requests speak it, the checks every
//! such request passes before it is served (request `_meta`, the mirrored headers), and
//! the answers the gateway gives itself (`server/discover`, the lists).

use axum::http::{HeaderMap, StatusCode};
use mcp_protocol::stateless::{self, RequestMeta, decode_header_value};
use mcp_protocol::{ErrorObject, ProtocolVersion, jsonrpc};
use serde_json::{Value, json};

/// The header that names the request's revision.
pub const VERSION_HEADER: &str = "mcp-protocol-version";
/// The header that mirrors the JSON-RPC method.
pub const METHOD_HEADER: &str = "mcp-method";
/// The header that mirrors `params.name` or `params.uri`.
pub const NAME_HEADER: &str = "mcp-name";
/// The prefix of headers that mirror tool arguments marked `x-mcp-header`.
pub const PARAM_HEADER_PREFIX: &str = "mcp-param-";

/// Revisions a request may name in its `_meta`. The session revisions are negotiated by
/// `initialize` instead, so they are not offered here.
pub fn supported_versions() -> Vec<&'static str> {
    ProtocolVersion::ALL
        .iter()
        .filter(|v| v.is_stateless())
        .map(|v| v.as_str())
        .collect()
}

/// Whether a single POSTed message is for the stateless protocol: its `_meta` names a
/// revision, or, without a session and other than `initialize`, its
/// `MCP-Protocol-Version` header names one that is not a session revision. Everything else keeps the session protocol's rules, so clients
/// of both generations share one endpoint.
pub fn is_stateless(headers: &HeaderMap, method: Option<&str>, params: Option<&Value>) -> bool {
    if RequestMeta::declared_version(params).is_some() {
        return true;
    }
    // `initialize` starts a session whatever the header says (it is only defined for the
    // requests that follow).
    if method == Some("initialize")
        || headers.contains_key(crate::transport::session::SESSION_HEADER)
    {
        return false;
    }
    header_text(headers, VERSION_HEADER)
        .is_some_and(|v| ProtocolVersion::parse(v.trim()).is_none_or(ProtocolVersion::is_stateless))
}

/// A request refused before it is served: the HTTP status and the JSON-RPC error.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// 400 or 404.
    pub status: StatusCode,
    /// The error of the response body.
    pub error: ErrorObject,
}

impl Rejection {
    fn bad_request(error: ErrorObject) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            error,
        }
    }

    fn header_mismatch(message: impl Into<String>) -> Self {
        Self::bad_request(ErrorObject::new(jsonrpc::HEADER_MISMATCH, message))
    }
}

/// Methods a stateless client may call here.
pub fn is_known(method: &str) -> bool {
    matches!(
        method,
        "server/discover"
            | "tools/list"
            | "tools/call"
            | "resources/list"
            | "resources/templates/list"
            | "resources/read"
            | "prompts/list"
            | "prompts/get"
            | "completion/complete"
            | "subscriptions/listen"
            | "tasks/get"
            | "tasks/update"
            | "tasks/cancel"
    )
}

/// The body field `Mcp-Name` mirrors, for the methods that require it.
fn named_field(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        "tasks/get" | "tasks/update" | "tasks/cancel" => Some("taskId"),
        _ => None,
    }
}

/// The checks of a stateless request, in the order the revision implies: the request
/// `_meta` (-32602), the version header against it (-32020), the version itself (-32022),
/// the method header (-32020), the method (404, -32601), and the name header (-32020).
pub fn check(
    headers: &HeaderMap,
    method: &str,
    params: Option<&Value>,
) -> Result<RequestMeta, Rejection> {
    let meta = RequestMeta::from_params(params).map_err(Rejection::bad_request)?;
    match header_text(headers, VERSION_HEADER).map(str::trim) {
        None => {
            return Err(Rejection::header_mismatch(
                "the MCP-Protocol-Version header is required",
            ));
        }
        Some(header) if header != meta.protocol_version => {
            return Err(Rejection::header_mismatch(format!(
                "Header mismatch: MCP-Protocol-Version {header:?} does not match the body's {:?}",
                meta.protocol_version
            )));
        }
        Some(_) => {}
    }
    let supported = supported_versions();
    if !supported.contains(&meta.protocol_version.as_str()) {
        return Err(Rejection::bad_request(
            ErrorObject::new(
                jsonrpc::UNSUPPORTED_PROTOCOL_VERSION,
                format!(
                    "Unsupported protocol version {:?}; this server speaks {} per request (and 2025-03-26 to 2025-11-25 through initialize)",
                    meta.protocol_version,
                    supported.join(", ")
                ),
            )
            .with_data(json!({"supported": supported, "requested": meta.protocol_version})),
        ));
    }
    match header_text(headers, METHOD_HEADER).map(str::trim) {
        None => {
            return Err(Rejection::header_mismatch(
                "the Mcp-Method header is required",
            ));
        }
        Some(header) if header != method => {
            return Err(Rejection::header_mismatch(format!(
                "Header mismatch: Mcp-Method {header:?} does not match the body's {method:?}"
            )));
        }
        Some(_) => {}
    }
    if !is_known(method) {
        return Err(Rejection {
            status: StatusCode::NOT_FOUND,
            error: ErrorObject::method_not_found(method),
        });
    }
    if let Some(field) = named_field(method)
        && let Some(body) = params.and_then(|p| p.get(field)).and_then(Value::as_str)
    {
        let header = header_text(headers, NAME_HEADER).ok_or_else(|| {
            Rejection::header_mismatch(format!("the Mcp-Name header is required for {method}"))
        })?;
        let decoded = decode_header_value(header)
            .map_err(|e| Rejection::header_mismatch(format!("Mcp-Name: {e}")))?;
        if decoded != body {
            return Err(Rejection::header_mismatch(format!(
                "Header mismatch: Mcp-Name {decoded:?} does not match params.{field} {body:?}"
            )));
        }
    }
    Ok(meta)
}

/// One tool argument mirrored into an `Mcp-Param-{name}` header: its path of
/// `properties` keys from the schema root, and the header's name part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirroredParam {
    /// Property names from the root of the arguments.
    pub path: Vec<String>,
    /// The `x-mcp-header` value.
    pub header: String,
}

/// The arguments a tool's input schema marks with `x-mcp-header`, reachable through
/// `properties` chains only (the revision ignores marks anywhere else).
pub fn mirrored_params(input_schema: &Value) -> Vec<MirroredParam> {
    fn walk(schema: &Value, path: &mut Vec<String>, out: &mut Vec<MirroredParam>) {
        let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
            return;
        };
        for (name, property) in properties {
            path.push(name.clone());
            if let Some(header) = property.get("x-mcp-header").and_then(Value::as_str) {
                out.push(MirroredParam {
                    path: path.clone(),
                    header: header.to_owned(),
                });
            }
            walk(property, path, out);
            path.pop();
        }
    }
    let mut out = Vec::new();
    walk(input_schema, &mut Vec::new(), &mut out);
    out
}

/// Checks the `Mcp-Param-*` headers of a `tools/call` against its arguments: a present,
/// non-null argument needs its header, equal after decoding (integers compare as numbers).
pub fn check_mirrored_params(
    headers: &HeaderMap,
    mirrored: &[MirroredParam],
    arguments: Option<&Value>,
) -> Result<(), Rejection> {
    for param in mirrored {
        let name = format!("{PARAM_HEADER_PREFIX}{}", param.header.to_ascii_lowercase());
        let header = match headers.get(&name) {
            None => None,
            Some(raw) => {
                let text = raw.to_str().map_err(|_| {
                    Rejection::header_mismatch(format!(
                        "Mcp-Param-{}: not visible ASCII",
                        param.header
                    ))
                })?;
                Some(decode_header_value(text).map_err(|e| {
                    Rejection::header_mismatch(format!("Mcp-Param-{}: {e}", param.header))
                })?)
            }
        };
        let body = param
            .path
            .iter()
            .try_fold(arguments, |value, key| value.map(|v| v.get(key)))
            .flatten()
            .filter(|v| !v.is_null());
        match (body, header) {
            (None, _) => {}
            (Some(_), None) => {
                return Err(Rejection::header_mismatch(format!(
                    "the Mcp-Param-{} header is required: the argument it mirrors is present",
                    param.header
                )));
            }
            (Some(body), Some(header)) => {
                if !mirrors(body, &header) {
                    return Err(Rejection::header_mismatch(format!(
                        "Header mismatch: Mcp-Param-{} {header:?} does not match the argument {body}",
                        param.header
                    )));
                }
            }
        }
    }
    Ok(())
}

fn mirrors(body: &Value, header: &str) -> bool {
    match body {
        Value::String(s) => s == header,
        Value::Bool(b) => header == if *b { "true" } else { "false" },
        Value::Number(n) => match (n.as_f64(), header.parse::<f64>()) {
            (Some(a), Ok(b)) => a == b,
            _ => false,
        },
        _ => false,
    }
}

/// What this server can do, for 2026-07-28 clients.
pub fn capabilities() -> Value {
    json!({
        "tools": {"listChanged": true},
        "resources": {"subscribe": true, "listChanged": true},
        "prompts": {"listChanged": true},
        "completions": {},
        "logging": {},
        "extensions": {mcp_protocol::tasks::EXTENSION: {}},
    })
}

/// The `server/discover` result.
pub fn discover_result() -> Value {
    let mut result = json!({
        "supportedVersions": supported_versions(),
        "capabilities": capabilities(),
        "serverInfo": stateless::server_info(),
        "instructions": "Tools run on workers behind this gateway. Progress and log notifications (with io.modelcontextprotocol/logLevel in _meta) arrive on each request's stream; list changes and resource updates (notify://broadcast, notify://tasks/{id}) on subscriptions/listen streams, from any gateway.",
    });
    stateless::finish_result("server/discover", &mut result);
    result
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.to_str().unwrap_or("\u{fffd}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn params(version: &str) -> Value {
        json!({"name": "echo", "_meta": {
            stateless::PROTOCOL_VERSION: version,
            stateless::CLIENT_CAPABILITIES: {},
        }})
    }

    #[test]
    fn tells_the_generations_apart() {
        let modern = params("2026-07-28");
        let call = Some("tools/call");
        assert!(is_stateless(&HeaderMap::new(), call, Some(&modern)));
        assert!(is_stateless(
            &HeaderMap::new(),
            Some("initialize"),
            Some(&modern)
        ));
        let v = |version| headers(&[(VERSION_HEADER, version)]);
        assert!(is_stateless(&v("2026-07-28"), call, None));
        assert!(is_stateless(&v("v999"), call, None));
        assert!(!is_stateless(&v("2025-11-25"), call, None));
        assert!(!is_stateless(&v("2024-11-05"), Some("initialize"), None));
        assert!(!is_stateless(
            &headers(&[(VERSION_HEADER, "2026-07-28"), ("mcp-session-id", "x")]),
            call,
            None
        ));
        let legacy_initialize = json!({"protocolVersion": "2026-07-28"});
        assert!(!is_stateless(
            &HeaderMap::new(),
            Some("initialize"),
            Some(&legacy_initialize)
        ));
    }

    #[test]
    fn checks_in_the_order_the_revision_implies() {
        let ok = headers(&[
            (VERSION_HEADER, "2026-07-28"),
            (METHOD_HEADER, "tools/call"),
            (NAME_HEADER, " echo "),
        ]);
        assert!(check(&ok, "tools/call", Some(&params("2026-07-28"))).is_ok());

        let code = |h: &HeaderMap, m: &str, p: Value| check(h, m, Some(&p)).unwrap_err();
        let missing_meta = code(&ok, "tools/call", json!({}));
        assert_eq!(missing_meta.error.code, jsonrpc::INVALID_PARAMS);
        // A mismatch is reported before the version is judged.
        let mismatch = code(&ok, "tools/call", params("v999"));
        assert_eq!(mismatch.error.code, jsonrpc::HEADER_MISMATCH);
        let unsupported = code(
            &headers(&[(VERSION_HEADER, "v999"), (METHOD_HEADER, "tools/call")]),
            "tools/call",
            params("v999"),
        );
        assert_eq!(
            unsupported.error.code,
            jsonrpc::UNSUPPORTED_PROTOCOL_VERSION
        );
        assert_eq!(
            unsupported.error.data.as_ref().unwrap()["requested"],
            "v999"
        );
        let wrong_method = code(&ok, "tools/list", params("2026-07-28"));
        assert_eq!(wrong_method.error.code, jsonrpc::HEADER_MISMATCH);
        let unknown = code(
            &headers(&[(VERSION_HEADER, "2026-07-28"), (METHOD_HEADER, "ping")]),
            "ping",
            params("2026-07-28"),
        );
        assert_eq!(unknown.status, StatusCode::NOT_FOUND);
        assert_eq!(unknown.error.code, jsonrpc::METHOD_NOT_FOUND);
        let wrong_name = code(
            &headers(&[
                (VERSION_HEADER, "2026-07-28"),
                (METHOD_HEADER, "tools/call"),
                (NAME_HEADER, "other"),
            ]),
            "tools/call",
            params("2026-07-28"),
        );
        assert_eq!(wrong_name.error.code, jsonrpc::HEADER_MISMATCH);
        let case = code(
            &headers(&[
                (VERSION_HEADER, "2026-07-28"),
                (METHOD_HEADER, "TOOLS/CALL"),
            ]),
            "tools/call",
            params("2026-07-28"),
        );
        assert_eq!(case.error.code, jsonrpc::HEADER_MISMATCH);
    }

    #[test]
    fn mirrors_marked_arguments() {
        let schema = json!({"type": "object", "properties": {
            "greeting": {"type": "string", "x-mcp-header": "Greeting"},
            "n": {"type": "integer", "x-mcp-header": "N"},
            "nested": {"type": "object", "properties": {"r": {"type": "boolean", "x-mcp-header": "R"}}},
            "list": {"type": "array", "items": {"properties": {"x": {"x-mcp-header": "X"}}}},
        }});
        let mirrored = mirrored_params(&schema);
        assert_eq!(mirrored.len(), 3);
        let args = json!({"greeting": "Hello", "n": 42, "nested": {"r": true}});
        let good = headers(&[
            ("mcp-param-greeting", "=?base64?SGVsbG8=?="),
            ("mcp-param-n", "42.0"),
            ("mcp-param-r", "true"),
        ]);
        assert!(check_mirrored_params(&good, &mirrored, Some(&args)).is_ok());
        let missing = headers(&[("mcp-param-n", "42"), ("mcp-param-r", "true")]);
        assert!(check_mirrored_params(&missing, &mirrored, Some(&args)).is_err());
        let bad_padding = headers(&[
            ("mcp-param-greeting", "=?base64?SGVsbG8?="),
            ("mcp-param-n", "42"),
            ("mcp-param-r", "true"),
        ]);
        assert!(check_mirrored_params(&bad_padding, &mirrored, Some(&args)).is_err());
        // Absent and null arguments expect no header.
        assert!(
            check_mirrored_params(
                &HeaderMap::new(),
                &mirrored,
                Some(&json!({"greeting": null}))
            )
            .is_ok()
        );
    }
}
