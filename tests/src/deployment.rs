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

    /// Waits until `server_status` reports `workers` workers.
    pub async fn wait_for_workers(&self, workers: u64) -> anyhow::Result<Value> {
        let mut probe = RawClient::new(&self.gateways[0].url());
        probe.initialize("2025-11-25").await?;
        let start = Instant::now();
        loop {
            let v = probe
                .request(1, "tools/call", json!({"name": "server_status"}))
                .await?;
            if let Some(text) = v["result"]["content"][0]["text"].as_str()
                && let Ok(status) = serde_json::from_str::<Value>(text)
                && status["workers"].as_u64() == Some(workers)
            {
                probe.delete().await?;
                return Ok(status);
            }
            anyhow::ensure!(
                start.elapsed() < Duration::from_secs(30),
                "workers never registered"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
