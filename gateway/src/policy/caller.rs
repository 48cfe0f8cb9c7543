//! Who is calling, as the policy sees it: the principal authentication named, the scopes
//! and claims of its token. Its own module so authentication (which makes it) and the
//! policy (which reads it) do not import each other.

use serde_json::Value;

/// The caller of a request. Anonymous when authentication is off.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Caller {
    /// The principal (`issuer#subject` for a JWT, the configured name for a static
    /// token); empty when anonymous.
    pub principal: String,
    /// The token's scopes (`scope` or `scp`); none for static tokens.
    pub scopes: Vec<String>,
    /// The JWT's claims (an object), `Null` for static tokens and anonymous callers.
    pub claims: Value,
}

impl Caller {
    /// True when no token authenticated the request.
    pub fn is_anonymous(&self) -> bool {
        self.principal.is_empty()
    }

    /// The key quotas count this caller under.
    pub fn quota_key(&self) -> &str {
        if self.is_anonymous() {
            "anonymous"
        } else {
            &self.principal
        }
    }

    /// Whether the token has claim `name` equal to `expected` (a string or number claim
    /// compared as text), or containing it (an array claim).
    pub fn has_claim(&self, name: &str, expected: &str) -> bool {
        let equal = |v: &Value| match v {
            Value::String(s) => s == expected,
            Value::Number(n) => n.to_string() == expected,
            Value::Bool(b) => b.to_string() == expected,
            _ => false,
        };
        match self.claims.get(name) {
            Some(Value::Array(items)) => items.iter().any(equal),
            Some(v) => equal(v),
            None => false,
        }
    }
}
