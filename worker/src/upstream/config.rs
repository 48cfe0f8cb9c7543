//! Upstream configuration: `--upstream NAME=URL`, `--upstream NAME=stdio:COMMAND ARG...`
//! and `--upstreams FILE` (TOML), shared by `mcp-worker` and the standalone gateway's
//! embedded worker.

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Why an upstream configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A `--upstream` value that is not `NAME=URL` or `NAME=stdio:COMMAND ARG...`.
    #[error("--upstream {0:?}: expected NAME=URL or NAME=stdio:COMMAND [ARG...]")]
    Flag(String),
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown or mistyped fields.
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        source: Box<toml::de::Error>,
    },
    /// Anything else wrong with one upstream.
    #[error("upstream {name:?}: {message}")]
    Invalid {
        /// The upstream.
        name: String,
        /// What is wrong.
        message: String,
    },
}

/// The command-line flags (flattened into both binaries' arguments).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct UpstreamArgs {
    /// An upstream MCP server whose tools this worker serves: `NAME=URL` (Streamable
    /// HTTP) or `NAME=stdio:COMMAND ARG...` (a child process per session; arguments split
    /// on whitespace). Repeatable. Its tools are listed as `NAME_TOOL`.
    #[arg(long = "upstream", env = "MCPGW_UPSTREAM")]
    pub upstream: Vec<String>,
    /// A TOML file of upstreams (see docs/upstreams.md): URL or command, headers,
    /// prefix, include/exclude, timeouts, session mode.
    #[arg(long = "upstreams", env = "MCPGW_UPSTREAMS_FILE")]
    pub upstreams_file: Option<PathBuf>,
}

impl UpstreamArgs {
    /// Every upstream the flags name (the file's first, then the `--upstream` ones).
    pub fn load(&self) -> Result<Vec<UpstreamConfig>, ConfigError> {
        let mut all = match &self.upstreams_file {
            Some(path) => load_file(path)?,
            None => Vec::new(),
        };
        for flag in &self.upstream {
            all.push(parse_flag(flag)?);
        }
        let mut names = std::collections::BTreeSet::new();
        for u in &all {
            if !names.insert(u.name.clone()) {
                return Err(ConfigError::Invalid {
                    name: u.name.clone(),
                    message: "named twice".into(),
                });
            }
        }
        Ok(all)
    }
}

/// How an upstream is reached.
#[derive(Debug, Clone, PartialEq)]
pub enum Transport {
    /// Streamable HTTP at this URL, with these static headers.
    Http {
        /// The MCP endpoint.
        url: String,
        /// Sent on every request (credentials of the operator, never the client's).
        headers: BTreeMap<String, String>,
    },
    /// A child process speaking MCP on stdin/stdout.
    Stdio {
        /// The program.
        command: String,
        /// Its arguments.
        args: Vec<String>,
        /// Extra environment variables.
        env: BTreeMap<String, String>,
        /// Working directory (the worker's when absent).
        cwd: Option<PathBuf>,
    },
}

/// Whether each downstream session gets its own upstream session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SessionMode {
    /// One upstream session per downstream session, opened at its first call and closed
    /// when it ends: right for stateful servers.
    #[default]
    PerSession,
    /// One upstream session for every call: for stateless servers.
    Shared,
}

/// One upstream, resolved (secrets read, globs compiled).
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Its name (labels, logs, the default prefix).
    pub name: String,
    /// How it is reached.
    pub transport: Transport,
    /// Put before each of its tool names in the cluster's catalog.
    pub prefix: String,
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
    /// Longest a call may take upstream.
    pub call_timeout: Duration,
    /// Longest `initialize` may take (a stdio child that misses it is killed).
    pub connect_timeout: Duration,
    /// How often the worker checks the upstream (and refreshes its tools) while it is up,
    /// and retries while it is down.
    pub health_interval: Duration,
    /// Calls running upstream at once from this worker; more wait (within their timeout).
    pub max_concurrency: usize,
    /// Stdio children (upstream sessions) this worker keeps at once; a session past it gets
    /// an error.
    pub max_sessions: usize,
    /// Upstream tool names that may run again on another worker after theirs died.
    pub retryable: Vec<String>,
    /// Per-session or shared upstream sessions.
    pub session_mode: SessionMode,
}

impl UpstreamConfig {
    /// Whether an upstream tool named `name` is served (include/exclude).
    pub fn admits(&self, name: &str) -> bool {
        self.include.as_ref().is_none_or(|g| g.is_match(name))
            && !self.exclude.as_ref().is_some_and(|g| g.is_match(name))
    }

