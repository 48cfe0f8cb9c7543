//! Interoperability with the official Rust SDK client (`rmcp` 3.11, streamable HTTP) at
//! protocol 2026-07-28: its `Discover` lifecycle (`server/discover`, then self-contained
//! requests), against two gateways on one Redis with two workers, one rmcp client per
//! gateway, and against a standalone gateway.

use e2e_tests::{Gateway, RawClient, RedisServer, WorkerProcess};
use rmcp::RoleClient;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ClientCapabilities, ClientConfig,
    ElicitRequestParams, ElicitResult, ElicitationAction, ElicitationCapability, ErrorCode,
    GetPromptRequestParams, Implementation, InputResponses, ProgressNotificationParam,
    ProtocolVersion, ReadResourceRequestParams, ServerNotification, SubscriptionFilter,
};
use rmcp::service::{
    ClientLifecycleMode, ClientServiceExt, NotificationContext, RequestContext, RunningService,
    ServiceError,
};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientHandler, ErrorData};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const TOOLSETS: &str = "demo,conformance";
const WAIT: Duration = Duration::from_secs(20);
const WATCHED: &str = "test://watched-resource";

/// Answers elicitations with a name, and records progress.
#[derive(Clone)]
struct Handler {
    name: &'static str,
    progress: mpsc::UnboundedSender<f64>,
    elicited: mpsc::UnboundedSender<String>,
}

impl ClientHandler for Handler {
    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        let message = match &request {
            ElicitRequestParams::FormElicitationParams { message, .. } => message.clone(),
            other => format!("{other:?}"),
        };
        let _ = self.elicited.send(message);
        Ok(ElicitResult::new(ElicitationAction::Accept).with_content(json!({"name": self.name})))
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        let _ = self.progress.send(params.progress);
    }

    fn get_info(&self) -> ClientConfig {
        let mut capabilities = ClientCapabilities::default();
        capabilities.elicitation = Some(ElicitationCapability::new());
        ClientConfig::new(capabilities, Implementation::new("rmcp-interop", "1"))
            .with_protocol_version(ProtocolVersion::V_2026_07_28)
    }
}

struct Observed {
    progress: mpsc::UnboundedReceiver<f64>,
    elicited: mpsc::UnboundedReceiver<String>,
}

