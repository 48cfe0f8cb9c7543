//! The gateway's configuration: one struct, parsed by clap, every flag with an
//! `MCPGW_*` environment twin and a documented default.

use clap::Parser;
use std::net::SocketAddr;
use std::time::Duration;

/// The MCP notification gateway: Streamable HTTP for MCP clients, tools run by workers.
#[derive(Parser, Debug, Clone)]
#[command(name = "mcp-gateway", version, about)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "MCPGW_LISTEN", default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,

    /// Tool sets the embedded worker serves (repeatable or comma-separated). Default:
    /// `demo` in `mcp-gateway`; a custom binary chooses its own default.
    #[arg(long = "toolset", env = "MCPGW_TOOLSET", value_delimiter = ',')]
    pub toolsets: Vec<String>,

    /// Upstream MCP servers the embedded worker serves (docs/upstreams.md).
    #[command(flatten)]
    pub upstreams: worker::upstream::UpstreamArgs,

    /// Redis URL of a shared bus. Without it the gateway runs standalone: an in-memory
    /// bus and an embedded worker in this process.
    #[arg(long, env = "MCPGW_REDIS_URL")]
    pub redis_url: Option<String>,

    /// How `--redis-url` is read: `single` (one Redis), `sentinel` (`--redis-url` lists
    /// the sentinels, comma separated, e.g. `redis://s1:26379,redis://s2:26379`; the bus
    /// connects to the master they name and follows their failovers) or `cluster` (a
    /// Redis Cluster; `--redis-url` lists seed nodes, comma separated).
    #[arg(long, env = "MCPGW_REDIS_MODE", default_value = "single", value_parser = ["single", "sentinel", "cluster"])]
    pub redis_mode: String,

    /// With `--redis-mode sentinel`: the name of the master the sentinels monitor.
    #[arg(long, env = "MCPGW_REDIS_SENTINEL_MASTER", default_value = "mymaster")]
    pub redis_sentinel_master: String,

    /// Prefix of every Redis key and channel (several deployments can share one Redis).
    #[arg(long, env = "MCPGW_REDIS_PREFIX", default_value = "mcpgw")]
    pub redis_prefix: String,

    /// With --redis-url, also run a worker inside the gateway process (normally workers
    /// are separate `mcp-worker` processes).
    #[arg(long, env = "MCPGW_EMBEDDED_WORKER")]
    pub embedded_worker: bool,

    /// Serve without sessions: no `Mcp-Session-Id`, no GET stream, no DELETE (like the
    /// SDKs' stateless mode).
    #[arg(long, env = "MCPGW_STATELESS")]
    pub stateless: bool,

    /// Do not serve the console page at `/` (a browser MCP client of this gateway).
    #[arg(long, env = "MCPGW_NO_CONSOLE")]
    pub no_console: bool,

    /// Origins allowed to call the MCP endpoint (exact `scheme://host[:port]`, or `*`).
    /// Default: loopback origins when listening on loopback, none otherwise. Requests
    /// without an `Origin` header (non-browser clients) are always allowed.
    #[arg(
        long = "allowed-origin",
        env = "MCPGW_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,

    /// Host names allowed in the `Host` header (`*` for any). Default: loopback names when
    /// listening on loopback (DNS-rebinding protection), any otherwise.
    #[arg(
        long = "allowed-host",
        env = "MCPGW_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    pub allowed_hosts: Vec<String>,

    /// Static bearer tokens, `PRINCIPAL:TOKEN` (repeatable or comma-separated). Turns
    /// authentication on. Tokens are compared in constant time.
    #[arg(
        long = "auth-token",
        env = "MCPGW_AUTH_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub auth_tokens: Vec<String>,

    /// A file of static bearer tokens, one `PRINCIPAL:TOKEN` per line (`#` comments).
    #[arg(long, env = "MCPGW_AUTH_TOKEN_FILE")]
    pub auth_token_file: Option<std::path::PathBuf>,

    /// A JWKS file of keys that sign JWT access tokens (RS256, ES256, EdDSA). Turns
    /// authentication on.
    #[arg(long, env = "MCPGW_JWT_JWKS_FILE")]
    pub jwt_jwks_file: Option<std::path::PathBuf>,

    /// A JWKS URL, fetched at start, every 5 minutes, and when a token names an unknown key.
    #[arg(long, env = "MCPGW_JWT_JWKS_URL")]
    pub jwt_jwks_url: Option<String>,

    /// A shared secret for HS256 JWTs. Turns authentication on.
    #[arg(long, env = "MCPGW_JWT_HS256_SECRET", hide_env_values = true)]
    pub jwt_hs256_secret: Option<String>,

    /// The issuer (`iss`) JWTs must carry.
    #[arg(long, env = "MCPGW_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// The audience (`aud`) JWTs must carry; defaults to `--resource-url`.
    #[arg(long, env = "MCPGW_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Scopes a token must grant (repeatable); a token without them gets 403.
    #[arg(
        long = "required-scope",
        env = "MCPGW_REQUIRED_SCOPES",
        value_delimiter = ','
    )]
    pub required_scopes: Vec<String>,

    /// This gateway's public MCP URL (the OAuth protected resource), e.g.
    /// `https://mcp.example.com/mcp`. Default: derived from each request's Host.
    #[arg(long, env = "MCPGW_RESOURCE_URL")]
    pub resource_url: Option<String>,

    /// Authorization servers to list in the protected resource metadata (repeatable).
    #[arg(
        long = "authorization-server",
        env = "MCPGW_AUTHORIZATION_SERVERS",
        value_delimiter = ','
    )]
    pub authorization_servers: Vec<String>,

    /// Live sessions one principal may hold (0: no limit).
    #[arg(long, env = "MCPGW_MAX_SESSIONS_PER_PRINCIPAL", default_value_t = 0)]
    pub max_sessions_per_principal: u64,

    /// Requests one session may have running at once on this gateway (0: no limit).
    #[arg(
        long,
        env = "MCPGW_MAX_CONCURRENT_REQUESTS_PER_SESSION",
        default_value_t = 64
    )]
    pub max_concurrent_requests_per_session: u32,

    /// SSE streams one session may hold open at once on this gateway (0: no limit).
    #[arg(long, env = "MCPGW_MAX_STREAMS_PER_SESSION", default_value_t = 64)]
    pub max_streams_per_session: u32,

    /// Requests per second one principal may send to this gateway (0: no limit).
    #[arg(long, env = "MCPGW_RATE_LIMIT_PER_SECOND", default_value_t = 0)]
    pub rate_limit_per_second: u32,

    /// Burst above the rate a principal may send at once.
    #[arg(long, env = "MCPGW_RATE_LIMIT_BURST", default_value_t = 50)]
    pub rate_limit_burst: u32,

    /// A policy file (TOML; docs/policies.md): who may list and use which tools, prompts
    /// and resources, and quotas. With it, everything not allowed is denied; without it,
    /// every caller may use everything. Reloaded when it changes and on SIGHUP.
    #[arg(long = "policy", env = "MCPGW_POLICY_FILE")]
    pub policy: Option<std::path::PathBuf>,

    /// How often the policy file is checked for changes, in milliseconds.
    #[arg(long, env = "MCPGW_POLICY_POLL_MS", default_value_t = 1000)]
    pub policy_poll_ms: u64,

    /// Write an audit record per tool call, prompt get and resource read to the log
    /// (target `mcpgw::audit`).
    #[arg(long, env = "MCPGW_AUDIT")]
    pub audit: bool,

    /// Put the arguments themselves in audit records (by default only their SHA-256).
    #[arg(long, env = "MCPGW_AUDIT_ARGUMENTS")]
    pub audit_arguments: bool,

    /// Also append audit records to the Redis stream `<prefix>:{audit}:stream` (implies --audit;
    /// needs --redis-url).
    #[arg(long, env = "MCPGW_AUDIT_STREAM")]
    pub audit_stream: bool,

    /// Entries the audit stream keeps, about (`XADD MAXLEN ~`).
    #[arg(long, env = "MCPGW_AUDIT_STREAM_LEN", default_value_t = 100_000)]
    pub audit_stream_len: usize,

    /// Largest request body accepted, in bytes.
    #[arg(long, env = "MCPGW_MAX_BODY_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// A session unused for this many seconds expires.
    #[arg(long, env = "MCPGW_SESSION_IDLE_TTL_SECS", default_value_t = 1800)]
    pub session_idle_ttl_secs: u64,

    /// Events kept per session for resumption (`Last-Event-ID`).
    #[arg(long, env = "MCPGW_EVENT_LOG_LEN", default_value_t = 1024)]
    pub event_log_len: usize,

    /// Events a stream may fall behind before the gateway closes it (the client resumes).
    #[arg(long, env = "MCPGW_STREAM_QUEUE_LEN", default_value_t = 256)]
    pub stream_queue_len: usize,

    /// Seconds between keep-alive comments on idle SSE streams.
    #[arg(long, env = "MCPGW_KEEPALIVE_SECS", default_value_t = 15)]
    pub keepalive_secs: u64,

    /// The SSE `retry` hint, in milliseconds, sent when the server closes a stream the
    /// client should resume.
    #[arg(long, env = "MCPGW_SSE_RETRY_MS", default_value_t = 1000)]
    pub sse_retry_ms: u64,

    /// Deadline of a tool call, in seconds.
    #[arg(long, env = "MCPGW_JOB_TIMEOUT_SECS", default_value_t = 300)]
    pub job_timeout_secs: u64,

    /// Jobs queued for workers before new calls are refused.
    #[arg(long, env = "MCPGW_JOB_QUEUE_LEN", default_value_t = 10_000)]
    pub job_queue_len: usize,

    /// Jobs the embedded worker runs at once.
    #[arg(long, env = "MCPGW_WORKER_CONCURRENCY", default_value_t = 1024)]
    pub worker_concurrency: usize,

    /// On SIGTERM/SIGINT, seconds open request streams get to finish.
    #[arg(long, env = "MCPGW_DRAIN_TIMEOUT_SECS", default_value_t = 10)]
    pub drain_timeout_secs: u64,

    // The HTTP edge's connections (gateway/src/http/serve.rs; docs/security.md).
    /// Seconds a client has to send a complete request head, from when the gateway starts
    /// waiting for it (a new connection, or a keep-alive one after its last response);
    /// 0: no bound. Closes slowloris connections.
    #[arg(long, env = "MCPGW_HEADER_READ_TIMEOUT_SECS", default_value_t = 10)]
    pub header_read_timeout_secs: u64,

    /// Seconds a connection with no request in flight (an open SSE stream is one) and no
    /// byte moving stays open; 0: no bound.
    #[arg(long, env = "MCPGW_IDLE_TIMEOUT_SECS", default_value_t = 60)]
    pub idle_timeout_secs: u64,

    /// Open connections at most; past it a new connection gets 503 with `Retry-After`
    /// and is closed. 0: no cap (the descriptor limit is then the ceiling).
    #[arg(long, env = "MCPGW_MAX_CONNECTIONS", default_value_t = 50_000)]
    pub max_connections: usize,

    /// Log format: `text` or `json`.
    #[arg(long, env = "MCPGW_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

impl Config {
    /// The defaults, as if no flag were given (for tests and embedding).
    pub fn defaults() -> Self {
        Self::parse_from(["mcp-gateway"])
    }

    /// The job deadline.
    pub fn job_timeout(&self) -> Duration {
        Duration::from_secs(self.job_timeout_secs)
    }

    /// The drain timeout.
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.drain_timeout_secs)
    }

    /// The keep-alive interval.
    pub fn keepalive(&self) -> Duration {
        Duration::from_secs(self.keepalive_secs.max(1))
    }

    /// The idle TTL of sessions.
    pub fn session_idle_ttl(&self) -> Duration {
        Duration::from_secs(self.session_idle_ttl_secs.max(1))
    }
}
