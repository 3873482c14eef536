//! Benchmark: compaction and cold load, on the standard editing trace's final document (259,778
//! keystrokes; its full-state encoding is the snapshot).
//!
//! - `compaction/snapshot_encode`: `Relay::snapshot`, i.e. encoding the replica's full state — what a
//!   room does on its own task every `compact_after_updates` appends.
//! - `compaction/storage_compact_1000`: `Storage::compact` with that snapshot replacing a log prefix of
//!   1,000 keystroke updates (fsync), i.e. the write half of a compaction.
//! - `cold_load/snapshot`: `Storage::load_or_create` + `Relay::load` of the document stored as one
//!   snapshot — what opening a compacted document costs.
//! - `cold_load/whole_log`: the same with no snapshot and all 259,778 updates in the log, the worst case
//!   (compaction never ran).
//!
//! Building the trace's updates takes about 20 s the first time (cached afterwards under the temp dir,
//! see `weft_benches::loadgen::trace_cache`), and storing the whole log a few seconds; both untimed.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use criterion::{Criterion, SamplingMode};
use tokio::runtime::Runtime;
use weft::storage::{Crdt, DocKey, Durability, NewUpdate, Storage, StorageConfig};
use weft_benches::loadgen::trace_cache;
use weft_sync_core::DocId;
use weft_sync_core::DocumentRelay;
use weft_sync_core::yjs::{Relay, RelayLimits};

const KEYSTROKE: &[u8] = &[1, 1, 177, 207, 230, 2, 0, 4, 1, 1, 116, 1, 120, 0];

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_millis() as i64)
}

/// A store in a fresh temporary directory.
async fn open_store(dir: &tempfile::TempDir) -> Storage {
    let config = StorageConfig {
        data_dir: dir.path().to_owned(),
        durability: Durability::Fsync,
        snapshot_inline_max: 1 << 20,
    };
    // Holds unless the temp dir is unusable, in which case no figure would mean anything.
    Storage::open(&config).await.expect("opening the store")
}

async fn create(storage: &Storage, name: &str) -> DocKey {
    let name = DocId::new(name).expect("a valid document id");
    storage.load_or_create(&name, Crdt::Yjs, now_ms()).await.expect("creating the document").key
}

/// Appends `updates` under sequence numbers from `first`, in batches, and waits until durable.
async fn append_all(storage: &Storage, doc: DocKey, first: u64, updates: impl Iterator<Item = Bytes>) {
    let mut batch = Vec::new();
    let at_ms = now_ms();
    for (seq, bytes) in (first..).zip(updates) {
        batch.push(NewUpdate { seq, bytes, user_id: None, client: None, at_ms });
        if batch.len() == 4096 {
            let receipt = storage.append(doc, std::mem::take(&mut batch)).await.expect("queueing the append");
            receipt.await.expect("the append becomes durable");
        }
    }
    if !batch.is_empty() {
        let receipt = storage.append(doc, batch).await.expect("queueing the append");
        receipt.await.expect("the append becomes durable");
    }
}

async fn load(storage: &Storage, name: &str) -> Relay {
    let name = DocId::new(name).expect("a valid document id");
    let stored = storage.load_or_create(&name, Crdt::Yjs, now_ms()).await.expect("loading the document");
    let snapshot = stored.snapshot.as_ref().map(|(upto, bytes)| (*upto, bytes.as_ref()));
    let log = stored.log.iter().map(|(seq, bytes)| (*seq, bytes.as_ref()));
    let loaded = Relay::load(RelayLimits::default(), snapshot, log);
    assert!(loaded.quarantined.is_empty(), "the stored document loads: {:?}", loaded.quarantined);
    loaded.relay
}

