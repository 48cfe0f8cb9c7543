//! `fanout`: N sessions hold GET streams; a publisher session calls `broadcast` K times.
//! Each message carries its send time, so receivers measure delivery latency; every
//! receiver checks it got each broadcast exactly once.

use crate::http::{self, Sse};
use crate::mcp::{self, Data, Msg};
use crate::{Ctx, stats};
use anyhow::{Result, anyhow};
use clap::Args;
use hdrhistogram::Histogram;
use http_body_util::BodyExt;
use hyper::{Method, StatusCode};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{Semaphore, watch};

#[derive(Args, Debug, Clone)]
pub struct FanoutArgs {
    /// Sessions holding a GET stream.
    #[arg(short = 'n', long, default_value_t = 1000)]
    pub sessions: usize,
    /// Broadcasts to send.
    #[arg(short = 'k', long, default_value_t = 10)]
    pub broadcasts: usize,
    /// Milliseconds between broadcasts; 0 = send the next one as soon as every stream
    /// got the previous one (or --settle-secs passed).
    #[arg(long, default_value_t = 0)]
    pub interval_ms: u64,
    /// Longest wait for one broadcast to reach every stream.
    #[arg(long, default_value_t = 15.0)]
    pub settle_secs: f64,
    /// Longest wait for all streams to open.
    #[arg(long, default_value_t = 300.0)]
    pub open_timeout_secs: f64,
}

struct Shared {
    tag: String,
    broadcasts: usize,
    delivered: Vec<AtomicU64>,
    last_us: Vec<AtomicU64>,
    hist: Mutex<Histogram<u64>>,
    duplicates: AtomicU64,
    opened: AtomicUsize,
    failed: AtomicUsize,
    reconnects: AtomicU64,
    stream_errors: AtomicU64,
    first_error: Mutex<Option<String>>,
    t0: Instant,
}

impl Shared {
    fn error(&self, e: String) {
        let mut first = self.first_error.lock().unwrap();
        if first.is_none() {
            *first = Some(e);
        }
    }
}

fn now_epoch_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

