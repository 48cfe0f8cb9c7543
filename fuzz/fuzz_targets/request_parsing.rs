//! The request-parsing path of `POST /mcp` (and the `Last-Event-ID` check of `GET /mcp`):
//! everything the gateway reads from a request before it touches the bus.
//!
//! Input format (text, so the checked-in seeds are real requests): header lines
//! `Name: value`, a blank line, then the body. Without a blank line the whole input is
//! the body and there are no headers. Header lines an HTTP server would refuse (an invalid
//! name or value) are skipped, as hyper would never hand them to a handler.

#![no_main]

use gateway::http::negotiate::{Accepts, require_json_body};
use gateway::mcp::methods;
use gateway::transport::event_id::EventId;
use gateway::transport::session::{LAST_EVENT_ID, session_header, version_header};
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use mcp_protocol::jsonrpc::{self, INVALID_REQUEST};
use mcp_protocol::{LogLevel, Message, RequestId};
use serde_json::{Value, json};

fuzz_target!(|input: &[u8]| {
    let (head, body) = split(input);
    let headers = parse_headers(head);
    check_headers(&headers);
    check_body(body);
});

fn split(input: &[u8]) -> (&[u8], &[u8]) {
    for (sep, len) in [(&b"\r\n\r\n"[..], 4), (&b"\n\n"[..], 2)] {
        if let Some(at) = input.windows(len).position(|w| w == sep) {
            return (&input[..at], &input[at + len..]);
        }
    }
    (&[], input)
}

fn parse_headers(head: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for line in head.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let value = value.trim_ascii();
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            headers.append(name, value);
        }
    }
    headers
}

fn check_headers(headers: &HeaderMap) {
    // Content-Type: only application/json (any parameters, any case) passes.
    if require_json_body(headers).is_ok() {
        let ct = headers
            .get(CONTENT_TYPE)
            .expect("a JSON body has a Content-Type");
        let media = ct.to_str().expect("an accepted Content-Type is text");
        let media = media.split(';').next().unwrap().trim();
        assert!(media.eq_ignore_ascii_case("application/json"), "{ct:?}");
    } else if let Some(ct) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
        let media = ct.split(';').next().unwrap().trim();
        assert!(
            !media.eq_ignore_ascii_case("application/json"),
            "{ct:?} refused"
        );
    }

    // Accept: no header accepts everything; once there is one, more ranges never take
    // anything away.
    let accepts = Accepts::from_headers(headers);
    let has_accept = headers.get_all(ACCEPT).iter().any(|v| v.to_str().is_ok());
    if !has_accept {
        // Absent, or no value readable as text: treated as absent.
        assert!(accepts.json && accepts.sse);
    }
    let mut more = headers.clone();
    more.append(ACCEPT, HeaderValue::from_static("application/json"));
    let with_json = Accepts::from_headers(&more);
    assert!(
        with_json.json,
        "an explicit application/json range is accepted"
    );
    if has_accept {
        assert!(
            with_json.sse >= accepts.sse,
            "adding a range removed text/event-stream"
        );
    }
    more.append(ACCEPT, HeaderValue::from_static("*/*"));
    let with_any = Accepts::from_headers(&more);
    assert!(with_any.json && with_any.sse, "*/* accepts both");

    // MCP-Protocol-Version: absent is Ok(None); a value is a supported revision or a 400.
    let version_value = headers.get("mcp-protocol-version");
    match version_header(headers) {
        Ok(None) => assert!(version_value.is_none()),
        Ok(Some(v)) => {
            let text = version_value.unwrap().to_str().unwrap();
            assert_eq!(text.trim(), v.as_str());
        }
        Err(_) => assert!(version_value.is_some()),
    }

    // Mcp-Session-Id: only ids the gateway could have issued (32 lowercase hex).
    let session_value = headers.get("mcp-session-id");
    match session_header(headers) {
        Ok(None) => assert!(session_value.is_none()),
        Ok(Some(id)) => {
            assert_eq!(session_value.unwrap().as_bytes(), id.as_str().as_bytes());
            assert_eq!(id.as_str().len(), 32);
            assert!(
                id.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            );
        }
        Err(_) => assert!(session_value.is_some()),
    }

    // Last-Event-ID, read exactly as GET /mcp reads it.
    if let Some(id) = headers
        .get(LAST_EVENT_ID)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| EventId::parse(v.trim()))
    {
        let wire = id.encode();
        assert_eq!(EventId::parse(&wire), Some(id), "{wire}");
        assert!(HeaderValue::from_str(&wire).is_ok(), "{wire:?}");
    }
}

