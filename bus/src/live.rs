//! A session's live queue: a bounded broadcast channel whose buffer grows on demand.
//!
//! Every open stream subscribes to its session's live messages, and almost all of the time
//! that queue is empty: a stream forwards each event as it arrives. `tokio::sync::broadcast`
//! allocates its whole ring (and a lock per slot) when the channel is made, ~12 KiB for the
//! 256 slots a slow client is allowed to fall behind, which was a third of the memory of an
//! idle SSE stream. This channel keeps the same contract (every receiver sees every value
//! in order; one that falls more than `capacity` behind gets [`RecvError::Lagged`]; senders
//! gone means [`RecvError::Closed`] once the rest is read) but holds only the values some
//! receiver has yet to read, so an idle stream costs a few hundred bytes.
//!
//! No crate offers this: `async-broadcast` also reserves its whole capacity up front.
//! Receivers per channel are few (the streams of one session), so the slowest one is found
//! by a scan.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;
pub use tokio::sync::broadcast::error::{RecvError, TryRecvError};

/// Creates a channel that lets a receiver fall `capacity` values behind before it lags.
pub fn channel<T: Clone>(capacity: usize) -> (LiveSender<T>, LiveReceiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            first: 0,
            capacity: capacity.max(1),
            cursors: Vec::new(),
            senders: 1,
        }),
        notify: Notify::new(),
    });
    let receiver = LiveReceiver::attach(&shared);
    (LiveSender { shared }, receiver)
}

struct Shared<T> {
    state: Mutex<State<T>>,
    notify: Notify,
}

struct State<T> {
    /// Values not yet read by every receiver; `queue[0]` is at position `first`.
    queue: VecDeque<T>,
    first: u64,
    capacity: usize,
    /// The next position of each receiver, by slot (`None`: a free slot).
    cursors: Vec<Option<u64>>,
    senders: usize,
}

impl<T> State<T> {
    fn tail(&self) -> u64 {
        self.first + self.queue.len() as u64
    }

    fn add_cursor(&mut self, at: u64) -> usize {
        match self.cursors.iter().position(Option::is_none) {
            Some(slot) => {
                self.cursors[slot] = Some(at);
                slot
            }
            None => {
                self.cursors.push(Some(at));
                self.cursors.len() - 1
            }
        }
    }

    /// Drops the values every receiver has read.
    fn trim(&mut self) {
        let slowest = self.cursors.iter().flatten().min().copied();
        let keep_from = slowest.unwrap_or_else(|| self.tail());
        while self.first < keep_from && self.queue.pop_front().is_some() {
            self.first += 1;
        }
        if self.queue.is_empty() && self.queue.capacity() > KEPT_CAPACITY {
            // Give a burst's buffer back; a small one stays, so a steady trickle does not
            // allocate per value.
            self.queue = VecDeque::new();
        }
    }

    fn receivers(&self) -> usize {
        self.cursors.iter().flatten().count()
    }
}

/// The buffer an emptied queue keeps (values).
const KEPT_CAPACITY: usize = 8;

fn lock<T>(shared: &Shared<T>) -> MutexGuard<'_, State<T>> {
    // The state stays consistent between statements, so a panic elsewhere cannot leave it
    // half-changed: recovering from poisoning is safe.
    shared.state.lock().unwrap_or_else(|p| p.into_inner())
}

/// The sending half; clone it for more senders. The channel closes when the last is dropped.
pub struct LiveSender<T> {
    shared: Arc<Shared<T>>,
}

/// The value had no receiver to go to.
#[derive(Debug, PartialEq, Eq)]
pub struct NoReceivers<T>(pub T);

impl<T: Clone> LiveSender<T> {
    /// Queues `value` for every receiver; returns how many there are, or gives the value
    /// back when there are none. A full queue drops its oldest value (whoever had not read
    /// it lags).
    pub fn send(&self, value: T) -> Result<usize, NoReceivers<T>> {
        let receivers = {
            let mut state = lock(&self.shared);
            let receivers = state.receivers();
            if receivers == 0 {
                return Err(NoReceivers(value));
            }
            state.queue.push_back(value);
            if state.queue.len() > state.capacity {
                state.queue.pop_front();
                state.first += 1;
            }
            receivers
        };
        self.shared.notify.notify_waiters();
        Ok(receivers)
    }

