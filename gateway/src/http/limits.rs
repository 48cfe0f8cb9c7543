//! Limits against abuse, each configurable and each counted in
//! `mcpgw_limit_rejections_total{limit}` when it refuses something:
//! - request rate per principal (or per client address when anonymous): a token bucket
//!   per gateway, 429 with `Retry-After`;
//! - requests running at once, and SSE streams open at once, per session on this
//!   gateway: 429;
//! - sessions per principal, cluster-wide (counted on the bus): 429 at `initialize`.
//!
//! Body size, job deadline, idle session TTL and per-stream queue length are enforced where
//! they apply (`transport::post`, the worker, the bus, the pumps).

use crate::config::Config;
use crate::http::auth::Principal;
use crate::http::error::HttpError;
use crate::state::AppState;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use mcp_bus::SessionId;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, MutexGuard};

/// What a session holds on this gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    /// A request running (a job).
    Request,
    /// An open SSE stream.
    Stream,
}

#[derive(Debug, Default, Clone, Copy)]
struct Held {
    requests: u32,
    streams: u32,
}

/// The limits of this gateway and what sessions hold now.
pub struct Limits {
    rate: Option<DefaultKeyedRateLimiter<String>>,
    max_requests: u32,
    max_streams: u32,
    held: Mutex<HashMap<SessionId, Held>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Limits {
    /// The limits the configuration sets (0 disables one).
    pub fn from_config(config: &Config) -> Self {
        let rate = NonZeroU32::new(config.rate_limit_per_second).map(|per_second| {
            let burst = NonZeroU32::new(config.rate_limit_burst).unwrap_or(per_second);
            RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst))
        });
        Self {
            rate,
            max_requests: config.max_concurrent_requests_per_session,
            max_streams: config.max_streams_per_session,
            held: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token of `key`'s bucket; `Err(seconds)` says when to retry.
    pub fn check_rate(&self, key: &str) -> Result<(), u64> {
        let Some(rate) = &self.rate else {
            return Ok(());
        };
        rate.check_key(&key.to_owned()).map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ));
            wait.as_secs().max(1)
        })
    }

    /// Claims one unit of `load` for `session`; `None` when the session is at its limit.
    /// The claim is released when the guard is dropped.
    pub fn acquire(self: &Arc<Self>, session: &SessionId, load: Load) -> Option<LoadGuard> {
        let mut held = lock(&self.held);
        let entry = held.entry(session.clone()).or_default();
        let (count, max) = match load {
            Load::Request => (&mut entry.requests, self.max_requests),
            Load::Stream => (&mut entry.streams, self.max_streams),
        };
        if max != 0 && *count >= max {
            return None;
        }
        *count += 1;
        Some(LoadGuard {
            limits: self.clone(),
            session: session.clone(),
            load,
        })
    }

    /// Drops the rate buckets of keys that have been idle long enough to be full again.
    pub fn forget_idle_buckets(&self) {
        if let Some(rate) = &self.rate {
            rate.retain_recent();
        }
    }
}

/// A claim on a session's limit; released when dropped.
pub struct LoadGuard {
    limits: Arc<Limits>,
    session: SessionId,
    load: Load,
}

impl Drop for LoadGuard {
    fn drop(&mut self) {
        let mut held = lock(&self.limits.held);
        if let Some(entry) = held.get_mut(&self.session) {
            match self.load {
                Load::Request => entry.requests = entry.requests.saturating_sub(1),
                Load::Stream => entry.streams = entry.streams.saturating_sub(1),
            }
            if entry.requests == 0 && entry.streams == 0 {
                held.remove(&self.session);
            }
        }
    }
}

/// The middleware: 429 when the principal (or anonymous client address) exceeds its rate.
pub async fn rate_limit(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let principal = request
        .extensions()
        .get::<Principal>()
        .map(|p| p.0.clone())
        .unwrap_or_default();
    let key = if principal.is_empty() {
        request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| format!("ip:{}", c.0.ip()))
            .unwrap_or_else(|| "anonymous".into())
    } else {
        format!("principal:{principal}")
    };
    match app.limits.check_rate(&key) {
        Ok(()) => next.run(request).await,
        Err(retry_after) => {
            app.metrics
                .limit_rejections
                .with_label_values(&["rate"])
                .inc();
            let mut response = HttpError::TooManyRequests(format!(
                "more than {} requests per second; retry in {retry_after} s",
                app.config.rate_limit_per_second
            ))
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
                response
                    .headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, v);
            }
            response
        }
    }
}

/// Claims `load` for a session, or the 429 that says why not.
pub fn claim(app: &AppState, session: &SessionId, load: Load) -> Result<LoadGuard, HttpError> {
    app.limits.acquire(session, load).ok_or_else(|| {
        let (label, what, max) = match load {
            Load::Request => (
                "requests_per_session",
                "requests running",
                app.config.max_concurrent_requests_per_session,
            ),
            Load::Stream => (
                "streams_per_session",
                "streams open",
                app.config.max_streams_per_session,
            ),
        };
        app.metrics
            .limit_rejections
            .with_label_values(&[label])
            .inc();
        HttpError::TooManyRequests(format!(
            "this session already has {max} {what} on this gateway"
        ))
    })
}
