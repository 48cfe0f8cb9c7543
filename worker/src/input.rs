//! Input a tool asks the client for (sampling, elicitation, roots), written once for both
//! protocol generations.
//!
//! Under the session protocol the worker sends each [`InputRequest`] to the client as a
//! server-to-client request and waits for the answer. Under 2026-07-28 (multi round-trip
//! requests) there is no channel back: the call ends with an `InputRequiredResult`
//! naming what is missing, and the client retries the whole request with
//! `inputResponses`. The tool then runs again from the start and gets its answers where
//! it asked for them, so a tool must ask in the same order on every run (it may ask for
//! several inputs at once).
//!
//! Answers from earlier rounds travel in `requestState`, which the client echoes back:
//! an HMAC-SHA256 token ([`StateCodec`]) over the answers, the principal, the request it
//! belongs to (method, name or URI, arguments) and an expiry. Any node holding the
//! shared key can verify it, so a retry may reach any gateway and any worker, and a
//! tampered, expired, foreign or misapplied state is refused.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use mcp_protocol::{ErrorObject, jsonrpc};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// One thing a tool needs from the client before it can finish.
#[derive(Debug, Clone, PartialEq)]
pub struct InputRequest {
    /// The key of this request in `inputRequests` (unique within the call).
    pub key: String,
    /// `elicitation/create`, `sampling/createMessage` or `roots/list`.
    pub method: String,
    /// The request's params.
    pub params: Value,
}

impl InputRequest {
    /// Any input request.
    pub fn new(key: impl Into<String>, method: impl Into<String>, params: Value) -> Self {
        Self {
            key: key.into(),
            method: method.into(),
            params,
        }
    }

    /// A form elicitation: a message and the JSON Schema of the answer.
    pub fn elicit(key: impl Into<String>, message: &str, requested_schema: Value) -> Self {
        Self::new(
            key,
            "elicitation/create",
            json!({"mode": "form", "message": message, "requestedSchema": requested_schema}),
        )
    }

    /// A sampling request with these params (`messages`, `maxTokens`, …).
    pub fn sample(key: impl Into<String>, params: Value) -> Self {
        Self::new(key, "sampling/createMessage", params)
    }

    /// The client's roots.
    pub fn roots(key: impl Into<String>) -> Self {
        Self::new(key, "roots/list", json!({}))
    }

    /// The client capability the request needs.
    pub fn capability(&self) -> Option<&'static str> {
        capability_of(&self.method)
    }

    /// The request as `inputRequests` carries it.
    pub fn to_value(&self) -> Value {
        json!({"method": self.method, "params": self.params})
    }
}

/// The client capability a server-to-client method needs.
pub fn capability_of(method: &str) -> Option<&'static str> {
    match method {
        "sampling/createMessage" => Some("sampling"),
        "elicitation/create" => Some("elicitation"),
        "roots/list" => Some("roots"),
        _ => None,
    }
}

/// The `-32021` error for a capability the client did not declare.
pub fn missing_capability(capability: &str) -> ErrorObject {
    ErrorObject::new(
        jsonrpc::MISSING_REQUIRED_CLIENT_CAPABILITY,
        format!("this request needs the client capability {capability:?}, which the request's _meta did not declare"),
    )
    .with_data(json!({"requiredCapabilities": {capability: {}}}))
}

/// How long a `requestState` stays valid: long enough for a person to answer a form.
pub const STATE_TTL: Duration = Duration::from_secs(15 * 60);

/// Why a `requestState` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// Not a token this server could have made, or altered since.
    #[error("requestState failed verification")]
    Tampered,
    /// Made for another principal.
    #[error("requestState belongs to another principal")]
    WrongPrincipal,
    /// Made for another request (method, name, arguments).
    #[error("requestState belongs to another request")]
    WrongRequest,
    /// Too old.
    #[error("requestState expired; start the request over without it")]
    Expired,
}

/// Seals and opens `requestState` tokens with a key every node shares.
#[derive(Clone)]
pub struct StateCodec {
    key: Vec<u8>,
}

impl std::fmt::Debug for StateCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateCodec { key: <redacted> }")
    }
}

impl StateCodec {
    /// A codec with this key (at least 32 random bytes are advisable).
    pub fn new(key: impl Into<Vec<u8>>) -> Self {
        Self { key: key.into() }
    }