    /// A new receiver that sees the values sent from now on.
    pub fn subscribe(&self) -> LiveReceiver<T> {
        LiveReceiver::attach(&self.shared)
    }

    /// How many receivers there are.
    pub fn receiver_count(&self) -> usize {
        lock(&self.shared).receivers()
    }
}

impl<T> Clone for LiveSender<T> {
    fn clone(&self) -> Self {
        lock(&self.shared).senders += 1;
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for LiveSender<T> {
    fn drop(&mut self) {
        let closed = {
            let mut state = lock(&self.shared);
            state.senders -= 1;
            state.senders == 0
        };
        if closed {
            self.shared.notify.notify_waiters();
        }
    }
}

impl<T> std::fmt::Debug for LiveSender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveSender").finish_non_exhaustive()
    }
}

/// The receiving half.
pub struct LiveReceiver<T> {
    shared: Arc<Shared<T>>,
    slot: usize,
}

impl<T: Clone> LiveReceiver<T> {
    fn attach(shared: &Arc<Shared<T>>) -> Self {
        let slot = {
            let mut state = lock(shared);
            let tail = state.tail();
            state.add_cursor(tail)
        };
        Self {
            shared: shared.clone(),
            slot,
        }
    }

    /// The next value, if one is queued.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        take(&self.shared, self.slot)
    }

    /// Waits for the next value. Cancel-safe: a value is taken only when this returns it.
    pub async fn recv(&mut self) -> Result<T, RecvError> {
        let (shared, slot) = (&*self.shared, self.slot);
        loop {
            let notified = shared.notify.notified();
            tokio::pin!(notified);
            // Registered before looking, so a send between the look and the wait still
            // wakes this receiver.
            notified.as_mut().enable();
            match take(shared, slot) {
                Ok(value) => return Ok(value),
                Err(TryRecvError::Lagged(n)) => return Err(RecvError::Lagged(n)),
                Err(TryRecvError::Closed) => return Err(RecvError::Closed),
                Err(TryRecvError::Empty) => notified.await,
            }
        }
    }

    /// A new receiver of the same channel that sees the values sent from now on.
    pub fn resubscribe(&self) -> Self {
        Self::attach(&self.shared)
    }
}

/// Reads the next value of the receiver in `slot`.
fn take<T: Clone>(shared: &Shared<T>, slot: usize) -> Result<T, TryRecvError> {
    let mut state = lock(shared);
    let Some(at) = state.cursors[slot] else {
        return Err(TryRecvError::Closed);
    };
    if at < state.first {
        state.cursors[slot] = Some(state.first);
        return Err(TryRecvError::Lagged(state.first - at));
    }
    let index = (at - state.first) as usize;
    let Some(value) = state.queue.get(index).cloned() else {
        return Err(if state.senders == 0 {
            TryRecvError::Closed
        } else {
            TryRecvError::Empty
        });
    };
    state.cursors[slot] = Some(at + 1);
    if at == state.first {
        state.trim();
    }
    Ok(value)
}

impl<T> Drop for LiveReceiver<T> {
    fn drop(&mut self) {
        let mut state = lock(&self.shared);
        state.cursors[self.slot] = None;
        state.trim();
    }
}

