//! Authentication as an OAuth 2.1 resource server (the MCP authorization spec): bearer
//! tokens, static or JWT; RFC 9728 protected resource metadata; 401 with
//! `WWW-Authenticate` naming that metadata; 403 for missing scopes. Off by default.
//!
//! The token never travels further than this layer: requests carry only the principal it
//! names, and jobs carry nothing of it.

use crate::config::Config;
use crate::policy::caller::Caller;
use axum::Json;
use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, HOST, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use mcp_protocol::ErrorObject;
use mcp_protocol::jsonrpc::{self, SERVER_ERROR};
use serde_json::{Value, json};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// Who sent a request: the principal its token names (empty when authentication is off).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Principal(pub String);

/// Why a request was not authenticated.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    #[error("authentication required")]
    Missing,
    /// A token that is not valid (unknown, malformed, expired, wrong issuer or audience).
    #[error("invalid token: {0}")]
    Invalid(String),
    /// A valid token without the scopes this gateway requires.
    #[error("insufficient scope")]
    InsufficientScope,
}

/// Why authentication could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    /// A token file or JWKS file could not be read.
    #[error("{0}")]
    Read(String),
    /// A token or key is malformed.
    #[error("{0}")]
    Invalid(String),
}

/// Verifies bearer tokens.
pub struct Authenticator {
    static_tokens: Vec<(String, Vec<u8>)>,
    jwt: Option<JwtVerifier>,
    required_scopes: Vec<String>,
    resource_url: Option<String>,
    authorization_servers: Vec<String>,
}

struct JwtVerifier {
    keys: RwLock<Vec<(Option<String>, Algorithm, DecodingKey)>>,
    hs256: Option<DecodingKey>,
    issuer: Option<String>,
    audience: Option<String>,
    jwks_url: Option<String>,
    last_fetch: RwLock<Option<Instant>>,
}