    fn mac(&self, payload: &[u8]) -> Vec<u8> {
        // HMAC takes keys of any length, so this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(payload);
        mac.finalize().into_bytes().to_vec()
    }

    /// 128 bits derived from `parts` for `purpose` with the cluster's key: every worker
    /// derives the same bits, no one without the key can. `purpose` separates these MACs
    /// from the `requestState` ones.
    pub fn derive(&self, purpose: &str, parts: &[&str]) -> [u8; 16] {
        let mut input = Vec::with_capacity(64);
        input.extend_from_slice(b"derive\0");
        input.extend_from_slice(purpose.as_bytes());
        for part in parts {
            input.push(0);
            input.extend_from_slice(part.as_bytes());
        }
        let mac = self.mac(&input);
        let mut bits = [0u8; 16];
        bits.copy_from_slice(&mac[..16]);
        bits
    }

    /// A token carrying `answers` for `principal`'s request `binding`, valid until
    /// `now_ms` + [`STATE_TTL`].
    pub fn seal(
        &self,
        principal: &str,
        binding: &str,
        answers: &Map<String, Value>,
        now_ms: u64,
    ) -> String {
        let payload = json!({
            "v": 1,
            "sub": principal,
            "req": binding,
            "exp": now_ms + STATE_TTL.as_millis() as u64,
            "answers": answers,
        })
        .to_string();
        let mac = self.mac(payload.as_bytes());
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(mac)
        )
    }

    /// The answers a token carries, if it verifies for this principal and request.
    pub fn open(
        &self,
        token: &str,
        principal: &str,
        binding: &str,
        now_ms: u64,
    ) -> Result<Map<String, Value>, StateError> {
        let (payload, mac) = token.split_once('.').ok_or(StateError::Tampered)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| StateError::Tampered)?;
        let mac = URL_SAFE_NO_PAD
            .decode(mac)
            .map_err(|_| StateError::Tampered)?;
        let mut check = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        check.update(&payload);
        // Constant-time comparison.
        check.verify_slice(&mac).map_err(|_| StateError::Tampered)?;
        let payload: Value = serde_json::from_slice(&payload).map_err(|_| StateError::Tampered)?;
        if payload["sub"].as_str() != Some(principal) {
            return Err(StateError::WrongPrincipal);
        }
        if payload["req"].as_str() != Some(binding) {
            return Err(StateError::WrongRequest);
        }
        if payload["exp"].as_u64().is_none_or(|exp| exp < now_ms) {
            return Err(StateError::Expired);
        }
        match payload.get("answers") {
            Some(Value::Object(answers)) => Ok(answers.clone()),
            _ => Err(StateError::Tampered),
        }
    }
}

