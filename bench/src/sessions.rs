//! `sessions`: session set-ups per second. One set-up is initialize +
//! notifications/initialized (on the worker's keep-alive connection) + a GET stream opened
//! on a new connection (done when its response headers arrive; then it is dropped).

use crate::http::{self, Conn};
use crate::mcp::{self, Session};
use crate::{Ctx, stats};
use anyhow::{Result, anyhow};
use clap::Args;
use hdrhistogram::Histogram;
use hyper::{Method, StatusCode};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Args, Debug, Clone)]
pub struct SessionsArgs {
    /// Concurrent workers.
    #[arg(short = 'c', long, default_value_t = 50)]
    pub clients: usize,
    /// Measured seconds.
    #[arg(short = 'd', long, default_value_t = 5.0)]
    pub duration_secs: f64,
    /// Unmeasured seconds before the measured ones.
    #[arg(long, default_value_t = 0.5)]
    pub warmup_secs: f64,
    /// DELETE every session afterwards (not timed).
    #[arg(long)]
    pub delete: bool,
}

#[derive(Default)]
struct Tally {
    setups: u64,
    errors: u64,
    first_error: Option<String>,
    sessions: Vec<Session>,
}

pub async fn run(ctx: Arc<Ctx>, args: SessionsArgs) -> Result<(String, serde_json::Value)> {
    let start = Instant::now();
    let window_start = start + Duration::from_secs_f64(args.warmup_secs);
    let window_end = window_start + Duration::from_secs_f64(args.duration_secs);
    let mut tasks = Vec::new();
    for i in 0..args.clients {
        let ctx = ctx.clone();
        let keep = args.delete;
        tasks.push(tokio::spawn(async move {
            worker(ctx, i, window_start, window_end, keep).await
        }));
    }
    tokio::time::sleep_until(window_start.into()).await;
    let cpu_before = ctx.procs.cpu();
    tokio::time::sleep_until(window_end.into()).await;
    let cpu_after = ctx.procs.cpu();
    let mut hist = stats::histogram();
    let mut total = Tally::default();
    for task in tasks {
        match tokio::time::timeout(Duration::from_secs(30), task).await {
            Ok(Ok((h, t))) => {
                hist.add(&h).ok();
                total.setups += t.setups;
                total.errors += t.errors;
                if total.first_error.is_none() {
                    total.first_error = t.first_error;
                }
                total.sessions.extend(t.sessions);
            }
            _ => total.errors += 1,
        }
    }
    if args.delete {
        delete_all(&ctx, std::mem::take(&mut total.sessions), args.clients).await;
    }
    let per_s = total.setups as f64 / args.duration_secs;
    let cpu = stats::cpu_report(&cpu_before, &cpu_after, total.setups, "setup");
    let human = format!(
        "{} workers: {:.0} setups/s (initialize + initialized + GET), {}, errors {}{}  (cpu: {})",
        args.clients,
        per_s,
        stats::human_latency(&hist),
        total.errors,
        total
            .first_error
            .as_ref()
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default(),
        stats::human_cpu(&cpu),
    );
    let value = json!({
        "clients": args.clients,
        "duration_s": args.duration_secs,
        "setups": total.setups,
        "setups_per_s": per_s.round(),
        "latency": stats::summary(&hist),
        "errors": total.errors,
        "first_error": total.first_error,
        "cpu": cpu,
    });
    Ok((human, value))
}

async fn worker(
    ctx: Arc<Ctx>,
    index: usize,
    window_start: Instant,
    window_end: Instant,
    keep: bool,
) -> (Histogram<u64>, Tally) {
    let mut hist = stats::histogram();
    let mut tally = Tally::default();
    let target = ctx.target(index).clone();
    let mut conn: Option<Conn> = None;
    while Instant::now() < window_end {
        let t0 = Instant::now();
        let outcome = async {
            if conn.as_ref().is_none_or(|c| c.is_closed()) {
                conn = Some(ctx.net.connect(&target).await?);
            }
            let post = conn.as_mut().expect("connected");
            let session = mcp::open_session(post, &target, &ctx.common.protocol_version).await?;
            let mut get = ctx.net.connect(&target).await?;
            let response = get
                .send(&target, Method::GET, session.headers(), None)
                .await?;
            let response = http::expect_status(response, &[StatusCode::OK]).await?;
            if !http::is_sse(&response) {
                return Err(anyhow!("GET: not an SSE stream"));
            }
            drop(response);
            drop(get);
            Ok::<_, anyhow::Error>(session)
        }
        .await;
        let done = Instant::now();
        let counted = done >= window_start && done <= window_end;
        match outcome {
            Ok(session) => {
                if counted {
                    tally.setups += 1;
                    stats::record(&mut hist, (done - t0).as_micros() as u64);
                }
                if keep {
                    tally.sessions.push(session);
                }
            }
            Err(e) => {
                if counted {
                    tally.errors += 1;
                }
                if tally.first_error.is_none() {
                    tally.first_error = Some(format!("{e:#}"));
                }
                conn = None;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    (hist, tally)
}

async fn delete_all(ctx: &Arc<Ctx>, sessions: Vec<Session>, workers: usize) {
    let sessions = Arc::new(std::sync::Mutex::new(sessions));
    let mut tasks = Vec::new();
    for i in 0..workers.max(1) {
        let (ctx, sessions) = (ctx.clone(), sessions.clone());
        tasks.push(tokio::spawn(async move {
            let target = ctx.target(i).clone();
            let Ok(mut conn) = ctx.net.connect(&target).await else {
                return;
            };
            loop {
                let Some(s) = sessions.lock().unwrap().pop() else {
                    return;
                };
                if mcp::delete_session(&mut conn, &target, &s).await.is_err() {
                    match ctx.net.connect(&target).await {
                        Ok(c) => conn = c,
                        Err(_) => return,
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(60), t).await;
    }
}
