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
//! - `cluster`: a `redis` `ClusterConnection` (feature `cluster-async`) over the seed
//!   nodes, which routes each command by its key's slot and follows slot moves and
//!   failovers by itself. It refuses a pipeline whose commands span slots, so [`Conn`]
//!   splits a non-atomic pipeline into one sub-pipeline per slot (run concurrently, replies
//!   put back in order); `MULTI` and scripts must stay within one slot, which the callers
//!   ensure (every key of one script shares a hash tag).

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, SingleNodeRoutingInfo, Slot, SlotAddr};
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
    /// A Redis Cluster (`--redis-url` lists seed nodes, comma separated).
    Cluster,
}

impl std::str::FromStr for RedisMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "single" => Ok(Self::Single),
            "sentinel" => Ok(Self::Sentinel),
            "cluster" => Ok(Self::Cluster),
            other => Err(format!(
                "unknown Redis mode {other:?} (expected single, sentinel or cluster)"
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
            RedisMode::Cluster => Err(cluster_is_not_a_source()),
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
            RedisMode::Cluster => Err(cluster_is_not_a_source()),
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

/// A multiplexed connection to the master of the configured topology (or, in a cluster,
/// to every master, each command going to its slot's); cheap to clone. Implements
/// [`ConnectionLike`], so commands, pipelines and scripts run on it as on a
/// `ConnectionManager`.
#[derive(Clone)]
pub struct Conn {
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    Master(Arc<Inner>),
    Cluster(Arc<ClusterInner>),
}

struct ClusterInner {
    conn: ClusterConnection,
    /// Never changes: the cluster client follows failovers itself (kept so
    /// [`Conn::switches`] has one API for every topology).
    switched: watch::Sender<u64>,
}

/// The seed URLs of a comma-separated list.
fn seed_urls(urls: &str) -> Vec<&str> {
    urls.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect()
}

fn cluster_is_not_a_source() -> RedisError {
    RedisError::from((
        redis::ErrorKind::InvalidClientConfig,
        "a Redis Cluster is reached with Conn::connect_cluster",
    ))
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
            kind: Kind::Master(Arc::new(Inner {
                role,
                source,
                config,
                current: Mutex::new((addr, manager)),
                resolving: AtomicBool::new(false),
                switched,
            })),
        })
    }

    /// Connects to a Redis Cluster through its seed nodes (`urls`, comma separated),
    /// failing if none answers now. Every command is bounded by `response_timeout`
    /// (retries and redirections included), so a request during a failover gets an error,
    /// never a wait. With `push`, the connection speaks RESP3 and delivers pub/sub
    /// messages there.
    pub(crate) async fn connect_cluster(
        urls: &str,
        response_timeout: Duration,
        push: Option<impl redis::aio::AsyncPushSender>,
    ) -> Result<Self, RedisError> {
        let mut builder = ClusterClientBuilder::new(seed_urls(urls))
            .connection_timeout(Duration::from_secs(2))
            .response_timeout(response_timeout)
            .retries(6)
            .min_retry_wait(50)
            .max_retry_wait(500);
        if let Some(push) = push {
            builder = builder
                .use_protocol(redis::ProtocolVersion::RESP3)
                .push_sender(push);
        }
        let conn = builder.build()?.get_async_connection().await?;
        let (switched, _) = watch::channel(0);
        Ok(Self {
            kind: Kind::Cluster(Arc::new(ClusterInner { conn, switched })),
        })
    }

    /// Whether this is a Redis Cluster connection (multi-key steps must then stay within
    /// one slot).
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.kind, Kind::Cluster(_))
    }

    /// Changes each time the connection moved to another master (pub/sub subscribes again).
    pub(crate) fn switches(&self) -> watch::Receiver<u64> {
        match &self.kind {
            Kind::Master(inner) => inner.switched.subscribe(),
            Kind::Cluster(inner) => inner.switched.subscribe(),
        }
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
        let Kind::Master(inner) = &self.kind else {
            return;
        };
        let lost = e.is_io_error()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.is_timeout()
            || e.code() == Some("READONLY");
        if !lost || matches!(inner.source, Source::Single(_)) {
            return;
        }
        if inner.resolving.swap(true, Ordering::AcqRel) {
            return;
        }
        let inner = inner.clone();
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

impl Inner {
    fn manager(&self) -> ConnectionManager {
        lock(&self.current).1.clone()
    }
}

/// The slot a command of ours goes to, `None` for a command without a key (`PUBLISH`,
/// `PING`). Every command the bus pipelines has its key first, except scripts (after the
/// script and the key count).
fn slot_of(cmd: &Cmd) -> Option<Slot> {
    let mut args = cmd.args_iter().filter_map(|a| match a {
        redis::Arg::Simple(a) => Some(a),
        _ => None,
    });
    let name = args.next()?.to_ascii_uppercase();
    match name.as_slice() {
        b"PUBLISH" | b"PING" | b"ECHO" | b"TIME" => None,
        b"EVAL" | b"EVALSHA" | b"FCALL" => {
            let _script = args.next()?;
            let keys: usize = std::str::from_utf8(args.next()?).ok()?.parse().ok()?;
            if keys == 0 {
                return None;
            }
            args.next().map(Slot::for_key)
        }
        _ => args.next().map(Slot::for_key),
    }
}

/// The commands of `pipeline` by slot, in order of first appearance: each slot's command
/// indexes in pipeline order; keyless commands go with the first group.
fn slot_groups(pipeline: &Pipeline) -> Vec<(Option<Slot>, Vec<usize>)> {
    let mut groups: Vec<(Option<Slot>, Vec<usize>)> = Vec::new();
    for (i, cmd) in pipeline.cmd_iter().enumerate() {
        let slot = slot_of(cmd);
        let group = groups
            .iter_mut()
            .find(|(s, _)| slot.is_none() || s.is_none() || *s == slot);
        match group {
            Some((s, members)) => {
                if s.is_none() {
                    *s = slot;
                }
                members.push(i);
            }
            None => groups.push((slot, vec![i])),
        }
    }
    groups
}

/// Runs a pipeline on a cluster. An atomic one (`MULTI`), or one whose keyed commands
/// share a slot, goes as it is to that slot's master; else it runs as one sub-pipeline per
/// slot (in the pipeline's order within each slot; keyless commands go with the first),
/// concurrently, replies put back in order. Each goes to its slot's master explicitly: the
/// client's own choice would count `PUBLISH`'s channel as a key (a "cross-slot" pipeline)
/// and send a pipeline of only `DEL`/`EXISTS` (multi-key commands to the client) to a
/// random node.
async fn cluster_pipeline(
    conn: &ClusterConnection,
    pipeline: &Pipeline,
    offset: usize,
    count: usize,
) -> Result<Vec<Value>, RedisError> {
    let groups = slot_groups(pipeline);
    let route = |slot: Option<Slot>| match slot {
        Some(slot) => SingleNodeRoutingInfo::SpecificNode(Route::with_slot(slot, SlotAddr::Master)),
        None => SingleNodeRoutingInfo::Random,
    };
    if pipeline.is_transaction() || groups.len() <= 1 {
        let slot = groups.first().and_then(|(s, _)| *s);
        return conn
            .clone()
            .route_pipeline(pipeline.clone(), offset, count, route(slot))
            .await;
    }
    let commands: Vec<&Cmd> = pipeline.cmd_iter().collect();
    let mut tasks = tokio::task::JoinSet::new();
    for (slot, members) in groups {
        let mut sub = redis::pipe();
        for i in &members {
            sub.add_command(commands[*i].clone());
        }
        let mut conn = conn.clone();
        let routing = route(slot);
        tasks.spawn(async move {
            let len = sub.len();
            let replies = conn.route_pipeline(sub, 0, len, routing).await;
            (members, replies)
        });
    }
    let mut replies: Vec<Value> = vec![Value::Nil; commands.len()];
    while let Some(done) = tasks.join_next().await {
        let (members, values) = done
            .map_err(|e| RedisError::from(std::io::Error::other(format!("pipeline task: {e}"))))?;
        for (i, value) in members.into_iter().zip(values?) {
            replies[i] = value;
        }
    }
    Ok(replies)
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            match &self.kind {
                Kind::Master(inner) => {
                    let mut manager = inner.manager();
                    let result = manager.req_packed_command(cmd).await;
                    if let Err(e) = &result {
                        self.check(e);
                    }
                    result
                }
                Kind::Cluster(inner) => inner.conn.clone().req_packed_command(cmd).await,
            }
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            match &self.kind {
                Kind::Master(inner) => {
                    let mut manager = inner.manager();
                    let result = manager.req_packed_commands(pipeline, offset, count).await;
                    if let Err(e) = &result {
                        self.check(e);
                    }
                    result
                }
                Kind::Cluster(inner) => {
                    cluster_pipeline(&inner.conn, pipeline, offset, count).await
                }
            }
        })
    }

    fn get_db(&self) -> i64 {
        match &self.kind {
            Kind::Master(inner) => inner.manager().get_db(),
            Kind::Cluster(_) => 0,
        }
    }
}

