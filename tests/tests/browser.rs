//! Browser clients: CORS over raw HTTP (what a browser sends and must get back).

use e2e_tests::Gateway;
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::Value;

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"cors-test","version":"0"}}}"#;

/// The request headers a browser MCP client sends (and so asks about in a preflight).
const CLIENT_HEADERS: &str = "content-type,accept,authorization,mcp-session-id,mcp-protocol-version,last-event-id,mcp-method,mcp-name,traceparent";

/// A gateway's own loopback origin under another port: allowed by the default policy of a
/// loopback listener.
fn loopback_origin(gw: &Gateway) -> String {
    let port = gw.base.rsplit(':').next().unwrap();
    format!("http://localhost:{port}")
}

async fn preflight(url: &str, origin: &str, method: &str, headers: &str) -> reqwest::Response {
    reqwest::Client::new()
        .request(Method::OPTIONS, url)
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header("access-control-request-headers", headers)
        .send()
        .await
        .expect("preflight")
}

fn header(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .map(|v| v.to_str().unwrap().to_ascii_lowercase())
        .unwrap_or_default()
}

fn list(headers: &HeaderMap, name: &str) -> Vec<String> {
    header(headers, name)
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

fn cors_headers(headers: &HeaderMap) -> Vec<String> {
    headers
        .keys()
        .map(|k| k.as_str().to_owned())
        .filter(|k| k.starts_with("access-control-"))
        .collect()
}

async fn initialize(url: &str, extra: &[(&str, &str)]) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(INITIALIZE);
    for (k, v) in extra {
        request = request.header(*k, *v);
    }
    request.send().await.expect("initialize")
}

/// The JSON-RPC message of a response, whether JSON or a one-event SSE stream.
async fn json_body(r: reqwest::Response) -> Value {
    let text = r.text().await.unwrap();
    let data = text
        .lines()
        .find_map(|l| l.strip_prefix("data:"))
        .unwrap_or(&text);
    serde_json::from_str(data.trim()).unwrap_or(Value::Null)
}

#[tokio::test]
async fn cors_preflight_of_an_allowed_origin_allows_the_transport() {
    let gw = Gateway::start(&[]).unwrap();
    let origin = loopback_origin(&gw);
    for method in ["POST", "GET", "DELETE"] {
        let r = preflight(&gw.url(), &origin, method, CLIENT_HEADERS).await;
        assert!(r.status().is_success(), "{method}: {}", r.status());
        let h = r.headers();
        assert_eq!(header(h, "access-control-allow-origin"), origin);
        let methods = list(h, "access-control-allow-methods");
        for m in ["post", "get", "delete"] {
            assert!(methods.contains(&m.to_owned()), "{methods:?}");
        }
        let allowed = list(h, "access-control-allow-headers");
        for wanted in CLIENT_HEADERS.split(',') {
            assert!(allowed.contains(&wanted.to_owned()), "{wanted}: {allowed:?}");
        }
        assert_eq!(header(h, "access-control-max-age"), "7200");
        assert!(header(h, "vary").contains("origin"), "{h:?}");
        // No credentials mode: the bearer token is a header, not a cookie.
        assert!(h.get("access-control-allow-credentials").is_none());
    }
    // 2026-07-28's Mcp-Param-* headers are named by tool schemas: the ones asked are allowed.
    let r = preflight(
        &gw.url(),
        &origin,
        "POST",
        "content-type,mcp-method,mcp-name,mcp-param-region",
    )
    .await;
    let allowed = list(r.headers(), "access-control-allow-headers");
    assert!(allowed.contains(&"mcp-param-region".to_owned()), "{allowed:?}");
    // Another header is not.
    let r = preflight(&gw.url(), &origin, "POST", "content-type,x-unknown").await;
    let allowed = list(r.headers(), "access-control-allow-headers");
    assert!(!allowed.contains(&"x-unknown".to_owned()), "{allowed:?}");
}

