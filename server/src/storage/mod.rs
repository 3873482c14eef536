//! Durable storage: the append-only update log, compacted snapshots and document metadata in SQLite
//! (WAL mode), with large snapshots in an `object_store` blob directory.
//!
//! All writes go through one writer thread that commits whatever has queued up in a single
//! transaction (group commit, see [`writer`]); reads run on pooled read-only connections on the
//! blocking thread pool. Nothing here knows about peers or wire formats.

pub mod accounts;
pub mod documents;
pub mod jobs;
pub mod notifications;
pub mod quarantine;
mod schema;
pub mod search;
pub mod versions;
pub mod workspaces;
mod writer;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::path::Path as BlobPath;
use object_store::{ObjectStore, ObjectStoreExt};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use tokio::sync::{mpsc, oneshot};
use weft_sync_core::DocId;
use weft_sync_core::access::Role;
use weft_sync_core::relay::Quarantined;

use writer::{Done, SnapshotData, WriteRequest};

pub use schema::latest_version as schema_version;

/// When the log counts as durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Every commit is fsynced before it is acknowledged (SQLite `synchronous=FULL`): survives power loss.
    Fsync,
    /// Commits reach the OS page cache before acknowledgement (`synchronous=NORMAL`): survives a crash
    /// of the process, not of the machine.
    Buffered,
}

/// Where and how to store.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// Directory holding `weft.sqlite3` and the `blobs/` directory; created if missing.
    pub data_dir: PathBuf,
    /// Commit durability.
    pub durability: Durability,
    /// Snapshots larger than this go to the blob store instead of SQLite.
    pub snapshot_inline_max: usize,
}

/// Which CRDT a document uses; fixed when the document is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Crdt {
    /// A Yjs (yrs) document.
    Yjs,
    /// An Automerge document.
    Automerge,
}

impl Crdt {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Yjs => "yjs",
            Self::Automerge => "automerge",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Self, StorageError> {
        match s {
            "yjs" => Ok(Self::Yjs),
            "automerge" => Ok(Self::Automerge),
            other => Err(StorageError::Corrupt(format!("unknown crdt {other:?}"))),
        }
    }
}

impl std::fmt::Display for Crdt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A document's row key in the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DocKey(pub i64);

/// An update to append to a document's log.
#[derive(Debug, Clone)]
pub struct NewUpdate {
    /// Log position; strictly increasing per document.
    pub seq: u64,
    /// The update exactly as received.
    pub bytes: Bytes,
    /// Who wrote it, when known.
    pub user_id: Option<String>,
    /// The connection it came from (`y-websocket/17`, `rest`), when known.
    pub client: Option<Arc<str>>,
    /// Milliseconds since the Unix epoch.
    pub at_ms: i64,
}

/// Everything needed to rebuild a document: the latest snapshot and the log after it.
#[derive(Debug)]
pub struct StoredDoc {
    /// The document's key.
    pub key: DocKey,
    /// The snapshot (covering the log up to `.0`) and its bytes.
    pub snapshot: Option<(u64, Bytes)>,
    /// Log entries after the snapshot, in sequence order.
    pub log: Vec<(u64, Bytes)>,
}

/// Why a storage operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    /// SQLite reported an error.
    #[error("database error: {0}")]
    Database(String),
    /// The blob store reported an error.
    #[error("blob store error: {0}")]
    Blob(String),
    /// The document exists with another CRDT.
    #[error("document {name:?} is a {found} document, not {expected}")]
    WrongCrdt {
        /// The document's name.
        name: String,
        /// The CRDT the caller asked for.
        expected: Crdt,
        /// The CRDT the document was created with.
        found: Crdt,
    },
    /// Stored data is not what this build wrote.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// Storage is shutting down.
    #[error("storage is closed")]
    Closed,
    /// A unique value (an email address, a slug) is already taken.
    #[error("{0} is already taken")]
    Taken(&'static str),
    /// Sign-up is by invite only, and the address has no pending invite.
    #[error("sign-up is by invite only")]
    NotInvited,
    /// A document's member list names someone who is not a member of its workspace.
    #[error("{0} is not a member of the workspace")]
    NotAMember(String),
    /// An id names nothing of the caller's.
    #[error("no such item: {0}")]
    Missing(i64),
    /// Another process (a running server) holds the data directory.
    #[error("{0} is in use by another weft process (a running server?)")]
    InUse(String),
}

