//! `resume`: each client calls `long_running_operation` with a progress token, reads part
//! of the call's SSE stream, drops the connection, and resumes the stream with GET +
//! `Last-Event-ID` (on the next `--url`). Every call must deliver progress 1..=S exactly
//! once and exactly one result, across both connections.

use crate::http::{self, Conn, Event, Sse};
use crate::mcp::{self, Msg, Session};
use crate::{Ctx, stats};
use anyhow::{Result, anyhow};
use clap::Args;
use hdrhistogram::Histogram;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, StatusCode};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Args, Debug, Clone)]
pub struct ResumeArgs {
    /// Concurrent clients (one session each).
    #[arg(short = 'c', long, default_value_t = 20)]
    pub clients: usize,
    /// Progress steps per call.
    #[arg(short = 's', long, default_value_t = 20)]
    pub steps: u32,
    /// Milliseconds per step (the drop happens while the call runs).
    #[arg(long, default_value_t = 5)]
    pub step_ms: u64,
    /// Measured seconds.
    #[arg(short = 'd', long, default_value_t = 10.0)]
    pub duration_secs: f64,
    /// Resumptions one call may need before it counts as an error.
    #[arg(long, default_value_t = 5)]
    pub max_resumes: u32,
    /// Seconds one call (with its resumptions) may take before it counts as an error.
    #[arg(long, default_value_t = 20.0)]
    pub call_timeout_secs: f64,
}

#[derive(Default)]
struct Tally {
    calls: u64,
    resumes: u64,
    not_dropped: u64,
    loss: u64,
    duplicates: u64,
    errors: u64,
    first_error: Option<String>,
}

pub async fn run(ctx: Arc<Ctx>, args: ResumeArgs) -> Result<(String, serde_json::Value)> {
    let mut clients = Vec::new();
    for i in 0..args.clients {
        let target = ctx.target(i).clone();
        let mut conn = ctx.net.connect(&target).await?;
        let session = mcp::open_session(&mut conn, &target, &ctx.common.protocol_version).await?;
        clients.push((i, conn, session));
    }
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(args.duration_secs);
    let cpu_before = ctx.procs.cpu();
    let mut tasks = Vec::new();
    for (i, conn, session) in clients {
        let (ctx, args) = (ctx.clone(), args.clone());
        tasks.push(tokio::spawn(async move {
            client(ctx, args, i, conn, session, end).await
        }));
    }
    let mut hist = stats::histogram();
    let mut total = Tally::default();
    let drain = Duration::from_secs_f64(args.duration_secs + 60.0);
    for task in tasks {
        match tokio::time::timeout(drain, task).await {
            Ok(Ok((h, t))) => {
                hist.add(&h).ok();
                total.calls += t.calls;
                total.resumes += t.resumes;
                total.not_dropped += t.not_dropped;
                total.loss += t.loss;
                total.duplicates += t.duplicates;
                total.errors += t.errors;
                if total.first_error.is_none() {
                    total.first_error = t.first_error;
                }
            }
            _ => total.errors += 1,
        }
    }
    let cpu_after = ctx.procs.cpu();
    let secs = start.elapsed().as_secs_f64();
    let cpu = stats::cpu_report(
        &cpu_before,
        &cpu_after,
        total.calls * args.steps as u64,
        "notification",
    );
    let human = format!(
        "{} clients x {} steps ({} ms each): {} calls ({:.0}/s), {} resumed, {} finished before the drop, loss {}, duplicates {}, errors {}, call {}{}",
        args.clients,
        args.steps,
        args.step_ms,
        total.calls,
        total.calls as f64 / secs,
        total.resumes,
        total.not_dropped,
        total.loss,
        total.duplicates,
        total.errors,
        stats::human_latency(&hist),
        total
            .first_error
            .as_ref()
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default(),
    );
    let value = json!({
        "clients": args.clients,
        "steps": args.steps,
        "step_ms": args.step_ms,
        "calls": total.calls,
        "calls_per_s": (total.calls as f64 / secs).round(),
        "resumes": total.resumes,
        "not_dropped": total.not_dropped,
        "loss": total.loss,
        "duplicates": total.duplicates,
        "errors": total.errors,
        "latency": stats::summary(&hist),
        "first_error": total.first_error,
        "cpu": cpu,
    });
    Ok((human, value))
}

/// What one call's stream(s) delivered.
#[derive(Default)]
struct Seen {
    progress: Vec<f64>,
    results: u32,
    result_at: Option<Instant>,
}

impl Seen {
    fn take(&mut self, events: &mut Vec<Event>) -> Result<()> {
        for event in events.drain(..) {
            if event.data.is_empty() {
                continue;
            }
            let msg: Msg = serde_json::from_slice(&event.data)?;
            if msg.is_response() {
                if let Some(e) = &msg.error {
                    return Err(anyhow!("JSON-RPC error {e}"));
                }
                self.results += 1;
                self.result_at.get_or_insert_with(Instant::now);
            } else if msg.method.as_deref() == Some("notifications/progress")
                && let Some(p) = msg.params.as_ref().and_then(|p| p.progress)
            {
                self.progress.push(p);
            }
        }
        Ok(())
    }
}

