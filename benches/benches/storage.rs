//! Benchmark: durable appends per second through the update log (`weft::storage`), with and without
//! the writer thread's group commit having anything to group.
//!
//! Three scenarios, each on a fresh store in a temporary directory:
//! - `fsync/1_writer`: one writer appends one update at a time and awaits its receipt before the
//!   next — nothing to group, so one commit (one fsync) per update. The baseline.
//! - `fsync/64_writers`: 64 writers on 64 documents each append one keystroke-sized update and await
//!   its receipt, in a loop; updates queued during one commit share the next commit's fsync.
//! - `buffered/64_writers`: the same with `Durability::Buffered` (commits not fsynced).
//!
//! It measures the log alone: no relay, no sockets. The update bytes are opaque to storage, so a fixed
//! 30-byte payload stands in for a Yjs keystroke.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use criterion::{Criterion, Throughput};
use tokio::runtime::Runtime;
use weft::storage::{Crdt, DocKey, Durability, NewUpdate, Storage, StorageConfig};
use weft_sync_core::DocId;

/// Size of one single-character Yjs text update, roughly.
const KEYSTROKE: &[u8] = &[0x2a; 30];

/// One document and the sequence number its next append takes.
struct Writer {
    doc: DocKey,
    next_seq: u64,
}

impl Writer {
    /// Appends one update and waits until it is durable.
    async fn append_one(&mut self, storage: &Storage, at_ms: i64) {
        let update = NewUpdate {
            seq: self.next_seq,
            bytes: Bytes::from_static(KEYSTROKE),
            user_id: None,
            client: None,
            at_ms,
        };
        self.next_seq += 1;
        // Holds unless the disk fails or fills up, which would make every figure meaningless anyway.
        let receipt = storage.append(self.doc, vec![update]).await.expect("storage accepts the append");
        receipt.await.expect("the append becomes durable");
    }
}

/// A store in its own temporary directory with one document per writer.
struct Log {
    storage: Storage,
    writers: Vec<Writer>,
    at_ms: i64,
    /// Dropped (deleted) after `storage` is closed.
    dir: tempfile::TempDir,
}

impl Log {
    async fn open(durability: Durability, writers: usize) -> Self {
        // Holds on any machine where the benchmarks can run at all: the system temp dir is writable.
        let dir = tempfile::Builder::new()
            .prefix("weft-bench-storage-")
            .tempdir_in(std::env::temp_dir())
            .expect("creating a temporary directory");
        let config =
            StorageConfig { data_dir: dir.path().to_owned(), durability, snapshot_inline_max: 1 << 20 };
        let storage = Storage::open(&config).await.expect("opening the store");
        let at_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_millis() as i64);
        let mut docs = Vec::with_capacity(writers);
        for n in 0..writers {
            let name = DocId::new(format!("bench-{n}")).expect("the name is a valid document id");
            let stored =
                storage.load_or_create(&name, Crdt::Yjs, at_ms).await.expect("creating the document");
            docs.push(Writer { doc: stored.key, next_seq: 1 });
        }
        Self { storage, writers: docs, at_ms, dir }
    }

    /// Every writer, concurrently, appends `rounds` updates one after another, awaiting each
    /// receipt. Returns the wall time until the last one is durable.
    async fn run(&mut self, rounds: u64) -> Duration {
        let started = Instant::now();
        let tasks: Vec<_> = self
            .writers
            .drain(..)
            .map(|mut writer| {
                let storage = self.storage.clone();
                let at_ms = self.at_ms;
                tokio::spawn(async move {
                    for _ in 0..rounds {
                        writer.append_one(&storage, at_ms).await;
                    }
                    writer
                })
            })
            .collect();
        for task in tasks {
            // Holds: a writer task only panics if an append failed, which already aborts the bench.
            self.writers.push(task.await.expect("writer task completed"));
        }
        started.elapsed()
    }

    async fn close(self) {
        self.storage.close().await;
        drop(self.dir);
    }
}

fn storage_bench(c: &mut Criterion, runtime: &Runtime) {
    let mut group = c.benchmark_group("update_log_append");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    let scenarios = [
        ("fsync/1_writer", Durability::Fsync, 1),
        ("fsync/64_writers", Durability::Fsync, 64),
        ("buffered/64_writers", Durability::Buffered, 64),
    ];
    for (name, durability, writers) in scenarios {
        let mut log = runtime.block_on(Log::open(durability, writers));
        // One iteration is one update from every writer.
        group.throughput(Throughput::Elements(writers as u64));
        group.bench_function(name, |b| b.iter_custom(|rounds| runtime.block_on(log.run(rounds))));
        runtime.block_on(log.close());
    }
    group.finish();
}

// What `criterion_group!`/`criterion_main!` expand to, written out because the macros generate an
// undocumented `pub fn` that the workspace's `missing_docs` lint rejects.
fn main() {
    // Holds on any machine where the benchmarks can run at all: building a runtime only spawns threads.
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("building the tokio runtime");
    let mut criterion = Criterion::default().configure_from_args();
    storage_bench(&mut criterion, &runtime);
    criterion.final_summary();
}