/// An rmcp client on `url` that must speak 2026-07-28 (no fallback to initialize).
async fn connect(url: &str, name: &'static str) -> (RunningService<RoleClient, Handler>, Observed) {
    let (progress, progress_rx) = mpsc::unbounded_channel();
    let (elicited, elicited_rx) = mpsc::unbounded_channel();
    let handler = Handler {
        name,
        progress,
        elicited,
    };
    let client = handler
        .serve_with_lifecycle(
            StreamableHttpClientTransport::from_uri(url),
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .expect("rmcp discovers the gateway");
    (
        client,
        Observed {
            progress: progress_rx,
            elicited: elicited_rx,
        },
    )
}

fn args(v: Value) -> serde_json::Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

fn text_of(result: &CallToolResult) -> String {
    let v = serde_json::to_value(result).unwrap_or(Value::Null);
    v["content"][0]["text"].as_str().unwrap_or("").to_owned()
}

/// Receives `n` values, failing if they do not come within [`WAIT`].
async fn take<T>(rx: &mut mpsc::UnboundedReceiver<T>, n: usize) -> Vec<T> {
    let mut out = Vec::new();
    while out.len() < n {
        let next = tokio::time::timeout(WAIT, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} arrived within {WAIT:?}", out.len()))
            .expect("client alive");
        out.push(next);
    }
    out
}

/// The 2026-07-28 steps, with `a` and `b` on the two gateways (or both on one).
async fn exercise(a_url: &str, b_url: &str) {
    let (a, mut a_seen) = connect(a_url, "Alice").await;
    let (b, mut b_seen) = connect(b_url, "Bob").await;
    for client in [&a, &b] {
        let info = client.peer_info().expect("peer info from server/discover");
        assert_eq!(info.protocol_version, ProtocolVersion::V_2026_07_28);
        assert_eq!(
            info.server_info.as_ref().map(|i| i.name.as_str()),
            Some("mcp-notify-gateway")
        );
    }

    // tools/list from each gateway (rmcp mirrors x-mcp-header arguments of listed tools).
    for client in [&a, &b] {
        let names: Vec<String> = client
            .list_all_tools()
            .await
            .unwrap()
            .iter()
            .map(|t| t.name.to_string())
            .collect();
        for tool in [
            "long_running_operation",
            "test_input_required_result_elicitation",
            "test_custom_header_tool",
            "update_watched_resource",
        ] {
            assert!(names.iter().any(|n| n == tool), "{tool} in {names:?}");
        }
    }

    // Progress: rmcp puts a progress token on the request; 1..=5, in order.
    let result = b
        .call_tool(
            CallToolRequestParams::new("long_running_operation")
                .with_arguments(args(json!({"steps": 5, "step_ms": 0}))),
        )
        .await
        .unwrap();
    assert_eq!(text_of(&result), "operation completed: 5 steps");
    assert_eq!(
        take(&mut b_seen.progress, 5).await,
        [1.0, 2.0, 3.0, 4.0, 5.0]
    );

    // Multi round-trip driven by rmcp: it answers the elicitation through the handler.
    let result = a
        .call_tool(CallToolRequestParams::new(
            "test_input_required_result_elicitation",
        ))
        .await
        .unwrap();
    assert_eq!(text_of(&result), "Hello, Alice!");
    assert_eq!(take(&mut a_seen.elicited, 1).await, ["What is your name?"]);

    // ...and by hand: round one on the first gateway, the retry on the second.
    let first = a
        .call_tool_once(CallToolRequestParams::new(
            "test_input_required_result_elicitation",
        ))
        .await
        .unwrap();
    let CallToolResponse::InputRequired(first) = first else {
        panic!("expected input_required, got {first:?}");
    };
    let requests = serde_json::to_value(first.input_requests.as_ref().unwrap()).unwrap();
    assert_eq!(requests["user_name"]["method"], "elicitation/create");
    let answers: InputResponses = [(
        "user_name".to_owned(),
        json!({"action": "accept", "content": {"name": "Carol"}}),
    )]
    .into_iter()
    .collect();
    let retried = b
        .call_tool_once(
            CallToolRequestParams::new("test_input_required_result_elicitation")
                .with_input_responses(answers)
                .with_request_state(first.request_state.clone().expect("a request state")),
        )
        .await
        .unwrap();
    let CallToolResponse::Complete(retried) = retried else {
        panic!("the retry on the other gateway did not finish: {retried:?}");
    };
    assert_eq!(text_of(&retried), "Hello, Carol!");

    // resources/read and prompts/get.
    let read = a
        .read_resource(ReadResourceRequestParams::new("test://static-text"))
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(&read.contents).unwrap(),
        json!([{
            "uri": "test://static-text",
            "mimeType": "text/plain",
            "text": "This is the content of the static text resource.",
        }])
    );
    let prompt = b
        .get_prompt(
            GetPromptRequestParams::new("test_prompt_with_arguments")
                .with_arguments(args(json!({"arg1": "one", "arg2": "two"}))),
        )
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(&prompt.messages).unwrap()[0]["content"]["text"],
        "Prompt with arguments: arg1='one', arg2='two'"
    );

    // A tool whose argument must be mirrored into Mcp-Param-Greeting: the gateway
    // refuses the call (-32020) unless rmcp sent the header, base64-encoded here.
    let result = b
        .call_tool(
            CallToolRequestParams::new("test_custom_header_tool")
                .with_arguments(args(json!({"greeting": "Grüße"}))),
        )
        .await
        .unwrap();
    assert_eq!(text_of(&result), "greeting: Grüße");
    // A client that never listed the tool cannot know to mirror the argument: the
    // gateway's refusal (HTTP 400, -32020) reaches rmcp as that JSON-RPC error.
    let (fresh, _) = connect(b_url, "Fresh").await;
    let refused = fresh
        .call_tool(
            CallToolRequestParams::new("test_custom_header_tool")
                .with_arguments(args(json!({"greeting": "hi"}))),
        )
        .await;
    match refused {
        Err(ServiceError::McpError(e)) => assert_eq!(e.code, ErrorCode::HEADER_MISMATCH),
        other => panic!("expected -32020 for the unmirrored argument, got {other:?}"),
    }
    fresh.cancel().await.unwrap();

    // subscriptions/listen on the second gateway hears a change made through the first.
    let mut subscription = b
        .listen(
            SubscriptionFilter::builder()
                .resource_subscription(WATCHED)
                .build(),
        )
        .await
        .unwrap();
    assert_eq!(
        subscription
            .acknowledged()
            .resource_subscriptions
            .as_deref(),
        Some(&[WATCHED.to_owned()][..])
    );
    let changed = a
        .call_tool(CallToolRequestParams::new("update_watched_resource"))
        .await
        .unwrap();
    assert!(
        text_of(&changed).contains("1 subscribed sessions notified"),
        "{changed:?}"
    );
    let notification = tokio::time::timeout(WAIT, subscription.next())
        .await
        .expect("the update arrives")
        .unwrap()
        .expect("the subscription is open");
    let ServerNotification::ResourceUpdatedNotification(updated) = notification else {
        panic!("expected resources/updated, got {notification:?}");
    };
    assert_eq!(updated.params.uri, WATCHED);
    subscription.cancel().await.unwrap();

    a.cancel().await.unwrap();
    b.cancel().await.unwrap();
}

