//! The writer thread: the only connection that writes, committing in groups.
//!
//! It blocks for one request, then takes every request already queued (up to [`MAX_BATCH`]) and runs
//! them all in one transaction, each inside its own savepoint so that one failing request (say a
//! duplicate sequence number) fails alone. One commit — one fsync in `Durability::Fsync` — then
//! acknowledges the whole group. While it commits, the next group queues up, so under load the cost
//! of a commit is shared by everyone who arrived during the previous one.

use std::any::Any;
use std::sync::Arc;

use bytes::Bytes;
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use weft_sync_core::relay::StoredItem;

use super::jobs::{self, Wake};
use super::{Crdt, DocKey, NewUpdate, StorageError};

/// Most requests committed in one transaction.
const MAX_BATCH: usize = 1024;

/// Where a snapshot's bytes live.
#[derive(Debug)]
pub(super) enum SnapshotData {
    Inline(Bytes),
    Blob { key: String, size: usize },
}

/// A request to the writer thread; every variant carries the channel its outcome goes to.
pub(super) enum WriteRequest {
    CreateDocument {
        name: String,
        crdt: Crdt,
        at_ms: i64,
        reply: Reply,
    },
    Append {
        doc: DocKey,
        updates: Vec<NewUpdate>,
        reply: Reply,
    },
    Compact {
        doc: DocKey,
        upto: u64,
        data: SnapshotData,
        at_ms: i64,
        reply: Reply,
    },
    Quarantine {
        doc: DocKey,
        items: Vec<(StoredItem, String)>,
        at_ms: i64,
        reply: Reply,
    },
    SetAside {
        doc: DocKey,
        upto: u64,
        data: SnapshotData,
        reason: String,
        at_ms: i64,
        reply: Reply,
    },
    /// A metadata write (accounts, workspaces, audit …): runs inside the group's transaction in
    /// its own savepoint; its value reaches the caller once the group is committed.
    Run {
        job: Option<Job>,
        reply: Reply,
    },
    Close {
        reply: Reply,
    },
}

/// What a [`WriteRequest::Run`] does with the writer's transaction.
pub(super) type Job = Box<dyn FnOnce(&Connection) -> Result<Box<dyn Any + Send>, StorageError> + Send>;

type Reply = oneshot::Sender<Result<Done, StorageError>>;

/// What a request did.
#[derive(Debug)]
pub(super) enum Done {
    Created(DocKey, Crdt),
    Appended,
    Compacted { replaced_blob: Option<String> },
    Quarantined,
    Ran(Box<dyn Any + Send>),
    Closed,
}

pub(super) fn spawn(
    conn: Connection,
    rx: mpsc::Receiver<WriteRequest>,
    wake: Arc<Wake>,
) -> std::io::Result<()> {
    std::thread::Builder::new().name("weft-storage-writer".into()).spawn(move || run(conn, rx, &wake))?;
    Ok(())
}

fn run(mut conn: Connection, mut rx: mpsc::Receiver<WriteRequest>, wake: &Wake) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        let closing = batch.iter().any(|r| matches!(r, WriteRequest::Close { .. }));
        let started = std::time::Instant::now();
        let size = batch.len();
        commit_group(&mut conn, &mut batch, wake);
        tracing::trace!(
            requests = size,
            elapsed_us = started.elapsed().as_micros() as u64,
            "group committed"
        );
        if closing {
            rx.close();
            // Anything still queued behind the close request is refused, never silently dropped.
            while let Ok(request) = rx.try_recv() {
                let _ = reply_of(request).send(Err(StorageError::Closed));
            }
            return;
        }
    }
}

/// Commits `batch`; the job worker is woken once the jobs its appends enqueued are committed.
fn commit_group(conn: &mut Connection, batch: &mut Vec<WriteRequest>, wake: &Wake) {
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut scheduled = None;
    let committed = (|| -> rusqlite::Result<()> {
        let mut tx = conn.transaction()?;
        for request in batch.iter_mut() {
            let savepoint = tx.savepoint()?;
            let outcome = execute(&savepoint, request, &mut scheduled);
            if outcome.is_ok() {
                savepoint.commit()?;
            }
            outcomes.push(outcome);
        }
        tx.commit()
    })();
    match committed {
        Ok(()) => {
            if let Some(at) = scheduled {
                wake.scheduled(at);
            }
            for (request, outcome) in batch.drain(..).zip(outcomes) {
                let _ = reply_of(request).send(outcome);
            }
        }
        Err(err) => {
            tracing::error!(error = %err, requests = batch.len(), "group commit failed");
            for request in batch.drain(..) {
                let _ = reply_of(request).send(Err(StorageError::Database(err.to_string())));
            }
        }
    }
}

fn reply_of(request: WriteRequest) -> Reply {
    match request {
        WriteRequest::CreateDocument { reply, .. }
        | WriteRequest::Append { reply, .. }
        | WriteRequest::Compact { reply, .. }
        | WriteRequest::Quarantine { reply, .. }
        | WriteRequest::SetAside { reply, .. }
        | WriteRequest::Run { reply, .. }
        | WriteRequest::Close { reply } => reply,
    }
}