impl<T> std::fmt::Debug for LiveReceiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveReceiver")
            .field("slot", &self.slot)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn every_receiver_sees_every_value_in_order() {
        let (tx, mut a) = channel(8);
        let mut b = tx.subscribe();
        for i in 0..5 {
            assert_eq!(tx.send(i), Ok(2));
        }
        for i in 0..5 {
            assert_eq!(a.try_recv(), Ok(i));
        }
        assert_eq!(a.try_recv(), Err(TryRecvError::Empty));
        for i in 0..5 {
            assert_eq!(b.try_recv(), Ok(i));
        }
    }

    #[test]
    fn a_new_receiver_starts_at_the_tail() {
        let (tx, mut a) = channel(8);
        tx.send(1).ok();
        let mut b = a.resubscribe();
        tx.send(2).ok();
        assert_eq!(b.try_recv(), Ok(2));
        assert_eq!(a.try_recv(), Ok(1));
        assert_eq!(a.try_recv(), Ok(2));
    }

    #[test]
    fn a_receiver_that_falls_behind_lags_then_reads_what_is_left() {
        let (tx, mut slow) = channel(3);
        let mut fast = tx.subscribe();
        for i in 0..5 {
            tx.send(i).ok();
            assert_eq!(fast.try_recv(), Ok(i));
        }
        assert_eq!(slow.try_recv(), Err(TryRecvError::Lagged(2)));
        assert_eq!(slow.try_recv(), Ok(2));
        assert_eq!(slow.try_recv(), Ok(3));
        assert_eq!(slow.try_recv(), Ok(4));
        assert_eq!(slow.try_recv(), Err(TryRecvError::Empty));
    }

    #[test]
    fn values_read_by_everyone_are_freed() {
        let (tx, mut a) = channel(64);
        let mut b = tx.subscribe();
        for i in 0..10 {
            tx.send(i).ok();
        }
        while a.try_recv().is_ok() {}
        assert_eq!(lock(&tx.shared).queue.len(), 10, "b has not read them yet");
        while b.try_recv().is_ok() {}
        assert_eq!(lock(&tx.shared).queue.capacity(), 0);
        tx.send(10).ok();
        drop(b);
        assert_eq!(lock(&tx.shared).queue.len(), 1, "a still has one to read");
        drop(a);
        assert_eq!(lock(&tx.shared).queue.len(), 0);
    }

    #[test]
    fn no_receivers_gives_the_value_back_and_slots_are_reused() {
        let (tx, rx) = channel(4);
        drop(rx);
        assert_eq!(tx.send(7), Err(NoReceivers(7)));
        assert_eq!(tx.receiver_count(), 0);
        let _a = tx.subscribe();
        let _b = tx.subscribe();
        assert_eq!(tx.receiver_count(), 2);
        assert_eq!(lock(&tx.shared).cursors.len(), 2);
    }

    #[tokio::test]
    async fn closed_after_the_last_sender_goes_and_the_rest_is_read() {
        let (tx, mut rx) = channel(4);
        let tx2 = tx.clone();
        tx.send(1).ok();
        drop(tx);
        tx2.send(2).ok();
        drop(tx2);
        assert_eq!(rx.recv().await, Ok(1));
        assert_eq!(rx.recv().await, Ok(2));
        assert_eq!(rx.recv().await, Err(RecvError::Closed));
    }

    #[tokio::test]
    async fn a_waiting_receiver_wakes_for_a_send_from_another_task() {
        let (tx, mut rx) = channel(4);
        let waiting = tokio::spawn(async move { rx.recv().await });
        tokio::task::yield_now().await;
        tx.send(5).ok();
        let got = tokio::time::timeout(Duration::from_secs(5), waiting).await;
        assert!(matches!(got, Ok(Ok(Ok(5)))), "{got:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_senders_and_receivers_lose_nothing_within_capacity() {
        let (tx, rx) = channel::<u64>(100_000);
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let mut rx = rx.resubscribe();
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    while let Ok(v) = rx.recv().await {
                        seen.push(v);
                    }
                    seen
                })
            })
            .collect();
        drop(rx);
        let writers: Vec<_> = (0..2u64)
            .map(|w| {
                let tx = tx.clone();
                tokio::spawn(async move {
                    for i in 0..5_000 {
                        tx.send(w * 1_000_000 + i).ok();
                        if i % 64 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                })
            })
            .collect();
        for w in writers {
            w.await.ok();
        }
        drop(tx);
        for r in readers {
            let seen = tokio::time::timeout(Duration::from_secs(20), r)
                .await
                .expect("a reader finished")
                .expect("a reader did not panic");
            assert_eq!(seen.len(), 10_000);
            for w in 0..2u64 {
                let mine: Vec<_> = seen.iter().filter(|v| **v / 1_000_000 == w).collect();
                assert!(mine.windows(2).all(|p| p[0] < p[1]), "order per sender");
            }
        }
    }
}
