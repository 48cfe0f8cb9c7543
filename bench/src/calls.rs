//! `calls`: C clients, each with its own session and connection, loop
//! `tools/call long_running_operation {steps: S, step_ms}` with a progress token and check
//! that every call got exactly S increasing progress notifications, then its result. With
//! `--protocol-version 2026-07-28` there are no sessions: every call stands alone, its
//! version in `_meta` and its method and tool mirrored in headers.

use crate::http::{self, Conn, Sse};
use crate::mcp::{self, Msg, Session};
use crate::{Ctx, stats};
use anyhow::{Result, anyhow};
use clap::Args;
use hdrhistogram::Histogram;
use http_body_util::BodyExt;
use hyper::Method;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Args, Debug, Clone)]
pub struct CallsArgs {
    /// Concurrent clients (one session and one connection each).
    #[arg(short = 'c', long, default_value_t = 50)]
    pub clients: usize,
    /// Progress steps per call.
    #[arg(short = 's', long, default_value_t = 10)]
    pub steps: u32,
    /// Milliseconds per step.
    #[arg(long, default_value_t = 0)]
    pub step_ms: u64,
    /// Measured seconds.
    #[arg(short = 'd', long, default_value_t = 10.0)]
    pub duration_secs: f64,
    /// Unmeasured seconds before the measured ones.
    #[arg(long, default_value_t = 1.0)]
    pub warmup_secs: f64,
    /// Seconds a single call may take before it counts as an error.
    #[arg(long, default_value_t = 30.0)]
    pub call_timeout_secs: f64,
}

#[derive(Default)]
struct Tally {
    calls: u64,
    notifications: u64,
    errors: u64,
    bad_sequences: u64,
    first_error: Option<String>,
}

pub async fn run(ctx: Arc<Ctx>, args: CallsArgs) -> Result<(String, serde_json::Value)> {
    // Set-up: sessions first, all of them, before any load.
    let mut clients = Vec::with_capacity(args.clients);
    for i in 0..args.clients {
        let target = ctx.target(i);
        let mut conn = ctx.net.connect(target).await?;
        let version = &ctx.common.protocol_version;
        let session = if mcp::is_stateless_version(version) {
            Session::stateless(version)
        } else {
            mcp::open_session(&mut conn, target, version).await?
        };
        clients.push((i, conn, session));
    }
    let version = clients
        .first()
        .map(|c| c.2.version.clone())
        .unwrap_or_default();
    let start = Instant::now();
    let window_start = start + Duration::from_secs_f64(args.warmup_secs);
    let window_end = window_start + Duration::from_secs_f64(args.duration_secs);
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (i, conn, session) in clients {
        let ctx = ctx.clone();
        let args = args.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            client(ctx, args, i, conn, session, window_start, window_end, stop).await
        }));
    }
    tokio::time::sleep_until(window_start.into()).await;
    let cpu_before = ctx.procs.cpu();
    tokio::time::sleep_until(window_end.into()).await;
    let cpu_after = ctx.procs.cpu();
    stop.store(true, Ordering::Relaxed);
    let mut hist = stats::histogram();
    let mut total = Tally::default();
    let drain = Duration::from_secs_f64(args.call_timeout_secs + 5.0);
    for task in tasks {
        match tokio::time::timeout(drain, task).await {
            Ok(Ok((h, t))) => {
                hist.add(&h).ok();
                total.calls += t.calls;
                total.notifications += t.notifications;
                total.errors += t.errors;
                total.bad_sequences += t.bad_sequences;
                if total.first_error.is_none() {
                    total.first_error = t.first_error;
                }
            }
            _ => total.errors += 1,
        }
    }
    let secs = args.duration_secs;
    let calls_per_s = total.calls as f64 / secs;
    let notif_per_s = total.notifications as f64 / secs;
    let cpu = stats::cpu_report(&cpu_before, &cpu_after, total.notifications, "notification");
    let human = format!(
        "{} clients x {} steps: {:.0} calls/s, {:.0} notifications/s, {}, errors {}, bad sequences {}{}  (cpu: {})",
        args.clients,
        args.steps,
        calls_per_s,
        notif_per_s,
        stats::human_latency(&hist),
        total.errors,
        total.bad_sequences,
        total
            .first_error
            .as_ref()
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default(),
        stats::human_cpu(&cpu),
    );
    let value = json!({
        "clients": args.clients,
        "steps": args.steps,
        "step_ms": args.step_ms,
        "duration_s": secs,
        "negotiated_version": version,
        "calls": total.calls,
        "calls_per_s": calls_per_s.round(),
        "notifications": total.notifications,
        "notifications_per_s": notif_per_s.round(),
        "latency": stats::summary(&hist),
        "errors": total.errors,
        "bad_sequences": total.bad_sequences,
        "first_error": total.first_error,
        "cpu": cpu,
    });
    Ok((human, value))
}