impl Authenticator {
    /// Builds the authenticator from the configuration; `enabled()` is false when no
    /// token source is configured.
    pub fn from_config(config: &Config) -> Result<Self, AuthSetupError> {
        let mut lines: Vec<String> = config
            .auth_tokens
            .iter()
            .filter(|t| !t.trim().is_empty())
            .cloned()
            .collect();
        if let Some(path) = &config.auth_token_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| AuthSetupError::Read(format!("{}: {e}", path.display())))?;
            lines.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(str::to_owned),
            );
        }
        let mut static_tokens = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            let (principal, token) = match line.split_once(':') {
                Some((p, t)) if !p.is_empty() => (p.to_owned(), t.to_owned()),
                _ => (format!("token-{}", i + 1), line.clone()),
            };
            if token.len() < 16 {
                return Err(AuthSetupError::Invalid(format!(
                    "the token of principal {principal:?} is shorter than 16 characters"
                )));
            }
            static_tokens.push((principal, token.into_bytes()));
        }
        let audience = config
            .jwt_audience
            .clone()
            .or_else(|| config.resource_url.clone());
        let jwt = if config.jwt_jwks_file.is_some()
            || config.jwt_jwks_url.is_some()
            || config.jwt_hs256_secret.is_some()
        {
            let mut keys = Vec::new();
            if let Some(path) = &config.jwt_jwks_file {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| AuthSetupError::Read(format!("{}: {e}", path.display())))?;
                let set: JwkSet = serde_json::from_str(&text).map_err(|e| {
                    AuthSetupError::Invalid(format!("{}: not a JWKS: {e}", path.display()))
                })?;
                keys = keys_of(&set);
            }
            Some(JwtVerifier {
                keys: RwLock::new(keys),
                hs256: config
                    .jwt_hs256_secret
                    .as_ref()
                    .map(|s| DecodingKey::from_secret(s.as_bytes())),
                issuer: config.jwt_issuer.clone(),
                audience,
                jwks_url: config.jwt_jwks_url.clone(),
                last_fetch: RwLock::new(None),
            })
        } else {
            None
        };
        Ok(Self {
            static_tokens,
            jwt,
            required_scopes: config
                .required_scopes
                .iter()
                .filter(|s| !s.is_empty())
                .cloned()
                .collect(),
            resource_url: config.resource_url.clone(),
            authorization_servers: config.authorization_servers.clone(),
        })
    }

    /// True when requests must carry a token.
    pub fn enabled(&self) -> bool {
        !self.static_tokens.is_empty() || self.jwt.is_some()
    }

    /// Checks an `Authorization` header value; the caller it names, with the token's
    /// scopes and claims (for the policy).
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Caller, AuthError> {
        if !self.enabled() {
            return Ok(Caller::default());
        }
        let token = authorization
            .and_then(|h| {
                let (scheme, token) = h.trim().split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then_some(token.trim())
            })
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Missing)?;
        // Every static token is compared, so timing does not tell which one was close.
        let mut found: Option<&str> = None;
        for (principal, expected) in &self.static_tokens {
            if bool::from(expected.as_slice().ct_eq(token.as_bytes())) {
                found = Some(principal);
            }
        }
        if let Some(principal) = found {
            // Static tokens carry every scope the gateway requires: they are the
            // operator's own. A policy matches them by principal.
            return Ok(Caller {
                principal: principal.to_owned(),
                scopes: Vec::new(),
                claims: Value::Null,
            });
        }
        let Some(jwt) = &self.jwt else {
            return Err(AuthError::Invalid("unknown token".into()));
        };
        let claims = jwt.verify(token).await?;
        let scopes: Vec<String> = match (&claims["scope"], &claims["scp"]) {
            (Value::String(s), _) => s.split_whitespace().map(str::to_owned).collect(),
            (_, Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        if !self.required_scopes.iter().all(|s| scopes.contains(s)) {
            return Err(AuthError::InsufficientScope);
        }
        let subject = claims["sub"].as_str().unwrap_or_default();
        if subject.is_empty() {
            return Err(AuthError::Invalid(
                "the token names no subject (sub)".into(),
            ));
        }
        let issuer = claims["iss"].as_str().unwrap_or_default();
        Ok(Caller {
            principal: format!("{issuer}#{subject}"),
            scopes,
            claims,
        })
    }

    /// The protected resource's URL for this request.
    pub fn resource_url(&self, headers: &HeaderMap) -> String {
        if let Some(url) = &self.resource_url {
            return url.clone();
        }
        let host = headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        let scheme = headers
            .get("x-forwarded-proto")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("http");
        format!("{scheme}://{host}/mcp")
    }

    /// The URL of the protected resource metadata (RFC 9728: the well-known path with
    /// the resource's path appended).
    pub fn metadata_url(&self, headers: &HeaderMap) -> String {
        let resource = self.resource_url(headers);
        match resource.split_once("://").and_then(|(scheme, rest)| {
            rest.split_once('/')
                .map(|(host, path)| (scheme, host, path))
        }) {
            Some((scheme, host, path)) => {
                format!("{scheme}://{host}/.well-known/oauth-protected-resource/{path}")
            }
            None => format!("{resource}/.well-known/oauth-protected-resource"),
        }
    }

    /// The RFC 9728 metadata document.
    pub fn metadata(&self, headers: &HeaderMap) -> Value {
        json!({
            "resource": self.resource_url(headers),
            "authorization_servers": self.authorization_servers,
            "bearer_methods_supported": ["header"],
            "scopes_supported": self.required_scopes,
            "resource_name": "mcp-notify-gateway",
        })
    }

    /// The 401 or 403 for a failed authentication.
    pub fn challenge(&self, error: &AuthError, headers: &HeaderMap) -> Response {
        let metadata = self.metadata_url(headers);
        let scope = if self.required_scopes.is_empty() {
            String::new()
        } else {
            format!(", scope=\"{}\"", self.required_scopes.join(" "))
        };
        let (status, header) = match error {
            AuthError::Missing => (
                StatusCode::UNAUTHORIZED,
                format!("Bearer resource_metadata=\"{metadata}\"{scope}"),
            ),
            AuthError::Invalid(_) => (
                StatusCode::UNAUTHORIZED,
                format!("Bearer resource_metadata=\"{metadata}\", error=\"invalid_token\"{scope}"),
            ),
            AuthError::InsufficientScope => (
                StatusCode::FORBIDDEN,
                format!(
                    "Bearer resource_metadata=\"{metadata}\", error=\"insufficient_scope\"{scope}"
                ),
            ),
        };
        let body = jsonrpc::response_err(None, ErrorObject::new(SERVER_ERROR, error.to_string()));
        let mut response = (status, Json(body)).into_response();
        if let Ok(value) = HeaderValue::from_str(&header) {
            response.headers_mut().insert(WWW_AUTHENTICATE, value);
        }
        response
    }

    /// Fetches the JWKS URL now (at start) if one is configured.
    pub async fn refresh_keys(&self) -> Result<(), AuthSetupError> {
        match &self.jwt {
            Some(jwt) => jwt.fetch().await,
            None => Ok(()),
        }
    }

    /// Keeps the JWKS fresh (every 5 minutes) while the gateway runs.
    pub async fn keep_keys_fresh(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_secs(300));
        loop {
            tick.tick().await;
            if let Err(e) = self.refresh_keys().await {
                tracing::warn!(error = %e, "JWKS refresh failed; keeping the keys we have");
            }
        }
    }
}

