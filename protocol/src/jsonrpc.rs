//! JSON-RPC 2.0 messages as MCP uses them.
//!
//! Incoming messages are kept as [`serde_json::Value`] parts rather than typed per
//! method: the gateway forwards most params untouched to workers, so decoding them here
//! would only cost time and lose unknown fields.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// Invalid JSON was received.
pub const PARSE_ERROR: i64 = -32700;
/// The JSON sent is not a valid JSON-RPC request object.
pub const INVALID_REQUEST: i64 = -32600;
/// The method does not exist or is not available.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// Invalid method parameters.
pub const INVALID_PARAMS: i64 = -32602;
/// Internal JSON-RPC error.
pub const INTERNAL_ERROR: i64 = -32603;
/// Implementation-defined server error: overloaded, unavailable, refused, shutting down.
pub const SERVER_ERROR: i64 = -32000;
/// The request did not finish before its deadline (the SDKs' `RequestTimeout`).
pub const REQUEST_TIMEOUT: i64 = -32001;
/// A resource that does not exist (`resources/read`), as MCP names it.
pub const RESOURCE_NOT_FOUND: i64 = -32002;
/// The body of an HTTP 404 for an unknown `Mcp-Session-Id` (as the TypeScript SDK answers).
pub const SESSION_NOT_FOUND: i64 = -32001;
/// 2026-07-28: the HTTP headers disagree with the body, or a required one is missing.
pub const HEADER_MISMATCH: i64 = -32020;
/// 2026-07-28: the request needs a client capability its `_meta` did not declare.
pub const MISSING_REQUIRED_CLIENT_CAPABILITY: i64 = -32021;
/// 2026-07-28: the request's protocol version is one this server does not speak.
pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;

/// A JSON-RPC request id: a string or an integer (MCP forbids `null`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RequestId {
    /// A numeric id.
    Number(i64),
    /// A string id.
    String(String),
}

impl RequestId {
    /// Reads an id from a JSON value, refusing `null`, fractions and other types.
    pub fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::String(s) => Some(Self::String(s.clone())),
            Value::Number(n) => n.as_i64().map(Self::Number),
            _ => None,
        }
    }

    /// The id as a JSON value.
    pub fn to_value(&self) -> Value {
        match self {
            Self::Number(n) => json!(n),
            Self::String(s) => json!(s),
        }
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Number(n) => write!(f, "{n}"),
            Self::String(s) => write!(f, "{s:?}"),
        }
    }
}

/// The error member of a JSON-RPC error response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorObject {
    /// One of the codes above, or an application code.
    pub code: i64,
    /// A short sentence for humans.
    pub message: String,
    /// Optional structured detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl ErrorObject {
    /// An error with a code and message and no data.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// `-32700`.
    pub fn parse_error(message: impl Into<String>) -> Self {
        Self::new(PARSE_ERROR, message)
    }
    /// `-32600`.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(INVALID_REQUEST, message)
    }
    /// `-32601`.
    pub fn method_not_found(method: &str) -> Self {
        Self::new(METHOD_NOT_FOUND, format!("Method not found: {method}"))
    }
    /// `-32602`.
    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(INVALID_PARAMS, message)
    }
    /// `-32603`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(INTERNAL_ERROR, message)
    }

    /// The same error with structured `data`.
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }
}

/// One classified JSON-RPC message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A request: it expects exactly one response with the same id.
    Request {
        /// The request id.
        id: RequestId,
        /// The method name.
        method: String,
        /// The params (an object, or absent).
        params: Option<Value>,
    },
    /// A notification: no id, no response.
    Notification {
        /// The method name.
        method: String,
        /// The params (an object, or absent).
        params: Option<Value>,
    },
    /// A response to a request the server sent to the client.
    Response {
        /// The id of the server's request.
        id: RequestId,
        /// `Ok(result)` or `Err(error)`.
        outcome: Result<Value, ErrorObject>,
    },
}

