//! Property tests of the resumption cursor logic against [`MemoryBus`]: for random
//! publishes to random streams of a session, random log lengths and random cursors,
//! "subscribe, then replay `(cursor, head]`, then live events with `seq > head`" yields
//! exactly the events after the cursor, in order, once each; `Replay::complete` is true
//! iff nothing after the cursor was trimmed; filtering by stream never leaks another
//! stream's events; the standalone cursor (session log + broadcast log) behaves the same.

use mcp_bus::conformance::record;
use mcp_bus::{
    Bus, EventBody, Live, MemoryBus, MemoryBusConfig, SessionEvent, SessionId, StandaloneCursor,
    StreamId, StreamTarget,
};
use proptest::prelude::*;
use serde_json::json;
use std::sync::Arc;
use tokio::sync::broadcast::error::TryRecvError;

/// Streams of the session: 0 is the standalone stream, 1..=3 request streams.
const STREAMS: usize = 4;

fn target(k: usize) -> StreamTarget {
    match k {
        0 => StreamTarget::Standalone,
        k => StreamTarget::Request(StreamId(0x1000 + k as u64)),
    }
}

/// The body of the `i`-th published event; it names its stream, so a mislabelled event is
/// caught even if the filter agrees with the label.
fn body(i: usize, k: usize) -> EventBody {
    let message = json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {"i": i, "stream": k}});
    if k != 0 && i % 7 == 3 {
        EventBody::Response(message)
    } else {
        EventBody::Message(message)
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn bus(session_log_len: usize, broadcast_log_len: usize) -> Arc<MemoryBus> {
    MemoryBus::new(MemoryBusConfig {
        session_log_len,
        broadcast_log_len,
        live_queue_len: 1024,
        ..MemoryBusConfig::default()
    })
}

/// Live events queued on a subscription, in arrival order.
fn drain(receiver: &mut mcp_bus::live::LiveReceiver<Live>) -> Vec<Arc<SessionEvent>> {
    let mut out = Vec::new();
    loop {
        match receiver.try_recv() {
            Ok(Live::Event(e)) => out.push(e),
            Ok(_) => {}
            Err(TryRecvError::Empty) => return out,
            Err(e) => panic!("a roomy live queue failed: {e:?}"),
        }
    }
}

#[derive(Debug, Clone)]
struct Scenario {
    /// Events kept per session log (0 keeps none).
    log_len: usize,
    /// Streams of the events published before the reader subscribes.
    before: Vec<usize>,
    /// Streams of the events published after it subscribed.
    after: Vec<usize>,
    /// The reader's `Last-Event-ID` position; may lie past `head` (the gateway refuses
    /// those; the bus must still answer sensibly).
    cursor: u64,
    /// The stream the reader resumes.
    stream: usize,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        0..40usize,
        prop::collection::vec(0..STREAMS, 0..60),
        prop::collection::vec(0..STREAMS, 0..30),
        0..STREAMS,
    )
        .prop_flat_map(|(log_len, before, after, stream)| {
            let head = before.len() as u64;
            (0..=head + 3).prop_map(move |cursor| Scenario {
                log_len,
                before: before.clone(),
                after: after.clone(),
                cursor,
                stream,
            })
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn subscribe_then_replay_then_live_is_exact(s in scenario()) {
        runtime().block_on(async move {
            let bus = bus(s.log_len, 16);
            let session = record();
            bus.create_session(session.clone()).await.unwrap();
            let id = &session.id;
            // The model: every event ever published, by seq (seq = index + 1).
            let streams: Vec<usize> = s.before.iter().chain(&s.after).copied().collect();
            for (i, &k) in s.before.iter().enumerate() {
                prop_assert_eq!(bus.publish(id, target(k), body(i, k)).await.unwrap(), i as u64 + 1);
            }
            let mut sub = bus.subscribe(id).await.unwrap();
            let head = s.before.len() as u64;
            prop_assert_eq!(sub.head, head);
            for (j, &k) in s.after.iter().enumerate() {
                let i = s.before.len() + j;
                prop_assert_eq!(bus.publish(id, target(k), body(i, k)).await.unwrap(), i as u64 + 1);
            }
            let total = streams.len() as u64;
            // Retained now: the newest `log_len` events, i.e. seq > total - log_len.
            let trimmed_up_to = total.saturating_sub(s.log_len as u64);

            let replay = bus.replay(id, s.cursor, sub.head).await.unwrap();
            let expected_complete = s.cursor >= head || trimmed_up_to <= s.cursor;
            prop_assert_eq!(replay.complete, expected_complete,
                "cursor {} head {} total {} log_len {}", s.cursor, head, total, s.log_len);
            let replayed: Vec<u64> = replay.events.iter().map(|e| e.seq).collect();
            let expected: Vec<u64> = (s.cursor.max(trimmed_up_to) + 1..=head).collect();
            prop_assert_eq!(&replayed, &expected, "the retained part of (cursor, head]");

            let live = drain(&mut sub.receiver);
            let live_seqs: Vec<u64> = live.iter().map(|e| e.seq).collect();
            prop_assert_eq!(live_seqs, (head + 1..=total).collect::<Vec<_>>(),
                "every event after head arrives live, once, in order");

            // The reader: replay, then live events past head; drop anything at or before
            // its cursor (as the stream pumps do).
            let read: Vec<Arc<SessionEvent>> = replay
                .events
                .iter()
                .cloned()
                .chain(live.into_iter().filter(|e| e.seq > sub.head))
                .filter(|e| e.seq > s.cursor)
                .collect();
            for e in &read {
                let i = (e.seq - 1) as usize;
                prop_assert_eq!(e.stream, target(streams[i]), "the event keeps its stream");
                prop_assert_eq!(&e.body, &body(i, streams[i]), "the event keeps its body");
            }
            let seqs: Vec<u64> = read.iter().map(|e| e.seq).collect();
            prop_assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order, no duplicates: {:?}", seqs);
            if replay.complete {
                prop_assert_eq!(&seqs, &(s.cursor + 1..=total).collect::<Vec<_>>(),
                    "a complete replay plus live events is everything after the cursor");
            }

            // Per-stream filtering: the resumed stream sees exactly its own events.
            let ours: Vec<u64> = read
                .iter()
                .filter(|e| e.stream == target(s.stream))
                .map(|e| e.seq)
                .collect();
            prop_assert!(ours.iter().all(|&q| streams[(q - 1) as usize] == s.stream),
                "another stream's event leaked");
            if replay.complete {
                let want: Vec<u64> = (s.cursor + 1..=total)
                    .filter(|&q| streams[(q - 1) as usize] == s.stream)
                    .collect();
                prop_assert_eq!(ours, want);
            }
            Ok(())
        })?;
    }

    /// The standalone stream's cursor is a pair: session-log events for the standalone
    /// stream after `session_seq`, and broadcasts after `broadcast_seq`. Request-stream
    /// events never reach it; resuming from any cursor delivers each event once.
    #[test]
    fn standalone_cursor_merges_session_and_broadcast_logs(
        log_len in 1..30usize,
        broadcast_log_len in 1..30usize,
        ops in prop::collection::vec(0..STREAMS + 1, 0..50),
        after in prop::collection::vec(0..STREAMS + 1, 0..20),
        cursor_frac in (0.0..=1.0f64, 0.0..=1.0f64),
    ) {
        runtime().block_on(async move {
            let bus = bus(log_len, broadcast_log_len);
            let session = record();
            bus.create_session(session.clone()).await.unwrap();
            let id = &session.id;
            // Op STREAMS is a broadcast; others publish to that stream.
            let mut session_streams = Vec::new();
            let mut broadcasts = 0u64;
            let mut run = async |op: usize, bus: &Arc<MemoryBus>| {
                if op == STREAMS {
                    broadcasts += 1;
                    let seq = bus.broadcast(json!({"jsonrpc":"2.0","method":"b","params":{"n": broadcasts}})).await.unwrap();
                    assert_eq!(seq, broadcasts);
                } else {
                    let i = session_streams.len();
                    session_streams.push(op);
                    bus.publish(id, target(op), body(i, op)).await.unwrap();
                }
            };
            for &op in &ops {
                run(op, &bus).await;
            }
            let mut sub = bus.subscribe(id).await.unwrap();
            let mut bsub = bus.subscribe_broadcasts().await.unwrap();
            for &op in &after {
                run(op, &bus).await;
            }
            let cursor = StandaloneCursor {
                session_seq: (sub.head as f64 * cursor_frac.0) as u64,
                broadcast_seq: (bsub.head as f64 * cursor_frac.1) as u64,
            };
            let s_total = session_streams.len() as u64;
            let session_log = bus.replay(id, cursor.session_seq, sub.head).await.unwrap();
            let broadcast_log = bus.replay_broadcasts(cursor.broadcast_seq, bsub.head).await.unwrap();
            prop_assert_eq!(session_log.complete,
                s_total.saturating_sub(log_len as u64) <= cursor.session_seq || cursor.session_seq >= sub.head);
            prop_assert_eq!(broadcast_log.complete,
                broadcasts.saturating_sub(broadcast_log_len as u64) <= cursor.broadcast_seq || cursor.broadcast_seq >= bsub.head);
            if !(session_log.complete && broadcast_log.complete) {
                return Ok(()); // the gateway refuses the resumption (CursorTrimmed)
            }
            // What the standalone pump delivers: standalone messages after the cursor,
            // then broadcasts after the cursor, then live ones past each head.
            let mut got_session: Vec<u64> = session_log.events.iter().cloned()
                .chain(drain(&mut sub.receiver).into_iter().filter(|e| e.seq > sub.head))
                .filter(|e| e.seq > cursor.session_seq && e.stream == StreamTarget::Standalone)
                .map(|e| e.seq)
                .collect();
            let mut got_broadcasts: Vec<u64> = broadcast_log.events.iter().map(|e| e.seq).collect();
            while let Ok(e) = bsub.receiver.try_recv() {
                if e.seq > bsub.head {
                    got_broadcasts.push(e.seq);
                }
            }
            got_broadcasts.retain(|&q| q > cursor.broadcast_seq);
            let want_session: Vec<u64> = (cursor.session_seq + 1..=s_total)
                .filter(|&q| session_streams[(q - 1) as usize] == 0)
                .collect();
            prop_assert_eq!(&got_session, &want_session);
            prop_assert_eq!(got_broadcasts, (cursor.broadcast_seq + 1..=broadcasts).collect::<Vec<_>>());
            got_session.dedup();
            prop_assert_eq!(got_session, want_session, "no duplicates");
            Ok(())
        })?;
    }

    /// The session's standalone cursor only moves forward, field by field.
    #[test]
    fn standalone_cursor_never_moves_back(moves in prop::collection::vec((0..100u64, 0..100u64), 0..20)) {
        runtime().block_on(async move {
            let bus = bus(8, 8);
            let session = record();
            bus.create_session(session.clone()).await.unwrap();
            let mut want = StandaloneCursor::default();
            for (s, b) in moves {
                let cursor = StandaloneCursor { session_seq: s, broadcast_seq: b };
                bus.advance_standalone_cursor(&session.id, cursor).await.unwrap();
                want.session_seq = want.session_seq.max(s);
                want.broadcast_seq = want.broadcast_seq.max(b);
                prop_assert_eq!(bus.session(&session.id).await.unwrap().standalone_cursor, want);
            }
            Ok(())
        })?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Subscribe-then-replay under a real race: a publisher task on another thread keeps
    /// publishing while the reader subscribes at a random moment. The reader still sees
    /// every event after its cursor exactly once, in order.
    #[test]
    fn subscribe_then_replay_is_exact_under_concurrent_publishes(
        count in 1..200usize,
        yields in 0..50usize,
        cursor_frac in 0.0..=1.0f64,
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let bus = bus(1000, 16);
            let session = record();
            bus.create_session(session.clone()).await.unwrap();
            let id: SessionId = session.id.clone();
            let publisher = {
                let bus = bus.clone();
                let id = id.clone();
                tokio::spawn(async move {
                    for i in 0..count {
                        let k = i % STREAMS;
                        bus.publish(&id, target(k), body(i, k)).await.unwrap();
                        if i % 8 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                })
            };
            for _ in 0..yields {
                tokio::task::yield_now().await;
            }
            let mut sub = bus.subscribe(&id).await.unwrap();
            let cursor = (sub.head as f64 * cursor_frac) as u64;
            let replay = bus.replay(&id, cursor, sub.head).await.unwrap();
            prop_assert!(replay.complete);
            publisher.await.unwrap();
            let seqs: Vec<u64> = replay
                .events
                .iter()
                .cloned()
                .chain(drain(&mut sub.receiver).into_iter().filter(|e| e.seq > sub.head))
                .filter(|e| e.seq > cursor)
                .map(|e| e.seq)
                .collect();
            prop_assert_eq!(seqs, (cursor + 1..=count as u64).collect::<Vec<_>>());
            Ok(())
        })?;
    }
}
