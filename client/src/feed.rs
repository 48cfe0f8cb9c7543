//! The one path every event takes: stamped with its arrival time, counted in the
//! [`Summary`], then handed to a single render thread, so what is printed is in the order
//! it happened (a notification before the result of the call that caused it).

use crate::events::{Event, Record, Summary};
use crate::output::{Renderer, Sink};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

/// What the render thread is asked to do, in order.
pub(crate) enum Item {
    /// Print a record.
    Record(Record),
    /// Show a progress bar for the progress token (text mode on a terminal).
    StartBar {
        /// The progress token the bar follows.
        token: String,
        /// Its label.
        label: String,
    },
    /// Finish the progress bar of the token.
    EndBar(String),
    /// Print a summary snapshot.
    Summary(Summary, Duration),
    /// Print from now on through another sink (the line editor's printer).
    SetSink(Box<dyn Sink>),
    /// Acknowledge once everything before it is printed.
    Flush(oneshot::Sender<()>),
}

/// A cheap, cloneable handle on the feed.
#[derive(Clone)]
pub struct Feed {
    tx: mpsc::UnboundedSender<Item>,
    summary: Arc<watch::Sender<Summary>>,
    start: Instant,
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed").finish_non_exhaustive()
    }
}

impl Feed {
    /// Starts the render thread with `renderer`.
    pub fn start(mut renderer: Renderer) -> std::io::Result<Self> {
        let (tx, mut rx) = mpsc::unbounded_channel::<Item>();
        // A thread of its own, not a task: the line editor's printer may block for a moment
        // while the prompt is redrawn, and the async side must never wait on a terminal.
        std::thread::Builder::new()
            .name("render".into())
            .spawn(move || {
                while let Some(item) = rx.blocking_recv() {
                    renderer.handle(item);
                }
            })?;
        Ok(Self {
            tx,
            summary: Arc::new(watch::Sender::new(Summary::default())),
            start: Instant::now(),
        })
    }

    /// Time since the client started.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Records an event: counts it and queues it for printing.
    pub fn record(&self, event: Event) {
        let record = Record {
            at: self.elapsed(),
            event,
        };
        self.summary.send_modify(|s| s.count(&record));
        let _ = self.tx.send(Item::Record(record));
    }

    /// The summary so far.
    pub fn summary(&self) -> Summary {
        self.summary.borrow().clone()
    }

    /// Queues the summary so far for printing (after everything recorded before).
    pub fn print_summary(&self) {
        let _ = self.tx.send(Item::Summary(self.summary(), self.elapsed()));
    }

    /// Waits until the summary satisfies `done`, at most `timeout`. Returns the summary at
    /// that point, `Err` with the last one on timeout.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        done: impl Fn(&Summary) -> bool,
    ) -> Result<Summary, Summary> {
        let mut rx = self.summary.subscribe();
        match tokio::time::timeout(timeout, rx.wait_for(|s| done(s))).await {
            Ok(Ok(s)) => Ok(s.clone()),
            _ => Err(self.summary()),
        }
    }

    /// Shows a progress bar that follows `token`'s progress notifications.
    pub fn start_bar(&self, token: &str, label: &str) {
        let _ = self.tx.send(Item::StartBar {
            token: token.to_owned(),
            label: label.to_owned(),
        });
    }

    /// Finishes `token`'s progress bar.
    pub fn end_bar(&self, token: &str) {
        let _ = self.tx.send(Item::EndBar(token.to_owned()));
    }

    /// Prints through `sink` from now on.
    pub fn set_sink(&self, sink: Box<dyn Sink>) {
        let _ = self.tx.send(Item::SetSink(sink));
    }

    /// Waits until everything queued so far is printed.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Item::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}