impl Message {
    /// Classifies one JSON value. On failure returns the error to answer with, and the id
    /// to answer to when one could be read (JSON-RPC answers an unreadable id with `null`).
    pub fn classify(value: Value) -> Result<Self, (Option<RequestId>, ErrorObject)> {
        let Value::Object(mut obj) = value else {
            return Err((
                None,
                ErrorObject::invalid_request("a JSON-RPC message must be an object"),
            ));
        };
        let raw_id = obj.remove("id");
        let id = match &raw_id {
            None => None,
            Some(v) => match RequestId::from_value(v) {
                Some(id) => Some(id),
                None => {
                    return Err((
                        None,
                        ErrorObject::invalid_request(
                            "\"id\" must be a string or an integer (MCP does not allow null)",
                        ),
                    ));
                }
            },
        };
        if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return Err((
                id,
                ErrorObject::invalid_request("\"jsonrpc\" must be \"2.0\""),
            ));
        }
        let params = match obj.remove("params") {
            None => None,
            Some(p @ Value::Object(_)) => Some(p),
            Some(_) => {
                return Err((
                    id,
                    ErrorObject::invalid_request("\"params\" must be an object"),
                ));
            }
        };
        match obj.remove("method") {
            Some(Value::String(method)) => Ok(match id {
                Some(id) => Message::Request { id, method, params },
                None => Message::Notification { method, params },
            }),
            Some(_) => Err((
                id,
                ErrorObject::invalid_request("\"method\" must be a string"),
            )),
            None => {
                let Some(id) = id else {
                    return Err((
                        None,
                        ErrorObject::invalid_request(
                            "a message needs \"method\" (request or notification) or \"id\" (response)",
                        ),
                    ));
                };
                let outcome = match (obj.remove("result"), obj.remove("error")) {
                    (Some(result), None) => Ok(result),
                    (None, Some(error)) => match serde_json::from_value::<ErrorObject>(error) {
                        Ok(e) => Err(e),
                        Err(_) => {
                            return Err((
                                Some(id),
                                ErrorObject::invalid_request(
                                    "\"error\" must have an integer \"code\" and a string \"message\"",
                                ),
                            ));
                        }
                    },
                    _ => {
                        return Err((
                            Some(id),
                            ErrorObject::invalid_request(
                                "a response needs exactly one of \"result\" and \"error\"",
                            ),
                        ));
                    }
                };
                Ok(Message::Response { id, outcome })
            }
        }
    }

    /// The params of a request or notification.
    pub fn params(&self) -> Option<&Value> {
        match self {
            Message::Request { params, .. } | Message::Notification { params, .. } => {
                params.as_ref()
            }
            Message::Response { .. } => None,
        }
    }

    /// The method of a request or notification.
    pub fn method(&self) -> Option<&str> {
        match self {
            Message::Request { method, .. } | Message::Notification { method, .. } => Some(method),
            Message::Response { .. } => None,
        }
    }
}

/// A success response.
pub fn response_ok(id: &RequestId, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id.to_value(), "result": result})
}

/// An error response; `id` is `None` when the request's id could not be read.
pub fn response_err(id: Option<&RequestId>, error: ErrorObject) -> Value {
    let id = id.map_or(Value::Null, RequestId::to_value);
    json!({"jsonrpc": "2.0", "id": id, "error": error})
}

/// A notification message.
pub fn notification(method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "method": method, "params": params})
}

/// A request message (server to client).
pub fn request(id: &RequestId, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id.to_value(), "method": method, "params": params})
}

/// Reads `params._meta.progressToken`, which must be a string or an integer.
pub fn progress_token(params: Option<&Value>) -> Option<Value> {
    let token = params?.get("_meta")?.get("progressToken")?;
    match token {
        Value::String(_) => Some(token.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(token.clone()),
        _ => None,
    }
}

/// An empty object, the result of methods that return nothing.
pub fn empty_result() -> Value {
    Value::Object(Map::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_the_three_kinds() {
        let req = Message::classify(json!({"jsonrpc":"2.0","id":1,"method":"ping"})).unwrap();
        assert!(matches!(
            req,
            Message::Request {
                id: RequestId::Number(1),
                ..
            }
        ));
        let note = Message::classify(json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
            .unwrap();
        assert!(matches!(note, Message::Notification { .. }));
        let resp = Message::classify(json!({"jsonrpc":"2.0","id":"s-1","result":{}})).unwrap();
        assert!(matches!(resp, Message::Response { outcome: Ok(_), .. }));
        let err = Message::classify(
            json!({"jsonrpc":"2.0","id":"s-1","error":{"code":-1,"message":"no"}}),
        )
        .unwrap();
        assert!(matches!(
            err,
            Message::Response {
                outcome: Err(_),
                ..
            }
        ));
    }

    #[test]
    fn refuses_what_is_not_json_rpc() {
        for bad in [
            json!([1]),
            json!("x"),
            json!({"id":1,"method":"ping"}),
            json!({"jsonrpc":"1.0","id":1,"method":"ping"}),
            json!({"jsonrpc":"2.0","id":null,"method":"ping"}),
            json!({"jsonrpc":"2.0","id":1.5,"method":"ping"}),
            json!({"jsonrpc":"2.0","id":1,"method":7}),
            json!({"jsonrpc":"2.0","id":1,"method":"x","params":[1]}),
            json!({"jsonrpc":"2.0","id":1}),
            json!({"jsonrpc":"2.0"}),
            json!({"jsonrpc":"2.0","id":1,"result":1,"error":{"code":1,"message":"m"}}),
            json!({"jsonrpc":"2.0","id":1,"error":{"code":"x"}}),
        ] {
            let (_, e) = Message::classify(bad.clone()).expect_err(&bad.to_string());
            assert_eq!(e.code, INVALID_REQUEST, "{bad}");
        }
    }

    #[test]
    fn keeps_the_id_of_a_bad_request_when_it_can() {
        let (id, _) = Message::classify(json!({"jsonrpc":"2.0","id":"a","method":3})).unwrap_err();
        assert_eq!(id, Some(RequestId::String("a".into())));
    }

    #[test]
    fn reads_progress_tokens() {
        let p = json!({"_meta":{"progressToken":"t"}});
        assert_eq!(progress_token(Some(&p)), Some(json!("t")));
        let p = json!({"_meta":{"progressToken":5}});
        assert_eq!(progress_token(Some(&p)), Some(json!(5)));
        let p = json!({"_meta":{"progressToken":{"x":1}}});
        assert_eq!(progress_token(Some(&p)), None);
        assert_eq!(progress_token(None), None);
    }
}
