//! [`Conn`]: the one connection type every file of the Redis bus sends commands on, for
//! every topology.
//!
//! - `single`: a `redis` `ConnectionManager` to one address (it reconnects by itself).
//! - `sentinel`: the same manager, to the master the sentinels name (resolved with the
//!   `redis` crate's own `Sentinel`). No connection manager of `redis` 1.8.1 follows a
//!   failover: when a command fails in a way that says the master is gone (refused, reset,
//!   timed out, or `READONLY` from a demoted master), the command's error goes back to its
//!   caller at once (a clear error, never a wait), and one resolver task asks the sentinels
//!   for the master every 200 ms until they name a different one that answers, then swaps
//!   in a new manager to it. Every clone of a [`Conn`] sees the swap; [`Conn::switches`]
//!   tells the pub/sub side to subscribe again on the new master.

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::sentinel::Sentinel;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How the bus reaches Redis.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RedisMode {
    /// One Redis (`--redis-url` is its URL).
    #[default]
    Single,
    /// A master found through Redis Sentinel (`--redis-url` lists the sentinels, comma
    /// separated; `--redis-sentinel-master` names the monitored master).
    Sentinel,
}

impl std::str::FromStr for RedisMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "single" => Ok(Self::Single),
            "sentinel" => Ok(Self::Sentinel),
            other => Err(format!(
                "unknown Redis mode {other:?} (expected single or sentinel)"
            )),
        }
    }
}

/// Where connections go: a fixed client, or the master named by the sentinels.
pub(crate) enum Source {
    Single(redis::Client),
    Sentinel {
        sentinel: tokio::sync::Mutex<Sentinel>,
        master: String,
        /// Appended to the master's URL (e.g. `protocol=resp3` for pub/sub).
        resp3: bool,
    },
}

impl Source {
    /// A source for `urls` (one URL, or the sentinels' URLs, comma separated).
    pub(crate) fn new(mode: &RedisMode, urls: &str, master: &str) -> Result<Self, RedisError> {
        match mode {
            RedisMode::Single => Ok(Self::Single(redis::Client::open(urls)?)),
            RedisMode::Sentinel => {
                let nodes: Vec<&str> = urls
                    .split(',')
                    .map(str::trim)
                    .filter(|u| !u.is_empty())
                    .collect();
                Ok(Self::Sentinel {
                    sentinel: tokio::sync::Mutex::new(Sentinel::build(nodes)?),
                    master: master.to_owned(),
                    resp3: false,
                })
            }
        }
    }

    /// The same source, for a RESP3 (push) connection.
    pub(crate) fn resp3(mode: &RedisMode, urls: &str, master: &str) -> Result<Self, RedisError> {
        match mode {
            RedisMode::Single => {
                let url = if urls.contains('?') {
                    format!("{urls}&protocol=resp3")
                } else {
                    format!("{urls}?protocol=resp3")
                };
                Ok(Self::Single(redis::Client::open(url)?))
            }
            RedisMode::Sentinel => {
                let mut source = Self::new(mode, urls, master)?;
                if let Self::Sentinel { resp3, .. } = &mut source {
                    *resp3 = true;
                }
                Ok(source)
            }
        }
    }

    /// A client for the current master.
    async fn client(&self) -> Result<redis::Client, RedisError> {
        match self {
            Self::Single(client) => Ok(client.clone()),
            Self::Sentinel {
                sentinel,
                master,
                resp3,
            } => {
                let client = sentinel.lock().await.async_master_for(master, None).await?;
                if !*resp3 {
                    return Ok(client);
                }
                let info = client.get_connection_info().clone().set_redis_settings(
                    client
                        .get_connection_info()
                        .redis_settings()
                        .clone()
                        .set_protocol(redis::ProtocolVersion::RESP3),
                );
                redis::Client::open(info)
            }
        }
    }
}

struct Inner {
    /// What the connection is for, in logs.
    role: &'static str,
    source: Source,
    config: ConnectionManagerConfig,
    current: Mutex<(redis::ConnectionAddr, ConnectionManager)>,
    resolving: AtomicBool,
    switched: watch::Sender<u64>,
}

/// A multiplexed connection to the master of the configured topology; cheap to clone.
/// Implements [`ConnectionLike`], so commands, pipelines and scripts run on it as on a
/// `ConnectionManager`.
#[derive(Clone)]
pub struct Conn {
    inner: Arc<Inner>,
}

