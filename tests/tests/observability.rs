//! Observability end to end: metrics after real traffic (parsed with a real exposition
//! parser and linted by promtool), readiness through a Redis outage, a real Prometheus
//! scraping a gateway and a worker, and one trace across gateway and worker over OTLP.

use e2e_tests::client::messages;
use e2e_tests::redis::free_port;
use e2e_tests::{Gateway, RawClient, RedisServer, WorkerProcess};
use prost::Message as _;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);

async fn scrape(url: &str) -> String {
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

/// The value of the sample `name` whose labels include all of `labels` (summed if several).
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("a valid exposition");
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Histogram(ref h) => {
                h.iter().map(|b| b.count).fold(0.0, f64::max)
            }
            prometheus_parse::Value::Summary(_) => 0.0,
        })
        .sum()
}

fn promtool_check_metrics(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package `prometheus`; `.ci/run` installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn metrics_move_by_what_traffic_did() {
    let gw = Gateway::start(&[]).unwrap();
    let metrics_url = format!("{}/metrics", gw.base);
    let mut client = RawClient::new(&gw.url());
    client.initialize("2025-11-25").await.unwrap();
    client.request(1, "tools/list", json!({})).await.unwrap();
    let mut standalone = client.open_stream(None).await.unwrap();
    let events = client
        .call_tool(
            2,
            "long_running_operation",
            json!({"steps": 5, "step_ms": 0}),
            Some("m"),
        )
        .await
        .unwrap();
    assert_eq!(messages(&events).len(), 6);
    client
        .call_tool(3, "send_notification", json!({"message": "x"}), None)
        .await
        .unwrap();
    client
        .call_tool(4, "broadcast", json!({"message": "b"}), None)
        .await
        .unwrap();
    let (_, m) = standalone.next_log(WAIT).await.unwrap().unwrap();
    assert_eq!(m["params"]["data"], "b");

    let text = scrape(&metrics_url).await;
    promtool_check_metrics(&text);
    let ok = [("outcome", "ok")];
    assert_eq!(
        sample(
            &text,
            "mcpgw_jsonrpc_requests_total",
            &[("method", "initialize"), ok[0]]
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            "mcpgw_jsonrpc_requests_total",
            &[("method", "tools/list"), ok[0]]
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            "mcpgw_jsonrpc_requests_total",
            &[("method", "tools/call"), ok[0]]
        ),
        3.0
    );
    assert_eq!(
        sample(
            &text,
            "mcpgw_notifications_delivered_total",
            &[("kind", "progress")]
        ),
        5.0
    );
    assert_eq!(
        sample(
            &text,
            "mcpgw_notifications_delivered_total",
            &[("kind", "message")]
        ),
        2.0
    );
    assert_eq!(
        sample(
            &text,
            "mcpgw_notifications_delivered_total",
            &[("kind", "response")]
        ),
        3.0
    );
    assert_eq!(sample(&text, "mcpgw_jobs_enqueued_total", &[]), 3.0);
    assert_eq!(
        sample(
            &text,
            "mcpgw_jobs_completed_total",
            &[("tool", "long_running_operation"), ok[0]]
        ),
        1.0
    );
    assert_eq!(
        sample(&text, "mcpgw_sse_streams_open", &[("kind", "get")]),
        1.0
    );
    assert_eq!(
        sample(&text, "mcpgw_build_info", &[("role", "gateway")]),
        1.0
    );
    assert!(sample(&text, "mcpgw_delivery_latency_seconds_count", &[]) >= 8.0);
    assert!(
        sample(
            &text,
            "mcpgw_http_requests_total",
            &[("method", "POST"), ("status", "200")]
        ) >= 5.0
    );
    assert!(sample(&text, "process_resident_memory_bytes", &[]) > 0.0);

    // Resuming the finished call's stream after its first progress event replays the
    // other four and the result, and counts them.
    let first_progress = events
        .iter()
        .find(|e| !e.data.is_empty())
        .unwrap()
        .id
        .clone();
    let rest = client
        .open_stream(Some(&first_progress))
        .await
        .unwrap()
        .collect(WAIT)
        .await
        .unwrap();
    assert_eq!(messages(&rest).len(), 5);
    let text = scrape(&metrics_url).await;
    assert_eq!(sample(&text, "mcpgw_events_replayed_total", &[]), 5.0);
}

async fn status_of(url: &str) -> u16 {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    match client.get(url).send().await {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

async fn wait_status(url: &str, want: u16) {
    let start = Instant::now();
    loop {
        let got = status_of(url).await;
        if got == want {
            return;
        }
        assert!(
            start.elapsed() < WAIT,
            "{url} never answered {want} (last: {got})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn readiness_tells_the_truth_through_a_redis_outage() {
    let mut redis = RedisServer::start().unwrap();
    let url = redis.url();
    let gw = Gateway::start(&["--redis-url", &url]).unwrap();
    let worker = WorkerProcess::start(&url, &["--metrics-listen", "127.0.0.1:0"]).unwrap();
    let listen = worker
        .metrics_addr
        .clone()
        .expect("the worker reports its metrics address");
    let gateway_ready = format!("{}/readyz", gw.base);
    let worker_ready = format!("http://{listen}/readyz");
    wait_status(&gateway_ready, 200).await;
    wait_status(&worker_ready, 200).await;
    assert_eq!(status_of(&format!("{}/healthz", gw.base)).await, 200);

    redis.kill();
    let gateway_log = gw.log();
    let waited = tokio::spawn(async move { wait_status(&gateway_ready, 503).await });
    if waited.await.is_err() {
        panic!("gateway readiness stuck; its log:\n{}", gw.log().join("\n"));
    }
    let _ = gateway_log;
    let gateway_ready = format!("{}/readyz", gw.base);
    let probe = worker_ready.clone();
    if tokio::spawn(async move { wait_status(&probe, 503).await })
        .await
        .is_err()
    {
        let mut worker = worker;
        panic!(
            "worker readiness stuck (alive: {}); its log:\n{}",
            worker.alive(),
            worker.log().join("\n")
        );
    }
    assert_eq!(
        status_of(&format!("{}/healthz", gw.base)).await,
        200,
        "alive, not ready"
    );

    redis.restart().unwrap();
    wait_status(&gateway_ready, 200).await;
    wait_status(&worker_ready, 200).await;
    let text = scrape(&format!("{}/metrics", gw.base)).await;
    assert!(
        sample(&text, "mcpgw_redis_errors_total", &[]) >= 1.0,
        "the outage shows in the metrics"
    );
    assert!(sample(&text, "mcpgw_redis_reconnects_total", &[]) >= 1.0);
}

#[tokio::test]
async fn a_real_prometheus_scrapes_gateway_and_worker() {
    let redis = RedisServer::start().unwrap();
    let url = redis.url();
    let gw = Gateway::start(&["--redis-url", &url]).unwrap();
    let worker = WorkerProcess::start(&url, &["--metrics-listen", "127.0.0.1:0"]).unwrap();
    let worker_listen = worker
        .metrics_addr
        .clone()
        .expect("the worker reports its metrics address");
    let gateway_target = gw.base.trim_start_matches("http://").to_owned();

    let dir = std::env::temp_dir().join(format!("mcpgw-prom-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: mcp\n    static_configs:\n      - targets: ['{gateway_target}', '{worker_listen}']\n"
        ),
    )
    .unwrap();
    let prom_port = free_port().unwrap();
    let mut prometheus = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus (Debian package `prometheus`; `.ci/run` installs it)");

    let query = format!("http://127.0.0.1:{prom_port}/api/v1/query?query=mcpgw_build_info");
    let start = Instant::now();
    let roles = loop {
        if let Ok(r) = reqwest::get(&query).await
            && let Ok(v) = r.json::<Value>().await
        {
            let roles: Vec<String> = v["data"]["result"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r["metric"]["role"].as_str().map(str::to_owned))
                .collect();
            if roles.len() >= 2 {
                break roles;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "Prometheus never scraped both targets"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        roles.contains(&"gateway".to_owned()) && roles.contains(&"worker".to_owned()),
        "{roles:?}"
    );
}

/// Spans received by the OTLP receiver: (service, trace id hex, span name).
type Spans = Arc<Mutex<Vec<(String, String, String)>>>;

async fn otlp_receiver() -> (String, Spans) {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    let spans: Spans = Arc::default();
    let sink = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let sink = sink.clone();
            async move {
                if let Ok(request) = ExportTraceServiceRequest::decode(body) {
                    for resource in request.resource_spans {
                        let service = resource
                            .resource
                            .iter()
                            .flat_map(|r| r.attributes.iter())
                            .find(|a| a.key == "service.name")
                            .and_then(|a| a.value.as_ref())
                            .map(|v| format!("{:?}", v.value))
                            .unwrap_or_default();
                        for scope in resource.scope_spans {
                            for span in scope.spans {
                                let trace: String =
                                    span.trace_id.iter().map(|b| format!("{b:02x}")).collect();
                                sink.lock()
                                    .unwrap()
                                    .push((service.clone(), trace, span.name));
                            }
                        }
                    }
                }
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), spans)
}

#[tokio::test]
async fn one_trace_follows_a_tool_call_from_gateway_to_worker() {
    let (endpoint, spans) = otlp_receiver().await;
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let redis = RedisServer::start().unwrap();
    let url = redis.url();
    let gw = Gateway::start_with_env(&["--redis-url", &url], &env).unwrap();
    let _worker = WorkerProcess::start_with_env(&url, &[], &env).unwrap();
    let mut client = RawClient::new(&gw.url());
    client.initialize("2025-11-25").await.unwrap();
    // Wait for the worker, then call a tool under a trace the client started.
    let start = Instant::now();
    loop {
        let v = client.request(1, "tools/list", json!({})).await.unwrap();
        if v["result"]["tools"]
            .as_array()
            .is_some_and(|t| !t.is_empty())
        {
            break;
        }
        assert!(start.elapsed() < WAIT);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let body = json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"long_running_operation","arguments":{"steps":2,"step_ms":0},"_meta":{"progressToken":"t"}}});
    let response = client
        .post_with(&body, &[("traceparent", &traceparent)])
        .await
        .unwrap();
    let events = e2e_tests::SseReader::new(response)
        .collect(WAIT)
        .await
        .unwrap();
    assert_eq!(messages(&events).last().unwrap()["id"], 2);

    let start = Instant::now();
    let by_service = loop {
        let seen: HashMap<String, Vec<String>> = spans
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, trace, _)| trace == trace_id)
            .fold(HashMap::new(), |mut acc, (service, _, name)| {
                acc.entry(service.clone()).or_default().push(name.clone());
                acc
            });
        let gateway = seen.keys().any(|s| s.contains("mcp-gateway"));
        let worker = seen.keys().any(|s| s.contains("mcp-worker"));
        if gateway && worker {
            break seen;
        }
        assert!(
            start.elapsed() < WAIT,
            "spans of the trace so far: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let worker_spans: Vec<&String> = by_service
        .iter()
        .filter(|(s, _)| s.contains("mcp-worker"))
        .flat_map(|(_, names)| names)
        .collect();
    assert!(
        worker_spans.iter().any(|n| *n == "tool.call"),
        "{by_service:?}"
    );
    let gateway_spans: Vec<&String> = by_service
        .iter()
        .filter(|(s, _)| s.contains("mcp-gateway"))
        .flat_map(|(_, names)| names)
        .collect();
    assert!(
        gateway_spans.iter().any(|n| *n == "mcp.post"),
        "{by_service:?}"
    );
}