fn keys_of(set: &JwkSet) -> Vec<(Option<String>, Algorithm, DecodingKey)> {
    set.keys
        .iter()
        .filter_map(|jwk| {
            let key = DecodingKey::from_jwk(jwk).ok()?;
            let alg = jwk
                .common
                .key_algorithm
                .and_then(|a| a.to_string().parse::<Algorithm>().ok())
                .or(match &jwk.algorithm {
                    jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
                    jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_) => {
                        Some(Algorithm::ES256)
                    }
                    jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(_) => {
                        Some(Algorithm::EdDSA)
                    }
                    _ => None,
                })?;
            Some((jwk.common.key_id.clone(), alg, key))
        })
        .collect()
}

impl JwtVerifier {
    async fn fetch(&self) -> Result<(), AuthSetupError> {
        let Some(url) = &self.jwks_url else {
            return Ok(());
        };
        *self.last_fetch.write().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| AuthSetupError::Read(e.to_string()))?;
        let set: JwkSet = client
            .get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| AuthSetupError::Read(format!("{url}: {e}")))?
            .json()
            .await
            .map_err(|e| AuthSetupError::Invalid(format!("{url}: not a JWKS: {e}")))?;
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = keys_of(&set);
        Ok(())
    }

    async fn verify(&self, token: &str) -> Result<Value, AuthError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthError::Invalid(e.to_string()))?;
        let mut key = self.key_for(&header);
        // A key rotated in since the last fetch: fetch again, at most every 30 s.
        if key.is_none() && self.jwks_url.is_some() {
            let recent = self
                .last_fetch
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .is_some_and(|t| t.elapsed() < Duration::from_secs(30));
            if !recent {
                let _ = self.fetch().await;
                key = self.key_for(&header);
            }
        }
        let key = key.ok_or_else(|| AuthError::Invalid("no key for this token".into()))?;
        let mut validation = Validation::new(header.alg);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
        }
        match &self.audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        jsonwebtoken::decode::<Value>(token, &key, &validation)
            .map(|data| data.claims)
            .map_err(|e| AuthError::Invalid(e.to_string()))
    }

    fn key_for(&self, header: &jsonwebtoken::Header) -> Option<DecodingKey> {
        if header.alg == Algorithm::HS256 {
            return self.hs256.clone();
        }
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        keys.iter()
            .find(|(kid, alg, _)| {
                *alg == header.alg && (header.kid.is_none() || *kid == header.kid)
            })
            .map(|(_, _, key)| key.clone())
    }
}

/// The middleware: authenticates `/mcp` requests and adds their [`Principal`].
pub async fn require_auth(
    State(app): State<crate::state::AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let auth = &app.auth;
    let header = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned);
    match auth.authenticate(header.as_deref()).await {
        Ok(caller) => {
            request
                .extensions_mut()
                .insert(Principal(caller.principal.clone()));
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(error) => {
            let reason = match error {
                AuthError::Missing => "missing",
                AuthError::Invalid(_) => "invalid",
                AuthError::InsufficientScope => "scope",
            };
            app.metrics.auth_failures.with_label_values(&[reason]).inc();
            tracing::info!(error = %error, "request refused by authentication");
            auth.challenge(&error, request.headers())
        }
    }
}

/// GET `/.well-known/oauth-protected-resource[/mcp]`.
pub async fn protected_resource_metadata(
    State(auth): State<Arc<Authenticator>>,
    headers: HeaderMap,
) -> Response {
    Json(auth.metadata(&headers)).into_response()
}