/// The gateway's `mcpgw_jsonrpc_requests_total` counters, by (method, outcome).
async fn request_counts(gateway: &Gateway) -> BTreeMap<(String, String), f64> {
    let text = reqwest::get(format!("{}/metrics", gateway.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let label = |line: &str, name: &str| {
        let start = line.find(&format!("{name}=\""))? + name.len() + 2;
        let len = line[start..].find('"')?;
        Some(line[start..start + len].to_owned())
    };
    text.lines()
        .filter(|l| l.starts_with("mcpgw_jsonrpc_requests_total{"))
        .filter_map(|l| {
            let value = l.rsplit(' ').next()?.parse().ok()?;
            Some(((label(l, "method")?, label(l, "outcome")?), value))
        })
        .collect()
}

/// What the gateways counted while rmcp ran: discovery on each, no `initialize` (rmcp
/// never fell back to a session), and one refused request in all: the unmirrored call.
async fn assert_stateless_traffic(
    gateways: &[&Gateway],
    before: &[BTreeMap<(String, String), f64>],
) {
    let mut failed = BTreeMap::new();
    for (gateway, before) in gateways.iter().zip(before) {
        let after = request_counts(gateway).await;
        let grew = |method: &str, outcome: &str| {
            let key = (method.to_owned(), outcome.to_owned());
            after.get(&key).unwrap_or(&0.0) - before.get(&key).unwrap_or(&0.0)
        };
        assert!(
            grew("server/discover", "ok") >= 1.0,
            "no discovery: {after:?}"
        );
        assert!(grew("tools/call", "ok") >= 1.0, "no tools/call: {after:?}");
        assert_eq!(grew("initialize", "ok"), 0.0, "a session began: {after:?}");
        for (method, outcome) in after.keys() {
            if outcome == "error" && grew(method, outcome) > 0.0 {
                *failed.entry(method.clone()).or_insert(0.0) += grew(method, outcome);
            }
        }
    }
    assert_eq!(
        failed,
        BTreeMap::from([("tools/call".to_owned(), 1.0)]),
        "refused requests by method"
    );
}

/// Waits until `server_status` counts `workers` workers.
async fn wait_for_workers(url: &str, workers: u64) {
    let mut probe = RawClient::new(url);
    probe.initialize("2025-11-25").await.unwrap();
    let start = Instant::now();
    loop {
        let v = probe
            .request(1, "tools/call", json!({"name": "server_status"}))
            .await
            .unwrap();
        if let Some(text) = v["result"]["content"][0]["text"].as_str()
            && let Ok(status) = serde_json::from_str::<Value>(text)
            && status["workers"].as_u64() == Some(workers)
        {
            probe.delete().await.unwrap();
            return;
        }
        assert!(start.elapsed() < WAIT, "the workers never registered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn rmcp_speaks_2026_07_28_across_two_gateways() {
    let redis = RedisServer::start().unwrap();
    let url = redis.url();
    let g0 = Gateway::start(&["--redis-url", &url, "--toolset", TOOLSETS]).unwrap();
    let g1 = Gateway::start(&["--redis-url", &url, "--toolset", TOOLSETS]).unwrap();
    let _workers = [
        WorkerProcess::start(&url, &["--toolset", TOOLSETS]).unwrap(),
        WorkerProcess::start(&url, &["--toolset", TOOLSETS]).unwrap(),
    ];
    wait_for_workers(&g0.url(), 2).await;
    let before = [request_counts(&g0).await, request_counts(&g1).await];
    exercise(&g0.url(), &g1.url()).await;
    assert_stateless_traffic(&[&g0, &g1], &before).await;
}

#[tokio::test]
async fn rmcp_speaks_2026_07_28_to_a_standalone_gateway() {
    let gw = Gateway::start(&["--toolset", TOOLSETS]).unwrap();
    let before = [request_counts(&gw).await];
    exercise(&gw.url(), &gw.url()).await;
    assert_stateless_traffic(&[&gw], &before).await;
}
