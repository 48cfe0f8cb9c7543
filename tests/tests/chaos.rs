//! Chaos: a Redis cluster (three gateways, two workers) under steady client load while
//! gateways and workers are SIGKILLed and restarted and Redis is killed and restarted, for
//! a bounded time. Afterwards the promises of DESIGN.md ("What must never happen") are
//! checked against what the clients saw and against Redis's own logs, the system of record
//! (docs/redis.md):
//!
//! - every tool call ended with a result or a JSON-RPC error, within a bound (none hung,
//!   none lost); a 503 or a refused connection before a call's stream began is an allowed
//!   answer, after which the client retries;
//! - progress only increased within a call;
//! - every stream a client followed, across all its resumptions on other gateways, carried
//!   exactly what the log holds for it: no gap, no duplicate, in order. For a request
//!   stream that is the log's events of that stream up to its first response, minus the
//!   progress a retried call repeats (which gateways drop); for a standalone stream, the
//!   session's standalone events and the broadcast log, each from the stream's first
//!   position to its last;
//! - every broadcast reached every listening session exactly once;
//! - no gateway or worker grew past a memory bound.
//!
//! A resumption refused with 409 (the log no longer holds the client's position) is a
//! failure here, not an allowed outcome: Redis runs with `appendfsync always`, so a killed
//! Redis loses nothing a client has seen, and the logs (1024 entries) are never trimmed
//! within this test, which checks that premise too (every log it reads starts at 1).
//!
//! Reproducing: the seed is printed first; `CHAOS_SEED=<n>` replays the same fault
//! schedule and the same client choices (the timing of a loaded machine still varies).
//! `CHAOS_SECS=<n>` sets how long faults are injected (default 45).

use e2e_tests::client::content_type;
use e2e_tests::{Gateway, RawClient, Read, RedisServer, SseReader, WorkerProcess};
use e2e_tests::{memory, wait_for_workers};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

const GATEWAYS: usize = 3;
const WORKERS: usize = 2;
const CALLERS: usize = 4;
const LISTENERS: usize = 3;
/// Seconds of fault injection unless `CHAOS_SECS` says otherwise.
const DEFAULT_CHAOS_SECS: u64 = 45;
/// The job deadline given to the gateways (`--job-timeout-secs`). Calls here take at most
/// ~2 s of work, so only a call the cluster lost would reach it.
const JOB_TIMEOUT_SECS: u64 = 20;
/// Every call must end within this: the job deadline, the gateway's 2 s grace, a dead
/// worker's claim delay, and room for Redis outages and a loaded machine.
const CALL_BOUND: Duration = Duration::from_secs(JOB_TIMEOUT_SECS + 25);
/// Longest quiet spell on a stream a client is following before it counts as hung: more
/// than the job deadline plus grace, after which some answer is always due.
const EVENT_WAIT: Duration = Duration::from_secs(JOB_TIMEOUT_SECS + 10);
/// The last broadcast (its message starts so), sent once the faults stop; listeners end
/// when they have it.
const MARKER: &str = "chaos-final-marker";
/// The memory bound for every gateway and worker (VmHWM, the peak resident set).
///
/// Measured here (debug builds, this load, 45 s of faults): gateways peak at ~32 MiB,
/// workers at ~26 MiB, most of it the runtime, the Redis pools and the binary's touched
/// pages. What the design bounds adds little on top: ~20 streams open at once, each with a
/// 32-frame queue and a 256-event bus queue of sub-KiB messages, a few MiB at most. 128 MiB
/// is 4x the measured peak: room for allocator slack and a slower machine. It is a bound,
/// not a leak detector: all the traffic of a run is ~5 MiB, so a small per-call leak stays
/// under it; what crosses it is what the design forbids, a buffer that grows without bound
/// (events piling up behind a dead connection, a retry loop that accumulates).
const MEMORY_BOUND_KIB: u64 = 128 * 1024;

/// splitmix64: small, seedable, good enough to schedule faults and pick gateways.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(self.range(lo, hi))
    }

    /// An independent generator for one client, derived from the seed.
    fn fork(&mut self) -> Self {
        Self::new(self.next())
    }
}

/// The positions the gateway writes into SSE ids (gateway/src/transport/event_id.rs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    /// `s.<session seq>.<broadcast seq>`: a standalone stream merges two logs.
    Standalone { session: u64, broadcast: u64 },
    /// `r.<stream, 16 hex>.<session seq>`.
    Request { stream: u64, seq: u64 },
}

fn position(id: &str) -> Option<Position> {
    let mut parts = id.split('.');
    let (kind, a, b) = (parts.next()?, parts.next()?, parts.next()?);
    match kind {
        "s" => Some(Position::Standalone {
            session: a.parse().ok()?,
            broadcast: b.parse().ok()?,
        }),
        "r" => Some(Position::Request {
            stream: u64::from_str_radix(a, 16).ok()?,
            seq: b.parse().ok()?,
        }),
        _ => None,
    }
}

/// What every client task shares: where the live gateways are, whether the faults are
/// over, counters, and the invariant violations found so far.
#[derive(Clone)]
struct Env {
    urls: Arc<RwLock<Vec<String>>>,
    /// Faults are over: start no new work.
    stopped: Arc<AtomicBool>,
    /// Listeners must end now, marker or not.
    give_up: Arc<AtomicBool>,
    /// Requests answered 503 or refused (gateway down) before any stream began.
    refused: Arc<AtomicU64>,
    violations: Arc<Mutex<Vec<String>>>,
}

impl Env {
    fn stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    fn violation(&self, what: String) {
        eprintln!("VIOLATION: {what}");
        if let Ok(mut v) = self.violations.lock() {
            v.push(what);
        }
    }

