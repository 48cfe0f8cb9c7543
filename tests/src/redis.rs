//! Real `redis-server` processes for tests: each on a free loopback port, with its own
//! data directory, killable and restartable (never the machine's shared Redis).

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A private redis-server. Killed when dropped.
pub struct RedisServer {
    child: Option<Child>,
    /// The port it listens on (kept across restarts).
    pub port: u16,
    dir: PathBuf,
    /// Further `redis-server` arguments (e.g. `--replicaof`), kept across restarts.
    extra: Vec<String>,
}

impl RedisServer {
    /// Starts a redis-server with append-only persistence in a fresh directory, so a
    /// restart keeps what was written (as the compose stack's Redis does).
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(&[])
    }

    /// [`start`](Self::start) with further `redis-server` arguments.
    pub fn start_with(extra: &[&str]) -> anyhow::Result<Self> {
        let port = redis_port()?;
        let dir = std::env::temp_dir().join(format!("mcpgw-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let mut server = Self {
            child: None,
            port,
            dir,
            extra: extra.iter().map(|a| (*a).to_owned()).collect(),
        };
        server.spawn()?;
        Ok(server)
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        // Another test may grab the same free port between our probe and redis-server's
        // bind; then our server dies and the port answers for someone else's. Check the
        // server that answers is ours (its data directory), else try another port.
        for _ in 0..20 {
            if self.spawn_on_port()? {
                return Ok(());
            }
            self.kill();
            self.port = redis_port()?;
        }
        bail!("could not start a redis-server of our own on a free port")
    }

    fn spawn_on_port(&mut self) -> anyhow::Result<bool> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context(
                "cannot start redis-server: install it (Debian package `redis-server`; `.ci/run` installs it)",
            )?;
        self.child = Some(child);
        let start = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut()
                && child.try_wait()?.is_some()
            {
                return Ok(false);
            }
            if let Ok(dir) = self.data_dir_of_listener() {
                return Ok(Path::new(&dir) == self.dir.as_path());
            }
            if start.elapsed() > Duration::from_secs(10) {
                bail!("redis-server did not start listening on {}", self.port);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `CONFIG GET dir` of whatever listens on our port.
    fn data_dir_of_listener(&self) -> std::io::Result<String> {
        use std::io::{Read, Write};
        let mut socket = std::net::TcpStream::connect(("127.0.0.1", self.port))?;
        socket.set_read_timeout(Some(Duration::from_secs(2)))?;
        socket.write_all(b"*3\r\n$6\r\nCONFIG\r\n$3\r\nGET\r\n$3\r\ndir\r\n")?;
        let mut reply = Vec::new();
        let mut buf = [0u8; 512];
        // *2 $3 dir $N <dir>: the last non-empty line is the directory.
        while reply.iter().filter(|b| **b == b'\n').count() < 5 {
            let n = socket.read(&mut buf)?;
            if n == 0 {
                break;
            }
            reply.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&reply);
        text.lines()
            .rev()
            .find(|l| !l.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| std::io::Error::other("empty CONFIG GET reply"))
    }

    /// Runs one command on this server and returns its reply, so a test can read what the
    /// system stored (the system of record) without a Redis client library.
    pub fn command(&self, args: &[&str]) -> anyhow::Result<Reply> {
        use std::io::Write;
        let mut socket = std::net::TcpStream::connect(("127.0.0.1", self.port))?;
        socket.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut request = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            request.extend_from_slice(arg.as_bytes());
            request.extend_from_slice(b"\r\n");
        }
        socket.write_all(&request)?;
        let mut reader = std::io::BufReader::new(socket);
        let reply = Reply::read(&mut reader)?;
        if let Reply::Error(e) = &reply {
            bail!("redis {args:?}: {e}");
        }
        Ok(reply)
    }

    /// Kills the server (SIGKILL): an outage.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and data directory.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`.
    Status(String),
    /// `-ERR ...`.
    Error(String),
    /// `:42`.
    Int(i64),
    /// `$n` bulk string (`None`: the null bulk string).
    Bulk(Option<Vec<u8>>),
    /// `*n` array (`None`: the null array).
    Array(Option<Vec<Reply>>),
}

impl Reply {
    fn read(r: &mut impl std::io::BufRead) -> anyhow::Result<Self> {
        let mut line = String::new();
        r.read_line(&mut line)?;
        let line = line
            .strip_suffix("\r\n")
            .with_context(|| format!("a RESP line: {line:?}"))?;
        let (kind, rest) = line.split_at(1.min(line.len()));
        Ok(match kind {
            "+" => Self::Status(rest.to_owned()),
            "-" => Self::Error(rest.to_owned()),
            ":" => Self::Int(rest.parse()?),
            "$" => {
                let len: i64 = rest.parse()?;
                if len < 0 {
                    Self::Bulk(None)
                } else {
                    let mut data = vec![0; len as usize + 2];
                    r.read_exact(&mut data)?;
                    data.truncate(len as usize);
                    Self::Bulk(Some(data))
                }
            }
            "*" => {
                let len: i64 = rest.parse()?;
                if len < 0 {
                    Self::Array(None)
                } else {
                    let items = (0..len).map(|_| Self::read(r)).collect::<Result<_, _>>()?;
                    Self::Array(Some(items))
                }
            }
            _ => bail!("not a RESP reply: {line:?}"),
        })
    }