fn compaction_bench(c: &mut Criterion, runtime: &Runtime, updates: &[Bytes]) {
    let loaded =
        Relay::load(RelayLimits::default(), None, updates.iter().zip(1..).map(|(u, s)| (s, u.as_ref())));
    assert!(loaded.quarantined.is_empty(), "the trace loads into a relay");
    let mut relay = loaded.relay;
    let snapshot = relay.snapshot().expect("a snapshot");
    eprintln!("trace snapshot: {} bytes", snapshot.state.len());

    let mut group = c.benchmark_group("compaction");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    group.bench_function("snapshot_encode", |b| b.iter(|| relay.snapshot()));
    // What compaction adds before a snapshot may replace the log: loading it back and comparing.
    group.bench_function("snapshot_verify", |b| b.iter(|| snapshot.verify().expect("the snapshot verifies")));

    let dir = tempfile::Builder::new().prefix("weft-bench-compaction-").tempdir().expect("a temp dir");
    let storage = runtime.block_on(open_store(&dir));
    let doc = runtime.block_on(create(&storage, "compaction"));
    let state = snapshot.state.clone();
    let mut next_seq = 1;
    group.bench_function("storage_compact_1000", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                // Untimed: a fresh log prefix of 1,000 keystrokes for the snapshot to replace.
                let keystrokes = std::iter::repeat_n(Bytes::from_static(KEYSTROKE), 1000);
                runtime.block_on(append_all(&storage, doc, next_seq, keystrokes));
                next_seq += 1000;
                let upto = next_seq - 1;
                let started = Instant::now();
                runtime.block_on(storage.compact(doc, upto, state.clone(), now_ms())).expect("compacting");
                timed += started.elapsed();
            }
            timed
        })
    });
    group.finish();
    runtime.block_on(storage.close());
}

fn cold_load_bench(c: &mut Criterion, runtime: &Runtime, updates: &[Bytes], expected_text_len: usize) {
    let dir = tempfile::Builder::new().prefix("weft-bench-cold-load-").tempdir().expect("a temp dir");
    let storage = runtime.block_on(open_store(&dir));
    let whole = runtime.block_on(create(&storage, "whole-log"));
    runtime.block_on(append_all(&storage, whole, 1, updates.iter().cloned()));
    let compacted = runtime.block_on(create(&storage, "snapshot"));
    let mut relay = runtime.block_on(load(&storage, "whole-log"));
    let snapshot = relay.snapshot().expect("a snapshot");
    runtime
        .block_on(storage.compact(compacted, updates.len() as u64, snapshot.state.clone(), now_ms()))
        .expect("storing the snapshot");
    for name in ["whole-log", "snapshot"] {
        let relay = runtime.block_on(load(&storage, name));
        let text = relay
            .read(|doc| {
                yrs::GetString::get_string(
                    &doc.get_or_insert_text(weft_benches::TEXT_ROOT),
                    &yrs::Transact::transact(doc),
                )
            })
            .expect("reading the text");
        assert_eq!(text.len(), expected_text_len, "{name} reloads the trace's final text");
    }

    let mut group = c.benchmark_group("cold_load");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    group.bench_function("snapshot", |b| b.iter(|| runtime.block_on(load(&storage, "snapshot"))));
    group.bench_function("whole_log", |b| b.iter(|| runtime.block_on(load(&storage, "whole-log"))));
    group.finish();
    runtime.block_on(storage.close());
}

// What `criterion_group!`/`criterion_main!` expand to, written out because the macros generate an
// undocumented `pub fn` that the workspace's `missing_docs` lint rejects.
fn main() {
    let updates = trace_cache::updates().expect("the trace's updates");
    let expected_text_len = weft_benches::Trace::load_standard().expect("the trace loads").end_content.len();
    // Holds on any machine where the benchmarks can run at all: building a runtime only spawns threads.
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("building the tokio runtime");
    let mut criterion = Criterion::default().configure_from_args();
    compaction_bench(&mut criterion, &runtime, &updates);
    cold_load_bench(&mut criterion, &runtime, &updates, expected_text_len);
    criterion.final_summary();
}