    /// A stdio upstream.
    pub fn is_stdio(&self) -> bool {
        matches!(self.transport, Transport::Stdio { .. })
    }

    fn new(name: &str, transport: Transport) -> Self {
        Self {
            name: name.to_owned(),
            transport,
            prefix: format!("{name}_"),
            include: None,
            exclude: None,
            call_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            health_interval: Duration::from_secs(5),
            max_concurrency: 64,
            max_sessions: 32,
            retryable: Vec::new(),
            session_mode: SessionMode::PerSession,
        }
    }
}

fn check_name(name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            name: name.to_owned(),
            message: "a name is letters, digits, '_', '-' or '.'".into(),
        })
    }
}

/// Parses one `--upstream` value.
pub fn parse_flag(flag: &str) -> Result<UpstreamConfig, ConfigError> {
    let (name, target) = flag
        .split_once('=')
        .ok_or_else(|| ConfigError::Flag(flag.to_owned()))?;
    check_name(name)?;
    let transport = if let Some(command) = target.strip_prefix("stdio:") {
        let mut words = command.split_whitespace().map(str::to_owned);
        let command = words
            .next()
            .ok_or_else(|| ConfigError::Flag(flag.to_owned()))?;
        Transport::Stdio {
            command,
            args: words.collect(),
            env: BTreeMap::new(),
            cwd: None,
        }
    } else if target.starts_with("http://") || target.starts_with("https://") {
        Transport::Http {
            url: target.to_owned(),
            headers: BTreeMap::new(),
        }
    } else {
        return Err(ConfigError::Flag(flag.to_owned()));
    };
    Ok(UpstreamConfig::new(name, transport))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    upstream: Vec<FileUpstream>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileUpstream {
    name: String,
    url: Option<String>,
    command: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    cwd: Option<PathBuf>,
    #[serde(default)]
    headers: BTreeMap<String, HeaderValue>,
    prefix: Option<String>,
    include: Option<Vec<String>>,
    #[serde(default)]
    exclude: Vec<String>,
    timeout_ms: Option<u64>,
    connect_timeout_ms: Option<u64>,
    health_interval_ms: Option<u64>,
    max_concurrency: Option<usize>,
    max_sessions: Option<usize>,
    #[serde(default)]
    retryable: Vec<String>,
    session: Option<SessionMode>,
}

/// A header value: literal, or read from the environment or a file (for secrets).
#[derive(Deserialize)]
#[serde(untagged)]
enum HeaderValue {
    Literal(String),
    Env { env: String },
    File { file: PathBuf },
}

fn load_file(path: &PathBuf) -> Result<Vec<UpstreamConfig>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
    })?;
    parse_file(&text).map_err(|e| match e {
        FileError::Toml(source) => ConfigError::Parse {
            path: path.clone(),
            source: Box::new(source),
        },
        FileError::Config(e) => e,
    })
}

enum FileError {
    Toml(toml::de::Error),
    Config(ConfigError),
}

fn parse_file(text: &str) -> Result<Vec<UpstreamConfig>, FileError> {
    let file: File = toml::from_str(text).map_err(FileError::Toml)?;
    file.upstream
        .into_iter()
        .map(|u| resolve(u).map_err(FileError::Config))
        .collect()
}

fn resolve(u: FileUpstream) -> Result<UpstreamConfig, ConfigError> {
    check_name(&u.name)?;
    let invalid = |message: String| ConfigError::Invalid {
        name: u.name.clone(),
        message,
    };
    let transport = match (&u.url, &u.command) {
        (Some(url), None) => {
            let mut headers = BTreeMap::new();
            for (key, value) in &u.headers {
                let value = match value {
                    HeaderValue::Literal(v) => v.clone(),
                    HeaderValue::Env { env } => std::env::var(env)
                        .map_err(|_| invalid(format!("header {key}: ${env} is not set")))?,
                    HeaderValue::File { file } => std::fs::read_to_string(file)
                        .map_err(|e| invalid(format!("header {key}: {}: {e}", file.display())))?
                        .trim_end()
                        .to_owned(),
                };
                headers.insert(key.clone(), value);
            }
            Transport::Http {
                url: url.clone(),
                headers,
            }
        }
        (None, Some(command)) => {
            if !u.headers.is_empty() {
                return Err(invalid("headers apply to url upstreams only".into()));
            }
            Transport::Stdio {
                command: command.clone(),
                args: u.args.clone(),
                env: u.env.clone(),
                cwd: u.cwd.clone(),
            }
        }
        _ => return Err(invalid("needs exactly one of url and command".into())),
    };
    let mut config = UpstreamConfig::new(&u.name, transport);
    if let Some(prefix) = u.prefix {
        config.prefix = prefix;
    }
    config.include = u
        .include
        .as_deref()
        .map(globs)
        .transpose()
        .map_err(&invalid)?;
    if !u.exclude.is_empty() {
        config.exclude = Some(globs(&u.exclude).map_err(&invalid)?);
    }
    let ms = Duration::from_millis;
    if let Some(t) = u.timeout_ms {
        config.call_timeout = ms(t.max(1));
    }
    if let Some(t) = u.connect_timeout_ms {
        config.connect_timeout = ms(t.max(1));
    }
    if let Some(t) = u.health_interval_ms {
        config.health_interval = ms(t.max(50));
    }
    if let Some(n) = u.max_concurrency {
        config.max_concurrency = n.max(1);
    }
    if let Some(n) = u.max_sessions {
        config.max_sessions = n.max(1);
    }
    config.retryable = u.retryable;
    config.session_mode = u.session.unwrap_or_default();
    Ok(config)
}