impl From<rusqlite::Error> for StorageError {
    fn from(err: rusqlite::Error) -> Self {
        Self::Database(err.to_string())
    }
}

impl From<object_store::Error> for StorageError {
    fn from(err: object_store::Error) -> Self {
        Self::Blob(err.to_string())
    }
}

/// A pending commit: resolves once the write is durable (or failed).
#[must_use = "a receipt is how the caller learns the write is durable"]
pub struct Receipt(oneshot::Receiver<Result<Done, StorageError>>);

impl Future for Receipt {
    type Output = Result<(), StorageError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map(|outcome| match outcome {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(err)) => Err(err),
            Err(_) => Err(StorageError::Closed),
        })
    }
}

/// Cloneable handle to the store.
#[derive(Clone)]
pub struct Storage {
    inner: Arc<Inner>,
}

struct Inner {
    db_path: PathBuf,
    writer: mpsc::Sender<WriteRequest>,
    readers: Mutex<Vec<Connection>>,
    blobs: Arc<dyn ObjectStore>,
    snapshot_inline_max: usize,
    wake: Arc<jobs::Wake>,
}

/// Requests that may wait for the writer thread at once; senders beyond that wait their turn.
const WRITE_QUEUE: usize = 4096;

impl Storage {
    /// Opens (creating and migrating if needed) the store under `config.data_dir` and starts the
    /// writer thread.
    ///
    /// # Errors
    /// [`StorageError`] when the directory, database or blob store cannot be opened.
    pub async fn open(config: &StorageConfig) -> Result<Self, StorageError> {
        let data_dir = config.data_dir.clone();
        let durability = config.durability;
        let (db_path, conn) = tokio::task::spawn_blocking(move || -> Result<_, StorageError> {
            std::fs::create_dir_all(data_dir.join("blobs"))
                .map_err(|e| StorageError::Database(format!("creating {}: {e}", data_dir.display())))?;
            let db_path = data_dir.join("weft.sqlite3");
            let mut conn = Connection::open(&db_path)?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            let synchronous = match durability {
                Durability::Fsync => "FULL",
                Durability::Buffered => "NORMAL",
            };
            conn.pragma_update(None, "synchronous", synchronous)?;
            conn.pragma_update(None, "foreign_keys", "ON")?;
            conn.busy_timeout(std::time::Duration::from_secs(5))?;
            schema::migrate(&mut conn)?;
            Ok((db_path, conn))
        })
        .await
        .map_err(|e| StorageError::Database(format!("opening task failed: {e}")))??;

        let blobs = LocalFileSystem::new_with_prefix(config.data_dir.join("blobs"))?
            .with_fsync(durability == Durability::Fsync);
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let wake = Arc::new(jobs::Wake::default());
        writer::spawn(conn, rx, wake.clone())
            .map_err(|e| StorageError::Database(format!("starting writer: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                db_path,
                writer: tx,
                readers: Mutex::new(Vec::new()),
                blobs: Arc::new(blobs),
                snapshot_inline_max: config.snapshot_inline_max,
                wake,
            }),
        })
    }

    /// Loads a document, creating it with `crdt` if it does not exist.
    ///
    /// # Errors
    /// [`StorageError::WrongCrdt`] when it exists with another CRDT; other variants when storage fails.
    pub async fn load_or_create(
        &self,
        name: &DocId,
        crdt: Crdt,
        now_ms: i64,
    ) -> Result<StoredDoc, StorageError> {
        let lookup_name = name.as_str().to_owned();
        let found = self
            .read(move |conn| {
                conn.query_row("SELECT key, crdt FROM documents WHERE name = ?1", [&lookup_name], |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
                })
                .optional()
            })
            .await?;
        let (key, found_crdt) = match found {
            Some((key, crdt)) => (DocKey(key), Crdt::parse(&crdt)?),
            None => {
                let request = |reply| WriteRequest::CreateDocument {
                    name: name.as_str().to_owned(),
                    crdt,
                    at_ms: now_ms,
                    reply,
                };
                match self.write(request).await? {
                    Done::Created(key, crdt) => (key, crdt),
                    other => {
                        return Err(StorageError::Corrupt(format!("unexpected writer reply {other:?}")));
                    }
                }
            }
        };
        if found_crdt != crdt {
            return Err(StorageError::WrongCrdt {
                name: name.to_string(),
                expected: crdt,
                found: found_crdt,
            });
        }
        let (snapshot, log) = self.read(move |conn| read_document(conn, key)).await?;
        let snapshot = match snapshot {
            None => None,
            Some((upto, StoredSnapshot::Inline(bytes))) => Some((upto, bytes)),
            Some((upto, StoredSnapshot::Blob(blob_key))) => {
                let bytes = self.inner.blobs.get(&BlobPath::from(blob_key)).await?.bytes().await?;
                Some((upto, bytes))
            }
        };
        Ok(StoredDoc { key, snapshot, log })
    }

    /// Queues `updates` for appending to `doc`'s log, in order, after every write queued before.
    /// Returns once queued; the [`Receipt`] resolves when the updates are durable.
    ///
    /// # Errors
    /// [`StorageError::Closed`] when storage is shutting down.
    pub async fn append(&self, doc: DocKey, updates: Vec<NewUpdate>) -> Result<Receipt, StorageError> {
        let (reply, done) = oneshot::channel();
        self.inner
            .writer
            .send(WriteRequest::Append { doc, updates, reply })
            .await
            .map_err(|_| StorageError::Closed)?;
        Ok(Receipt(done))
    }

    /// Replaces `doc`'s log prefix up to `upto` with `state` atomically. The caller must have queued
    /// every append up to `upto` before calling this.
    ///
    /// # Errors
    /// [`StorageError`] when the snapshot could not be stored; the log is then unchanged.
    pub async fn compact(
        &self,
        doc: DocKey,
        upto: u64,
        state: Bytes,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        let size = state.len();
        let (data, new_blob) = if size > self.inner.snapshot_inline_max {
            let key = format!("snapshots/{}/{upto}.bin", doc.0);
            self.inner.blobs.put(&BlobPath::from(key.clone()), state.into()).await?;
            (SnapshotData::Blob { key: key.clone(), size }, Some(key))
        } else {
            (SnapshotData::Inline(state), None)
        };
        let request = |reply| WriteRequest::Compact { doc, upto, data, at_ms: now_ms, reply };
        match self.write(request).await {
            Ok(Done::Compacted { replaced_blob }) => {
                if let Some(old) = replaced_blob.filter(|old| Some(old) != new_blob.as_ref()) {
                    self.delete_blob(old).await;
                }
                Ok(())
            }
            Ok(other) => Err(StorageError::Corrupt(format!("unexpected writer reply {other:?}"))),
            Err(err) => {
                if let Some(key) = new_blob {
                    self.delete_blob(key).await;
                }
                Err(err)
            }
        }
    }

    /// Moves the stored items that broke `doc` (found when it was loaded) to the quarantine, in one
    /// transaction: each is copied there with its metadata and the reason, then removed from the
    /// document. Items already gone are skipped, so repeating this is harmless.
    ///
    /// # Errors
    /// [`StorageError`] when the transaction fails; the items then stay where they were.
    pub async fn quarantine(
        &self,
        doc: DocKey,
        items: &[Quarantined],
        now_ms: i64,
    ) -> Result<(), StorageError> {
        let items = items.iter().map(|q| (q.item, q.reason.clone())).collect();
        let request = |reply| WriteRequest::Quarantine { doc, items, at_ms: now_ms, reply };
        match self.write(request).await? {
            Done::Quarantined => Ok(()),
            other => Err(StorageError::Corrupt(format!("unexpected writer reply {other:?}"))),
        }
    }

    /// Keeps a snapshot that failed verification in the quarantine (it never replaces log entries),
    /// so that it can be examined.
    ///
    /// # Errors
    /// [`StorageError`] when it could not be stored.
    pub async fn set_aside_snapshot(
        &self,
        doc: DocKey,
        upto: u64,
        state: Bytes,
        reason: String,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        let size = state.len();
        let data = if size > self.inner.snapshot_inline_max {
            let key = format!("quarantine/{}/{upto}-{now_ms}.bin", doc.0);
            self.inner.blobs.put(&BlobPath::from(key.clone()), state.into()).await?;
            SnapshotData::Blob { key, size }
        } else {
            SnapshotData::Inline(state)
        };
        let request = |reply| WriteRequest::SetAside { doc, upto, data, reason, at_ms: now_ms, reply };
        match self.write(request).await? {
            Done::Quarantined => Ok(()),
            other => Err(StorageError::Corrupt(format!("unexpected writer reply {other:?}"))),
        }
    }

    /// Whether the database answers a query and the writer is running.
    pub async fn is_ready(&self) -> bool {
        !self.inner.writer.is_closed()
            && self.read(|conn| conn.query_row("SELECT 1", [], |_| Ok(()))).await.is_ok()
    }

    /// Commits everything queued so far and stops the writer thread. Later writes fail with
    /// [`StorageError::Closed`].
    pub async fn close(&self) {
        let request = |reply| WriteRequest::Close { reply };
        if let Err(err) = self.write(request).await
            && !matches!(err, StorageError::Closed)
        {
            tracing::warn!(error = %err, "closing storage");
        }
    }

    /// Path of the SQLite database file.
    pub fn db_path(&self) -> &std::path::Path {
        &self.inner.db_path
    }

    async fn delete_blob(&self, key: String) {
        if let Err(err) = self.inner.blobs.delete(&BlobPath::from(key.clone())).await {
            tracing::warn!(blob = %key, error = %err, "could not delete replaced snapshot blob");
        }
    }

    async fn write(
        &self,
        request: impl FnOnce(oneshot::Sender<Result<Done, StorageError>>) -> WriteRequest,
    ) -> Result<Done, StorageError> {
        let (reply, done) = oneshot::channel();
        self.inner.writer.send(request(reply)).await.map_err(|_| StorageError::Closed)?;
        done.await.map_err(|_| StorageError::Closed)?
    }

    /// Runs `job` on the writer thread inside the next group commit (in its own savepoint: an
    /// error rolls back only this job) and returns its value once that commit is durable. Every
    /// metadata write goes through here, typed by the module that owns its tables.
    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&Connection) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StorageError> {
        let job: writer::Job =
            Box::new(move |conn| job(conn).map(|value| Box::new(value) as Box<dyn std::any::Any + Send>));
        match self.write(|reply| WriteRequest::Run { job: Some(job), reply }).await? {
            Done::Ran(value) => value
                .downcast::<T>()
                .map(|value| *value)
                .map_err(|_| StorageError::Corrupt("a job's value has another type".into())),
            other => Err(StorageError::Corrupt(format!("unexpected writer reply {other:?}"))),
        }
    }

    /// Runs `f` on a pooled read-only connection on the blocking thread pool.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StorageError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = inner.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let mut conn = match pooled {
                Some(conn) => conn,
                None => open_reader(&inner.db_path)?,
            };
            let result = f(&mut conn);
            inner.readers.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
            Ok(result?)
        })
        .await
        .map_err(|e| StorageError::Database(format!("read task failed: {e}")))?
    }
}