    /// The text of a bulk or status reply.
    pub fn text(&self) -> Option<String> {
        match self {
            Self::Status(s) => Some(s.clone()),
            Self::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }

    /// The items of an array reply (empty for anything else).
    pub fn items(&self) -> &[Reply] {
        match self {
            Self::Array(Some(items)) => items,
            _ => &[],
        }
    }

    /// An `XRANGE` reply as `(entry id, [(field, value)])`.
    pub fn stream_entries(&self) -> Vec<(String, Vec<(String, String)>)> {
        self.items()
            .iter()
            .filter_map(|entry| {
                let [id, fields] = entry.items() else {
                    return None;
                };
                let fields = fields
                    .items()
                    .chunks(2)
                    .filter_map(|kv| Some((kv.first()?.text()?, kv.get(1)?.text()?)))
                    .collect();
                Some((id.text()?, fields))
            })
            .collect()
    }
}

/// A free port for a test redis-server, drawn at random below the kernel's ephemeral
/// range: ports from `bind(:0)` are recycled between parallel tests, so while one test's
/// Redis is down for an outage another test could be handed its port and start a Redis
/// there, and the first test's clients would reconnect to a stranger.
pub fn redis_port() -> anyhow::Result<u16> {
    use std::hash::{BuildHasher, Hasher};
    for _ in 0..200 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        let port = 20_000 + (h.finish() % 11_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free port for redis-server in 20000..31000")
}

/// A loopback port nothing listens on now.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// A Sentinel set-up on loopback: one master, one replica, three sentinels (quorum 2,
/// master down after 1 s), all started here (sentinels as `redis-server FILE --sentinel`:
/// Debian has no `redis-sentinel` binary). Everything is killed when dropped.
pub struct SentinelSetup {
    /// The master at start.
    pub master: RedisServer,
    /// Its replica, promoted by a failover.
    pub replica: RedisServer,
    sentinels: Vec<(Child, u16, PathBuf)>,
}

/// The master's name the sentinels monitor.
pub const SENTINEL_MASTER: &str = "mymaster";

impl SentinelSetup {
    /// Starts it and waits until the sentinels know the replica and each other (a
    /// failover is possible from then on).
    pub fn start() -> anyhow::Result<Self> {
        let master = RedisServer::start()?;
        let replica_of = master.port.to_string();
        let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &replica_of])?;
        let mut setup = Self {
            master,
            replica,
            sentinels: Vec::new(),
        };
        for _ in 0..3 {
            let port = redis_port()?;
            let dir =
                std::env::temp_dir().join(format!("mcpgw-sentinel-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&dir)?;
            let conf = dir.join("sentinel.conf");
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {}\n\
                     sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {} 2\n\
                     sentinel down-after-milliseconds {SENTINEL_MASTER} 1000\n\
                     sentinel failover-timeout {SENTINEL_MASTER} 10000\n",
                    dir.display(),
                    setup.master.port
                ),
            )?;
            let child = Command::new("redis-server")
                .arg(&conf)
                .arg("--sentinel")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("cannot start a sentinel (redis-server --sentinel)")?;
            setup.sentinels.push((child, port, dir));
        }
        let start = Instant::now();
        while !setup.ready() {
            if start.elapsed() > Duration::from_secs(30) {
                bail!("the sentinels did not see the replica and each other within 30 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(setup)
    }

    /// Every sentinel knows the replica and the two other sentinels.
    fn ready(&self) -> bool {
        let synced = self
            .replica
            .command(&["INFO", "replication"])
            .ok()
            .and_then(|r| r.text())
            .is_some_and(|t| t.contains("master_link_status:up"));
        synced
            && self.sentinels.iter().all(|(_, port, _)| {
                let replicas = sentinel_command(*port, &["SENTINEL", "REPLICAS", SENTINEL_MASTER]);
                let others = sentinel_command(*port, &["SENTINEL", "SENTINELS", SENTINEL_MASTER]);
                matches!((replicas, others), (Ok(r), Ok(o)) if !r.items().is_empty() && o.items().len() == 2)
            })
    }

    /// `redis://127.0.0.1:P1,redis://127.0.0.1:P2,redis://127.0.0.1:P3`: the bus's
    /// `--redis-url` in `--redis-mode sentinel`.
    pub fn urls(&self) -> String {
        self.sentinels
            .iter()
            .map(|(_, port, _)| format!("redis://127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The master's port as the first sentinel names it now.
    pub fn master_port(&self) -> anyhow::Result<u16> {
        let (_, port, _) = self.sentinels.first().context("no sentinel")?;
        let reply = sentinel_command(
            *port,
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_MASTER],
        )?;
        let port = reply
            .items()
            .get(1)
            .and_then(Reply::text)
            .context("no master address")?;
        Ok(port.parse()?)
    }
}

fn sentinel_command(port: u16, args: &[&str]) -> anyhow::Result<Reply> {
    let probe = RedisServer {
        child: None,
        port,
        dir: PathBuf::new(),
        extra: Vec::new(),
    };
    let reply = probe.command(args);
    std::mem::forget(probe);
    reply
}

impl Drop for SentinelSetup {
    fn drop(&mut self) {
        for (child, _, dir) in &mut self.sentinels {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A Redis Cluster on loopback: three masters and three replicas (`redis-server
/// --cluster-enabled yes`, `cluster-node-timeout 2000`, so a dead master's replica is
/// promoted in ~4 s), joined with `redis-cli --cluster create`. Every server is killed
/// when dropped.
pub struct ClusterSetup {
    /// The six nodes, in the order given to `redis-cli --cluster create` (the first three
    /// start as masters).
    pub nodes: Vec<RedisServer>,
}

impl ClusterSetup {
    /// Starts the nodes, creates the cluster and waits until every node reports
    /// `cluster_state:ok` and knows the five others.
    pub fn start() -> anyhow::Result<Self> {
        let mut nodes = Vec::new();
        while nodes.len() < 6 {
            // A cluster node also listens on its port + 10000 (the cluster bus).
            let node = RedisServer::start_with(&[
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "2000",
                "--appendonly",
                "no",
            ])?;
            nodes.push(node);
        }
        let setup = Self { nodes };
        let addresses: Vec<String> = setup
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .context("cannot run redis-cli --cluster create")?;
        if !out.status.success() {
            bail!(
                "redis-cli --cluster create failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let start = Instant::now();
        while !setup.ready() {
            if start.elapsed() > Duration::from_secs(30) {
                bail!("the cluster was not ready within 30 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(setup)
    }

    /// Every node that is up says `cluster_state:ok` and knows all six nodes; every
    /// replica's link to its master is up.
    pub fn ready(&self) -> bool {
        self.nodes.iter().filter(|n| n.child.is_some()).all(|n| {
            let info = n.command(&["CLUSTER", "INFO"]).ok().and_then(|r| r.text());
            let ok = info.is_some_and(|t| {
                t.contains("cluster_state:ok") && t.contains("cluster_known_nodes:6")
            });
            let role = n
                .command(&["INFO", "replication"])
                .ok()
                .and_then(|r| r.text());
            ok && role
                .is_some_and(|t| t.contains("role:master") || t.contains("master_link_status:up"))
        })
    }

    /// Every node still up but `down` says `cluster_state:ok` (after a failover).
    pub fn ready_without(&self, down: usize) -> bool {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(i, n)| *i != down && n.child.is_some())
            .all(|(_, n)| {
                n.command(&["CLUSTER", "INFO"])
                    .ok()
                    .and_then(|r| r.text())
                    .is_some_and(|t| t.contains("cluster_state:ok"))
            })
    }

    /// `redis://127.0.0.1:P1,...` (every node): the bus's `--redis-url` in
    /// `--redis-mode cluster`.
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(RedisServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The indexes (into [`nodes`](Self::nodes)) of the nodes that are masters now.
    pub fn masters(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| {
                let node = &self.nodes[*i];
                node.child.is_some()
                    && node
                        .command(&["ROLE"])
                        .ok()
                        .and_then(|r| r.items().first().and_then(Reply::text))
                        .is_some_and(|role| role == "master")
            })
            .collect()
    }

    /// The keys matching `pattern` that each master holds, by master index.
    pub fn keys_by_master(&self, pattern: &str) -> Vec<(usize, Vec<String>)> {
        self.masters()
            .into_iter()
            .map(|i| {
                let keys = self.nodes[i]
                    .command(&["KEYS", pattern])
                    .map(|r| r.items().iter().filter_map(Reply::text).collect())
                    .unwrap_or_default();
                (i, keys)
            })
            .collect()
    }

    /// The index of the master that owns `key`'s slot now.
    pub fn master_of(&self, key: &str) -> anyhow::Result<usize> {
        let first = self
            .nodes
            .iter()
            .find(|n| n.child.is_some())
            .context("no node up")?;
        let slot = match first.command(&["CLUSTER", "KEYSLOT", key])? {
            Reply::Int(slot) => slot,
            other => bail!("CLUSTER KEYSLOT: {other:?}"),
        };
        let slots = first.command(&["CLUSTER", "SLOTS"])?;
        for range in slots.items() {
            let [Reply::Int(from), Reply::Int(to), master, ..] = range.items() else {
                continue;
            };
            if (*from..=*to).contains(&slot) {
                let port = match master.items().get(1) {
                    Some(Reply::Int(port)) => *port,
                    _ => bail!("CLUSTER SLOTS: no master port"),
                };
                return self
                    .nodes
                    .iter()
                    .position(|n| i64::from(n.port) == port)
                    .context("the slot's master is not one of ours");
            }
        }
        bail!("no master for slot {slot}")
    }
}