    /// A live gateway's endpoint, another than `avoid` when there is one (a resuming
    /// client goes elsewhere, as behind a load balancer).
    fn pick(&self, rng: &mut Rng, avoid: Option<&str>) -> String {
        let urls = self.urls.read().map(|u| u.clone()).unwrap_or_default();
        let others: Vec<&String> = urls.iter().filter(|u| Some(u.as_str()) != avoid).collect();
        let from = if others.is_empty() {
            urls.iter().collect()
        } else {
            others
        };
        from[rng.range(0, from.len() as u64 - 1) as usize].clone()
    }

    /// A new session, retried (a gateway may be down, Redis may be restarting) up to the
    /// call bound.
    async fn session(&self, rng: &mut Rng, who: &str) -> Result<RawClient, String> {
        let started = Instant::now();
        loop {
            let mut client = RawClient::new(&self.pick(rng, None));
            match client.initialize("2025-11-25").await {
                Ok(_) => return Ok(client),
                Err(e) if started.elapsed() > CALL_BOUND => {
                    return Err(format!("{who}: no session within {CALL_BOUND:?}: {e}"));
                }
                Err(_) => {
                    self.refused.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(rng.ms(20, 150)).await;
                }
            }
        }
    }
}

/// What a client saw of one tool call, across its attempts and resumptions.
#[derive(Debug)]
struct Call {
    who: String,
    session: String,
    tool: String,
    /// `steps` of a `long_running_operation`.
    steps: Option<u64>,
    /// The request stream that carried the call (from its event ids).
    stream: u64,
    /// The request id of the attempt that got a stream.
    request_id: i64,
    /// `(session seq, message)` of every message on that stream, in arrival order.
    received: Vec<(u64, Value)>,
    /// The final response.
    response: Value,
    /// Resumptions (GET with Last-Event-ID) it took.
    resumes: u32,
    took: Duration,
}

/// Calls a tool the way a careful client does under faults: POST to some gateway (on a 503
/// or a refused or cut connection before the stream's first event, try again: nothing was
/// promised yet); once the stream has an id, follow it to its response, resuming with
/// `Last-Event-ID` on another gateway whenever it breaks (and sometimes dropping it on
/// purpose). `Err` is an invariant violation.
#[allow(clippy::too_many_arguments)]
async fn call(
    env: &Env,
    client: &RawClient,
    rng: &mut Rng,
    next_id: &mut i64,
    who: &str,
    tool: &str,
    arguments: Value,
    progress_token: Option<String>,
    drop_chance: f64,
) -> Result<Call, String> {
    let started = Instant::now();
    let session = client.session.clone().unwrap_or_default();
    let ctx = |what: String| format!("{who} (session {session}, {tool}): {what}");
    let overdue = || started.elapsed() > CALL_BOUND;

    // Start: until a stream exists whose first event names it.
    let (mut reader, mut at, stream, request_id, mut last_seq, mut last_id) = loop {
        if overdue() {
            return Err(ctx(format!(
                "no gateway took the call within {CALL_BOUND:?}"
            )));
        }
        let url = env.pick(rng, None);
        *next_id += 1;
        let id = *next_id;
        let mut arguments = arguments.clone();
        // A broadcast names the attempt that sent it: a client's own retry (after a cut
        // that left it nothing to resume) may send it twice, and only a second delivery
        // of one attempt's message is the system's duplicate.
        if let Some(message) = arguments["message"].as_str() {
            arguments["message"] = json!(format!("{message}#{id}"));
        }
        let mut params = json!({"name": tool, "arguments": arguments});
        if let Some(token) = &progress_token {
            params["_meta"] = json!({"progressToken": token});
        }
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params});
        let response = match client.at(&url).post(&body).await {
            Ok(r) if r.status() == 503 => None,
            Ok(r) if r.status() == 200 && content_type(&r).starts_with("text/event-stream") => {
                Some(r)
            }
            Ok(r) => {
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                return Err(ctx(format!("tools/call answered HTTP {status}: {text}")));
            }
            Err(_) => None,
        };
        let Some(response) = response else {
            env.refused.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(rng.ms(20, 150)).await;
            continue;
        };
        let mut reader = SseReader::new(response);
        // 2025-11-25 primes every stream with an empty event carrying its first id.
        match reader.read(EVENT_WAIT).await {
            Read::Event(e) => match position(&e.id) {
                Some(Position::Request { stream, seq }) if e.data.is_empty() => {
                    break (reader, url, stream, id, seq, e.id);
                }
                _ => {
                    return Err(ctx(format!(
                        "the stream did not start with a priming event: {e:?}"
                    )));
                }
            },
            // Cut before its first event: the client has nothing to resume from, and it
            // was told nothing; like a refused connection, it tries again.
            Read::End | Read::Broken(_) => {
                env.refused.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(rng.ms(20, 150)).await;
            }
            Read::Quiet => return Err(ctx(format!("no priming event within {EVENT_WAIT:?}"))),
        }
    };

    let mut received = Vec::new();
    let mut resumes = 0;
    loop {
        let mut broke = false;
        match reader.read(EVENT_WAIT).await {
            Read::Event(e) => {
                if !e.id.is_empty() {
                    let Some(Position::Request { stream: s, seq }) = position(&e.id) else {
                        return Err(ctx(format!("an id of another kind of stream: {e:?}")));
                    };
                    if s != stream {
                        return Err(ctx(format!(
                            "an event of stream {s:x} on stream {stream:x}"
                        )));
                    }
                    // A message's position is new; an empty event (retry hint, priming of
                    // a resumption) may repeat the last one.
                    let fresh = seq > last_seq || (e.data.is_empty() && seq == last_seq);
                    if !fresh {
                        return Err(ctx(format!(
                            "position {seq} after {last_seq}: a duplicate or out of order ({e:?})"
                        )));
                    }
                    last_seq = seq;
                    last_id = e.id.clone();
                }
                if !e.data.is_empty() {
                    if e.id.is_empty() {
                        return Err(ctx(format!("a message without an id: {e:?}")));
                    }
                    let message = e.json();
                    let is_response = message.get("method").is_none();
                    received.push((last_seq, message.clone()));
                    if is_response {
                        if message["id"] != request_id {
                            return Err(ctx(format!(
                                "the response to request {request_id} has id {}",
                                message["id"]
                            )));
                        }
                        return Ok(Call {
                            who: who.to_owned(),
                            session: session.clone(),
                            tool: tool.to_owned(),
                            steps: arguments["steps"].as_u64(),
                            stream,
                            request_id,
                            received,
                            response: message,
                            resumes,
                            took: started.elapsed(),
                        });
                    }
                    broke = !env.stopped() && rng.chance(drop_chance);
                }
            }
            Read::End | Read::Broken(_) => broke = true,
            Read::Quiet => {
                return Err(ctx(format!(
                    "hung: no event for {EVENT_WAIT:?} after {last_id}"
                )));
            }
        }
        if !broke {
            continue;
        }
        // Resume elsewhere from the last position seen.
        drop(reader);
        reader = loop {
            if overdue() {
                return Err(ctx(format!(
                    "hung: not answered within {CALL_BOUND:?} (last position {last_id})"
                )));
            }
            let url = env.pick(rng, Some(&at));
            match client.at(&url).get(Some(&last_id)).await {
                Ok(r) if r.status() == 200 => {
                    at = url;
                    resumes += 1;
                    break SseReader::new(r);
                }
                Ok(r) if r.status() == 503 => {}
                Ok(r) => {
                    let status = r.status();
                    let text = r.text().await.unwrap_or_default();
                    return Err(ctx(format!(
                        "resuming after {last_id} answered HTTP {status}: {text}"
                    )));
                }
                Err(_) => {}
            }
            tokio::time::sleep(rng.ms(20, 150)).await;
        };
    }
}