/// An exclusive hold on a data directory: while it lives, no other `weft serve` (or
/// `weft rebuild-derived`) uses the directory. Released when dropped, or when the process ends.
#[derive(Debug)]
pub struct DataDirLock {
    _file: std::fs::File,
}

/// Takes the exclusive hold on `data_dir` (creating it if needed).
///
/// # Errors
/// [`StorageError::InUse`] when another process holds it; [`StorageError::Database`] when the
/// lock file cannot be opened.
pub fn lock_data_dir(data_dir: &std::path::Path) -> Result<DataDirLock, StorageError> {
    let path = data_dir.join("weft.lock");
    let file = std::fs::create_dir_all(data_dir)
        .and_then(|()| std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path))
        .map_err(|e| StorageError::Database(format!("opening {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(DataDirLock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => Err(StorageError::InUse(data_dir.display().to_string())),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(StorageError::Database(format!("locking {}: {e}", path.display())))
        }
    }
}

/// A role as stored, or [`StorageError::Corrupt`].
pub(crate) fn role(raw: &str) -> Result<Role, StorageError> {
    Role::parse(raw).ok_or_else(|| StorageError::Corrupt(format!("unknown role {raw:?}")))
}

/// A unique-constraint violation as [`StorageError::Taken`] naming `what`; other errors as they are.
pub(crate) fn taken(err: rusqlite::Error, what: &'static str) -> StorageError {
    match err {
        rusqlite::Error::SqliteFailure(e, _) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
            StorageError::Taken(what)
        }
        other => other.into(),
    }
}

