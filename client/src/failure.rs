//! Turning what rmcp and reqwest report into one clear sentence and an exit code: a user
//! reads "cannot reach http://...: connection refused", not a chain of wrapper types.

use rmcp::service::{ClientInitializeError, ServiceError};
use rmcp::transport::streamable_http_client::StreamableHttpError;
use std::error::Error;
use std::fmt;

/// Exit status: a command or tool failed.
pub const EXIT_COMMAND: u8 = 1;
/// Exit status: bad command line (clap uses it too).
pub const EXIT_USAGE: u8 = 2;
/// Exit status: the server could not be reached, or the session was lost.
pub const EXIT_CONNECTION: u8 = 3;
/// Exit status: stopped by Ctrl-C (128 + SIGINT, as shells report it).
pub const EXIT_INTERRUPTED: u8 = 130;

/// Why something did not work, as a sentence the user can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// A command failed but the session is fine (tool error, bad arguments).
    Command(String),
    /// The command line was wrong.
    Usage(String),
    /// The connection or the session is gone: nothing more can be done.
    Connection(String),
    /// The user pressed Ctrl-C.
    Interrupted,
}

impl Failure {
    /// The sentence.
    pub fn sentence(&self) -> &str {
        match self {
            Self::Command(s) | Self::Usage(s) | Self::Connection(s) => s,
            Self::Interrupted => "interrupted",
        }
    }

    /// The process exit status for it.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Command(_) => EXIT_COMMAND,
            Self::Usage(_) => EXIT_USAGE,
            Self::Connection(_) => EXIT_CONNECTION,
            Self::Interrupted => EXIT_INTERRUPTED,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.sentence())
    }
}

/// The innermost cause of an error, which is usually the one that names the problem
/// ("connection refused" rather than "error sending request").
pub fn root_cause(error: &(dyn Error + 'static)) -> String {
    let mut current = error;
    while let Some(next) = current.source() {
        current = next;
    }
    if let Some(io) = current.downcast_ref::<std::io::Error>()
        && io.get_ref().is_none()
    {
        // `Connection refused (os error 111)` reads better as its kind.
        return io.kind().to_string();
    }
    current.to_string()
}

/// The innermost cause of a transport error (rmcp's `Client` variant does not chain its
/// source, so it is unwrapped here).
pub fn transport_cause(error: &StreamableHttpError<reqwest::Error>) -> String {
    match error {
        StreamableHttpError::Client(e) => root_cause(e),
        other => root_cause(other),
    }
}

/// Why `initialize` failed.
pub fn from_initialize(error: &ClientInitializeError, url: &str) -> Failure {
    match error {
        ClientInitializeError::TransportError { error, .. } => {
            from_transport(error.error.as_ref(), url)
        }
        ClientInitializeError::JsonRpcError(e) => Failure::Connection(format!(
            "the server at {url} refused to start a session: {} (error {})",
            e.message, e.code.0
        )),
        ClientInitializeError::ConnectionClosed(_) => Failure::Connection(format!(
            "the connection to {url} closed before the session started"
        )),
        other => Failure::Connection(format!(
            "the server at {url} did not start an MCP session: {other}"
        )),
    }
}

/// Why a request (`what`: "tool send_notification", "tools/list") failed.
pub fn from_service(error: &ServiceError, url: &str, what: &str) -> Failure {
    match error {
        ServiceError::McpError(e) => {
            Failure::Command(format!("{what} failed: {} (error {})", e.message, e.code.0))
        }
        ServiceError::TransportSend(e) => from_transport(e.error.as_ref(), url),
        ServiceError::TransportClosed => {
            Failure::Connection(format!("the connection to {url} is closed"))
        }
        ServiceError::Timeout { timeout } => Failure::Command(format!(
            "{what} got no answer within {:.1} s",
            timeout.as_secs_f64()
        )),
        ServiceError::Cancelled { .. } => {
            Failure::Connection(format!("the session with {url} was closed"))
        }
        other => Failure::Command(format!("{what} failed: {other}")),
    }
}

/// Why the HTTP transport failed, from anywhere in its error chain.
pub fn from_transport(error: &(dyn Error + Send + Sync + 'static), url: &str) -> Failure {
    let mut current: Option<&(dyn Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(e) = e.downcast_ref::<StreamableHttpError<reqwest::Error>>() {
            return from_http(e, url);
        }
        if let Some(e) = e.downcast_ref::<reqwest::Error>() {
            return from_reqwest(e, url);
        }
        current = e.source();
    }
    Failure::Connection(format!(
        "the connection to {url} failed: {}",
        root_cause(error)
    ))
}

fn from_http(error: &StreamableHttpError<reqwest::Error>, url: &str) -> Failure {
    use StreamableHttpError as E;
    let sentence = match error {
        E::SessionExpired => "the server ended the session (HTTP 404)".to_owned(),
        E::AuthRequired(_) => format!(
            "the server at {url} requires authorization (HTTP 401): pass --bearer TOKEN or --header"
        ),
        E::InsufficientScope(_) => {
            format!("the server at {url} refused these credentials (HTTP 403, insufficient scope)")
        }
        E::HttpStatus(status) => format!("the server at {url} answered HTTP {}", status.status),
        E::Client(e) => return from_reqwest(e, url),
        E::UnexpectedContentType(ct) => format!(
            "{url} did not answer like an MCP endpoint (content type {})",
            ct.as_deref().unwrap_or("missing")
        ),
        E::UnexpectedServerResponse(msg) => format!(
            "{url} did not answer like an MCP endpoint: {}",
            msg.trim_end_matches([':', ' '])
        ),
        E::TransportChannelClosed => format!("the connection to {url} is closed"),
        E::MissingSessionIdInResponse => {
            format!("the server at {url} did not give the client a session id")
        }
        other => format!("the connection to {url} failed: {}", root_cause(other)),
    };
    Failure::Connection(sentence)
}

fn from_reqwest(error: &reqwest::Error, url: &str) -> Failure {
    let sentence = if error.is_connect() {
        format!("cannot reach {url}: {}", root_cause(error))
    } else if error.is_timeout() {
        format!("{url} did not answer in time")
    } else if let Some(status) = error.status() {
        format!("the server at {url} answered HTTP {}", status.as_u16())
    } else {
        format!("the connection to {url} failed: {}", root_cause(error))
    };
    Failure::Connection(sentence)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expired_session_is_named_as_such() {
        let e: Box<dyn Error + Send + Sync> =
            Box::new(StreamableHttpError::<reqwest::Error>::SessionExpired);
        let f = from_transport(e.as_ref(), "http://x/mcp");
        assert_eq!(
            f,
            Failure::Connection("the server ended the session (HTTP 404)".into())
        );
        assert_eq!(f.exit_code(), EXIT_CONNECTION);
    }

    #[test]
    fn the_root_cause_names_an_io_error_by_its_kind() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(root_cause(&io), "connection refused");
    }
}
