//! Content negotiation: which response forms the client's `Accept` allows, and whether the
//! body is JSON.

use crate::http::error::HttpError;
use axum::http::HeaderMap;
use axum::http::header::{ACCEPT, CONTENT_TYPE};

/// The response forms a client accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepts {
    /// `application/json`.
    pub json: bool,
    /// `text/event-stream`.
    pub sse: bool,
}

impl Accepts {
    /// Reads `Accept`. A missing header accepts anything (RFC 9110); a range with `q=0`
    /// refuses that type.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let values: Vec<&str> = headers
            .get_all(ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if values.is_empty() {
            return Self {
                json: true,
                sse: true,
            };
        }
        let mut accepts = Self {
            json: false,
            sse: false,
        };
        for range in values.iter().flat_map(|v| v.split(',')) {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let refused = parts.any(|p| {
                let p = p.trim();
                p.strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            if refused {
                continue;
            }
            match media.as_str() {
                "*/*" => {
                    accepts.json = true;
                    accepts.sse = true;
                }
                "application/*" | "application/json" => accepts.json = true,
                "text/*" | "text/event-stream" => accepts.sse = true,
                _ => {}
            }
        }
        accepts
    }
}

/// Refuses a body whose `Content-Type` is not `application/json`.
pub fn require_json_body(headers: &HeaderMap) -> Result<(), HttpError> {
    let is_json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .is_some_and(|mime| mime == "application/json");
    if is_json {
        Ok(())
    } else {
        Err(HttpError::UnsupportedMediaType)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn accepts(value: Option<&str>) -> Accepts {
        let mut h = HeaderMap::new();
        if let Some(v) = value {
            h.insert(ACCEPT, HeaderValue::from_str(v).unwrap());
        }
        Accepts::from_headers(&h)
    }

    #[test]
    fn reads_accept() {
        assert_eq!(
            accepts(None),
            Accepts {
                json: true,
                sse: true
            }
        );
        assert_eq!(
            accepts(Some("application/json, text/event-stream")),
            Accepts {
                json: true,
                sse: true
            }
        );
        assert_eq!(
            accepts(Some("application/json")),
            Accepts {
                json: true,
                sse: false
            }
        );
        assert_eq!(
            accepts(Some("text/event-stream")),
            Accepts {
                json: false,
                sse: true
            }
        );
        assert_eq!(
            accepts(Some("text/html")),
            Accepts {
                json: false,
                sse: false
            }
        );
        assert_eq!(
            accepts(Some("*/*, text/event-stream;q=0")),
            Accepts {
                json: true,
                sse: true
            },
            "a later refusal does not undo */*"
        );
        assert_eq!(
            accepts(Some("application/json;q=0")),
            Accepts {
                json: false,
                sse: false
            }
        );
    }

    #[test]
    fn requires_json_bodies() {
        let mut h = HeaderMap::new();
        assert!(require_json_body(&h).is_err());
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        assert!(require_json_body(&h).is_ok());
        h.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert!(require_json_body(&h).is_err());
    }
}
