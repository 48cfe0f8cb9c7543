//! Child processes: the gateway binary, started on an ephemeral loopback port.

use anyhow::{Context, bail};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Path of a workspace binary, built (once per test process) with the same profile as the
/// tests, so `cargo test` alone is enough to run them.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build", "--quiet", "-p", "gateway", "-p", "worker", "--bins",
            ])
            .current_dir(workspace_root())
            .status()
            .expect("run cargo build for the gateway and worker binaries");
        assert!(status.success(), "building the binaries failed");
    });
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    target.join("debug").join(name)
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

/// A running `mcp-gateway`. Killed when dropped.
pub struct Gateway {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Gateway {
    /// Starts a gateway with extra flags, on an ephemeral port; returns once it serves.
    pub fn start(extra: &[&str]) -> anyhow::Result<Self> {
        Self::start_with_env(extra, &[])
    }

    /// Like [`Gateway::start`], with extra environment variables.
    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::start_binary(&binary("mcp-gateway"), extra, env)
    }

    /// Like [`Gateway::start_with_env`], for another binary built on `gateway::cli` (a
    /// library user's own gateway, as in `examples/`).
    pub fn start_binary(
        program: &std::path::Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        Self::start_listening(program, "127.0.0.1:0", extra, env)
    }

    /// Like [`Gateway::start`], on a given address (a server that comes up where a
    /// client already looks for it).
    pub fn start_at(listen: &str, extra: &[&str]) -> anyhow::Result<Self> {
        Self::start_listening(&binary("mcp-gateway"), listen, extra, &[])
    }

    fn start_listening(
        program: &std::path::Path,
        listen: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let mut child = Command::new(program)
            .args(["--listen", listen, "--log-format", "json"])
            .args(extra)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("spawn {}", program.display()))?;
        let stderr = child.stderr.take().context("gateway stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log_sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                    && let Some(addr) = v["fields"]["listen"].as_str()
                {
                    let _ = tx.send(addr.to_owned());
                }
                if let Ok(mut log) = log_sink.lock() {
                    log.push(line);
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                bail!(
                    "the gateway did not report its address; log: {:?}",
                    log.lock().map(|l| l.clone())
                );
            }
        };
        Ok(Self {
            child,
            base: format!("http://{addr}"),
            log,
        })
    }

    /// The MCP endpoint.
    pub fn url(&self) -> String {
        format!("{}/mcp", self.base)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM (graceful shutdown).
    pub fn terminate(&self) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -TERM failed");
        Ok(())
    }

    /// Sends SIGHUP (reload the policy file).
    pub fn hangup(&self) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -HUP failed");
        Ok(())
    }

    /// Waits for the process to exit; returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<Option<i32>> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status.code());
            }
            if start.elapsed() > timeout {
                bail!("the gateway did not exit within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The log lines so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `mcp-worker`. Killed when dropped.
pub struct WorkerProcess {
    child: Child,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// The address of its metrics listener, when started with `--metrics-listen`.
    pub metrics_addr: Option<String>,
}

impl WorkerProcess {
    /// Starts a worker on `redis_url` with extra flags; returns once it serves jobs.
    pub fn start(redis_url: &str, extra: &[&str]) -> anyhow::Result<Self> {
        Self::start_with_env(redis_url, extra, &[])
    }

    /// Like [`WorkerProcess::start`], with extra environment variables.
    pub fn start_with_env(
        redis_url: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        Self::start_binary(&binary("mcp-worker"), redis_url, extra, env)
    }

    /// Like [`WorkerProcess::start_with_env`], for another binary built on `worker::cli`
    /// (a library user's own worker, as in `examples/`).
    pub fn start_binary(
        program: &std::path::Path,
        redis_url: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let mut child = Command::new(program)
            .args(["--redis-url", redis_url, "--log-format", "json"])
            .args(extra)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("spawn {}", program.display()))?;
        let stderr = child.stderr.take().context("worker stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut metrics_addr = None;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut log) = sink.lock() {
                    log.push(line.clone());
                }
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                    && v["fields"]["message"] == "metrics serving"
                {
                    metrics_addr = v["fields"]["listen"].as_str().map(str::to_owned);
                }
                if line.contains("worker serving jobs") {
                    let _ = tx.send(metrics_addr.clone());
                }
            }
        });
        let Ok(metrics_addr) = rx.recv_timeout(Duration::from_secs(60)) else {
            let _ = child.kill();
            bail!("the worker did not start");
        };
        Ok(Self {
            child,
            log,
            metrics_addr,
        })
    }

    /// The log lines so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process still runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL: the worker dies mid-whatever.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Gateway {
    /// SIGKILL: the gateway dies mid-stream.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Memory use of a process, from `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// `VmRSS`: resident now, in KiB.
    pub rss_kib: u64,
    /// `VmHWM`: the most it was ever resident ("high water mark"), in KiB.
    pub hwm_kib: u64,
}

/// Reads the memory use of process `pid`; `None` when it is gone (or not Linux).
pub fn memory(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |field: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(field))?;
        line[field.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    };
    Some(Memory {
        rss_kib: kib("VmRSS:")?,
        hwm_kib: kib("VmHWM:")?,
    })
}