/// A client that keeps calling `long_running_operation` with a progress token, a few
/// calls per session, then a new session (so no session log nears its 1024-entry cap).
async fn caller(env: Env, who: String, mut rng: Rng) -> Vec<Call> {
    let mut calls = Vec::new();
    while !env.stopped() {
        let client = match env.session(&mut rng, &who).await {
            Ok(c) => c,
            Err(e) => {
                env.violation(e);
                break;
            }
        };
        let mut next_id = 0;
        for n in 0..rng.range(3, 7) {
            if env.stopped() {
                break;
            }
            let steps = rng.range(2, 12);
            // Some calls finish at once, some span a fault.
            let step_ms = [0, 0, 20, 60, 150][rng.range(0, 4) as usize];
            let args = json!({"steps": steps, "step_ms": step_ms});
            let token = format!("{who}-{n}");
            match call(
                &env,
                &client,
                &mut rng,
                &mut next_id,
                &who,
                "long_running_operation",
                args,
                Some(token),
                0.04,
            )
            .await
            {
                Ok(c) => calls.push(c),
                Err(e) => {
                    env.violation(e);
                    return calls;
                }
            }
        }
    }
    calls
}

/// A client that broadcasts a numbered message every few hundred milliseconds.
async fn broadcaster(env: Env, mut rng: Rng) -> (Option<RawClient>, Vec<Call>) {
    let who = "broadcaster";
    let mut calls = Vec::new();
    let client = match env.session(&mut rng, who).await {
        Ok(c) => c,
        Err(e) => {
            env.violation(e);
            return (None, calls);
        }
    };
    let mut next_id = 0;
    let mut n = 0;
    while !env.stopped() {
        tokio::time::sleep(rng.ms(150, 450)).await;
        n += 1;
        let args = json!({"message": format!("bc-{n}")});
        match call(
            &env,
            &client,
            &mut rng,
            &mut next_id,
            who,
            "broadcast",
            args,
            None,
            0.0,
        )
        .await
        {
            Ok(c) => calls.push(c),
            Err(e) => {
                env.violation(e);
                break;
            }
        }
    }
    (Some(client), calls)
}

/// One message on a standalone stream, told apart by which half of its id moved.
#[derive(Debug, Clone, PartialEq)]
enum Delivered {
    /// From the broadcast log, with its broadcast seq.
    Broadcast(u64, Value),
    /// From the session log (a background task's tick), with its session seq.
    Session(u64, Value),
}

/// What a listener saw of its standalone stream, across every resumption.
#[derive(Debug)]
struct Listening {
    who: String,
    session: String,
    /// The stream's first position (its first priming event).
    first: (u64, u64),
    /// Its last position.
    last: (u64, u64),
    delivered: Vec<Delivered>,
    resumes: u32,
    /// The `start_background_task` calls made in this session.
    task_calls: Vec<Call>,
}

