//! DNS-rebinding protection: `Host` and `Origin` must be on allow-lists.
//!
//! A browser page on `evil.example` that rebinds its name to 127.0.0.1 sends requests
//! with `Host: evil.example` and `Origin: http://evil.example`; both checks refuse it with
//! 403 before any MCP processing.

use crate::config::Config;
use crate::http::error::HttpError;
use axum::extract::{Request, State};
use axum::http::header::{HOST, ORIGIN};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

const LOOPBACK_NAMES: [&str; 4] = ["localhost", "127.0.0.1", "[::1]", "::1"];

/// The allow-lists, resolved from the configuration once.
#[derive(Debug, Clone)]
pub struct OriginPolicy {
    /// `None` allows any host.
    hosts: Option<Vec<String>>,
    /// `None` allows any origin.
    origins: Option<Vec<String>>,
    loopback_origins: bool,
}

impl OriginPolicy {
    /// Builds the policy: explicit lists win; otherwise a loopback listener accepts only
    /// loopback hosts and origins, and any other listener any host and no browser origin.
    pub fn from_config(config: &Config) -> Self {
        let loopback = config.listen.ip().is_loopback();
        // An empty environment variable parses as one empty entry: it means "not set".
        let mut config = config.clone();
        config.allowed_hosts.retain(|h| !h.trim().is_empty());
        config.allowed_origins.retain(|o| !o.trim().is_empty());
        let config = &config;
        let hosts = if config.allowed_hosts.iter().any(|h| h == "*") {
            None
        } else if !config.allowed_hosts.is_empty() {
            Some(
                config
                    .allowed_hosts
                    .iter()
                    .map(|h| h.to_ascii_lowercase())
                    .collect(),
            )
        } else if loopback {
            Some(LOOPBACK_NAMES.iter().map(|h| (*h).to_owned()).collect())
        } else {
            None
        };
        let origins = if config.allowed_origins.iter().any(|o| o == "*") {
            None
        } else {
            Some(
                config
                    .allowed_origins
                    .iter()
                    .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                    .collect(),
            )
        };
        Self {
            hosts,
            origins,
            loopback_origins: loopback && config.allowed_origins.is_empty(),
        }
    }

    fn host_allowed(&self, host: &str) -> bool {
        let Some(hosts) = &self.hosts else {
            return true;
        };
        let name = strip_port(&host.to_ascii_lowercase());
        hosts.contains(&name)
    }

    /// Whether a browser page on `origin` may call the gateway.
    pub(crate) fn origin_allowed(&self, origin: &str) -> bool {
        let origin = origin.trim_end_matches('/').to_ascii_lowercase();
        let Some(origins) = &self.origins else {
            return true;
        };
        if origins.contains(&origin) {
            return true;
        }
        if self.loopback_origins {
            let Some((scheme, authority)) = origin.split_once("://") else {
                return false;
            };
            return matches!(scheme, "http" | "https")
                && LOOPBACK_NAMES.contains(&strip_port(authority).as_str());
        }
        false
    }
}

/// `host[:port]` → `host`, keeping IPv6 brackets.
fn strip_port(authority: &str) -> String {
    if authority.starts_with('[') {
        return match authority.find(']') {
            Some(end) => authority[..=end].to_owned(),
            None => authority.to_owned(),
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host.to_owned(),
        _ => authority.to_owned(),
    }
}

/// The middleware: 403 for a `Host` or `Origin` outside the policy.
pub async fn check_origin(
    State(policy): State<Arc<OriginPolicy>>,
    request: Request,
    next: Next,
) -> Response {
    let host = request
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| request.uri().authority().map(|a| a.to_string()));
    if let Some(host) = host
        && !policy.host_allowed(&host)
    {
        return HttpError::Forbidden(format!("Host {host:?} is not allowed")).into_response();
    }
    if let Some(origin) = request.headers().get(ORIGIN) {
        let allowed = origin.to_str().is_ok_and(|o| policy.origin_allowed(o));
        if !allowed {
            return HttpError::Forbidden(format!(
                "Origin {:?} is not allowed",
                String::from_utf8_lossy(origin.as_bytes())
            ))
            .into_response();
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn policy(args: &[&str]) -> OriginPolicy {
        let mut argv = vec!["mcp-gateway"];
        argv.extend_from_slice(args);
        OriginPolicy::from_config(&Config::parse_from(argv))
    }

    #[test]
    fn loopback_listener_accepts_only_loopback_names() {
        let p = policy(&[]);
        assert!(p.host_allowed("localhost:8000"));
        assert!(p.host_allowed("127.0.0.1:1234"));
        assert!(p.host_allowed("[::1]:8000"));
        assert!(!p.host_allowed("evil.example.com"));
        assert!(!p.host_allowed("evil.example.com:8000"));
        assert!(p.origin_allowed("http://localhost:3000"));
        assert!(p.origin_allowed("https://127.0.0.1"));
        assert!(!p.origin_allowed("http://evil.example.com"));
        assert!(!p.origin_allowed("http://localhost.evil.example.com"));
        assert!(!p.origin_allowed("null"));
    }

    #[test]
    fn explicit_lists_replace_the_defaults() {
        let p = policy(&[
            "--listen",
            "0.0.0.0:8000",
            "--allowed-origin",
            "https://app.example.com",
        ]);
        assert!(p.host_allowed("gateway.internal:8000"));
        assert!(p.origin_allowed("https://app.example.com"));
        assert!(!p.origin_allowed("http://localhost:3000"));
        let open = policy(&["--allowed-origin", "*", "--allowed-host", "*"]);
        assert!(open.origin_allowed("http://anything.example"));
        assert!(open.host_allowed("anything.example"));
    }
}
