//! Raw HTTP over loopback: one HTTP/1.1 connection per logical client, or (with
//! `--http2-connections`) HTTP/2 streams multiplexed over a few prior-knowledge h2c
//! connections per server, as a fronting HTTP/2 proxy would send them; optional source
//! addresses (127.0.0.x) so tens of thousands of connections do not run out of ports, and
//! an incremental SSE parser.

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::net::TcpSocket;

/// One `--url`: where to connect and what to put in the request line and Host header.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    pub addr: SocketAddr,
    pub authority: HeaderValue,
    pub path: String,
}

impl Target {
    pub fn parse(url: &str) -> Result<Self> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| anyhow!("only http:// URLs are supported: {url}"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let with_port = if authority.contains(':') {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        let addr = with_port
            .to_socket_addrs()
            .with_context(|| format!("resolving {authority}"))?
            .next()
            .ok_or_else(|| anyhow!("{authority} resolves to nothing"))?;
        Ok(Self {
            url: url.to_string(),
            addr,
            authority: HeaderValue::from_str(authority)?,
            path: path.to_string(),
        })
    }
}

/// Source addresses for outgoing connections, used round-robin.
pub struct Net {
    sources: Vec<IpAddr>,
    next: AtomicUsize,
    /// HTTP/2: connections per server, and the open ones by server address.
    h2_per_server: usize,
    h2: Mutex<HashMap<SocketAddr, Vec<http2::SendRequest<Full<Bytes>>>>>,
    h2_next: AtomicUsize,
}

impl Net {
    /// `count` loopback source addresses 127.0.0.1 ..= 127.0.0.<count>; 0 or 1 lets the
    /// kernel choose (127.0.0.1).
    pub fn new(count: usize) -> Self {
        let sources = if count <= 1 {
            Vec::new()
        } else {
            (1..=count.min(254))
                .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i as u8)))
                .collect()
        };
        Self {
            sources,
            next: AtomicUsize::new(0),
            h2_per_server: 0,
            h2: Mutex::new(HashMap::new()),
            h2_next: AtomicUsize::new(0),
        }
    }

    /// Sends every request as an HTTP/2 stream over `per_server` shared connections to
    /// each server (0: HTTP/1.1, a connection per client).
    pub fn with_http2(mut self, per_server: usize) -> Self {
        self.h2_per_server = per_server;
        self
    }

    /// A client's connection: a new HTTP/1.1 one, or a handle on a shared HTTP/2 one.
    pub async fn connect(&self, target: &Target) -> Result<Conn> {
        if self.h2_per_server == 0 {
            return self.connect_http1(target).await;
        }
        let pick = self.h2_next.fetch_add(1, Ordering::Relaxed) % self.h2_per_server;
        let existing = {
            let pool = self.h2.lock().unwrap_or_else(|p| p.into_inner());
            pool.get(&target.addr)
                .and_then(|conns| conns.get(pick))
                .filter(|c| !c.is_closed())
                .cloned()
        };
        let sender = match existing {
            Some(sender) => sender,
            None => {
                // Two clients may race to open the same slot; the loser's connection is
                // used once and replaced, which costs nothing measurable.
                let sender = self.handshake_http2(target).await?;
                let mut pool = self.h2.lock().unwrap_or_else(|p| p.into_inner());
                let conns = pool.entry(target.addr).or_default();
                if pick < conns.len() {
                    conns[pick] = sender.clone();
                } else {
                    conns.push(sender.clone());
                }
                sender
            }
        };
        Ok(Conn {
            sender: Sender::H2(sender),
        })
    }

    async fn handshake_http2(&self, target: &Target) -> Result<http2::SendRequest<Full<Bytes>>> {
        let stream = self.tcp(target).await?;
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .handshake::<_, Full<Bytes>>(TokioIo::new(stream))
            .await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    async fn connect_http1(&self, target: &Target) -> Result<Conn> {
        let stream = self.tcp(target).await?;
        let (sender, conn) = http1::Builder::new()
            .handshake::<_, Full<Bytes>>(TokioIo::new(stream))
            .await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn {
            sender: Sender::H1(sender),
        })
    }

    async fn tcp(&self, target: &Target) -> Result<tokio::net::TcpStream> {
        let socket = if target.addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if !self.sources.is_empty() && target.addr.ip().is_loopback() && target.addr.is_ipv4() {
            let i = self.next.fetch_add(1, Ordering::Relaxed) % self.sources.len();
            // Pick the port at connect() time (by the 4-tuple), not at bind() time, so each
            // source address has the whole ephemeral range for each destination.
            let one: libc::c_int = 1;
            // SAFETY: a valid socket fd and a c_int option value of the right size.
            unsafe {
                libc::setsockopt(
                    socket.as_raw_fd(),
                    libc::IPPROTO_IP,
                    libc::IP_BIND_ADDRESS_NO_PORT,
                    &one as *const _ as *const libc::c_void,
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
            socket.bind(SocketAddr::new(self.sources[i], 0))?;
        }
        let stream = socket
            .connect(target.addr)
            .await
            .with_context(|| format!("connecting to {}", target.addr))?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

/// One client's connection: its own HTTP/1.1 connection (requests one at a time), or a
/// handle on a shared HTTP/2 connection (each request a stream of it).
pub struct Conn {
    sender: Sender,
}

enum Sender {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

/// What a request carries besides method and body.
#[derive(Default, Clone, Copy)]
pub struct Headers<'a> {
    pub session: Option<&'a str>,
    pub version: Option<&'a str>,
    pub last_event_id: Option<&'a str>,
    /// `Mcp-Method` and `Mcp-Name` (2026-07-28 requests mirror these from the body).
    pub method: Option<&'a str>,
    pub name: Option<&'a str>,
}

impl Conn {
    pub async fn send(
        &mut self,
        target: &Target,
        method: Method,
        headers: Headers<'_>,
        body: Option<Bytes>,
    ) -> Result<Response<Incoming>> {
        let mut builder = Request::builder().method(method);
        builder = match &self.sender {
            Sender::H1(_) => builder
                .uri(target.path.as_str())
                .header(http::header::HOST, target.authority.clone()),
            // HTTP/2 carries scheme and authority as pseudo-headers, from an absolute URI.
            Sender::H2(_) => builder.uri(target.url.as_str()),
        };
        if body.is_some() {
            builder = builder
                .header(http::header::CONTENT_TYPE, "application/json")
                .header(http::header::ACCEPT, "application/json, text/event-stream");
        } else {
            builder = builder.header(http::header::ACCEPT, "text/event-stream");
        }
        if let Some(s) = headers.session {
            builder = builder.header("mcp-session-id", s);
        }
        if let Some(v) = headers.version {
            builder = builder.header("mcp-protocol-version", v);
        }
        if let Some(id) = headers.last_event_id {
            builder = builder.header("last-event-id", id);
        }
        if let Some(method) = headers.method {
            builder = builder.header("mcp-method", method);
        }
        if let Some(name) = headers.name {
            builder = builder.header("mcp-name", name);
        }
        let request = builder.body(Full::new(body.unwrap_or_default()))?;
        match &mut self.sender {
            Sender::H1(sender) => {
                sender.ready().await?;
                Ok(sender.send_request(request).await?)
            }
            Sender::H2(sender) => {
                sender.ready().await?;
                Ok(sender.send_request(request).await?)
            }
        }
    }

    pub fn is_closed(&self) -> bool {
        match &self.sender {
            Sender::H1(sender) => sender.is_closed(),
            Sender::H2(sender) => sender.is_closed(),
        }
    }
}

pub fn is_sse(response: &Response<Incoming>) -> bool {
    response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"))
}

pub fn header<'a>(response: &'a Response<Incoming>, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Reads a whole body.
pub async fn read_all(body: Incoming) -> Result<Bytes> {
    Ok(body.collect().await?.to_bytes())
}

/// Fails unless the status is one of `ok`, with the body's start for context.
pub async fn expect_status(
    response: Response<Incoming>,
    ok: &[StatusCode],
) -> Result<Response<Incoming>> {
    if ok.contains(&response.status()) {
        return Ok(response);
    }
    let status = response.status();
    let body = read_all(response.into_body()).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
    bail!("HTTP {status}: {text}")
}

/// One SSE event (fields we use).
#[derive(Debug, Default)]
pub struct Event {
    pub id: Option<String>,
    pub data: Vec<u8>,
    pub retry: Option<u64>,
}

/// An incremental SSE parser: push body chunks, take complete events.
#[derive(Default)]
pub struct Sse {
    buf: Vec<u8>,
    current: Event,
    dirty: bool,
    /// The last event id seen on this stream.
    pub last_id: Option<String>,
}

impl Sse {
    /// A parser for a resumed stream, remembering the last id seen before.
    pub fn with_last_id(last_id: Option<String>) -> Self {
        Self {
            last_id,
            ..Self::default()
        }
    }

    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<Event>) {
        self.buf.extend_from_slice(chunk);
        let mut start = 0;
        while let Some(nl) = self.buf[start..].iter().position(|b| *b == b'\n') {
            let mut line = &self.buf[start..start + nl];
            start += nl + 1;
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            if line.is_empty() {
                if self.dirty {
                    let event = std::mem::take(&mut self.current);
                    if let Some(id) = &event.id {
                        self.last_id = Some(id.clone());
                    }
                    out.push(event);
                    self.dirty = false;
                }
                continue;
            }
            if line[0] == b':' {
                continue;
            }
            let (field, value) = match line.iter().position(|b| *b == b':') {
                Some(i) => {
                    let v = &line[i + 1..];
                    (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
                }
                None => (line, &b""[..]),
            };
            match field {
                b"data" => {
                    if self.dirty && !self.current.data.is_empty() {
                        self.current.data.push(b'\n');
                    }
                    self.current.data.extend_from_slice(value);
                    self.dirty = true;
                }
                b"id" => {
                    self.current.id = Some(String::from_utf8_lossy(value).into_owned());
                    self.dirty = true;
                }
                b"retry" => {
                    self.current.retry =
                        std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
                    self.dirty = true;
                }
                _ => {}
            }
        }
        self.buf.drain(..start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_split_events() {
        let mut p = Sse::default();
        let mut out = Vec::new();
        p.push(b"id: a.1\ndata: \n\n: keep\n\nid: a.2\nda", &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].id.as_deref(), Some("a.1"));
        assert!(out[0].data.is_empty());
        p.push(b"ta: {\"x\":1}\r\n\r\nretry: 5\n\n", &mut out);
        assert_eq!(out.len(), 3);
        assert_eq!(out[1].data, b"{\"x\":1}");
        assert_eq!(out[2].retry, Some(5));
        assert_eq!(p.last_id.as_deref(), Some("a.2"));
    }
}