/// A session holding its standalone GET stream: receives broadcasts and the ticks of the
/// background tasks it starts, drops the stream now and then and resumes it elsewhere, and
/// follows it through every fault until the final broadcast arrives.
async fn listener(
    env: Env,
    who: String,
    mut rng: Rng,
    ready: tokio::sync::mpsc::Sender<()>,
) -> Option<Listening> {
    let client = match env.session(&mut rng, &who).await {
        Ok(c) => c,
        Err(e) => {
            env.violation(e);
            return None;
        }
    };
    let session = client.session.clone().unwrap_or_default();
    let ctx = |what: String| format!("{who} (session {session}): {what}");

    // Background tasks, started by calls on request streams of the same session.
    let starter = {
        let (env, client, who) = (env.clone(), client.clone(), who.clone());
        let mut rng = rng.fork();
        tokio::spawn(async move {
            let mut calls = Vec::new();
            let mut next_id = 0;
            let mut n = 0;
            while !env.stopped() {
                tokio::time::sleep(rng.ms(800, 2500)).await;
                n += 1;
                let args = json!({
                    "name": format!("{who}-t{n}"),
                    "count": rng.range(3, 12),
                    "interval_ms": rng.range(30, 200),
                });
                match call(
                    &env,
                    &client,
                    &mut rng,
                    &mut next_id,
                    &who,
                    "start_background_task",
                    args,
                    None,
                    0.0,
                )
                .await
                {
                    Ok(c) => calls.push(c),
                    Err(e) => {
                        env.violation(e);
                        break;
                    }
                }
            }
            calls
        })
    };

    let started = Instant::now();
    // The first stream: a plain GET, which starts where the session began.
    let (mut reader, mut at) = loop {
        if started.elapsed() > CALL_BOUND {
            env.violation(ctx("could not open the standalone stream".into()));
            return None;
        }
        let url = env.pick(&mut rng, None);
        match client.at(&url).get(None).await {
            Ok(r) if r.status() == 200 => break (SseReader::new(r), url),
            Ok(r) if r.status() != 503 => {
                env.violation(ctx(format!("GET answered HTTP {}", r.status())));
                return None;
            }
            _ => tokio::time::sleep(rng.ms(20, 150)).await,
        }
    };
    let mut first = None;
    let mut last = (0, 0);
    let mut last_id = String::new();
    let mut delivered = Vec::new();
    let mut resumes = 0;
    let mut next_drop = Instant::now() + rng.ms(1500, 4000);
    let mut ready = Some(ready);
    let outcome: Result<(), String> = 'follow: loop {
        if env.give_up.load(Ordering::SeqCst) {
            break Err(ctx(format!(
                "the final broadcast never arrived (last position {last_id})"
            )));
        }
        let mut broke = false;
        match reader.read(Duration::from_millis(250)).await {
            Read::Event(e) => {
                if e.id.is_empty() {
                    break Err(ctx(format!("an event without an id: {e:?}")));
                }
                let Some(Position::Standalone {
                    session: s,
                    broadcast: b,
                }) = position(&e.id)
                else {
                    break Err(ctx(format!("an id of another kind of stream: {e:?}")));
                };
                let Some(_) = first else {
                    // The priming event of the very first stream: where it starts.
                    if !e.data.is_empty() {
                        break Err(ctx(format!(
                            "the stream did not start with a priming event: {e:?}"
                        )));
                    }
                    first = Some((s, b));
                    last = (s, b);
                    last_id = e.id;
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(()).await;
                    }
                    continue;
                };
                // Positions never move back; a message moves one of the two forward: the
                // broadcast half for a broadcast, else the session half.
                if s < last.0 || b < last.1 {
                    break Err(ctx(format!("position {} went back from {last:?}", e.id)));
                }
                if !e.data.is_empty() {
                    let message = e.json();
                    let item = if b > last.1 {
                        Delivered::Broadcast(b, message.clone())
                    } else if s > last.0 {
                        Delivered::Session(s, message.clone())
                    } else {
                        break Err(ctx(format!(
                            "a message at an old position (a duplicate): {e:?}"
                        )));
                    };
                    delivered.push(item);
                    if message["params"]["data"]
                        .as_str()
                        .is_some_and(|d| d.starts_with(MARKER))
                    {
                        last = (s, b);
                        break 'follow Ok(());
                    }
                }
                last = (s, b);
                last_id = e.id;
            }
            Read::End | Read::Broken(_) => broke = true,
            Read::Quiet => broke = !env.stopped() && Instant::now() >= next_drop,
        }
        if !broke {
            continue;
        }
        drop(reader);
        next_drop = Instant::now() + rng.ms(1500, 4000);
        reader = loop {
            if env.give_up.load(Ordering::SeqCst) {
                break 'follow Err(ctx(format!("could not resume after {last_id}")));
            }
            let url = env.pick(&mut rng, Some(&at));
            // Cut before its priming event: the stream has no position yet, so it starts
            // afresh (and its first priming event says where).
            let resume_from = (!last_id.is_empty()).then_some(last_id.as_str());
            match client.at(&url).get(resume_from).await {
                Ok(r) if r.status() == 200 => {
                    at = url;
                    resumes += 1;
                    break SseReader::new(r);
                }
                Ok(r) if r.status() == 503 => {}
                Ok(r) => {
                    let status = r.status();
                    let text = r.text().await.unwrap_or_default();
                    break 'follow Err(ctx(format!(
                        "resuming after {last_id} answered HTTP {status}: {text}"
                    )));
                }
                Err(_) => {}
            }
            tokio::time::sleep(rng.ms(20, 150)).await;
        };
    };
    if let Err(e) = outcome {
        env.violation(e);
    }
    let task_calls = starter.await.unwrap_or_default();
    Some(Listening {
        who,
        session,
        first: first.unwrap_or_default(),
        last,
        delivered,
        resumes,
        task_calls,
    })
}

/// The processes, and what the fault injector did to them.
struct Cluster {
    redis: RedisServer,
    gateways: Vec<Gateway>,
    workers: Vec<WorkerProcess>,
    urls: Arc<RwLock<Vec<String>>>,
    /// Peak VmHWM per process, by label.
    peaks: BTreeMap<String, u64>,
    kills: BTreeMap<&'static str, u32>,
}

impl Cluster {
    fn gateway_args(redis: &RedisServer) -> Vec<String> {
        vec![
            "--redis-url".into(),
            redis.url(),
            "--job-timeout-secs".into(),
            JOB_TIMEOUT_SECS.to_string(),
        ]
    }

    fn start_gateway(&self) -> anyhow::Result<Gateway> {
        let args = Self::gateway_args(&self.redis);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Gateway::start(&args)
    }

