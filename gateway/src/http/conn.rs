//! One accepted TCP connection as the HTTP server sees it ([`EdgeIo`]): activity tracking
//! for the idle timeout, and a lingering close so that a response sent before the request
//! body was read (413, 401, 403, 415, 429) reaches the client instead of being destroyed
//! by a reset.
//!
//! Why lingering: when the gateway closes a socket whose receive buffer still holds unread
//! request bytes (the rest of a body it refused), the kernel answers with a TCP reset, and a
//! reset makes the client's kernel discard the response it has received but not yet read.
//! Clients that write their whole body before reading (httpx, nginx as a proxy) then see a
//! connection error or a 502 instead of the status. So before the socket is dropped, the
//! write side is shut down (the client gets the response and a FIN) and the rest of what the
//! client sends is read and discarded, within [`LINGER_TIME`] and [`LINGER_MAX_BYTES`], as
//! nginx's `lingering_close` does.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// The longest a closing connection keeps reading what its client still sends.
pub const LINGER_TIME: Duration = Duration::from_secs(5);
/// The most a closing connection reads and discards before it gives up.
pub const LINGER_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// What the connection's IO and its service share: requests in flight and when bytes last
/// moved, for the idle timeout; whether the close should linger.
#[derive(Debug)]
pub struct Activity {
    start: Instant,
    /// Milliseconds since `start` when bytes last moved either way.
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
    /// Set when the connection ends on a timeout: nothing worth delivering is pending, so
    /// the close does not linger.
    no_linger: AtomicBool,
}

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            no_linger: AtomicBool::new(false),
        })
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    /// A request begins; the connection is not idle until the returned guard (kept by the
    /// response body) is dropped.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.touch();
        InFlight(self.clone())
    }

    /// The connection ends without anything left to deliver: close at once.
    pub fn skip_linger(&self) {
        self.no_linger.store(true, Ordering::Relaxed);
    }
}

/// A request in flight on a connection (see [`Activity::begin`]).
#[derive(Debug)]
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// The accepted socket, as hyper reads and writes it. `T` is held until the connection
/// is fully closed (after lingering): the open-connection count's guard.
pub struct EdgeIo<T: Send + Unpin + 'static> {
    tcp: Option<TcpStream>,
    activity: Arc<Activity>,
    idle_timeout: Option<Duration>,
    idle_sleep: Option<Pin<Box<Sleep>>>,
    /// The client closed its side: nothing left to drain.
    read_eof: bool,
    /// Closed by the idle timeout.
    idled_out: bool,
    on_idle: Option<Box<dyn FnOnce() + Send>>,
    held: Option<T>,
}

impl<T: Send + Unpin + 'static> EdgeIo<T> {
    /// Wraps `tcp`; `idle_timeout` closes it when no request is in flight and no byte has
    /// moved for that long (`on_idle` runs then).
    pub fn new(
        tcp: TcpStream,
        idle_timeout: Option<Duration>,
        on_idle: Box<dyn FnOnce() + Send>,
        held: T,
    ) -> Self {
        Self {
            tcp: Some(tcp),
            activity: Activity::new(),
            idle_timeout,
            idle_sleep: None,
            read_eof: false,
            idled_out: false,
            on_idle: Some(on_idle),
            held: Some(held),
        }
    }

    /// The activity shared with the connection's service.
    pub fn activity(&self) -> Arc<Activity> {
        self.activity.clone()
    }

    fn tcp(&mut self) -> io::Result<&mut TcpStream> {
        self.tcp
            .as_mut()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "connection closed"))
    }

    /// Whether the idle timeout has run out; when not, arms the timer for the next check.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(idle) = self.idle_timeout else {
            return false;
        };
        loop {
            let deadline = if self.activity.in_flight.load(Ordering::Relaxed) > 0 {
                // Not idle: look again one period later.
                Instant::now() + idle
            } else {
                self.activity.last() + idle
            };
            if deadline <= Instant::now() {
                return true;
            }
            let sleep = self
                .idle_sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            if sleep.deadline() != deadline {
                sleep.as_mut().reset(deadline);
            }
            if sleep.as_mut().poll(cx).is_pending() {
                return false;
            }
        }
    }
}

impl<T: Send + Unpin + 'static> AsyncRead for EdgeIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(me.tcp()?).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() == before {
                    me.read_eof = true;
                } else {
                    me.activity.touch();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if me.poll_idle(cx) {
                    me.idled_out = true;
                    if let Some(on_idle) = me.on_idle.take() {
                        on_idle();
                    }
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "idle connection closed",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl<T: Send + Unpin + 'static> AsyncWrite for EdgeIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        let n = ready!(Pin::new(me.tcp()?).poll_write(cx, data))?;
        me.activity.touch();
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        let n = ready!(Pin::new(me.tcp()?).poll_write_vectored(cx, bufs))?;
        me.activity.touch();
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.as_ref().is_some_and(|t| t.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.get_mut().tcp()?).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.get_mut().tcp()?).poll_shutdown(cx)
    }
}

impl<T: Send + Unpin + 'static> Drop for EdgeIo<T> {
    fn drop(&mut self) {
        let Some(tcp) = self.tcp.take() else {
            return;
        };
        let held = self.held.take();
        if self.read_eof || self.idled_out || self.activity.no_linger.load(Ordering::Relaxed) {
            return;
        }
        // Dropped outside a runtime (process exit): nothing to linger on.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                linger(tcp, LINGER_TIME).await;
                drop(held);
            });
        }
    }
}

/// Shuts the write side down (the client gets everything written and a FIN), then reads
/// and discards what the client still sends until it closes, within `time` and
/// [`LINGER_MAX_BYTES`].
pub async fn linger(mut tcp: TcpStream, time: Duration) {
    let _ = tcp.shutdown().await;
    let deadline = Instant::now() + time;
    let mut buf = vec![0u8; 16 * 1024];
    let mut drained = 0u64;
    while drained < LINGER_MAX_BYTES {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => drained += n as u64,
            _ => break,
        }
    }
}