fn globs(patterns: &[String]) -> Result<GlobSet, String> {
    let mut set = GlobSetBuilder::new();
    for p in patterns {
        set.add(Glob::new(p).map_err(|e| format!("glob {p:?}: {e}"))?);
    }
    set.build().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> Result<Vec<UpstreamConfig>, String> {
        parse_file(text).map_err(|e| match e {
            FileError::Toml(e) => e.to_string(),
            FileError::Config(e) => e.to_string(),
        })
    }

    #[test]
    fn flags_name_http_and_stdio_upstreams() {
        let http = parse_flag("seed=http://127.0.0.1:8001/mcp").unwrap();
        assert_eq!(http.prefix, "seed_");
        assert_eq!(http.session_mode, SessionMode::PerSession);
        let stdio = parse_flag("py=stdio:python3 server.py --stdio").unwrap();
        assert_eq!(
            stdio.transport,
            Transport::Stdio {
                command: "python3".into(),
                args: vec!["server.py".into(), "--stdio".into()],
                env: BTreeMap::new(),
                cwd: None
            }
        );
        assert!(parse_flag("seed").is_err());
        assert!(parse_flag("seed=ftp://x").is_err());
        assert!(parse_flag("bad name=http://x").is_err());
        assert!(parse_flag("py=stdio:").is_err());
    }

    #[test]
    fn the_file_takes_every_option() {
        // SAFETY: set before any thread reads it; the tests of this module do not race on it.
        unsafe { std::env::set_var("UPSTREAM_TEST_TOKEN", "s3cret") };
        let all = file(
            r#"
            [[upstream]]
            name = "seed"
            url = "http://127.0.0.1:8001/mcp"
            prefix = ""
            include = ["send_*", "long_*"]
            exclude = ["*_secret"]
            timeout_ms = 2500
            max_concurrency = 4
            retryable = ["send_notification"]
            session = "shared"
            headers = { Authorization = { env = "UPSTREAM_TEST_TOKEN" }, X-Team = "blue" }

            [[upstream]]
            name = "py"
            command = "python3"
            args = ["server.py"]
            env = { A = "1" }
            "#,
        )
        .unwrap();
        let seed = &all[0];
        assert_eq!(seed.prefix, "");
        assert!(seed.admits("send_notification"));
        assert!(!seed.admits("send_secret"));
        assert!(!seed.admits("broadcast"));
        assert_eq!(seed.call_timeout, Duration::from_millis(2500));
        assert_eq!(seed.session_mode, SessionMode::Shared);
        let Transport::Http { headers, .. } = &seed.transport else {
            panic!("http")
        };
        assert_eq!(headers["Authorization"], "s3cret");
        assert_eq!(headers["X-Team"], "blue");
        assert!(all[1].is_stdio());
        assert!(all[1].admits("anything"));
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let e = file("[[upstream]]\nname = \"x\"\n").unwrap_err();
        assert!(e.contains("exactly one of url and command"), "{e}");
        let e = file("[[upstream]]\nname = \"x\"\nurl = \"http://a\"\ntypo = 1\n").unwrap_err();
        assert!(e.contains("typo"), "{e}");
        let e = file("[[upstream]]\nname = \"x\"\nurl = \"http://a\"\nsession = \"sometimes\"\n")
            .unwrap_err();
        assert!(e.contains("sometimes") || e.contains("variant"), "{e}");
        let e = file(
            "[[upstream]]\nname = \"x\"\nurl = \"http://a\"\nheaders = { A = { env = \"NOPE_NOT_SET_42\" } }\n",
        )
        .unwrap_err();
        assert!(e.contains("NOPE_NOT_SET_42"), "{e}");
    }
}
