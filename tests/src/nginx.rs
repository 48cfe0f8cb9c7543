//! nginx as the deployment runs it: `deploy/nginx/mcp.conf` included verbatim, in front of
//! gateways on loopback ports. Needs the Debian package `nginx` (`.ci/run` installs it).

use crate::redis::free_port;
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// An nginx in the foreground (`daemon off; master_process off`) on a free loopback port,
/// with every path it writes inside its own directory. Killed when dropped.
pub struct Nginx {
    child: Child,
    dir: PathBuf,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl Nginx {
    /// The shared location file of the deployment.
    pub fn shared_conf() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy/nginx/mcp.conf")
            .canonicalize()
            .expect("deploy/nginx/mcp.conf exists")
    }

    pub fn binary() -> anyhow::Result<PathBuf> {
        let on_path = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .unwrap_or_default();
        on_path
            .into_iter()
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
            .map(|dir| dir.join("nginx"))
            .find(|p| p.is_file())
            .context("nginx not found: install the Debian package `nginx` (`.ci/run` installs it)")
    }

    /// Starts nginx balancing over `upstreams` (`host:port` each); returns once it serves.
    pub fn start(upstreams: &[&str]) -> anyhow::Result<Self> {
        let nginx = Self::binary()?;
        let port = free_port()?;
        let dir = std::env::temp_dir().join(format!("mcpgw-nginx-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let servers: String = upstreams
            .iter()
            .map(|u| format!("        server {u} max_fails=1 fail_timeout=5s;\n"))
            .collect();
        // The same shape as deploy/nginx/nginx.conf: only where the gateways are, where
        // nginx listens and where it writes differ. The location itself is included.
        let conf = format!(
            r#"daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 1024; }}
http {{
    log_format mcp '$request_method $status upstream=$upstream_addr session=$http_mcp_session_id';
    access_log {dir}/access.log mcp;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream mcp_gateways {{
{servers}        keepalive 16;
        keepalive_timeout 5s;
    }}
    server {{
        listen 127.0.0.1:{port};
        include {shared};
    }}
}}
"#,
            dir = dir.display(),
            shared = Self::shared_conf().display(),
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf)?;
        let child = Command::new(&nginx)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("spawn {}", nginx.display()))?;
        let mut me = Self {
            child,
            dir,
            base: format!("http://127.0.0.1:{port}"),
        };
        me.wait_serving()?;
        Ok(me)
    }

    /// Polls the load balancer's own health location (bounded).
    fn wait_serving(&mut self) -> anyhow::Result<()> {
        let start = Instant::now();
        let addr = self.base.trim_start_matches("http://").to_owned();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("nginx exited ({status}); error log:\n{}", self.error_log());
            }
            if let Ok(mut s) = std::net::TcpStream::connect(&addr) {
                use std::io::{Read, Write};
                s.set_read_timeout(Some(Duration::from_secs(2)))?;
                let _ = s.write_all(b"GET /nginx-health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
                let mut answer = String::new();
                let _ = s.read_to_string(&mut answer);
                if answer.starts_with("HTTP/1.1 200") {
                    return Ok(());
                }
            }
            if start.elapsed() > Duration::from_secs(10) {
                bail!(
                    "nginx did not serve within 10 s; error log:\n{}",
                    self.error_log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("{}/mcp", self.base)
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }

    /// `(method, status, upstream addresses tried, session)` of every logged request.
    pub fn access_log(&self) -> Vec<(String, String, String, String)> {
        std::fs::read_to_string(self.dir.join("access.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let mut parts = line.split(' ');
                let method = parts.next()?.to_owned();
                let status = parts.next()?.to_owned();
                let upstream = parts.next()?.strip_prefix("upstream=")?;
                // Retries log `a, b`: the address list may contain spaces.
                let rest: Vec<&str> = parts.collect();
                let (more, session) = rest.split_at(rest.len().saturating_sub(1));
                let upstream = std::iter::once(upstream)
                    .chain(more.iter().copied())
                    .collect::<Vec<_>>()
                    .join(" ");
                let session = session.first()?.strip_prefix("session=")?.to_owned();
                Some((method, status, upstream, session))
            })
            .collect()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