/// Runs one request; `scheduled` becomes the earliest due time of a job it enqueued.
fn execute(
    tx: &Connection,
    request: &mut WriteRequest,
    scheduled: &mut Option<i64>,
) -> Result<Done, StorageError> {
    if let WriteRequest::Run { job, .. } = request
        && let Some(job) = job.take()
    {
        return job(tx).map(Done::Ran);
    }
    match &*request {
        WriteRequest::Run { .. } => Err(StorageError::Corrupt("a job ran twice".into())),
        WriteRequest::CreateDocument { name, crdt, at_ms, .. } => {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO documents (name, crdt, created_at) VALUES (?1, ?2, ?3)",
            )?
            .execute(rusqlite::params![name, crdt.as_str(), at_ms])?;
            let (key, found): (i64, String) =
                tx.query_row("SELECT key, crdt FROM documents WHERE name = ?1", [name], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })?;
            Ok(Done::Created(DocKey(key), Crdt::parse(&found)?))
        }
        WriteRequest::Append { doc, updates, .. } => {
            let mut insert = tx.prepare_cached(
                "INSERT INTO updates (doc, seq, bytes, user_id, client, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for update in updates {
                insert.execute(rusqlite::params![
                    doc.0,
                    update.seq as i64,
                    update.bytes.as_ref(),
                    update.user_id,
                    update.client.as_deref(),
                    update.at_ms
                ])?;
            }
            // The document's derivation is enqueued in the same transaction: committed together.
            if let Some(last) = updates.last()
                && let Some(at) = jobs::enqueue_derive(tx, *doc, last.at_ms)?
            {
                *scheduled = Some(scheduled.map_or(at, |s: i64| s.min(at)));
            }
            Ok(Done::Appended)
        }
        WriteRequest::Compact { doc, upto, data, at_ms, .. } => {
            let replaced_blob: Option<String> = tx
                .query_row("SELECT blob_key FROM snapshots WHERE doc = ?1", [doc.0], |row| row.get(0))
                .or_else(|err| match err {
                    rusqlite::Error::QueryReturnedNoRows => Ok(None),
                    other => Err(other),
                })?;
            let (bytes, blob_key, size) = match data {
                SnapshotData::Inline(bytes) => (Some(bytes.as_ref()), None, bytes.len()),
                SnapshotData::Blob { key, size } => (None, Some(key.as_str()), *size),
            };
            tx.prepare_cached(
                "INSERT INTO snapshots (doc, upto, bytes, blob_key, size, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (doc) DO UPDATE SET upto = excluded.upto, bytes = excluded.bytes,
                     blob_key = excluded.blob_key, size = excluded.size, at = excluded.at",
            )?
            .execute(rusqlite::params![
                doc.0,
                *upto as i64,
                bytes,
                blob_key,
                size as i64,
                at_ms
            ])?;
            // Log rows not yet folded into attribution stay (the load skips what the snapshot
            // holds); the next compaction after a checkpoint deletes them.
            tx.prepare_cached(
                "DELETE FROM updates WHERE doc = ?1
                 AND seq <= MIN(?2, (SELECT attributed_upto FROM documents WHERE key = ?1))",
            )?
            .execute(rusqlite::params![doc.0, *upto as i64])?;
            Ok(Done::Compacted { replaced_blob })
        }
        WriteRequest::Quarantine { doc, items, at_ms, .. } => {
            for (item, reason) in items {
                // Copy, then delete: the item leaves the document and is kept, with its metadata.
                let (copy, delete, seq) = match item {
                    StoredItem::Update { seq } => (
                        "INSERT INTO quarantine
                             (doc, kind, seq, bytes, size, user_id, written_at, quarantined_at, reason)
                         SELECT doc, 'update', seq, bytes, length(bytes), user_id, at, ?3, ?4
                         FROM updates WHERE doc = ?1 AND seq = ?2",
                        "DELETE FROM updates WHERE doc = ?1 AND seq = ?2",
                        *seq,
                    ),
                    StoredItem::Snapshot { upto } => (
                        "INSERT INTO quarantine
                             (doc, kind, seq, bytes, blob_key, size, written_at, quarantined_at, reason)
                         SELECT doc, 'snapshot', upto, bytes, blob_key, size, at, ?3, ?4
                         FROM snapshots WHERE doc = ?1 AND upto = ?2",
                        "DELETE FROM snapshots WHERE doc = ?1 AND upto = ?2",
                        *upto,
                    ),
                };
                tx.prepare_cached(copy)?.execute(rusqlite::params![doc.0, seq as i64, at_ms, reason])?;
                tx.prepare_cached(delete)?.execute(rusqlite::params![doc.0, seq as i64])?;
            }
            Ok(Done::Quarantined)
        }
        WriteRequest::SetAside { doc, upto, data, reason, at_ms, .. } => {
            let (bytes, blob_key, size) = match data {
                SnapshotData::Inline(bytes) => (Some(bytes.as_ref()), None, bytes.len()),
                SnapshotData::Blob { key, size } => (None, Some(key.as_str()), *size),
            };
            tx.prepare_cached(
                "INSERT INTO quarantine
                     (doc, kind, seq, bytes, blob_key, size, written_at, quarantined_at, reason)
                 VALUES (?1, 'snapshot', ?2, ?3, ?4, ?5, ?6, ?6, ?7)",
            )?
            .execute(rusqlite::params![
                doc.0,
                *upto as i64,
                bytes,
                blob_key,
                size as i64,
                at_ms,
                reason
            ])?;
            Ok(Done::Quarantined)
        }
        WriteRequest::Close { .. } => Ok(Done::Closed),
    }
}