#[allow(clippy::too_many_arguments)]
async fn client(
    ctx: Arc<Ctx>,
    args: CallsArgs,
    index: usize,
    mut conn: Conn,
    session: Session,
    window_start: Instant,
    window_end: Instant,
    stop: Arc<AtomicBool>,
) -> (Histogram<u64>, Tally) {
    let mut hist = stats::histogram();
    let mut tally = Tally::default();
    let target = ctx.target(index).clone();
    let arguments = format!(r#"{{"steps":{},"step_ms":{}}}"#, args.steps, args.step_ms);
    let timeout = Duration::from_secs_f64(args.call_timeout_secs);
    let mut n: u64 = 0;
    let mut events = Vec::new();
    while !stop.load(Ordering::Relaxed) && Instant::now() < window_end {
        n += 1;
        let token = format!("c{index}-{n}");
        // Request ids unique across clients: some servers key streams by request id alone.
        let id = ((index as u64) << 32) | n;
        let body = if session.is_stateless() {
            mcp::stateless_tool_call(
                id,
                "long_running_operation",
                &arguments,
                Some(&token),
                &session.version,
            )
        } else {
            mcp::tool_call(id, "long_running_operation", &arguments, Some(&token))
        };
        if conn.is_closed() {
            // The server closed an idle keep-alive connection: not an error of this call.
            match ctx.net.connect(&target).await {
                Ok(c) => conn = c,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        let t0 = Instant::now();
        let outcome = tokio::time::timeout(
            timeout,
            one_call(&mut conn, &target, &session, body, args.steps, &mut events),
        )
        .await;
        let done = Instant::now();
        let counted = done >= window_start && done <= window_end;
        let outcome = match outcome {
            Ok(r) => r,
            Err(_) => Err(anyhow!("call timed out after {:?}", timeout)),
        };
        match outcome {
            Ok((notifications, good)) => {
                if counted {
                    tally.calls += 1;
                    tally.notifications += notifications;
                    if !good {
                        tally.bad_sequences += 1;
                    }
                    stats::record(&mut hist, (done - t0).as_micros() as u64);
                }
            }
            Err(e) => {
                if counted {
                    tally.errors += 1;
                }
                if tally.first_error.is_none() {
                    tally.first_error = Some(format!("{e:#}"));
                }
                // The connection may be unusable: start a new one (same session).
                match ctx.net.connect(&target).await {
                    Ok(c) => conn = c,
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        }
    }
    (hist, tally)
}

/// One call; returns (progress notifications, whether they were exactly 1..=steps in
/// increasing order followed by a result).
async fn one_call(
    conn: &mut Conn,
    target: &http::Target,
    session: &Session,
    body: bytes::Bytes,
    steps: u32,
    events: &mut Vec<http::Event>,
) -> Result<(u64, bool)> {
    let mut headers = session.headers();
    if session.is_stateless() {
        headers.method = Some("tools/call");
        headers.name = Some("long_running_operation");
    }
    let response = conn.send(target, Method::POST, headers, Some(body)).await?;
    let response = http::expect_status(response, &[hyper::StatusCode::OK]).await?;
    let sse = http::is_sse(&response);
    let mut body = response.into_body();
    let mut parser = Sse::default();
    let mut count: u64 = 0;
    let mut last = 0.0f64;
    let mut increasing = true;
    let mut result: Option<bool> = None;
    if !sse {
        let bytes = http::read_all(body).await?;
        let msg: Msg = serde_json::from_slice(&bytes)?;
        return Ok((0, msg.error.is_none() && steps == 0));
    }
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        parser.push(data, events);
        for event in events.drain(..) {
            if event.data.is_empty() {
                continue;
            }
            let msg: Msg = serde_json::from_slice(&event.data)?;
            if msg.is_response() {
                if let Some(e) = &msg.error {
                    return Err(anyhow!("JSON-RPC error {e}"));
                }
                if result.is_some() {
                    increasing = false;
                }
                result = Some(true);
            } else if msg.method.as_deref() == Some("notifications/progress") {
                let p = msg.params.as_ref().and_then(|p| p.progress).unwrap_or(-1.0);
                if p <= last || result.is_some() {
                    increasing = false;
                }
                last = p;
                count += 1;
            }
        }
    }
    if result.is_none() {
        return Err(anyhow!(
            "the stream ended without a result ({count} progress events)"
        ));
    }
    let good = increasing && count == steps as u64 && last == steps as f64;
    Ok((count, good))
}