/// `user_id`'s role in `workspace`, if they are a member.
pub(crate) fn role_of(
    conn: &Connection,
    workspace: &str,
    user_id: &str,
) -> Result<Option<Role>, StorageError> {
    let raw: Option<String> = conn
        .query_row(
            "SELECT role FROM members WHERE workspace = ?1 AND user_id = ?2",
            [workspace, user_id],
            |row| row.get(0),
        )
        .optional()?;
    raw.map(|raw| role(&raw)).transpose()
}

fn open_reader(path: &std::path::Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

enum StoredSnapshot {
    Inline(Bytes),
    Blob(String),
}

type DocumentRows = (Option<(u64, StoredSnapshot)>, Vec<(u64, Bytes)>);

/// Reads a document's snapshot row and log tail in one read transaction, so both come from the same
/// database state.
fn read_document(conn: &mut Connection, key: DocKey) -> rusqlite::Result<DocumentRows> {
    let tx = conn.transaction()?;
    let snapshot = tx
        .query_row("SELECT upto, bytes, blob_key FROM snapshots WHERE doc = ?1", [key.0], |row| {
            let upto: i64 = row.get(0)?;
            let bytes: Option<Vec<u8>> = row.get(1)?;
            let blob_key: Option<String> = row.get(2)?;
            let data = match (bytes, blob_key) {
                (Some(bytes), _) => StoredSnapshot::Inline(Bytes::from(bytes)),
                (None, Some(key)) => StoredSnapshot::Blob(key),
                (None, None) => StoredSnapshot::Inline(Bytes::new()),
            };
            Ok((upto as u64, data))
        })
        .optional()?;
    let after = snapshot.as_ref().map_or(0, |(upto, _)| *upto as i64);
    let mut stmt = tx.prepare("SELECT seq, bytes FROM updates WHERE doc = ?1 AND seq > ?2 ORDER BY seq")?;
    let log = stmt
        .query_map([key.0, after], |row| {
            Ok((row.get::<_, i64>(0)? as u64, Bytes::from(row.get::<_, Vec<u8>>(1)?)))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    drop(stmt);
    tx.finish()?;
    Ok((snapshot, log))
}