fn check_body(body: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    // The batch split of the POST handler.
    let items = match value {
        Value::Array(items) if items.is_empty() => return,
        Value::Array(items) => items,
        single => vec![single],
    };
    for item in items {
        check_message(&item, Message::classify(item.clone()));
    }
}

fn id_of(raw: &Value) -> RequestId {
    match raw {
        Value::String(s) => RequestId::String(s.clone()),
        Value::Number(n) => RequestId::Number(n.as_i64().expect("an integer id")),
        other => panic!("an id that is neither a string nor an integer: {other}"),
    }
}

fn check_message(
    item: &Value,
    classified: Result<Message, (Option<RequestId>, mcp_protocol::ErrorObject)>,
) {
    match classified {
        Ok(message) => {
            let obj = item.as_object().expect("only objects are messages");
            assert_eq!(obj.get("jsonrpc"), Some(&json!("2.0")), "{item}");
            if let Some(params) = obj.get("params") {
                assert!(params.is_object(), "{item}");
            }
            match &message {
                Message::Request { id, method, params } => {
                    assert_eq!(*id, id_of(&obj["id"]), "{item}");
                    assert_eq!(obj.get("method"), Some(&json!(method)));
                    assert_eq!(params.as_ref(), obj.get("params"));
                    if let Some(token) = jsonrpc::progress_token(params.as_ref()) {
                        assert!(token.is_string() || token.is_i64() || token.is_u64());
                    }
                    let _ = methods::is_known(method);
                    // The gateway's own answer to it is a response with the same id.
                    let answer = jsonrpc::response_ok(id, jsonrpc::empty_result());
                    expect_response(&answer, id, true);
                    let answer = jsonrpc::response_err(
                        Some(id),
                        mcp_protocol::ErrorObject::method_not_found(method),
                    );
                    expect_response(&answer, id, false);
                }
                Message::Notification { method, params } => {
                    assert!(!obj.contains_key("id"), "{item}");
                    assert_eq!(obj.get("method"), Some(&json!(method)));
                    assert_eq!(params.as_ref(), obj.get("params"));
                }
                Message::Response { id, outcome } => {
                    assert!(!obj.contains_key("method"), "{item}");
                    assert_eq!(*id, id_of(&obj["id"]), "{item}");
                    assert!(
                        obj.contains_key("result") != obj.contains_key("error"),
                        "{item}"
                    );
                    match outcome {
                        Ok(result) => assert_eq!(Some(result), obj.get("result")),
                        Err(e) => {
                            assert_eq!(obj["error"]["code"].as_i64(), Some(e.code));
                            assert_eq!(obj["error"]["message"].as_str(), Some(e.message.as_str()));
                        }
                    }
                }
            }
            for level in [LogLevel::Debug, LogLevel::Warning, LogLevel::Emergency] {
                let _ = LogLevel::message_passes(item, Some(level));
            }
        }
        Err((id, error)) => {
            assert_eq!(error.code, INVALID_REQUEST, "{item}");
            if let Some(id) = &id {
                assert_eq!(*id, id_of(&item["id"]), "{item}");
                // The error answer the gateway sends is itself a well-formed response.
                let answer = jsonrpc::response_err(Some(id), error);
                expect_response(&answer, id, false);
            }
        }
    }
}

/// `answer`, sent over the wire and read back, is a response to `id`.
fn expect_response(answer: &Value, id: &RequestId, ok: bool) {
    let wire = serde_json::to_vec(answer).unwrap();
    let back: Value = serde_json::from_slice(&wire).unwrap();
    match Message::classify(back) {
        Ok(Message::Response { id: got, outcome }) => {
            assert_eq!(&got, id);
            assert_eq!(outcome.is_ok(), ok);
        }
        other => panic!("our own answer {answer} does not classify as a response: {other:?}"),
    }
}
