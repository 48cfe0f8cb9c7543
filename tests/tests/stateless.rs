//! Protocol 2026-07-28 on a cluster (Redis, two gateways, two workers), next to the
//! session protocol on the same processes: stateless requests alternate between gateways,
//! a listener on one gateway hears what is done through the other, a multi round-trip
//! retry lands on the other gateway, a tampered `requestState` is refused, and a
//! session-protocol client and a stateless listener see the same broadcast.

use e2e_tests::{Deployment, Gateway, RawClient, RedisServer, StatelessClient, WorkerProcess};
use serde_json::{Value, json};
use std::time::Duration;

const TOOLSETS: &str = "demo,conformance";
const SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";

async fn cluster() -> Deployment {
    let redis = RedisServer::start().unwrap();
    let url = redis.url();
    let gateways = (0..2)
        .map(|_| Gateway::start(&["--redis-url", &url, "--toolset", TOOLSETS]).unwrap())
        .collect();
    let workers = (0..2)
        .map(|_| WorkerProcess::start(&url, &["--toolset", TOOLSETS]).unwrap())
        .collect();
    let deployment = Deployment {
        gateways,
        workers,
        redis: Some(redis),
    };
    deployment.wait_for_workers(2).await.unwrap();
    deployment
}

fn text_of(response: &Value) -> String {
    response["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn stateless_requests_alternate_between_gateways() {
    let cluster = cluster().await;
    let client = StatelessClient::rotating(&cluster.urls());
    let discover = client
        .request(1, "server/discover", json!({}))
        .await
        .unwrap();
    assert_eq!(
        discover["result"]["supportedVersions"],
        json!(["2026-07-28"])
    );
    assert_eq!(discover["result"]["resultType"], "complete");

    for round in 0..4 {
        let (response, notifications) = client
            .call(
                10 + round,
                "tools/call",
                json!({"name": "long_running_operation", "arguments": {"steps": 5, "step_ms": 0}}),
                json!({"progressToken": format!("p{round}")}),
            )
            .await
            .unwrap();
        assert_eq!(response["result"]["resultType"], "complete", "{response}");
        assert_eq!(text_of(&response), "operation completed: 5 steps");
        let progress: Vec<f64> = notifications
            .iter()
            .filter(|n| n["method"] == "notifications/progress")
            .map(|n| n["params"]["progress"].as_f64().unwrap())
            .collect();
        assert_eq!(progress, vec![1.0, 2.0, 3.0, 4.0, 5.0], "round {round}");
    }

    // Logging is per request: none without a level, the ones at or above it with one.
    let args =
        json!({"name": "send_notification", "arguments": {"message": "hi", "level": "warning"}});
    let (_, quiet) = client
        .call(20, "tools/call", args.clone(), json!({}))
        .await
        .unwrap();
    assert!(quiet.is_empty(), "{quiet:?}");
    let level = |l| json!({"io.modelcontextprotocol/logLevel": l});
    let (_, heard) = client
        .call(21, "tools/call", args.clone(), level("info"))
        .await
        .unwrap();
    assert_eq!(heard.len(), 1, "{heard:?}");
    assert_eq!(heard[0]["params"]["data"], "hi");
    let (_, filtered) = client
        .call(22, "tools/call", args, level("error"))
        .await
        .unwrap();
    assert!(filtered.is_empty(), "{filtered:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broadcast_reaches_session_clients_and_stateless_listeners_on_every_gateway() {
    let cluster = cluster().await;
    let urls = cluster.urls();
    let stateless = StatelessClient::rotating(&urls);

    // A stateless listener on gateway 0.
    let (mut listener, ack) = stateless
        .listen(
            &urls[0],
            77,
            json!({"resourceSubscriptions": ["notify://broadcast"], "toolsListChanged": true}),
        )
        .await
        .unwrap();
    assert_eq!(ack["method"], "notifications/subscriptions/acknowledged");
    assert_eq!(ack["params"]["_meta"][SUBSCRIPTION_ID], 77);
    assert_eq!(
        ack["params"]["notifications"]["resourceSubscriptions"],
        json!(["notify://broadcast"])
    );

    // A session-protocol client with its standalone stream on gateway 1.
    let mut session = RawClient::new(&urls[1]);
    session.initialize("2025-11-25").await.unwrap();
    let mut standalone = session.open_stream(None).await.unwrap();

    // The broadcast goes through gateway 1, sent by the stateless client.
    let sent = StatelessClient::send_to(
        &stateless,
        &urls[1],
        5,
        "tools/call",
        stateless.with_meta(
            json!({"name": "broadcast", "arguments": {"message": "to everyone"}}),
            json!({}),
        ),
    )
    .await
    .unwrap();
    assert!(sent.status().is_success());
    let sent: Value = sent.json().await.unwrap();
    assert_eq!(sent["result"]["resultType"], "complete", "{sent}");

    let (_, log) = standalone
        .next_log(Duration::from_secs(10))
        .await
        .unwrap()
        .expect("the session client's stream stayed open");
    assert_eq!(log["params"]["data"], "to everyone");
    assert_eq!(log["params"]["logger"], "broadcast");

    let (event, updated) = listener
        .next_message(Duration::from_secs(10))
        .await
        .unwrap()
        .expect("the listen stream stayed open");
    assert!(event.id.is_empty(), "listen streams carry no event ids");
    assert_eq!(updated["method"], "notifications/resources/updated");
    assert_eq!(updated["params"]["uri"], "notify://broadcast");
    assert_eq!(updated["params"]["_meta"][SUBSCRIPTION_ID], 77);

    // Reading the resource on the listener's gateway returns the message.
    let read = stateless
        .call(
            6,
            "resources/read",
            json!({"uri": "notify://broadcast"}),
            json!({}),
        )
        .await
        .unwrap()
        .0;
    let contents: Value =
        serde_json::from_str(read["result"]["contents"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(contents["message"], "to everyone");
    assert_eq!(read["result"]["ttlMs"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_round_trip_retry_may_land_on_the_other_gateway_but_tampered_state_is_refused() {
    let cluster = cluster().await;
    let urls = cluster.urls();
    let client = StatelessClient::rotating(&urls);
    let call = |id, extra: Value| {
        let mut params = json!({"name": "test_input_required_result_multi_round", "arguments": {}});
        if let (Some(p), Some(e)) = (params.as_object_mut(), extra.as_object()) {
            p.extend(e.clone());
        }
        let client = &client;
        async move { client.request(id, "tools/call", params).await.unwrap() }
    };
    // Round 1 on gateway 0, round 2 on gateway 1, round 3 on gateway 0.
    let first = call(1, json!({})).await;
    assert_eq!(first["result"]["resultType"], "input_required", "{first}");
    assert!(first["result"]["inputRequests"]["step1"].is_object());
    let state1 = first["result"]["requestState"].as_str().unwrap().to_owned();

    let answer1 = json!({"step1": {"action": "accept", "content": {"name": "Alice"}}});
    let second = call(
        2,
        json!({"inputResponses": answer1, "requestState": state1}),
    )
    .await;
    assert_eq!(second["result"]["resultType"], "input_required", "{second}");
    assert!(second["result"]["inputRequests"]["step2"].is_object());
    let state2 = second["result"]["requestState"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(state1, state2);

    let answer2 = json!({"step2": {"action": "accept", "content": {"color": "blue"}}});
    let third = call(
        3,
        json!({"inputResponses": answer2.clone(), "requestState": state2.clone()}),
    )
    .await;
    assert_eq!(text_of(&third), "Alice likes blue", "{third}");

    // One flipped character anywhere in the state, or state from another request.
    let mut tampered = state2.clone().into_bytes();
    tampered[5] = if tampered[5] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let refused = call(
        4,
        json!({"inputResponses": answer2.clone(), "requestState": tampered}),
    )
    .await;
    assert_eq!(refused["error"]["code"], -32602, "{refused}");
    let foreign = client
        .request(
            5,
            "tools/call",
            json!({"name": "test_input_required_result_request_state", "arguments": {},
                   "inputResponses": answer2, "requestState": state2}),
        )
        .await
        .unwrap();
    assert_eq!(foreign["error"]["code"], -32602, "{foreign}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_background_task_without_a_session_reports_through_its_resource() {
    let cluster = cluster().await;
    let urls = cluster.urls();
    let client = StatelessClient::rotating(&urls);
    let started = client
        .request(
            1,
            "tools/call",
            json!({"name": "start_background_task",
                   "arguments": {"name": "nightly", "count": 4, "interval_ms": 300}}),
        )
        .await
        .unwrap();
    let link = &started["result"]["content"][1];
    assert_eq!(link["type"], "resource_link", "{started}");
    let uri = link["uri"].as_str().unwrap().to_owned();
    assert!(uri.starts_with("notify://tasks/"));

    let (mut listener, _) = client
        .listen(&urls[1], 9, json!({"resourceSubscriptions": [uri]}))
        .await
        .unwrap();
    // Each tick after the acknowledgement is announced; the last one is tick 4.
    let mut updates = 0;
    let done = loop {
        let (_, update) = listener
            .next_message(Duration::from_secs(10))
            .await
            .unwrap()
            .expect("the listen stream stayed open");
        assert_eq!(update["params"]["uri"], uri.as_str());
        updates += 1;
        let read = client
            .request(10 + updates, "resources/read", json!({"uri": uri}))
            .await
            .unwrap();
        let body: Value =
            serde_json::from_str(read["result"]["contents"][0]["text"].as_str().unwrap()).unwrap();
        if body["done"] == true {
            break body;
        }
    };
    assert!(updates >= 1);
    let ticks: Vec<u64> = done["ticks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tick"].as_u64().unwrap())
        .collect();
    assert_eq!(ticks, vec![1, 2, 3, 4]);
    assert_eq!(done["task"], "nightly");

    let missing = client
        .request(
            99,
            "resources/read",
            json!({"uri": "notify://tasks/0000000000000000"}),
        )
        .await
        .unwrap();
    assert_eq!(missing["error"]["code"], -32602, "{missing}");
}

/// A stateless client that declares elicitation and the tasks extension.
fn task_client(urls: &[String]) -> StatelessClient {
    let mut client = StatelessClient::rotating(urls);
    client.capabilities = json!({
        "elicitation": {},
        "extensions": {"io.modelcontextprotocol/tasks": {}},
    });
    client
}

/// Calls a tool that becomes a task; returns the task id.
async fn start_task(client: &StatelessClient, id: i64, tool: &str, arguments: Value) -> String {
    let created = client
        .request(
            id,
            "tools/call",
            json!({"name": tool, "arguments": arguments}),
        )
        .await
        .unwrap();
    assert_eq!(created["result"]["resultType"], "task", "{created}");
    created["result"]["taskId"].as_str().unwrap().to_owned()
}

/// Polls `tasks/get` (on whichever gateway the client turns to) until the task is in
/// `status`, and returns it.
async fn wait_for_task(client: &StatelessClient, task_id: &str, status: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut id = 1000;
    loop {
        id += 1;
        let got = client
            .request(id, "tasks/get", json!({"taskId": task_id}))
            .await
            .unwrap();
        assert_eq!(got["result"]["resultType"], "complete", "{got}");
        if got["result"]["status"] == status {
            return got["result"].clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "task {task_id} never reached {status}: {got}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_outlives_the_gateway_that_started_it_and_takes_input_on_another() {
    let mut cluster = cluster().await;
    let urls = cluster.urls();
    let client = task_client(&urls);

    // Started through gateway 0, which is then killed: the task lives on the bus.
    let task_id = start_task(
        &client,
        1,
        "slow_compute",
        json!({"seconds": 1, "label": "survivor"}),
    )
    .await;
    cluster.gateways[0].kill();
    let only_survivor = task_client(&urls[1..]);
    let done = wait_for_task(&only_survivor, &task_id, "completed").await;
    assert_eq!(
        done["result"]["content"][0]["text"],
        "computed \"survivor\" in 1 s"
    );

    // Input while a task runs: asked on the task, answered with tasks/update.
    let task_id = start_task(
        &only_survivor,
        2,
        "confirm_delete",
        json!({"filename": "a.txt"}),
    )
    .await;
    let waiting = wait_for_task(&only_survivor, &task_id, "input_required").await;
    let keys: Vec<&String> = waiting["inputRequests"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(keys, ["confirm"]);
    let ack = only_survivor
        .request(
            3,
            "tasks/update",
            json!({"taskId": task_id, "inputResponses": {
                "confirm": {"action": "accept", "content": {"confirm": true}},
                "not-asked": {"action": "accept"},
            }}),
        )
        .await
        .unwrap();
    assert_eq!(ack["result"]["resultType"], "complete", "{ack}");
    let done = wait_for_task(&only_survivor, &task_id, "completed").await;
    assert_eq!(done["result"]["content"][0]["text"], "deleted a.txt");

    // Cancelled through the bus, whichever worker runs it.
    let task_id = start_task(
        &only_survivor,
        4,
        "slow_compute",
        json!({"seconds": 60, "label": "doomed"}),
    )
    .await;
    let ack = only_survivor
        .request(5, "tasks/cancel", json!({"taskId": task_id}))
        .await
        .unwrap();
    assert_eq!(ack["result"]["resultType"], "complete", "{ack}");
    assert!(ack["result"].get("status").is_none() && ack["result"].get("taskId").is_none());
    wait_for_task(&only_survivor, &task_id, "cancelled").await;

    // Without the extension: no task handle, and no access to tasks.
    let plain = StatelessClient::rotating(&urls[1..]);
    let direct = plain
        .request(
            6,
            "tools/call",
            json!({"name": "slow_compute", "arguments": {"seconds": 0, "label": "now"}}),
        )
        .await
        .unwrap();
    assert_eq!(direct["result"]["resultType"], "complete", "{direct}");
    let refused = plain
        .request(7, "tasks/get", json!({"taskId": task_id}))
        .await
        .unwrap();
    assert_eq!(refused["error"]["code"], -32021, "{refused}");
}

/// A task whose worker dies does not stay `working` until it expires: another worker claims
/// the job, finds the task (its id is derived from the request with the cluster's key) and
/// ends it: with the tool's result when the tool may run again, with the reason otherwise.
#[tokio::test(flavor = "multi_thread")]
async fn a_task_whose_worker_dies_is_taken_over_by_another() {
    let redis = RedisServer::start().unwrap();
    let url = redis.url();
    let fast = [
        "--toolset",
        TOOLSETS,
        "--job-claim-idle-ms",
        "1500",
        "--heartbeat-ms",
        "300",
    ];
    let mut cluster = Deployment {
        gateways: vec![Gateway::start(&["--redis-url", &url, "--toolset", TOOLSETS]).unwrap()],
        workers: vec![WorkerProcess::start(&url, &fast).unwrap()],
        redis: Some(redis),
    };
    cluster.wait_for_workers(1).await.unwrap();
    let client = task_client(&cluster.urls());

    // A retryable tool: run again from the start, and the task completes.
    let task_id = start_task(
        &client,
        1,
        "slow_compute",
        json!({"seconds": 3, "label": "orphan"}),
    )
    .await;
    wait_for_task(&client, &task_id, "working").await;
    cluster.workers[0].kill();
    cluster
        .workers
        .push(WorkerProcess::start(&url, &fast).unwrap());
    let done = wait_for_task(&client, &task_id, "completed").await;
    assert_eq!(
        done["result"]["content"][0]["text"],
        "computed \"orphan\" in 3 s"
    );

    // A tool that must not run twice (it is waiting for input here): the task fails,
    // saying why, instead of hanging.
    let task_id = start_task(&client, 2, "confirm_delete", json!({"filename": "b.txt"})).await;
    wait_for_task(&client, &task_id, "input_required").await;
    cluster.workers[1].kill();
    cluster
        .workers
        .push(WorkerProcess::start(&url, &fast).unwrap());
    let failed = wait_for_task(&client, &task_id, "failed").await;
    assert!(
        failed.to_string().contains("not marked retryable"),
        "{failed}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_draining_gateway_ends_its_listen_streams_with_a_result() {
    let mut gateway = Gateway::start(&["--toolset", TOOLSETS]).unwrap();
    let client = StatelessClient::rotating(&[gateway.url()]);
    let (mut listener, _) = client
        .listen(
            &gateway.url(),
            "listen-1",
            json!({"toolsListChanged": true}),
        )
        .await
        .unwrap();
    gateway.terminate().unwrap();
    let (_, last) = listener
        .next_message(Duration::from_secs(10))
        .await
        .unwrap()
        .expect("the stream ends with the listen request's result, not silently");
    assert_eq!(last["id"], "listen-1", "{last}");
    assert_eq!(last["result"]["resultType"], "complete");
    assert_eq!(last["result"]["_meta"][SUBSCRIPTION_ID], "listen-1");
    assert!(
        listener
            .next(Duration::from_secs(10))
            .await
            .unwrap()
            .is_none()
    );
    gateway.wait_exit(Duration::from_secs(15)).unwrap();
}
