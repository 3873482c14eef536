//! Benchmark: one update broadcast to N peers in process — what a room does per edit, minus the
//! sockets. The relay validates and integrates the update, the append is reported durable at once,
//! and the resulting `Broadcast` frame is pushed into N bounded tokio mpsc outboxes (`try_send`, as
//! the room does), which are then drained as the peers' writer tasks would.
//!
//! Storage and sockets are left out on purpose: `storage.rs` measures the log and `weft-bench` the
//! whole server. Updates are single-character inserts made by a real `yrs` document, generated
//! outside the timed region.

use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput};
use tokio::sync::mpsc;
use weft_sync_core::yjs::{Message, Relay, RelayLimits};
use weft_sync_core::{Access, DocumentRelay, Event, PeerId};
use yrs::{Doc, Text, Transact};

/// The room's default outbox capacity (`peer_outbox`).
const OUTBOX: usize = 1024;
/// Updates generated at a time, untimed.
const CHUNK: usize = 4096;

const WRITER: PeerId = PeerId(0);

struct Room {
    relay: Relay,
    outboxes: Vec<(mpsc::Sender<Bytes>, mpsc::Receiver<Bytes>)>,
}

impl Room {
    fn new(peers: u64) -> Self {
        let mut relay = Relay::new(RelayLimits::default());
        let mut outboxes = Vec::new();
        for n in 0..peers {
            relay.handle_join(PeerId(n), Access::ReadWrite);
            relay.handle_message(PeerId(n), Message::SyncStep1(Bytes::from_static(&[0])));
            outboxes.push(mpsc::channel(OUTBOX));
        }
        while relay.poll_event().is_some() {}
        Self { relay, outboxes }
    }

    /// One edit from [`WRITER`], carried out the way the room actor does; returns frames queued.
    fn edit(&mut self, update: Bytes) -> usize {
        let mut queued = 0;
        self.relay.handle_message(WRITER, Message::Update(update));
        while let Some(event) = self.relay.poll_event() {
            match event {
                Event::Append { seq, .. } => self.relay.handle_durable(seq),
                Event::Broadcast { frame, except } => {
                    for (n, (tx, _)) in self.outboxes.iter().enumerate() {
                        if except.contains(&PeerId(n as u64)) {
                            continue;
                        }
                        // Holds: the outboxes are drained after every edit, so they never fill.
                        tx.try_send(frame.clone()).expect("the outbox has room");
                        queued += 1;
                    }
                }
                _ => {}
            }
        }
        for (_, rx) in &mut self.outboxes {
            while rx.try_recv().is_ok() {}
        }
        queued
    }
}

/// Single-character inserts at the start of a text, as one client's consecutive keystrokes.
struct Keystrokes {
    doc: Doc,
}

impl Keystrokes {
    fn next_chunk(&self) -> Vec<Bytes> {
        let text = self.doc.get_or_insert_text("t");
        (0..CHUNK)
            .map(|_| {
                let mut txn = self.doc.transact_mut();
                text.insert(&mut txn, 0, "x");
                Bytes::from(txn.encode_update_v1())
            })
            .collect()
    }
}

fn broadcast_bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("broadcast");
    group.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    for peers in [1u64, 10, 100, 1000] {
        group.throughput(Throughput::Elements(peers));
        group.bench_function(BenchmarkId::new("update_to_peers", peers), |b| {
            b.iter_custom(|iters| {
                let mut room = Room::new(peers);
                let keystrokes = Keystrokes { doc: Doc::with_client_id(7) };
                let mut timed = Duration::ZERO;
                let mut left = iters as usize;
                while left > 0 {
                    let chunk = keystrokes.next_chunk();
                    let take = left.min(CHUNK);
                    let started = Instant::now();
                    for update in chunk.into_iter().take(take) {
                        std::hint::black_box(room.edit(update));
                    }
                    timed += started.elapsed();
                    left -= take;
                }
                timed
            })
        });
    }
    group.finish();
}

// What `criterion_group!`/`criterion_main!` expand to, written out because the macros generate an
// undocumented `pub fn` that the workspace's `missing_docs` lint rejects.
fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    broadcast_bench(&mut criterion);
    criterion.final_summary();
}