pub async fn run(ctx: Arc<Ctx>, args: FanoutArgs) -> Result<(String, serde_json::Value)> {
    let t0 = Instant::now();
    let shared = Arc::new(Shared {
        tag: format!("mcpbench-{}-{}", std::process::id(), now_epoch_us()),
        broadcasts: args.broadcasts,
        delivered: (0..args.broadcasts).map(|_| AtomicU64::new(0)).collect(),
        last_us: (0..args.broadcasts).map(|_| AtomicU64::new(0)).collect(),
        hist: Mutex::new(stats::histogram()),
        duplicates: AtomicU64::new(0),
        opened: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        reconnects: AtomicU64::new(0),
        stream_errors: AtomicU64::new(0),
        first_error: Mutex::new(None),
        t0,
    });

    // The publisher's session exists before the first RSS sample.
    let pub_target = ctx.target(0).clone();
    let mut pub_conn = ctx.net.connect(&pub_target).await?;
    let pub_session =
        mcp::open_session(&mut pub_conn, &pub_target, &ctx.common.protocol_version).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_before = ctx.procs.rss_kib();

    // Open every stream.
    let (stop_tx, stop_rx) = watch::channel(false);
    let sem = Arc::new(Semaphore::new(ctx.common.connect_concurrency.max(1)));
    let open_start = Instant::now();
    let mut tasks = Vec::with_capacity(args.sessions);
    for i in 0..args.sessions {
        let (ctx, shared, sem, stop) = (ctx.clone(), shared.clone(), sem.clone(), stop_rx.clone());
        tasks.push(tokio::spawn(receiver(ctx, shared, sem, stop, i)));
    }
    let open_deadline = open_start + Duration::from_secs_f64(args.open_timeout_secs);
    while shared.opened.load(Ordering::Relaxed) + shared.failed.load(Ordering::Relaxed)
        < args.sessions
        && Instant::now() < open_deadline
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let open_secs = open_start.elapsed().as_secs_f64();
    let opened = shared.opened.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let rss_after = ctx.procs.rss_kib();

    // Broadcast.
    let cpu_before = ctx.procs.cpu();
    let mut send_us = Vec::with_capacity(args.broadcasts);
    let mut publish_hist = stats::histogram();
    let mut publish_errors = 0u64;
    let settle = Duration::from_secs_f64(args.settle_secs);
    let mut next_tick = Instant::now();
    for k in 0..args.broadcasts {
        if args.interval_ms > 0 {
            tokio::time::sleep_until(next_tick.into()).await;
            next_tick += Duration::from_millis(args.interval_ms);
        }
        let sent_epoch_us = now_epoch_us();
        let sent = Instant::now();
        send_us.push((sent - t0).as_micros() as u64);
        let message = format!("{} {} {:.3}", shared.tag, k, sent_epoch_us as f64 / 1000.0);
        let arguments = json!({"message": message}).to_string();
        let body = mcp::tool_call(k as u64 + 1, "broadcast", &arguments, None);
        let outcome = async {
            // Servers close idle keep-alive connections (uvicorn after 5 s): the publisher
            // idles while the streams open, so it reconnects if the server hung up.
            if pub_conn.is_closed() {
                pub_conn = ctx.net.connect(&pub_target).await?;
            }
            let response = pub_conn
                .send(&pub_target, Method::POST, pub_session.headers(), Some(body))
                .await?;
            let response = http::expect_status(response, &[StatusCode::OK]).await?;
            let value = mcp::first_response(response).await?;
            if value.get("error").is_some() {
                return Err(anyhow!("broadcast: {value}"));
            }
            Ok::<_, anyhow::Error>(())
        }
        .await;
        stats::record(&mut publish_hist, sent.elapsed().as_micros() as u64);
        if let Err(e) = outcome {
            publish_errors += 1;
            shared.error(format!("publisher: {e:#}"));
            pub_conn = ctx.net.connect(&pub_target).await?;
        }
        if args.interval_ms == 0 {
            let deadline = sent + settle;
            while shared.delivered[k].load(Ordering::Relaxed) < opened as u64
                && Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
        }
    }
    // Let the last ones arrive.
    let deadline = Instant::now() + settle;
    while Instant::now() < deadline
        && shared
            .delivered
            .iter()
            .any(|d| d.load(Ordering::Relaxed) < opened as u64)
    {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let cpu_after = ctx.procs.cpu();
    let _ = stop_tx.send(true);
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }

    let received: u64 = shared
        .delivered
        .iter()
        .map(|d| d.load(Ordering::Relaxed))
        .sum();
    let expected = (args.sessions * args.broadcasts) as u64;
    let loss = expected.saturating_sub(received);
    let duplicates = shared.duplicates.load(Ordering::Relaxed);
    // Fan-out time: from each send to the last delivery of that broadcast.
    let windows_us: Vec<u64> = shared
        .last_us
        .iter()
        .zip(&send_us)
        .map(|(last, sent)| last.load(Ordering::Relaxed).saturating_sub(*sent))
        .collect();
    let busy_us: u64 = if args.interval_ms == 0 {
        windows_us.iter().sum()
    } else {
        let last = shared
            .last_us
            .iter()
            .map(|l| l.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0);
        last.saturating_sub(send_us.first().copied().unwrap_or(0))
    };
    let deliveries_per_s = if busy_us > 0 {
        received as f64 * 1e6 / busy_us as f64
    } else {
        0.0
    };
    let hist = shared.hist.lock().unwrap().clone();
    let cpu = stats::cpu_report(&cpu_before, &cpu_after, received, "delivery");
    let mut rss = BTreeMap::new();
    for (kind, after) in &rss_after {
        let before = rss_before.get(kind).copied().unwrap_or(0);
        let per = if opened > 0 {
            (*after as f64 - before as f64) / opened as f64
        } else {
            0.0
        };
        rss.insert(
            kind.clone(),
            json!({"before_kib": before, "after_kib": after, "per_session_kib": (per * 100.0).round() / 100.0}),
        );
    }
    let rss_human = rss
        .iter()
        .map(|(k, v)| {
            format!(
                "{k} {:.1} KiB/session",
                v["per_session_kib"].as_f64().unwrap_or(0.0)
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let first_error = shared.first_error.lock().unwrap().clone();
    let errors = shared.failed.load(Ordering::Relaxed) as u64
        + shared.stream_errors.load(Ordering::Relaxed)
        + publish_errors;
    let human = format!(
        "{} streams ({} open, {:.0} setups/s) x {} broadcasts: {:.0} deliveries/s, delivery {}, loss {} of {}, duplicates {}, errors {}, reconnects {}, {}{}  (cpu: {})",
        args.sessions,
        opened,
        opened as f64 / open_secs.max(1e-9),
        args.broadcasts,
        deliveries_per_s,
        stats::human_latency(&hist),
        loss,
        expected,
        duplicates,
        errors,
        shared.reconnects.load(Ordering::Relaxed),
        rss_human,
        first_error
            .as_ref()
            .map(|e| format!(" (first error: {e})"))
            .unwrap_or_default(),
        stats::human_cpu(&cpu),
    );
    let value = json!({
        "sessions": args.sessions,
        "broadcasts": args.broadcasts,
        "interval_ms": args.interval_ms,
        "streams_open": opened,
        "open_s": (open_secs * 1000.0).round() / 1000.0,
        "setups_per_s": (opened as f64 / open_secs.max(1e-9)).round(),
        "expected": expected,
        "received": received,
        "loss": loss,
        "duplicates": duplicates,
        "errors": errors,
        "failed_opens": shared.failed.load(Ordering::Relaxed),
        "reconnects": shared.reconnects.load(Ordering::Relaxed),
        "deliveries_per_s": deliveries_per_s.round(),
        "fanout_ms_per_broadcast": windows_us.iter().map(|w| (*w as f64 / 10.0).round() / 100.0).collect::<Vec<_>>(),
        "latency": stats::summary(&hist),
        "publish_latency": stats::summary(&publish_hist),
        "rss": rss,
        "first_error": first_error,
        "cpu": cpu,
    });
    Ok((human, value))
}

async fn receiver(
    ctx: Arc<Ctx>,
    shared: Arc<Shared>,
    sem: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
    i: usize,
) {
    let target = ctx.target(i).clone();
    let permit = sem.acquire_owned().await;
    let opened = async {
        let mut conn = ctx.net.connect(&target).await?;
        let session = mcp::open_session(&mut conn, &target, &ctx.common.protocol_version).await?;
        let response = conn
            .send(&target, Method::GET, session.headers(), None)
            .await?;
        let response = http::expect_status(response, &[StatusCode::OK]).await?;
        if !http::is_sse(&response) {
            return Err(anyhow!("GET: not an SSE stream"));
        }
        Ok::<_, anyhow::Error>((conn, session, response.into_body()))
    }
    .await;
    drop(permit);
    let (mut conn, session, mut body) = match opened {
        Ok(x) => x,
        Err(e) => {
            shared.failed.fetch_add(1, Ordering::Relaxed);
            shared.error(format!("opening a stream: {e:#}"));
            return;
        }
    };
    shared.opened.fetch_add(1, Ordering::Relaxed);
    let mut seen = vec![false; shared.broadcasts];
    let mut parser = Sse::default();
    let mut events = Vec::new();
    let prefix = format!("{} ", shared.tag);
    loop {
        let frame = tokio::select! {
            f = body.frame() => f,
            _ = stop.changed() => return,
        };
        match frame {
            Some(Ok(frame)) => {
                let Some(data) = frame.data_ref() else {
                    continue;
                };
                parser.push(data, &mut events);
                for event in events.drain(..) {
                    if event.data.is_empty() {
                        continue;
                    }
                    let Ok(msg) = serde_json::from_slice::<Msg>(&event.data) else {
                        shared.stream_errors.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    if msg.method.as_deref() != Some("notifications/message") {
                        continue;
                    }
                    let Some(Data::Str(text)) = msg.params.as_ref().and_then(|p| p.data.as_ref())
                    else {
                        continue;
                    };
                    let Some(rest) = text.strip_prefix(prefix.as_str()) else {
                        continue;
                    };
                    let mut parts = rest.split(' ');
                    let k: Option<usize> = parts.next().and_then(|k| k.parse().ok());
                    let sent_ms: Option<f64> = parts.next().and_then(|t| t.parse().ok());
                    let (Some(k), Some(sent_ms)) = (k, sent_ms) else {
                        continue;
                    };
                    if k >= seen.len() {
                        continue;
                    }
                    if seen[k] {
                        shared.duplicates.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    seen[k] = true;
                    let now = now_epoch_us();
                    let latency = now.saturating_sub((sent_ms * 1000.0) as u64);
                    shared.delivered[k].fetch_add(1, Ordering::Relaxed);
                    shared.last_us[k]
                        .fetch_max(shared.t0.elapsed().as_micros() as u64, Ordering::Relaxed);
                    stats::record(&mut shared.hist.lock().unwrap(), latency);
                }
            }
            Some(Err(_)) | None => {
                if *stop.borrow() {
                    return;
                }
                // The server closed the stream (or the connection broke): resume it.
                shared.reconnects.fetch_add(1, Ordering::Relaxed);
                let resumed = async {
                    if conn.is_closed() {
                        conn = ctx.net.connect(&target).await?;
                    }
                    let mut headers = session.headers();
                    headers.last_event_id = parser.last_id.as_deref();
                    let response = conn.send(&target, Method::GET, headers, None).await?;
                    let response = http::expect_status(response, &[StatusCode::OK]).await?;
                    Ok::<_, anyhow::Error>(response.into_body())
                }
                .await;
                match resumed {
                    Ok(b) => {
                        body = b;
                        parser = Sse::with_last_id(parser.last_id.take());
                    }
                    Err(e) => {
                        shared.stream_errors.fetch_add(1, Ordering::Relaxed);
                        shared.error(format!("resuming a stream: {e:#}"));
                        return;
                    }
                }
            }
        }
    }
}