/// What a state is bound to: the method and a digest of the request's salient params
/// (everything but `_meta`, `inputResponses` and `requestState`), with object keys sorted
/// so a client that re-serializes the same params differently still matches.
pub fn binding(method: &str, params: &Value) -> String {
    let mut salient = params.clone();
    if let Value::Object(fields) = &mut salient {
        for key in ["_meta", "inputResponses", "requestState"] {
            fields.remove(key);
        }
    }
    let mut canonical = String::new();
    write_canonical(&salient, &mut canonical);
    let digest = Sha256::digest(canonical.as_bytes());
    format!("{method}:{}", URL_SAFE_NO_PAD.encode(digest))
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(fields) => {
            let mut keys: Vec<_> = fields.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&fields[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The answers a 2026-07-28 retry brings: those of earlier rounds (from a verified
/// `requestState`) and this round's `inputResponses`. Answers that are not objects are
/// dropped (every input result is an object), so the tool asks again.
pub fn answers_of(
    codec: &StateCodec,
    method: &str,
    params: &Value,
    principal: &str,
    now_ms: u64,
) -> Result<Map<String, Value>, ErrorObject> {
    let mut answers = match params.get("requestState") {
        None => Map::new(),
        Some(Value::String(token)) => codec
            .open(token, principal, &binding(method, params), now_ms)
            .map_err(|e| ErrorObject::invalid_params(e.to_string()))?,
        Some(_) => {
            return Err(ErrorObject::invalid_params(
                "params.requestState must be the string the server sent",
            ));
        }
    };
    match params.get("inputResponses") {
        None => {}
        Some(Value::Object(responses)) => {
            for (key, response) in responses {
                if response.is_object() {
                    answers.insert(key.clone(), response.clone());
                }
            }
        }
        Some(_) => {
            return Err(ErrorObject::invalid_params(
                "params.inputResponses must be an object mapping input request keys to results",
            ));
        }
    }
    Ok(answers)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000;

    #[test]
    fn derived_ids_are_stable_per_key_and_input_and_differ_otherwise() {
        let codec = StateCodec::new(b"0123456789abcdef0123456789abcdef".to_vec());
        let other = StateCodec::new(b"another key, another cluster.....".to_vec());
        let id = codec.derive("task", &["s1", "7"]);
        assert_eq!(id, codec.derive("task", &["s1", "7"]));
        assert_ne!(id, other.derive("task", &["s1", "7"]));
        assert_ne!(id, codec.derive("task", &["s1", "8"]));
        assert_ne!(id, codec.derive("other", &["s1", "7"]));
        // Parts are separated: moving a character between them changes the id.
        assert_ne!(id, codec.derive("task", &["s17", ""]));
    }

    #[test]
    fn a_state_opens_only_unchanged_for_its_principal_and_request() {
        let codec = StateCodec::new(b"0123456789abcdef0123456789abcdef".to_vec());
        let params = json!({"name": "t", "arguments": {"b": 1, "a": [1, {"y": 2, "x": 1}]}});
        let bind = binding("tools/call", &params);
        let mut answers = Map::new();
        answers.insert("k".into(), json!({"action": "accept"}));
        let token = codec.seal("alice", &bind, &answers, NOW);
        assert_eq!(
            codec.open(&token, "alice", &bind, NOW + 1).unwrap(),
            answers
        );

        let tampered = format!("{token}-TAMPERED");
        assert_eq!(
            codec.open(&tampered, "alice", &bind, NOW),
            Err(StateError::Tampered)
        );
        let mut flipped = token.clone().into_bytes();
        flipped[3] ^= 1;
        let flipped = String::from_utf8(flipped).unwrap();
        assert_eq!(
            codec.open(&flipped, "alice", &bind, NOW),
            Err(StateError::Tampered)
        );
        assert_eq!(
            codec.open(&token, "bob", &bind, NOW),
            Err(StateError::WrongPrincipal)
        );
        let other = binding("tools/call", &json!({"name": "t", "arguments": {"b": 2}}));
        assert_eq!(
            codec.open(&token, "alice", &other, NOW),
            Err(StateError::WrongRequest)
        );
        let expired = NOW + STATE_TTL.as_millis() as u64 + 1;
        assert_eq!(
            codec.open(&token, "alice", &bind, expired),
            Err(StateError::Expired)
        );
        let stranger = StateCodec::new(b"another key".to_vec());
        assert_eq!(
            stranger.open(&token, "alice", &bind, NOW),
            Err(StateError::Tampered)
        );
    }

    #[test]
    fn binding_ignores_key_order_and_the_round_trip_fields() {
        let a = json!({"name": "t", "arguments": {"x": 1, "y": {"p": 1, "q": 2}}});
        let b = json!({"arguments": {"y": {"q": 2, "p": 1}, "x": 1}, "name": "t",
            "_meta": {"m": 1}, "inputResponses": {}, "requestState": "s"});
        assert_eq!(binding("tools/call", &a), binding("tools/call", &b));
        assert_ne!(binding("tools/call", &a), binding("prompts/get", &a));
    }

    #[test]
    fn answers_merge_state_and_responses_and_refuse_malformed_input() {
        let codec = StateCodec::new(b"k".to_vec());
        let base = json!({"name": "t"});
        let mut earlier = Map::new();
        earlier.insert("first".into(), json!({"action": "accept"}));
        let token = codec.seal("p", &binding("tools/call", &base), &earlier, NOW);
        let params = json!({"name": "t", "requestState": token,
            "inputResponses": {"second": {"roots": []}, "junk": 12345}});
        let answers = answers_of(&codec, "tools/call", &params, "p", NOW).unwrap();
        assert_eq!(answers.len(), 2);
        assert!(answers.contains_key("first") && answers.contains_key("second"));

        for bad in [
            json!({"name": "t", "inputResponses": null}),
            json!({"name": "t", "inputResponses": [1]}),
            json!({"name": "t", "requestState": 5}),
            json!({"name": "t", "requestState": "garbage"}),
        ] {
            let error = answers_of(&codec, "tools/call", &bad, "p", NOW).unwrap_err();
            assert_eq!(error.code, jsonrpc::INVALID_PARAMS, "{bad}");
        }
    }
}
