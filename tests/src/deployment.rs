//! Where a test's clients connect: one standalone gateway, or a Redis cluster of two
//! gateways and a worker, where each request of a session goes to the next gateway in turn.
//! Tests written against a [`Deployment`] prove a behaviour in both set-ups.

use crate::client::RawClient;
use crate::process::{Gateway, WorkerProcess};
use crate::redis::RedisServer;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The kind of deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One `mcp-gateway` with its in-memory bus and embedded worker.
    Standalone,
    /// A redis-server, two gateways and one worker; requests alternate between gateways.
    Cluster,
}

/// A running deployment.
pub struct Deployment {
    /// The gateways (one when standalone).
    pub gateways: Vec<Gateway>,
    /// The workers (none when standalone).
    pub workers: Vec<WorkerProcess>,
    /// The Redis server, when clustered.
    pub redis: Option<RedisServer>,
}

impl Deployment {
    /// Starts a deployment; `gateway_args` go to every gateway. Returns once every
    /// gateway serves and the workers are registered.
    pub async fn start(kind: Kind, gateway_args: &[&str]) -> anyhow::Result<Self> {
        match kind {
            Kind::Standalone => Ok(Self {
                gateways: vec![Gateway::start(gateway_args)?],
                workers: Vec::new(),
                redis: None,
            }),
            Kind::Cluster => {
                let redis = RedisServer::start()?;
                let url = redis.url();
                let mut args = vec!["--redis-url", url.as_str()];
                args.extend_from_slice(gateway_args);
                let gateways = vec![Gateway::start(&args)?, Gateway::start(&args)?];
                let workers = vec![WorkerProcess::start(&url, &[])?];
                let deployment = Self {
                    gateways,
                    workers,
                    redis: Some(redis),
                };
                deployment.wait_for_workers(1).await?;
                Ok(deployment)
            }
        }
    }

    /// Every gateway's MCP endpoint.
    pub fn urls(&self) -> Vec<String> {
        self.gateways.iter().map(Gateway::url).collect()
    }

    /// A client with a new session at `version`; its requests rotate over the gateways.
    pub async fn client(&self, version: &str) -> anyhow::Result<RawClient> {
        let mut client = RawClient::rotating(&self.urls());
        client.initialize(version).await?;
        Ok(client)
    }

    /// Waits until `server_status` reports `workers` workers (see [`wait_for_workers`]),
    /// asking through a probe session of its own.
    pub async fn wait_for_workers(&self, workers: u64) -> anyhow::Result<Value> {
        let mut probe = RawClient::new(&self.gateways[0].url());
        probe.initialize("2025-11-25").await?;
        let status = wait_for_workers(&probe, workers).await?;
        probe.delete().await?;
        Ok(status)
    }
}

/// How long [`wait_for_workers`] waits.
pub const WORKERS_WAIT: Duration = Duration::from_secs(30);

/// Polls `server_status` through `client` until the cluster reports exactly `workers` live
/// workers; returns that status. Failed polls (a gateway still reconnecting to Redis answers
/// 503) are retried until [`WORKERS_WAIT`] has passed.
pub async fn wait_for_workers(client: &RawClient, workers: u64) -> anyhow::Result<Value> {
    let start = Instant::now();
    let mut last: String;
    loop {
        match client
            .request(900, "tools/call", json!({"name": "server_status"}))
            .await
        {
            Ok(v) => {
                if let Some(text) = v["result"]["content"][0]["text"].as_str()
                    && let Ok(status) = serde_json::from_str::<Value>(text)
                {
                    if status["workers"].as_u64() == Some(workers) {
                        return Ok(status);
                    }
                    last = status.to_string();
                } else {
                    last = v.to_string();
                }
            }
            Err(e) => last = e.to_string(),
        }
        anyhow::ensure!(
            start.elapsed() < WORKERS_WAIT,
            "the cluster never showed {workers} workers; last answer: {last}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
