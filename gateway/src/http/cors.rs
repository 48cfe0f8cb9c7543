//! CORS for browser clients (the MCP Inspector, web apps on the TypeScript SDK, the
//! gateway's own console), driven by the same `Origin` allow-list as the
//! [`guard`](crate::http::guard).
//!
//! The layer sits inside the guard, so an origin off the list never reaches it: the guard
//! answers 403, preflight included. For an allowed origin, tower-http's [`CorsLayer`]
//! answers the preflight (methods POST, GET, DELETE; the request headers the transport,
//! authentication and tracing read) and exposes the response headers a browser client
//! needs to read (`Mcp-Session-Id`, `WWW-Authenticate`, `Retry-After`). A request without
//! `Origin` (every non-browser client) passes through untouched: no CORS headers, and
//! `OPTIONS` keeps answering 405 as before.
//!
//! `Mcp-Param-*` headers (2026-07-28: tool arguments a schema marks `x-mcp-header`) are
//! named by the tools, which workers may change at any time; a preflight asking for such
//! headers gets exactly those allowed beside the fixed list. The transport checks them
//! against the tool's schema anyway.

use crate::http::guard::OriginPolicy;
use crate::mcp::stateless::{METHOD_HEADER, NAME_HEADER, PARAM_HEADER_PREFIX};
use axum::extract::{Request, State};
use axum::http::header::{
    ACCEPT, ACCESS_CONTROL_REQUEST_HEADERS, AUTHORIZATION, CONTENT_TYPE, HeaderName, ORIGIN,
    RETRY_AFTER, WWW_AUTHENTICATE,
};
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::Response;
use std::sync::Arc;
use std::time::Duration;
use tower::{Layer, ServiceExt};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// The session id header (request and response).
const SESSION_HEADER: HeaderName = HeaderName::from_static("mcp-session-id");

/// Request headers every browser client may send, beside `Mcp-Param-*`.
const REQUEST_HEADERS: [HeaderName; 10] = [
    CONTENT_TYPE,
    ACCEPT,
    AUTHORIZATION,
    SESSION_HEADER,
    HeaderName::from_static("mcp-protocol-version"),
    HeaderName::from_static("last-event-id"),
    HeaderName::from_static(METHOD_HEADER),
    HeaderName::from_static(NAME_HEADER),
    // W3C trace context: a traced browser app continues its trace into the gateway.
    HeaderName::from_static("traceparent"),
    HeaderName::from_static("tracestate"),
];

/// Response headers a browser client must be able to read (the others it needs are
/// CORS-safelisted, e.g. `Content-Type`).
const EXPOSED_HEADERS: [HeaderName; 3] = [SESSION_HEADER, WWW_AUTHENTICATE, RETRY_AFTER];

/// How long a browser may cache a preflight: Chromium caps it at 2 h, Firefox at 24 h.
/// The allow-list only changes with a restart, and every MCP request of a browser
/// client is preflighted (custom headers, JSON body), so the longest useful cache saves
/// a round trip per request.
pub const MAX_AGE: Duration = Duration::from_secs(2 * 60 * 60);

/// The CORS rules, built once from the origin policy.
#[derive(Clone)]
pub struct Cors {
    layer: CorsLayer,
}

impl Cors {
    /// CORS for the origins `policy` allows.
    pub fn new(policy: Arc<OriginPolicy>) -> Self {
        let layer = CorsLayer::new()
            // The guard already refused other origins; checking again keeps this layer
            // correct wherever it is stacked.
            .allow_origin(AllowOrigin::predicate(move |origin, _| {
                origin.to_str().is_ok_and(|o| policy.origin_allowed(o))
            }))
            .allow_methods([Method::POST, Method::GET, Method::DELETE])
            .allow_headers(REQUEST_HEADERS)
            .expose_headers(EXPOSED_HEADERS)
            .max_age(MAX_AGE);
        Self { layer }
    }

    /// The layer for one preflight: the fixed request headers, plus the `Mcp-Param-*`
    /// headers it asks for.
    fn for_preflight(&self, headers: &HeaderMap) -> CorsLayer {
        let params: Vec<HeaderName> = headers
            .get_all(ACCESS_CONTROL_REQUEST_HEADERS)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|name| name.trim().to_ascii_lowercase())
            .filter(|name| name.len() > PARAM_HEADER_PREFIX.len())
            .filter(|name| name.starts_with(PARAM_HEADER_PREFIX))
            .filter_map(|name| HeaderName::try_from(name).ok())
            .collect();
        if params.is_empty() {
            return self.layer.clone();
        }
        let mut allowed = REQUEST_HEADERS.to_vec();
        allowed.extend(params);
        self.layer.clone().allow_headers(allowed)
    }
}

/// The middleware: CORS for requests that carry `Origin`, nothing for the others.
pub async fn cors(State(cors): State<Arc<Cors>>, request: Request, next: Next) -> Response {
    if !request.headers().contains_key(ORIGIN) {
        return next.run(request).await;
    }
    let layer = if request.method() == Method::OPTIONS {
        cors.for_preflight(request.headers())
    } else {
        cors.layer.clone()
    };
    match layer.layer(next).oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use axum::Router;
    use axum::body::Body;
    use axum::http::header::{
        ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_REQUEST_METHOD,
    };
    use axum::routing::post;

    fn app() -> Router {
        let config = Config::defaults();
        let cors = Arc::new(Cors::new(Arc::new(OriginPolicy::from_config(&config))));
        Router::new()
            .route("/mcp", post(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(cors, super::cors))
    }

    fn preflight(origin: &str, headers: &str) -> Request {
        Request::options("/mcp")
            .header(ORIGIN, origin)
            .header(ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(ACCESS_CONTROL_REQUEST_HEADERS, headers)
            .body(Body::empty())
            .unwrap()
    }

    fn header(response: &Response, name: HeaderName) -> String {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn a_preflight_gets_the_param_headers_it_asks_for_and_no_others() {
        let request = preflight(
            "http://localhost:3000",
            "content-type, Mcp-Param-Region,x-evil,mcp-param-",
        );
        let response = app().oneshot(request).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            header(&response, ACCESS_CONTROL_ALLOW_ORIGIN),
            "http://localhost:3000"
        );
        let allowed = header(&response, ACCESS_CONTROL_ALLOW_HEADERS);
        assert!(allowed.contains("mcp-param-region"), "{allowed}");
        assert!(allowed.contains("mcp-session-id"), "{allowed}");
        assert!(!allowed.contains("x-evil"), "{allowed}");
        assert!(
            !allowed.split(',').any(|h| h.trim() == "mcp-param-"),
            "{allowed}"
        );
    }

    #[tokio::test]
    async fn without_origin_nothing_changes() {
        let request = Request::options("/mcp").body(Body::empty()).unwrap();
        let response = app().oneshot(request).await.unwrap();
        assert_eq!(response.status(), 405);
        assert!(
            response
                .headers()
                .keys()
                .all(|k| !k.as_str().starts_with("access-control-") && k != "vary"),
            "{:?}",
            response.headers()
        );
    }

    #[tokio::test]
    async fn an_origin_off_the_list_gets_no_cors_headers() {
        // (Behind the guard it never gets here: the guard answers 403 first.)
        let response = app()
            .oneshot(preflight("http://evil.example", "content-type"))
            .await
            .unwrap();
        assert!(
            response
                .headers()
                .get(ACCESS_CONTROL_ALLOW_ORIGIN)
                .is_none(),
            "{:?}",
            response.headers()
        );
    }
}