    fn start_worker(&self) -> anyhow::Result<WorkerProcess> {
        // A dead worker's job is taken over after 1.5 s, not the default 15 s, so calls
        // that span a worker's death end well within the bound.
        WorkerProcess::start(
            &self.redis.url(),
            &["--job-claim-idle-ms", "1500", "--heartbeat-ms", "300"],
        )
    }

    fn publish_urls(&self) {
        if let Ok(mut urls) = self.urls.write() {
            *urls = self.gateways.iter().map(Gateway::url).collect();
        }
    }

    /// Records the peak memory of every live gateway and worker.
    fn sample(&mut self) {
        let procs = self
            .gateways
            .iter()
            .map(|g| ("gateway", g.pid()))
            .chain(self.workers.iter().map(|w| ("worker", w.pid())));
        for (role, pid) in procs.collect::<Vec<_>>() {
            if let Some(m) = memory(pid) {
                let peak = self.peaks.entry(format!("{role} {pid}")).or_default();
                *peak = (*peak).max(m.hwm_kib);
            }
        }
    }

    /// One fault: a process dies (SIGKILL, sampled just before), stays down a moment,
    /// and a fresh one takes its place.
    fn fault(&mut self, kind: Fault, rng: &mut Rng) -> anyhow::Result<()> {
        self.sample();
        match kind {
            Fault::Gateway => {
                let i = rng.range(0, self.gateways.len() as u64 - 1) as usize;
                let mut dead = self.gateways.remove(i);
                dead.kill();
                // Clients learn of it from refused connections first, as in real life.
                std::thread::sleep(rng.ms(0, 300));
                self.publish_urls();
                std::thread::sleep(rng.ms(0, 700));
                let fresh = self.start_gateway()?;
                self.gateways.push(fresh);
                self.publish_urls();
            }
            Fault::Worker => {
                let i = rng.range(0, self.workers.len() as u64 - 1) as usize;
                self.workers.remove(i).kill();
                std::thread::sleep(rng.ms(0, 800));
                let fresh = self.start_worker()?;
                self.workers.push(fresh);
            }
            Fault::Redis => {
                let port = self.redis.port;
                self.redis.kill();
                std::thread::sleep(rng.ms(300, 1500));
                self.redis.restart()?;
                anyhow::ensure!(
                    self.redis.port == port,
                    "redis came back on another port ({} instead of {port}): its clients cannot follow",
                    self.redis.port
                );
            }
        }
        *self.kills.entry(kind.name()).or_default() += 1;
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    Gateway,
    Worker,
    Redis,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Self::Gateway => "gateway SIGKILLs",
            Self::Worker => "worker SIGKILLs",
            Self::Redis => "Redis restarts",
        }
    }
}

/// Injects faults until `until`, sampling memory all along: rounds of the five faults
/// below in a random order, 0.8-2.5 s apart, so every kind happens at least once a round.
fn inject_faults(cluster: &mut Cluster, rng: &mut Rng, until: Instant) -> anyhow::Result<()> {
    let mut next = Instant::now() + rng.ms(1000, 2000);
    let mut round: Vec<Fault> = Vec::new();
    while Instant::now() < until {
        cluster.sample();
        if Instant::now() >= next {
            if round.is_empty() {
                round = vec![
                    Fault::Gateway,
                    Fault::Worker,
                    Fault::Redis,
                    Fault::Gateway,
                    Fault::Worker,
                ];
                for i in (1..round.len()).rev() {
                    round.swap(i, rng.range(0, i as u64) as usize);
                }
            }
            if let Some(kind) = round.pop() {
                eprintln!("chaos: {kind:?}");
                cluster.fault(kind, rng)?;
            }
            next = Instant::now() + rng.ms(800, 2500);
        }
        // Pacing of the schedule, not a wait for a condition.
        std::thread::sleep(Duration::from_millis(100));
    }
    cluster.sample();
    Ok(())
}

/// A session's log (`P:{SID}:log`) as `(seq, event JSON)`, checked to start at 1 and to
/// be dense (nothing trimmed, nothing lost).
fn session_log(redis: &RedisServer, session: &str) -> Result<Vec<(u64, Value)>, String> {
    let key = format!("mcpgw:{{{session}}}:log");
    let reply = redis
        .command(&["XRANGE", &key, "-", "+"])
        .map_err(|e| e.to_string())?;
    dense_log(&key, reply.stream_entries(), "e")
}

fn broadcast_log(redis: &RedisServer) -> Result<Vec<(u64, Value)>, String> {
    let key = "mcpgw:{bcast}:log";
    let reply = redis
        .command(&["XRANGE", key, "-", "+"])
        .map_err(|e| e.to_string())?;
    dense_log(key, reply.stream_entries(), "m")
}

fn dense_log(
    key: &str,
    entries: Vec<(String, Vec<(String, String)>)>,
    field: &str,
) -> Result<Vec<(u64, Value)>, String> {
    let mut log = Vec::new();
    for (id, fields) in entries {
        let seq: u64 = id
            .split_once('-')
            .and_then(|(s, _)| s.parse().ok())
            .ok_or_else(|| format!("{key}: entry id {id}"))?;
        let value = fields
            .iter()
            .find(|(k, _)| k == field)
            .and_then(|(_, v)| serde_json::from_str(v).ok())
            .ok_or_else(|| format!("{key}: entry {id} has no JSON field {field}"))?;
        if seq != log.len() as u64 + 1 {
            return Err(format!(
                "{key}: entry {seq} follows {}: the log was trimmed or lost entries, so this \
                 test's premise (nothing is ever trimmed here) does not hold",
                log.len()
            ));
        }
        log.push((seq, value));
    }
    Ok(log)
}

