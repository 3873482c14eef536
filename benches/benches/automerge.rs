//! Benchmark: Automerge sync of the standard editing trace (automerge-paper, 259,778 keystrokes)
//! through the Automerge relay, one change per sync message, against the same work without the relay.
//!
//! Before timing, the trace is replayed on an `Automerge` document (one change per edit), and the
//! sync messages a writing peer sends for it are recorded by syncing it, change by change, with a
//! bare `Automerge` peer. One iteration then feeds all of them to:
//! - `bare_load_incremental`: the changes alone, `load_incremental` on a bare `Automerge` (what
//!   applying the edits costs at all);
//! - `bare_sync_peer`: the sync messages to a bare `Automerge` with a `sync::State`, which receives
//!   each and generates its reply (what any Automerge sync server does);
//! - `relay_1_peer`: the same messages, as automerge-repo `sync` messages, to a `Relay` whose appends
//!   are reported durable at once: the baseline plus what the relay adds (durability gating, the log
//!   entry of each change, reply frames in CBOR). Storage costs nothing here; `storage.rs` measures it.

use std::time::Duration;

use automerge::sync::{self, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{ActorId, Automerge, ObjType, ROOT, ReadDoc};
use bytes::Bytes;
use criterion::{BatchSize, Criterion, SamplingMode, Throughput};
use weft_benches::{TEXT_ROOT, Trace};
use weft_sync_core::automerge::codec::{DocSync, Message};
use weft_sync_core::automerge::{DocumentId, Relay, Route};
use weft_sync_core::{Access, DocumentRelay, Event, PeerId, RelayLimits};

/// The writing peer.
const WRITER: PeerId = PeerId(0);
const WRITER_ID: &str = "writer";
const RELAY_ID: &str = "weft-bench";

/// What one replay of the trace produced.
struct Recorded {
    /// Every change, as its raw bytes, in order (the first creates the text object).
    changes: Vec<Vec<u8>>,
    /// Every sync message the writer sent, in order.
    messages: Vec<Bytes>,
    /// The final text.
    text: String,
}

/// Replays the trace (one change per edit) and records the writer's sync messages to a peer that
/// answers each one, as a relay would.
fn record(trace: &Trace, batch: usize) -> Recorded {
    let mut writer = Automerge::new().with_actor(ActorId::from(b"trace-writer".as_slice()));
    let mut peer = Automerge::new();
    let (mut writer_state, mut peer_state) = (sync::State::new(), sync::State::new());
    let mut messages = Vec::new();
    let mut changes = Vec::new();
    // Holds for these calls: the documents and messages are the bench's own, valid by construction.
    let mut exchange = |writer: &mut Automerge, messages: &mut Vec<Bytes>| {
        while let Some(message) = writer.generate_sync_message(&mut writer_state) {
            let encoded = message.encode();
            peer.receive_sync_message(&mut peer_state, sync::Message::decode(&encoded).expect("valid"))
                .expect("the writer's messages apply");
            messages.push(Bytes::from(encoded));
            if let Some(reply) = peer.generate_sync_message(&mut peer_state) {
                writer.receive_sync_message(&mut writer_state, reply).expect("the peer's replies apply");
            }
        }
    };
    let mut tx = writer.transaction();
    let text = tx.put_object(ROOT, TEXT_ROOT, ObjType::Text).expect("creating the text");
    tx.commit();
    changes.push(writer.get_last_local_change().expect("a change").raw_bytes().to_vec());
    exchange(&mut writer, &mut messages);
    for (n, edit) in trace.edits.iter().enumerate() {
        let mut tx = writer.transaction();
        tx.splice_text(&text, edit.pos as usize, edit.delete as isize, &edit.insert)
            .expect("the edit applies");
        tx.commit();
        changes.push(writer.get_last_local_change().expect("a change").raw_bytes().to_vec());
        if (n + 1) % batch == 0 || n + 1 == trace.edits.len() {
            exchange(&mut writer, &mut messages);
        }
    }
    let text = writer.text(&text).expect("the text");
    Recorded { changes, messages, text }
}

/// Applies the edits to a plain string (positions are byte offsets: the trace is ASCII).
fn apply_to_string(edits: &[weft_benches::Edit]) -> String {
    let mut text = String::new();
    for edit in edits {
        let pos = edit.pos as usize;
        text.replace_range(pos..pos + edit.delete as usize, &edit.insert);
    }
    text
}

fn text_of(doc: &Automerge) -> String {
    let (_, text) = doc.get(ROOT, TEXT_ROOT).expect("a document").expect("the text object");
    doc.text(&text).expect("text")
}

fn bare_load_incremental(changes: &[Vec<u8>]) -> Automerge {
    let mut doc = Automerge::new();
    for change in changes {
        doc.load_incremental(change).expect("trace changes load");
    }
    doc
}

/// A bare sync peer: receives every message and generates its reply. Returns the replies' count.
fn bare_sync(doc: &mut Automerge, messages: &[Bytes]) -> u64 {
    let mut state = sync::State::new();
    let mut replies = 0;
    for message in messages {
        let message = sync::Message::decode(message).expect("recorded messages decode");
        doc.receive_sync_message(&mut state, message).expect("recorded messages apply");
        replies += u64::from(doc.generate_sync_message(&mut state).is_some());
    }
    replies
}

fn joined_relay() -> Relay {
    let mut relay = Relay::new(RelayLimits::default());
    let route = Route { local: RELAY_ID.into(), remote: WRITER_ID.into(), document: document() };
    relay.handle_join(WRITER, Access::ReadWrite, route);
    relay
}

fn document() -> DocumentId {
    DocumentId::from_binary(b"automerge-paper!")
}

/// Feeds every message from [`WRITER`], reporting each append durable as soon as it appears.
/// Returns how many frames the relay sent back.
fn relay_trace(relay: &mut Relay, messages: &[Message]) -> u64 {
    let mut sent = 0;
    for message in messages {
        relay.handle_message(WRITER, message.clone());
        while let Some(event) = relay.poll_event() {
            match event {
                Event::Append { seq, .. } => relay.handle_durable(seq),
                Event::Send { .. } => sent += 1,
                other => panic!("unexpected relay event {other:?}"),
            }
        }
    }
    sent
}

fn automerge_bench(c: &mut Criterion) {
    let mut trace = Trace::load_standard().expect("the standard trace loads");
    // A prefix, for quick looks at how the cost grows; the reported figures use the whole trace.
    if let Some(edits) = std::env::var("WEFT_BENCH_EDITS").ok().and_then(|n| n.parse().ok()) {
        trace.edits.truncate(edits);
        trace.end_content = apply_to_string(&trace.edits);
    }
    let started = std::time::Instant::now();
    let batch = std::env::var("WEFT_BENCH_BATCH").ok().and_then(|n| n.parse().ok()).unwrap_or(1);
    let recorded = record(&trace, batch);
    println!("recorded {} sync messages in {:?}", recorded.messages.len(), started.elapsed());
    assert!(recorded.text == trace.end_content, "the Automerge replay diverged from the trace");
    let framed: Vec<Message> = recorded
        .messages
        .iter()
        .map(|data| {
            Message::Sync(DocSync {
                sender_id: WRITER_ID.into(),
                target_id: RELAY_ID.into(),
                document_id: document(),
                data: data.clone(),
            })
        })
        .collect();

    // Check once, untimed, that every path does the intended work and ends with the trace's text.
    assert!(text_of(&bare_load_incremental(&recorded.changes)) == trace.end_content);
    let mut bare = Automerge::new();
    bare_sync(&mut bare, &recorded.messages);
    assert!(text_of(&bare) == trace.end_content, "the bare sync peer diverged");
    let mut relay = joined_relay();
    let sent = relay_trace(&mut relay, &framed);
    assert!(relay.read(text_of).unwrap() == trace.end_content, "the relay diverged");
    let carrying = recorded
        .messages
        .iter()
        .filter(|m| !sync::Message::decode(m).expect("recorded messages decode").changes.is_empty())
        .count() as u64;
    assert_eq!(relay.last_seq(), carrying, "one log entry per message that carries changes");
    assert!(sent >= carrying, "a reply acknowledges every message's changes");
    println!(
        "{} changes in {} sync messages; the relay sent {sent} frames",
        recorded.changes.len(),
        recorded.messages.len()
    );
    drop((bare, relay));

    let mut group = c.benchmark_group("automerge_paper_sync");
    // One iteration is the whole trace (seconds); flat sampling keeps the iteration count per
    // sample constant.
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(30))
        .throughput(Throughput::Elements(recorded.changes.len() as u64));
    group.bench_function("bare_load_incremental", |b| {
        // The returned document is dropped outside the timed region, here and below.
        b.iter_batched(|| (), |()| bare_load_incremental(&recorded.changes), BatchSize::PerIteration)
    });
    group.bench_function("bare_sync_peer", |b| {
        b.iter_batched(
            Automerge::new,
            |mut doc| {
                let replies = bare_sync(&mut doc, &recorded.messages);
                (doc, replies)
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("relay_1_peer", |b| {
        b.iter_batched(
            joined_relay,
            |mut relay| {
                let sent = relay_trace(&mut relay, &framed);
                (relay, sent)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

// What `criterion_group!`/`criterion_main!` expand to, written out because the macros generate an
// undocumented `pub fn` that the workspace's `missing_docs` lint rejects.
fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    automerge_bench(&mut criterion);
    criterion.final_summary();
}