impl Conn {
    /// `SUBSCRIBE` (or, with `sharded`, `SSUBSCRIBE`: a cluster keeps the channel's
    /// messages on the shard that owns its slot). On one master, the subscription is tracked
    /// there for automatic resubscription after a reconnect to the same master.
    pub(crate) async fn subscribe(&self, channel: &str, sharded: bool) -> Result<(), RedisError> {
        match &self.kind {
            Kind::Master(inner) => {
                let result = inner.manager().subscribe(channel).await;
                if let Err(e) = &result {
                    self.check(e);
                }
                result
            }
            Kind::Cluster(inner) if sharded => inner.conn.clone().ssubscribe(channel).await,
            Kind::Cluster(inner) => inner.conn.clone().subscribe(channel).await,
        }
    }

    /// `UNSUBSCRIBE` (`SUNSUBSCRIBE` with `sharded`).
    pub(crate) async fn unsubscribe(&self, channel: &str, sharded: bool) -> Result<(), RedisError> {
        match &self.kind {
            Kind::Master(inner) => inner.manager().unsubscribe(channel).await,
            Kind::Cluster(inner) if sharded => inner.conn.clone().sunsubscribe(channel).await,
            Kind::Cluster(inner) => inner.conn.clone().unsubscribe(channel).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Slot, slot_groups, slot_of};

    #[test]
    fn commands_go_to_their_keys_slot_and_scripts_to_their_first_keys() {
        assert_eq!(
            slot_of(redis::cmd("HSET").arg("p:{abc}:session").arg("f").arg(1)),
            Some(Slot::for_key("abc"))
        );
        assert_eq!(
            slot_of(
                redis::cmd("EVALSHA")
                    .arg("sha")
                    .arg(2)
                    .arg("p:{s}:a")
                    .arg("p:{s}:b")
            ),
            Some(Slot::for_key("s"))
        );
        assert_eq!(
            slot_of(redis::cmd("EVALSHA").arg("sha").arg(0).arg("x")),
            None
        );
        assert_eq!(
            slot_of(redis::cmd("PUBLISH").arg("p:ch:control").arg("m")),
            None
        );
        assert_eq!(
            slot_of(redis::cmd("SPUBLISH").arg("p:ch:s:{abc}").arg("x")),
            Some(Slot::for_key("abc"))
        );
    }

    #[test]
    fn a_pipeline_splits_by_slot_keeping_order_within_each() {
        let mut pipe = redis::pipe();
        pipe.cmd("PUBLISH").arg("p:ch:control").arg("m"); // keyless: with the first group
        pipe.hget("p:{s1}:session", "seq");
        pipe.zadd("p:{registry}:sessions", "s1", 1);
        pipe.pexpire("p:{s1}:log", 10);
        pipe.del(&["p:{s1}:a", "p:{s1}:b"]);
        pipe.hdel("p:{registry}:session-principals", "s1");
        let groups = slot_groups(&pipe);
        assert_eq!(
            groups,
            vec![
                (Some(Slot::for_key("s1")), vec![0, 1, 3, 4]),
                (Some(Slot::for_key("registry")), vec![2, 5]),
            ]
        );
    }
}