#[tokio::test]
async fn cors_an_origin_off_the_list_gets_403_preflight_included() {
    // Loopback defaults: a foreign origin is refused.
    let gw = Gateway::start(&[]).unwrap();
    for origin in ["http://evil.example", "null"] {
        let r = preflight(&gw.url(), origin, "POST", "content-type").await;
        assert_eq!(r.status(), 403, "{origin}");
        assert!(cors_headers(r.headers()).is_empty(), "{:?}", r.headers());
        let r = initialize(&gw.url(), &[("origin", origin)]).await;
        assert_eq!(r.status(), 403, "{origin}");
    }
    // An explicit list replaces the loopback default: a loopback page on another port is
    // foreign now.
    let gw = Gateway::start(&["--allowed-origin", "https://app.example.com"]).unwrap();
    let r = preflight(&gw.url(), "http://localhost:1", "POST", "content-type").await;
    assert_eq!(r.status(), 403);
    let r = preflight(&gw.url(), "https://app.example.com", "POST", "content-type").await;
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(
        header(r.headers(), "access-control-allow-origin"),
        "https://app.example.com"
    );
}

#[tokio::test]
async fn cors_responses_expose_the_session_id_to_an_allowed_origin() {
    let gw = Gateway::start(&[]).unwrap();
    let origin = loopback_origin(&gw);
    let r = initialize(&gw.url(), &[("origin", origin.as_str())]).await;
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(header(&h, "access-control-allow-origin"), origin);
    let exposed = list(&h, "access-control-expose-headers");
    for wanted in ["mcp-session-id", "www-authenticate"] {
        assert!(exposed.contains(&wanted.to_owned()), "{exposed:?}");
    }
    let session = header(&h, "mcp-session-id");
    assert_eq!(session.len(), 32);
    // The session then works from the page like from any client: a GET stream and a DELETE.
    let get = reqwest::Client::new()
        .get(gw.url())
        .header("origin", &origin)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 200);
    assert_eq!(header(get.headers(), "access-control-allow-origin"), origin);
    drop(get);
    let delete = reqwest::Client::new()
        .delete(gw.url())
        .header("origin", &origin)
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .unwrap();
    assert!(delete.status().is_success(), "{}", delete.status());
    assert_eq!(
        header(delete.headers(), "access-control-allow-origin"),
        origin
    );
}

#[tokio::test]
async fn cors_nothing_changes_without_origin() {
    let gw = Gateway::start(&[]).unwrap();
    let r = initialize(&gw.url(), &[]).await;
    assert_eq!(r.status(), 200);
    assert!(cors_headers(r.headers()).is_empty(), "{:?}", r.headers());
    assert!(r.headers().get("vary").is_none(), "{:?}", r.headers());
    // OPTIONS without Origin is no preflight: the transport's 405, as before.
    let r = reqwest::Client::new()
        .request(Method::OPTIONS, gw.url())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert!(cors_headers(r.headers()).is_empty(), "{:?}", r.headers());
}

#[tokio::test]
async fn cors_with_auth_the_preflight_needs_no_token_and_a_401_is_readable() {
    let gw = Gateway::start(&["--auth-token", "alice:secret-token-alice-0123"]).unwrap();
    let origin = loopback_origin(&gw);
    // A preflight carries no credentials: it must not be asked for them.
    let r = preflight(&gw.url(), &origin, "POST", CLIENT_HEADERS).await;
    assert!(r.status().is_success(), "{}", r.status());
    // Without a token: 401, and the page can read WWW-Authenticate (resource metadata).
    let r = initialize(&gw.url(), &[("origin", origin.as_str())]).await;
    assert_eq!(r.status(), 401);
    assert_eq!(header(r.headers(), "access-control-allow-origin"), origin);
    assert!(
        list(r.headers(), "access-control-expose-headers").contains(&"www-authenticate".into())
    );
    assert!(header(r.headers(), "www-authenticate").starts_with("bearer"));
    // The metadata the header points to is readable cross-origin too.
    let r = reqwest::Client::new()
        .get(format!("{}/.well-known/oauth-protected-resource", gw.base))
        .header("origin", &origin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(r.headers(), "access-control-allow-origin"), origin);
    // With the token: a session.
    let r = initialize(
        &gw.url(),
        &[
            ("origin", origin.as_str()),
            ("authorization", "Bearer secret-token-alice-0123"),
        ],
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(r.headers(), "access-control-allow-origin"), origin);
    let body = json_body(r).await;
    assert!(body["result"]["protocolVersion"].is_string(), "{body}");
}
