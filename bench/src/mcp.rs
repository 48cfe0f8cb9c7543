//! Just enough MCP: session setup, the messages the workloads read, and request bodies.

use crate::http::{self, Conn, Headers, Target};
use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Response, StatusCode};
use serde::de::{self, IgnoredAny, Visitor};
use serde::{Deserialize, Deserializer};
use std::borrow::Cow;

/// A server-to-client message, parsed without building a JSON tree.
#[derive(Deserialize, Debug)]
pub struct Msg<'a> {
    #[serde(borrow, default)]
    pub method: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub params: Option<Params<'a>>,
    #[serde(default)]
    pub result: Option<IgnoredAny>,
    #[serde(default)]
    pub error: Option<serde_json::Value>,
}

impl Msg<'_> {
    pub fn is_response(&self) -> bool {
        self.result.is_some() || self.error.is_some()
    }
}

#[derive(Deserialize, Debug)]
pub struct Params<'a> {
    #[serde(default)]
    pub progress: Option<f64>,
    #[serde(borrow, default)]
    pub data: Option<Data<'a>>,
}

/// `params.data`: a string (kept) or anything else (skipped).
#[derive(Debug)]
pub enum Data<'a> {
    Str(Cow<'a, str>),
    Other,
}

impl<'de: 'a, 'a> Deserialize<'de> for Data<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Data<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Data::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Data::Str(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Data::Str(Cow::Owned(v)))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Data::Other)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Data::Other)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Data::Other)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Data::Other)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Data::Other)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Data::Other)
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Data::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// A session on one server; for the stateless revision (2026-07-28), no session at all:
/// every request carries its version itself.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub version: String,
}

impl Session {
    /// Requests without a session, in a stateless revision.
    pub fn stateless(version: &str) -> Self {
        Self {
            id: String::new(),
            version: version.to_string(),
        }
    }

    /// True for the stateless revision (no `initialize`, no session id).
    pub fn is_stateless(&self) -> bool {
        self.id.is_empty()
    }

    pub fn headers(&self) -> Headers<'_> {
        Headers {
            session: (!self.is_stateless()).then_some(self.id.as_str()),
            version: Some(&self.version),
            ..Headers::default()
        }
    }
}

/// Whether `version` is a stateless revision (2026-07-28 and later): no `initialize`.
pub fn is_stateless_version(version: &str) -> bool {
    version.as_bytes() >= b"2026-07-28".as_slice()
}

/// initialize + notifications/initialized on `conn`.
pub async fn open_session(conn: &mut Conn, target: &Target, version: &str) -> Result<Session> {
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":0,"method":"initialize","params":{{"protocolVersion":"{version}","capabilities":{{}},"clientInfo":{{"name":"mcp-bench","version":"0.1"}}}}}}"#
    );
    let response = conn
        .send(
            target,
            Method::POST,
            Headers::default(),
            Some(Bytes::from(body)),
        )
        .await
        .context("initialize")?;
    let response = http::expect_status(response, &[StatusCode::OK])
        .await
        .context("initialize")?;
    let id = http::header(&response, "mcp-session-id")
        .ok_or_else(|| anyhow!("initialize: no Mcp-Session-Id header"))?
        .to_string();
    let result = first_response(response).await.context("initialize")?;
    let negotiated = result
        .get("result")
        .and_then(|r| r.get("protocolVersion"))
        .and_then(|v| v.as_str())
        .ok_or_else(|| anyhow!("initialize: no protocolVersion in {result}"))?
        .to_string();
    let session = Session {
        id,
        version: negotiated,
    };
    let response = conn
        .send(
            target,
            Method::POST,
            session.headers(),
            Some(Bytes::from_static(
                br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            )),
        )
        .await
        .context("notifications/initialized")?;
    let response = http::expect_status(
        response,
        &[StatusCode::ACCEPTED, StatusCode::OK, StatusCode::NO_CONTENT],
    )
    .await
    .context("notifications/initialized")?;
    http::read_all(response.into_body()).await?;
    Ok(session)
}

/// The first JSON-RPC response in a JSON or SSE answer; reads the body to its end.
pub async fn first_response(response: Response<Incoming>) -> Result<serde_json::Value> {
    if !http::is_sse(&response) {
        let body = http::read_all(response.into_body()).await?;
        return Ok(serde_json::from_slice(&body)?);
    }
    let mut body = response.into_body();
    let mut sse = http::Sse::default();
    let mut events = Vec::new();
    let mut found = None;
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        if let Some(data) = frame.data_ref() {
            sse.push(data, &mut events);
            for event in events.drain(..) {
                if event.data.is_empty() || found.is_some() {
                    continue;
                }
                let value: serde_json::Value = serde_json::from_slice(&event.data)?;
                if value.get("result").is_some() || value.get("error").is_some() {
                    found = Some(value);
                }
            }
        }
    }
    found.ok_or_else(|| anyhow!("the stream ended without a response"))
}

/// A `tools/call` body.
pub fn tool_call(id: u64, name: &str, arguments: &str, progress_token: Option<&str>) -> Bytes {
    let meta = match progress_token {
        Some(t) => format!(r#","_meta":{{"progressToken":"{t}"}}"#),
        None => String::new(),
    };
    tool_call_with_meta(id, name, arguments, &meta)
}

/// A `tools/call` body for a stateless revision: its version and capabilities in `_meta`.
pub fn stateless_tool_call(
    id: u64,
    name: &str,
    arguments: &str,
    progress_token: Option<&str>,
    version: &str,
) -> Bytes {
    let token = match progress_token {
        Some(t) => format!(r#""progressToken":"{t}","#),
        None => String::new(),
    };
    let meta = format!(
        r#","_meta":{{{token}"io.modelcontextprotocol/protocolVersion":"{version}","io.modelcontextprotocol/clientCapabilities":{{}}}}"#
    );
    tool_call_with_meta(id, name, arguments, &meta)
}

fn tool_call_with_meta(id: u64, name: &str, arguments: &str, meta: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{name}","arguments":{arguments}{meta}}}}}"#
    ))
}

/// Ends a session (best effort).
pub async fn delete_session(conn: &mut Conn, target: &Target, session: &Session) -> Result<()> {
    let response = conn
        .send(target, Method::DELETE, session.headers(), None)
        .await?;
    let status = response.status();
    http::read_all(response.into_body()).await?;
    if !status.is_success() && status != StatusCode::NOT_FOUND {
        bail!("DELETE: HTTP {status}");
    }
    Ok(())
}