async fn client(
    ctx: Arc<Ctx>,
    args: ResumeArgs,
    index: usize,
    conn: Conn,
    session: Session,
    end: Instant,
) -> (Histogram<u64>, Tally) {
    let mut hist = stats::histogram();
    let mut tally = Tally::default();
    let mut conn = Some(conn);
    let mut target = ctx.target(index).clone();
    let mut hops = index;
    let mut n: u64 = 0;
    let arguments = format!(r#"{{"steps":{},"step_ms":{}}}"#, args.steps, args.step_ms);
    while Instant::now() < end {
        n += 1;
        // Drop after 1..S-1 progress events, varied per call.
        let span = (args.steps.max(2) - 1) as u64;
        let drop_after = 1
            + (n.wrapping_mul(2654435761)
                .wrapping_add(index as u64 * 40503)
                % span);
        let t0 = Instant::now();
        // Request ids unique across clients: some servers key streams by request id alone.
        let request_id = ((index as u64) << 32) | n;
        let call = async {
            let mut seen = Seen::default();
            if conn.as_ref().is_none_or(|c| c.is_closed()) {
                conn = Some(ctx.net.connect(&target).await?);
            }
            let c = conn.as_mut().expect("connected");
            let body = mcp::tool_call(
                n,
                "long_running_operation",
                &arguments,
                Some(&format!("r{index}-{n}")),
            );
            let response = c
                .send(&target, Method::POST, session.headers(), Some(body))
                .await?;
            let response = http::expect_status(response, &[StatusCode::OK]).await?;
            if !http::is_sse(&response) {
                return Err(anyhow!("tools/call: not an SSE answer"));
            }
            let mut parser = Sse::default();
            let (dropped, reusable) = read(
                response.into_body(),
                &mut parser,
                &mut seen,
                Some(drop_after),
            )
            .await?;
            if !reusable {
                conn = None;
            }
            let mut resumes = 0;
            if dropped {
                // Cut the connection for real, then resume elsewhere.
                conn = None;
                loop {
                    resumes += 1;
                    if resumes > args.max_resumes {
                        return Err(anyhow!("gave up after {} resumptions", args.max_resumes));
                    }
                    hops += 1;
                    target = ctx.target(hops).clone();
                    let mut c = ctx.net.connect(&target).await?;
                    let mut headers = session.headers();
                    headers.last_event_id = parser.last_id.as_deref();
                    let response = c.send(&target, Method::GET, headers, None).await?;
                    let response = http::expect_status(response, &[StatusCode::OK]).await?;
                    let mut next = Sse::with_last_id(parser.last_id.clone());
                    let (_, reusable) =
                        read(response.into_body(), &mut next, &mut seen, None).await?;
                    parser = next;
                    if reusable {
                        conn = Some(c);
                    }
                    if seen.results > 0 {
                        break;
                    }
                }
            }
            Ok::<_, anyhow::Error>((seen, resumes, dropped))
        };
        let outcome =
            match tokio::time::timeout(Duration::from_secs_f64(args.call_timeout_secs), call).await
            {
                Ok(r) => r,
                Err(_) => Err(anyhow!(
                    "call {request_id} timed out after {} s",
                    args.call_timeout_secs
                )),
            };
        match outcome {
            Ok((seen, resumes, dropped)) => {
                tally.calls += 1;
                tally.resumes += resumes as u64;
                if !dropped {
                    tally.not_dropped += 1;
                }
                let (loss, dups) = check(&seen, args.steps);
                tally.loss += loss;
                tally.duplicates += dups;
                let done = seen.result_at.unwrap_or_else(Instant::now);
                stats::record(&mut hist, (done - t0).as_micros() as u64);
            }
            Err(e) => {
                tally.errors += 1;
                if tally.first_error.is_none() {
                    tally.first_error = Some(format!("{e:#}"));
                }
                conn = None;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    (hist, tally)
}

/// Reads a stream until it ends, or (with `drop_after`) until that many progress events
/// arrived. Returns (stopped early: the caller drops the connection, the connection can
/// carry another request). After the result, the stream gets a moment to end; one that
/// stays open (some servers keep a resumed stream open) is abandoned with its connection.
async fn read(
    mut body: Incoming,
    parser: &mut Sse,
    seen: &mut Seen,
    drop_after: Option<u64>,
) -> Result<(bool, bool)> {
    let mut events = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        parser.push(data, &mut events);
        seen.take(&mut events)?;
        if seen.results > 0 {
            let rest = async {
                while let Some(frame) = body.frame().await {
                    if let Some(data) = frame?.data_ref() {
                        parser.push(data, &mut events);
                        seen.take(&mut events)?;
                    }
                }
                Ok::<_, anyhow::Error>(())
            };
            return match tokio::time::timeout(Duration::from_millis(200), rest).await {
                Ok(r) => r.map(|_| (false, true)),
                Err(_) => Ok((false, false)),
            };
        }
        if let Some(limit) = drop_after
            && seen.progress.len() as u64 >= limit
            && parser.last_id.is_some()
        {
            return Ok((true, false));
        }
    }
    Ok((false, true))
}

/// (lost, duplicated) of one call: progress must be exactly 1..=steps, and one result.
fn check(seen: &Seen, steps: u32) -> (u64, u64) {
    let mut counts = vec![0u32; steps as usize + 1];
    let mut dups = 0u64;
    for p in &seen.progress {
        let i = *p as usize;
        if *p >= 1.0 && i <= steps as usize && (*p - i as f64).abs() < 1e-9 {
            counts[i] += 1;
        } else {
            dups += 1; // a value that is no step at all counts as a spurious delivery
        }
    }
    let mut loss = 0u64;
    for c in &counts[1..] {
        match c {
            0 => loss += 1,
            1 => {}
            n => dups += (*n - 1) as u64,
        }
    }
    match seen.results {
        0 => loss += 1,
        1 => {}
        n => dups += (n - 1) as u64,
    }
    (loss, dups)
}
