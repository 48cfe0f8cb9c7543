//! The HTTP edge's connections: responses sent before a request body was read reach the
//! client (lingering close); slow and idle connections are closed on time; the number of
//! open connections is capped.
//!
//! Checked against the code before the lingering close (axum::serve): Node's fetch got
//! `EPIPE` for 413 and 403 with a declared 4 MiB body, and nginx answered 502 for both 413
//! cases; the Python SDK's client (httpx2 2.16) saw every status there already, so its test
//! guards the behaviour rather than reproducing the bug.

use e2e_tests::nginx::Nginx;
use e2e_tests::{Gateway, RawClient, Read};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "alice-0123456789abcdef";
/// The gateway's body limit in these tests; the clients send 4 MiB.
const LIMIT: &str = "1048576";

fn clients_dir(lang: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("clients")
        .join(lang)
}

/// Runs `program script args...` (bounded) and returns the JSON line it prints.
async fn run_json(program: &Path, script: &Path, args: &[&str]) -> Value {
    let child = tokio::process::Command::new(program)
        .arg(script)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the client script finishes within 60 s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{} failed: {stdout}\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{} printed {stdout:?}: {e}", script.display()))
}

fn assert_statuses(seen: &Value, expected: &[(&str, u64)], who: &str) {
    for (case, status) in expected {
        assert_eq!(
            seen[case].as_u64(),
            Some(*status),
            "{who}, case {case}: expected {status}, saw {} (all: {seen})",
            seen[case]
        );
    }
}

fn refusing_gateway(extra: &[&str]) -> Gateway {
    let auth = format!("alice:{TOKEN}");
    let mut args = vec!["--auth-token", &auth, "--max-body-bytes", LIMIT];
    args.extend_from_slice(extra);
    Gateway::start(&args).unwrap()
}

#[tokio::test]
async fn the_python_sdks_http_client_sees_statuses_sent_before_the_body_was_read() {
    let python = e2e_tests::tools::python_sdk().unwrap();
    let script = clients_dir("python").join("refused.py");
    let gw = refusing_gateway(&[]);
    let seen = run_json(
        &python,
        &script,
        &[
            &gw.url(),
            TOKEN,
            "413-declared",
            "413-chunked",
            "401",
            "403",
            "415",
        ],
    )
    .await;
    assert_statuses(
        &seen,
        &[
            ("413-declared", 413),
            ("413-chunked", 413),
            ("401", 401),
            ("403", 403),
            ("415", 415),
        ],
        "httpx",
    );
    // 429: a bucket of one request per second, taken by the script's first request.
    let limited = refusing_gateway(&["--rate-limit-per-second", "1", "--rate-limit-burst", "1"]);
    let seen = run_json(&python, &script, &[&limited.url(), TOKEN, "429"]).await;
    assert_statuses(&seen, &[("429", 429)], "httpx");
    // The gateway kept serving.
    let mut client = RawClient::new(&gw.url());
    client.bearer = Some(TOKEN.into());
    client.initialize("2025-11-25").await.unwrap();
}

#[tokio::test]
async fn nodes_fetch_sees_statuses_sent_before_the_body_was_read() {
    let node = e2e_tests::tools::node22().unwrap();
    let script = clients_dir("typescript").join("refused.mjs");
    let gw = refusing_gateway(&[]);
    let seen = run_json(
        &node,
        &script,
        &[
            &gw.url(),
            TOKEN,
            "413-declared",
            "413-chunked",
            "401",
            "403",
            "415",
        ],
    )
    .await;
    assert_statuses(
        &seen,
        &[
            ("413-declared", 413),
            ("413-chunked", 413),
            ("401", 401),
            ("403", 403),
            ("415", 415),
        ],
        "Node fetch",
    );
}

#[tokio::test]
async fn nginx_in_front_passes_the_refusal_on_instead_of_502() {
    let python = e2e_tests::tools::python_sdk().unwrap();
    let script = clients_dir("python").join("refused.py");
    let gw = refusing_gateway(&[]);
    let upstream = gw.base.trim_start_matches("http://").to_owned();
    let nginx = Nginx::start(&[&upstream]).unwrap();
    let seen = run_json(
        &python,
        &script,
        &[
            &nginx.url(),
            TOKEN,
            "413-declared",
            "413-chunked",
            "401",
            "415",
        ],
    )
    .await;
    assert_statuses(
        &seen,
        &[
            ("413-declared", 413),
            ("413-chunked", 413),
            ("401", 401),
            ("415", 415),
        ],
        &format!("httpx through nginx (error log: {})", nginx.error_log()),
    );
}