/// What a request stream must have carried: the log's events of that stream in order, up
/// to and including the first response, without the progress a retried call repeats
/// (gateways drop progress that does not increase) and without `end` markers.
fn expected_request_stream(log: &[(u64, Value)], stream: u64) -> Vec<(u64, Value)> {
    let mut out = Vec::new();
    let mut progress = f64::NEG_INFINITY;
    for (seq, event) in log {
        if event["stream"]["request"].as_u64() != Some(stream) {
            continue;
        }
        let body = &event["body"];
        match body["kind"].as_str() {
            Some("message") => {
                let message = &body["message"];
                if message["method"] == "notifications/progress"
                    && let Some(p) = message["params"]["progress"].as_f64()
                {
                    if p <= progress {
                        continue;
                    }
                    progress = p;
                }
                out.push((*seq, message.clone()));
            }
            Some("response") => {
                out.push((*seq, body["message"].clone()));
                break;
            }
            _ => break,
        }
    }
    out
}

/// Checks one call against the invariants and the log; the violations found.
fn check_call(call: &Call, log: &[(u64, Value)]) -> Vec<String> {
    let mut bad = Vec::new();
    let at = format!(
        "{} (session {}, {} request {}, stream {:x})",
        call.who, call.session, call.tool, call.request_id, call.stream
    );
    let progress: Vec<f64> = call
        .received
        .iter()
        .filter(|(_, m)| m["method"] == "notifications/progress")
        .filter_map(|(_, m)| m["params"]["progress"].as_f64())
        .collect();
    if progress.windows(2).any(|w| w[0] >= w[1]) {
        bad.push(format!(
            "{at}: progress did not only increase: {progress:?}"
        ));
    }
    let outcome_ok = call.response.get("result").is_some();
    let error_code = call.response["error"]["code"].as_i64();
    if !outcome_ok && error_code.is_none() {
        bad.push(format!(
            "{at}: neither a result nor a JSON-RPC error: {}",
            call.response
        ));
    }
    if let Some(steps) = call.steps {
        // No gap: progress counts 1, 2, 3, ... (all the steps when the call succeeded).
        let expected: Vec<f64> = (1..=progress.len() as u64).map(|p| p as f64).collect();
        if progress != expected {
            bad.push(format!("{at}: progress has a gap: {progress:?}"));
        }
        if outcome_ok {
            let text = &call.response["result"]["content"][0]["text"];
            if *text != format!("operation completed: {steps} steps")
                || progress.len() as u64 != steps
            {
                bad.push(format!(
                    "{at}: succeeded with {} progress events and {text}",
                    progress.len()
                ));
            }
        }
    }
    let expected = expected_request_stream(log, call.stream);
    if call.received != expected {
        bad.push(format!(
            "{at}: the client saw {} messages, the log holds {} for this stream:\n  saw:  {:?}\n  log:  {:?}",
            call.received.len(),
            expected.len(),
            call.received.iter().map(|(s, m)| (*s, summary(m))).collect::<Vec<_>>(),
            expected.iter().map(|(s, m)| (*s, summary(m))).collect::<Vec<_>>(),
        ));
    }
    bad
}

/// A short form of a message for failure reports.
fn summary(m: &Value) -> String {
    if let Some(p) = m["params"]["progress"].as_f64() {
        return format!("progress {p}");
    }
    if let Some(method) = m["method"].as_str() {
        return format!("{method} {}", m["params"]["data"]);
    }
    if let Some(e) = m.get("error") {
        return format!("error {}", e["code"]);
    }
    "result".into()
}

