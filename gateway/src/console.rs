//! The console page at `/`: a browser MCP client of this gateway's own `/mcp` (the
//! official TypeScript SDK, bundled), embedded in the binary so that neither building nor
//! running the gateway needs Node.
//!
//! The sources and the script that rebuilds the bundle are in `gateway/console/`
//! (`npm ci && npm run build`); `tests/tests/browser.rs` checks that the committed
//! `dist/console.js` is what they build. The page is static and holds no secret: it is
//! served behind the Host/Origin guard like `/mcp`, without authentication; a gateway
//! with authentication on makes the page ask for a token, which it sends only to `/mcp`.
//! `--no-console` turns it off.

use axum::Router;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderName};
use axum::response::IntoResponse;
use axum::routing::get;

const INDEX: &str = include_str!("../console/index.html");
const SCRIPT: &str = include_str!("../console/dist/console.js");
const STYLE: &str = include_str!("../console/style.css");

/// The page may load its own script and style and talk to its own origin; nothing else
/// (no inline script, no framing, no third-party requests).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
     img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, content_type),
            // A new gateway version may serve a new bundle: revalidate every load.
            (CACHE_CONTROL, "no-cache"),
            (HeaderName::from_static("x-content-type-options"), "nosniff"),
            (HeaderName::from_static("content-security-policy"), CSP),
            (HeaderName::from_static("referrer-policy"), "no-referrer"),
        ],
        body,
    )
}

/// The console's routes: `/`, `/console/console.js`, `/console/style.css`.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/console/console.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/console/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
}