async fn metric(gw: &Gateway, name: &str, label: &str) -> f64 {
    let text = reqwest::get(format!("{}/metrics", gw.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits for the server to close `tcp` (EOF or reset), at most `bound`; how long it took.
async fn closed_within(mut tcp: TcpStream, bound: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((start + bound).into(), tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
            Err(_) => return None,
        }
    }
}

/// A connection that sent half a request head and then trickles one header line every
/// 300 ms (so it is never idle), until the server closes it.
async fn slowloris(addr: &str) -> Duration {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let start = Instant::now();
    tcp.write_all(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    for i in 0.. {
        tokio::select! {
            read = tcp.read(&mut buf) => match read {
                Ok(0) | Err(_) => return start.elapsed(),
                Ok(_) => {}
            },
            () = tokio::time::sleep(Duration::from_millis(300)) => {
                if tcp.write_all(format!("x-slow-{i}: 1\r\n").as_bytes()).await.is_err() {
                    return start.elapsed();
                }
            }
        }
        assert!(start.elapsed() < Duration::from_secs(15), "never closed");
    }
    unreachable!()
}

#[tokio::test]
async fn slow_and_idle_connections_are_closed_on_time_while_clients_are_served() {
    let gw = Gateway::start(&[
        "--header-read-timeout-secs",
        "2",
        "--idle-timeout-secs",
        "1",
    ])
    .unwrap();
    let addr = gw.base.trim_start_matches("http://").to_owned();
    // Silent connections: idle from the start, closed by the idle timeout (1 s).
    let mut silent = Vec::new();
    for _ in 0..20 {
        let tcp = TcpStream::connect(&addr).await.unwrap();
        silent.push(tokio::spawn(closed_within(tcp, Duration::from_secs(10))));
    }
    // Slowloris connections: never idle, closed by the header-read timeout (2 s).
    let slow: Vec<_> = (0..20)
        .map(|_| tokio::spawn(slowloris(Box::leak(addr.clone().into_boxed_str()))))
        .collect();
    // A keep-alive connection after a served request: idle, closed after 1 s.
    let mut kept = TcpStream::connect(&addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = kept.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let kept = tokio::spawn(closed_within(kept, Duration::from_secs(10)));

    // Meanwhile a real client is served, again and again.
    let mut client = RawClient::new(&gw.url());
    client.initialize("2025-11-25").await.unwrap();
    let served = Instant::now();
    let mut pings = 0;
    while served.elapsed() < Duration::from_millis(2500) {
        let r = client
            .request(pings, "ping", json!({}))
            .await
            .expect("the real client is served while slow connections are open");
        assert!(r.get("result").is_some(), "{r}");
        pings += 1;
    }

    for task in silent {
        let took = task
            .await
            .unwrap()
            .expect("silent connection closed within 10 s");
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(4),
            "silent connection closed after {took:?}, expected about 1 s"
        );
    }
    let took = kept.await.unwrap().expect("keep-alive connection closed");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "idle keep-alive connection closed after {took:?}, expected about 1 s"
    );
    for task in slow {
        let took = task.await.unwrap();
        assert!(
            took >= Duration::from_millis(1900) && took < Duration::from_secs(6),
            "slowloris connection closed after {took:?}, expected about 2 s"
        );
    }
    assert!(
        metric(
            &gw,
            "mcpgw_http_connections_timed_out_total",
            "reason=\"idle\""
        )
        .await
            >= 21.0
    );
    assert!(
        metric(
            &gw,
            "mcpgw_http_connections_timed_out_total",
            "reason=\"header\""
        )
        .await
            >= 20.0
    );
}

#[tokio::test]
async fn an_open_sse_stream_outlives_the_idle_timeout() {
    // Keep-alive comments only every 30 s: the stream is kept by being a request in
    // flight, not by its bytes.
    let gw = Gateway::start(&["--idle-timeout-secs", "1", "--keepalive-secs", "30"]).unwrap();
    let mut client = RawClient::new(&gw.url());
    client.initialize("2025-11-25").await.unwrap();
    let mut stream = client.open_stream(None).await.unwrap();
    // Three idle timeouts long, nothing but the priming event is sent; the stream must
    // stay open.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        match stream.read(Duration::from_secs(3) - start.elapsed()).await {
            Read::Quiet | Read::Event(_) => {}
            other => panic!(
                "the SSE stream ended after {:?}: {other:?}",
                start.elapsed()
            ),
        }
    }
    // And the session still works.
    let r = client.request(7, "ping", json!({})).await.unwrap();
    assert!(r.get("result").is_some(), "{r}");
    match stream.read(Duration::from_millis(200)).await {
        Read::Quiet | Read::Event(_) => {}
        other => panic!("the SSE stream ended: {other:?}"),
    }
}

/// Sends `GET /healthz` on a new connection and returns the response head.
async fn healthz(addr: &str) -> (TcpStream, String) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .expect("an answer within 5 s")
        .unwrap_or(0);
    (tcp, String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[tokio::test]
async fn open_connections_are_capped_with_a_503_and_served_again_when_some_close() {
    let gw = Gateway::start(&["--max-connections", "5"]).unwrap();
    let addr = gw.base.trim_start_matches("http://").to_owned();
    // Five keep-alive connections, each served once (so each is surely counted).
    let mut held = Vec::new();
    for _ in 0..5 {
        let (tcp, head) = healthz(&addr).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        held.push(tcp);
    }
    // The sixth is refused, clearly.
    let (_refused, head) = healthz(&addr).await;
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("retry-after: 1"), "{head}");
    assert!(lower.contains("\"code\":-32000"), "{head}");
    // One closes; a new connection is served again (the gateway sees the close at once).
    drop(held.pop());
    let start = Instant::now();
    loop {
        let (_tcp, head) = healthz(&addr).await;
        if head.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "still refused 5 s after a connection closed: {head}"
        );
        tokio::task::yield_now().await;
    }
    drop(held);
    let start = Instant::now();
    while metric(&gw, "mcpgw_http_connections_refused_total", "").await < 1.0 {
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}

/// An HTTP/2 client (prior knowledge, as behind an h2 front) past the cap is refused in
/// HTTP/2: a 503 it can read on its stream, not HTTP/1.1 bytes it would take for a
/// protocol error.
#[tokio::test]
async fn an_http2_client_past_the_cap_gets_its_503_in_http2() {
    let gw = Gateway::start(&["--max-connections", "1"]).unwrap();
    let addr = gw.base.trim_start_matches("http://").to_owned();
    let (_held, head) = healthz(&addr).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let refused = h2
        .get(format!("{}/healthz", gw.base))
        .send()
        .await
        .expect("an HTTP/2 answer, not a protocol error");
    assert_eq!(refused.version(), reqwest::Version::HTTP_2);
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32000, "{body}");
}