/// Checks one listener's stream against the two logs it merges.
fn check_listener(l: &Listening, log: &[(u64, Value)], broadcasts: &[(u64, Value)]) -> Vec<String> {
    let mut bad = Vec::new();
    let at = format!("{} (session {})", l.who, l.session);
    let ((s0, b0), (s1, b1)) = (l.first, l.last);
    let expected_session: Vec<Delivered> = log
        .iter()
        .filter(|(seq, e)| {
            *seq > s0 && *seq <= s1 && e["stream"] == "standalone" && e["body"]["kind"] == "message"
        })
        .map(|(seq, e)| Delivered::Session(*seq, e["body"]["message"].clone()))
        .collect();
    let expected_broadcasts: Vec<Delivered> = broadcasts
        .iter()
        .filter(|(seq, _)| *seq > b0 && *seq <= b1)
        .map(|(seq, m)| Delivered::Broadcast(*seq, m.clone()))
        .collect();
    let (got_broadcasts, got_session): (Vec<Delivered>, Vec<Delivered>) = l
        .delivered
        .iter()
        .cloned()
        .partition(|d| matches!(d, Delivered::Broadcast(..)));
    let short = |d: &[Delivered]| -> Vec<String> {
        d.iter()
            .map(|d| match d {
                Delivered::Broadcast(s, m) | Delivered::Session(s, m) => {
                    format!("{s}: {}", summary(m))
                }
            })
            .collect()
    };
    if got_broadcasts != expected_broadcasts {
        bad.push(format!(
            "{at}: broadcasts {b0}..={b1} not delivered exactly once each:\n  saw: {:?}\n  log: {:?}",
            short(&got_broadcasts),
            short(&expected_broadcasts)
        ));
    }
    if got_session != expected_session {
        bad.push(format!(
            "{at}: standalone session events {s0}..={s1} not delivered exactly once each:\n  saw: {:?}\n  log: {:?}",
            short(&got_session),
            short(&expected_session)
        ));
    }
    // Each background task's ticks: 1, 2, 3, ... with no gap (a task stops, losing its
    // remaining ticks, when its worker dies or Redis is down: the log shows that too).
    let mut ticks: HashMap<String, Vec<u64>> = HashMap::new();
    for d in &got_session {
        if let Delivered::Session(_, m) = d {
            let data = &m["params"]["data"];
            if let (Some(id), Some(tick)) = (data["id"].as_str(), data["tick"].as_u64()) {
                ticks.entry(id.to_owned()).or_default().push(tick);
            }
        }
    }
    for (task, ticks) in ticks {
        if ticks != (1..=ticks.len() as u64).collect::<Vec<_>>() {
            bad.push(format!("{at}: task {task} ticked {ticks:?}"));
        }
    }
    bad
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cluster_keeps_its_promises_under_chaos() {
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    let chaos_secs = std::env::var("CHAOS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_CHAOS_SECS);
    println!("chaos seed: {seed} (rerun with CHAOS_SEED={seed}), {chaos_secs} s of faults");
    eprintln!("chaos seed: {seed} (rerun with CHAOS_SEED={seed}), {chaos_secs} s of faults");
    let mut rng = Rng::new(seed);

    let redis = RedisServer::start().expect("redis");
    let mut cluster = Cluster {
        redis,
        gateways: Vec::new(),
        workers: Vec::new(),
        urls: Arc::new(RwLock::new(Vec::new())),
        peaks: BTreeMap::new(),
        kills: BTreeMap::new(),
    };
    for _ in 0..GATEWAYS {
        let g = cluster.start_gateway().expect("gateway");
        cluster.gateways.push(g);
    }
    for _ in 0..WORKERS {
        let w = cluster.start_worker().expect("worker");
        cluster.workers.push(w);
    }
    cluster.publish_urls();
    let mut probe = RawClient::new(&cluster.gateways[0].url());
    probe.initialize("2025-11-25").await.expect("probe session");
    wait_for_workers(&probe, WORKERS as u64)
        .await
        .expect("workers registered");
    let _ = probe.delete().await;

    let env = Env {
        urls: cluster.urls.clone(),
        stopped: Arc::new(AtomicBool::new(false)),
        give_up: Arc::new(AtomicBool::new(false)),
        refused: Arc::new(AtomicU64::new(0)),
        violations: Arc::new(Mutex::new(Vec::new())),
    };

    // Listeners first, so every broadcast falls within their streams.
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(LISTENERS);
    let listeners: Vec<_> = (0..LISTENERS)
        .map(|i| {
            tokio::spawn(listener(
                env.clone(),
                format!("listener-{i}"),
                rng.fork(),
                ready_tx.clone(),
            ))
        })
        .collect();
    drop(ready_tx);
    for _ in 0..LISTENERS {
        tokio::time::timeout(Duration::from_secs(30), ready_rx.recv())
            .await
            .expect("the listeners' streams open");
    }
    let callers: Vec<_> = (0..CALLERS)
        .map(|i| tokio::spawn(caller(env.clone(), format!("caller-{i}"), rng.fork())))
        .collect();
    let broadcasting = tokio::spawn(broadcaster(env.clone(), rng.fork()));

    // The faults, on a thread of their own: starting processes blocks.
    let chaos_started = Instant::now();
    let mut chaos_rng = rng.fork();
    let until = chaos_started + Duration::from_secs(chaos_secs);
    let (mut cluster, injected) = tokio::task::spawn_blocking(move || {
        let injected = inject_faults(&mut cluster, &mut chaos_rng, until);
        (cluster, injected)
    })
    .await
    .expect("the fault injector");
    env.stopped.store(true, Ordering::SeqCst);
    eprintln!("chaos: faults over after {:?}", chaos_started.elapsed());
    if let Err(e) = injected {
        env.violation(format!("the fault injector failed: {e:#}"));
    }

    // Every client finishes the call it is in: bounded by the call bound.
    let mut calls = Vec::new();
    for c in callers {
        match tokio::time::timeout(CALL_BOUND + Duration::from_secs(5), c).await {
            Ok(Ok(mut done)) => calls.append(&mut done),
            _ => env.violation("a caller did not finish within the call bound".into()),
        }
    }
    let (marker_client, mut broadcast_calls) =
        match tokio::time::timeout(CALL_BOUND + Duration::from_secs(5), broadcasting).await {
            Ok(Ok(done)) => done,
            _ => {
                env.violation("the broadcaster did not finish within the call bound".into());
                (None, Vec::new())
            }
        };

    eprintln!(
        "chaos: clients done {:?} after the faults",
        chaos_started.elapsed()
    );
    // The cluster is whole again: the last broadcast must reach every listener.
    let mut probe = RawClient::new(&env.pick(&mut rng, None));
    probe.initialize("2025-11-25").await.expect("probe session");
    wait_for_workers(&probe, WORKERS as u64)
        .await
        .expect("workers registered after the chaos");
    if let Some(client) = &marker_client {
        let mut rng = rng.fork();
        let mut next_id = 1_000_000;
        match call(
            &env,
            client,
            &mut rng,
            &mut next_id,
            "broadcaster",
            "broadcast",
            json!({"message": MARKER}),
            None,
            0.0,
        )
        .await
        {
            Ok(c) if c.response.get("result").is_some() => broadcast_calls.push(c),
            Ok(c) => env.violation(format!("the final broadcast failed: {}", c.response)),
            Err(e) => env.violation(e),
        }
    }
    let mut listenings = Vec::new();
    let marker_sent = Instant::now();
    for l in listeners {
        let left = Duration::from_secs(30).saturating_sub(marker_sent.elapsed());
        let l = match tokio::time::timeout(left, l).await {
            Ok(done) => done,
            Err(_) => {
                env.give_up.store(true, Ordering::SeqCst);
                env.violation("a listener never got the final broadcast".into());
                continue;
            }
        };
        if let Ok(Some(l)) = l {
            listenings.push(l);
        }
    }
    env.give_up.store(true, Ordering::SeqCst);
    eprintln!(
        "chaos: listeners done {:?} after the faults began",
        chaos_started.elapsed()
    );

    // Against the system of record.
    let redis = &cluster.redis;
    let broadcasts = broadcast_log(redis).unwrap_or_else(|e| {
        env.violation(e);
        Vec::new()
    });
    let mut logs: HashMap<String, Vec<(u64, Value)>> = HashMap::new();
    let mut log_of = |session: &str| -> Vec<(u64, Value)> {
        logs.entry(session.to_owned())
            .or_insert_with(|| {
                session_log(redis, session).unwrap_or_else(|e| {
                    env.violation(e);
                    Vec::new()
                })
            })
            .clone()
    };
    let all_calls: Vec<&Call> = calls
        .iter()
        .chain(&broadcast_calls)
        .chain(listenings.iter().flat_map(|l| &l.task_calls))
        .collect();
    for call in &all_calls {
        for bad in check_call(call, &log_of(&call.session)) {
            env.violation(bad);
        }
    }
    for l in &listenings {
        for bad in check_listener(l, &log_of(&l.session), &broadcasts) {
            env.violation(bad);
        }
        // No attempt's broadcast arrived twice (a client's retry is another attempt).
        let mut copies: HashMap<&Value, usize> = HashMap::new();
        for d in &l.delivered {
            if let Delivered::Broadcast(_, m) = d
                && m["method"] == "notifications/message"
            {
                *copies.entry(&m["params"]["data"]).or_default() += 1;
            }
        }
        for (data, n) in copies {
            if n > 1 {
                env.violation(format!("{}: broadcast {data} arrived {n} times", l.who));
            }
        }
        // Every broadcast a client was told succeeded is on every listening stream.
        for c in &broadcast_calls {
            let text = c.response["result"]["content"][0]["text"]
                .as_str()
                .unwrap_or("");
            if c.response.get("result").is_none() || text.is_empty() {
                continue;
            }
            let message = text.rsplit(": ").next().unwrap_or("");
            let copies = l
                .delivered
                .iter()
                .filter(
                    |d| matches!(d, Delivered::Broadcast(_, m) if m["params"]["data"] == message),
                )
                .count();
            if copies != 1 {
                env.violation(format!(
                    "{}: broadcast {message:?} arrived {copies} times",
                    l.who
                ));
            }
        }
    }

    // Memory: the peaks of every process that ever ran, dead ones sampled before they died.
    cluster.sample();
    for (process, peak) in &cluster.peaks {
        if *peak > MEMORY_BOUND_KIB {
            env.violation(format!(
                "{process} peaked at {peak} KiB, over the bound of {MEMORY_BOUND_KIB} KiB"
            ));
        }
    }

    // What happened, so a run can be judged (and figures reported).
    let ok = all_calls
        .iter()
        .filter(|c| c.response.get("result").is_some())
        .count();
    let mut errors: BTreeMap<i64, usize> = BTreeMap::new();
    for c in &all_calls {
        if let Some(code) = c.response["error"]["code"].as_i64() {
            *errors.entry(code).or_default() += 1;
        }
    }
    let call_resumes: u32 = all_calls.iter().map(|c| c.resumes).sum();
    let stream_resumes: u32 = listenings.iter().map(|l| l.resumes).sum();
    let slowest = all_calls.iter().map(|c| c.took).max().unwrap_or_default();
    let delivered_broadcasts: usize = listenings
        .iter()
        .map(|l| {
            l.delivered
                .iter()
                .filter(|d| matches!(d, Delivered::Broadcast(..)))
                .count()
        })
        .sum();
    let ticks: usize = listenings
        .iter()
        .map(|l| {
            l.delivered
                .iter()
                .filter(|d| matches!(d, Delivered::Session(..)))
                .count()
        })
        .sum();
    let peak_of = |role: &str| {
        cluster
            .peaks
            .iter()
            .filter(|(p, _)| p.starts_with(role))
            .map(|(_, k)| *k)
            .max()
            .unwrap_or(0)
    };
    let summary = format!(
        "chaos seed {seed}: {:.1} s of faults ({:?}); {} calls ({ok} results, JSON-RPC errors by code {errors:?}), \
         slowest {slowest:?}; {} requests refused (503 or connection) and retried; {call_resumes} request-stream \
         resumptions, {stream_resumes} standalone-stream resumptions; {} broadcasts in the log, {delivered_broadcasts} \
         delivered to {} listeners; {ticks} task ticks delivered; peak VmHWM: gateways {} KiB, workers {} KiB ({} processes)",
        chaos_started.elapsed().as_secs_f64(),
        cluster.kills,
        all_calls.len(),
        env.refused.load(Ordering::Relaxed),
        broadcasts.len(),
        listenings.len(),
        peak_of("gateway"),
        peak_of("worker"),
        cluster.peaks.len(),
    );
    println!("{summary}");
    eprintln!("{summary}");

    // The run exercised what it claims to (a vacuous pass is a defect).
    let kinds = cluster.kills.len();
    if kinds < 3 {
        env.violation(format!(
            "not every kind of fault happened: {:?}",
            cluster.kills
        ));
    }
    if listenings.len() != LISTENERS || calls.len() < 20 || broadcast_calls.len() < 10 {
        env.violation(format!(
            "too little load to judge: {} listeners, {} calls, {} broadcasts",
            listenings.len(),
            calls.len(),
            broadcast_calls.len()
        ));
    }
    let _ = probe.delete().await;
    let violations = env.violations.lock().map(|v| v.clone()).unwrap_or_default();
    assert!(
        violations.is_empty(),
        "{} violations (seed {seed}; rerun with CHAOS_SEED={seed}):\n{}",
        violations.len(),
        violations.join("\n")
    );
}
