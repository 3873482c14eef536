//! Benchmark: the cost of applying the standard editing trace (automerge-paper, 259,778 keystrokes)
//! update by update through the relay path, against applying the same updates to a bare `yrs::Doc`.
//!
//! The relay runs with instant storage: every `Append` is reported durable at once, so the figure is
//! the sans-IO core's own cost (validation, integration, sequencing, echo frames), not the log's;
//! `storage.rs` measures the log. Replaying the trace into updates happens once, untimed.

use std::time::Duration;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, SamplingMode, Throughput};
use weft_benches::{TEXT_ROOT, Trace};
use weft_sync_core::yjs::{Message, Relay, RelayLimits};
use weft_sync_core::{Access, DocumentRelay, Event, PeerId};
use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, Transact, Update};

/// The peer that sends every update; the others only receive.
const WRITER: PeerId = PeerId(0);

/// A relay with `peers` joined and synced peers (the first is [`WRITER`]) and no pending events.
fn joined_relay(peers: u64) -> Relay {
    let mut relay = Relay::new(RelayLimits::default());
    for n in 0..peers {
        let peer = PeerId(n);
        relay.handle_join(peer, Access::ReadWrite);
        // An empty state vector: the peer is synced once the relay answers, and receives broadcasts.
        relay.handle_message(peer, Message::SyncStep1(Bytes::from_static(&[0])));
    }
    while relay.poll_event().is_some() {}
    relay
}

/// Feeds every update from [`WRITER`], acknowledging each append as durable as soon as it appears.
/// Returns how many broadcast frames the relay produced.
fn relay_trace(relay: &mut Relay, updates: &[Bytes]) -> u64 {
    let mut broadcasts = 0;
    for update in updates {
        relay.handle_message(WRITER, Message::Update(update.clone()));
        while let Some(event) = relay.poll_event() {
            match event {
                Event::Append { seq, .. } => relay.handle_durable(seq),
                Event::Broadcast { .. } => broadcasts += 1,
                Event::Send { .. } | Event::Acknowledge { .. } => {}
                Event::Refused { peer } => panic!("{peer} has write access"),
                Event::Close { peer, code, detail } => {
                    panic!("the relay closed {peer} ({code:?}): {detail}")
                }
            }
        }
    }
    broadcasts
}

/// Applies every update to `doc`, one transaction each, as a replica with no relay around it would.
fn apply_bare(doc: &Doc, updates: &[Bytes]) {
    for update in updates {
        // Holds: the updates were produced by yrs itself from the trace (checked in `relay_bench`).
        let update = Update::decode_v1(update).expect("trace updates decode");
        doc.transact_mut().apply_update(update).expect("trace updates apply");
    }
}

fn text_of(doc: &Doc) -> String {
    doc.get_or_insert_text(TEXT_ROOT).get_string(&doc.transact())
}

fn relay_bench(c: &mut Criterion) {
    let trace = Trace::load_standard().expect("the standard trace loads");
    let updates = trace.replay_yjs();

    // Check once, untimed, that the measured work is the intended work: every update is accepted,
    // integrated and echoed, and both paths end with the trace's final text.
    let bare = Doc::new();
    apply_bare(&bare, &updates);
    assert!(text_of(&bare) == trace.end_content, "bare replica diverged from the trace");
    let mut relay = joined_relay(1);
    assert_eq!(relay_trace(&mut relay, &updates), updates.len() as u64);
    assert!(relay.read(text_of).unwrap() == trace.end_content, "relay replica diverged from the trace");
    drop((bare, relay));

    let mut group = c.benchmark_group("automerge_paper");
    // One iteration is the whole trace (about a second); flat sampling runs the same number of
    // iterations in each sample instead of criterion's default 1, 2, …, 10 ramp.
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(15))
        .throughput(Throughput::Elements(updates.len() as u64));

    group.bench_function("bare_yrs_doc", |b| {
        // The returned replica is dropped outside the timed region, here and below.
        b.iter_batched(
            Doc::new,
            |doc| {
                apply_bare(&doc, &updates);
                doc
            },
            BatchSize::PerIteration,
        )
    });
    for peers in [1, 10] {
        group.bench_function(format!("relay_{peers}_peers"), |b| {
            b.iter_batched(
                || joined_relay(peers),
                |mut relay| {
                    let broadcasts = relay_trace(&mut relay, &updates);
                    (relay, broadcasts)
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

// What `criterion_group!`/`criterion_main!` expand to, written out because the macros generate an
// undocumented `pub fn` that the workspace's `missing_docs` lint rejects.
fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    relay_bench(&mut criterion);
    criterion.final_summary();
}