impl Conn {
    /// Connects to the current master (failing if it cannot be reached now).
    pub(crate) async fn connect(
        role: &'static str,
        source: Source,
        config: ConnectionManagerConfig,
    ) -> Result<Self, RedisError> {
        let client = source.client().await?;
        let addr = client.get_connection_info().addr().clone();
        let manager = ConnectionManager::new_with_config(client, config.clone()).await?;
        let (switched, _) = watch::channel(0);
        Ok(Self {
            inner: Arc::new(Inner {
                role,
                source,
                config,
                current: Mutex::new((addr, manager)),
                resolving: AtomicBool::new(false),
                switched,
            }),
        })
    }

    fn manager(&self) -> ConnectionManager {
        lock(&self.inner.current).1.clone()
    }

    /// Changes each time the connection moved to another master (pub/sub subscribes again).
    pub(crate) fn switches(&self) -> watch::Receiver<u64> {
        self.inner.switched.subscribe()
    }

    /// PINGs the connection, waiting at most `timeout`. A connection that reconnects
    /// without limit (pub/sub) holds a command until Redis answers, so a master that is
    /// gone for good is only noticed by the timeout: it counts as a lost connection (and,
    /// with Sentinel, starts following the new master).
    pub(crate) async fn probe(&self, timeout: Duration) -> bool {
        let mut conn = self.clone();
        let cmd = redis::cmd("PING");
        let ping = cmd.query_async::<Value>(&mut conn);
        match tokio::time::timeout(timeout, ping).await {
            Ok(result) => result.is_ok(),
            Err(_) => {
                self.timed_out();
                false
            }
        }
    }

    /// A command on this connection got no answer in time: the master may be gone.
    pub(crate) fn timed_out(&self) {
        self.check(&RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "no answer in time",
        )));
    }

    /// After an error: if it says the master may be gone and the topology can move, start
    /// (once) the resolver that follows the sentinels to the new master.
    fn check(&self, e: &RedisError) {
        let lost = e.is_io_error()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.is_timeout()
            || e.code() == Some("READONLY");
        if !lost || matches!(self.inner.source, Source::Single(_)) {
            return;
        }
        if self.inner.resolving.swap(true, Ordering::AcqRel) {
            return;
        }
        let inner = self.inner.clone();
        tokio::spawn(async move {
            follow_master(&inner).await;
            inner.resolving.store(false, Ordering::Release);
        });
    }
}

/// Asks the sentinels for the master until they name one this connection is not on and
/// it answers, then swaps the connection over. Gives up after 30 s (the next failed
/// command starts again), or when the current master answers after all.
async fn follow_master(inner: &Inner) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        if let Ok(client) = inner.source.client().await {
            let addr = client.get_connection_info().addr().clone();
            let (current_addr, mut current) = {
                let c = lock(&inner.current);
                (c.0.clone(), c.1.clone())
            };
            if addr != current_addr {
                match ConnectionManager::new_with_config(client, inner.config.clone()).await {
                    Ok(manager) => {
                        tracing::warn!(connection = inner.role, from = %current_addr, to = %addr, "Redis master moved; following it");
                        *lock(&inner.current) = (addr, manager);
                        inner.switched.send_modify(|n| *n += 1);
                        return;
                    }
                    Err(e) => tracing::debug!(error = %e, "the new master does not answer yet"),
                }
            } else if redis::cmd("ROLE")
                .query_async::<redis::Value>(&mut current)
                .await
                .is_ok_and(|v| is_master_role(&v))
            {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tracing::warn!(
        connection = inner.role,
        "no reachable Redis master named by the sentinels for 30 s"
    );
}

fn is_master_role(role: &Value) -> bool {
    match role {
        Value::Array(items) => items
            .first()
            .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
            .is_some_and(|r| r == "master"),
        _ => false,
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let mut manager = self.manager();
            let result = manager.req_packed_command(cmd).await;
            if let Err(e) = &result {
                self.check(e);
            }
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let mut manager = self.manager();
            let result = manager.req_packed_commands(pipeline, offset, count).await;
            if let Err(e) = &result {
                self.check(e);
            }
            result
        })
    }

    fn get_db(&self) -> i64 {
        self.manager().get_db()
    }
}

impl Conn {
    /// `SUBSCRIBE` on the current master's connection (tracked there for automatic
    /// resubscription after a reconnect to the same master).
    pub(crate) async fn subscribe(&self, channel: &str) -> Result<(), RedisError> {
        let result = self.manager().subscribe(channel).await;
        if let Err(e) = &result {
            self.check(e);
        }
        result
    }

    /// `UNSUBSCRIBE` on the current master's connection.
    pub(crate) async fn unsubscribe(&self, channel: &str) -> Result<(), RedisError> {
        self.manager().unsubscribe(channel).await
    }
}
