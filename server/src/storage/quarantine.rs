//! Reading the quarantine for operators (`weft quarantine list` and `weft quarantine export`):
//! the stored items a load found breaking their document, kept with their metadata.
//!
//! These open the database read-only, beside a running server if there is one (WAL allows it);
//! moving items into the quarantine is the writer's job (`Storage::quarantine`).

use std::path::Path;

use bytes::Bytes;
use object_store::ObjectStoreExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path as BlobPath;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde::Serialize;

use super::StorageError;

/// One quarantined item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuarantineEntry {
    /// The item's id in the quarantine.
    pub id: i64,
    /// The document's name.
    pub document: String,
    /// The document's CRDT.
    pub crdt: String,
    /// `update` or `snapshot`.
    pub kind: String,
    /// For an update its sequence number, for a snapshot the last one it covered.
    pub seq: u64,
    /// Size in bytes.
    pub size: u64,
    /// Who wrote it, when known.
    pub user_id: Option<String>,
    /// When it was stored, ms since the Unix epoch.
    pub written_at: i64,
    /// When it was quarantined, ms since the Unix epoch.
    pub quarantined_at: i64,
    /// Why.
    pub reason: String,
}

/// Every quarantined item in the store under `data_dir`, oldest first. A store whose schema
/// predates the quarantine has none.
///
/// # Errors
/// [`StorageError`] when there is no database there or it cannot be read.
pub fn list(data_dir: &Path) -> Result<Vec<QuarantineEntry>, StorageError> {
    let conn = open(data_dir)?;
    if !has_quarantine(&conn)? {
        return Ok(Vec::new());
    }
    let mut stmt = conn.prepare(
        "SELECT q.id, d.name, d.crdt, q.kind, q.seq, q.size, q.user_id, q.written_at, q.quarantined_at, q.reason
         FROM quarantine q JOIN documents d ON d.key = q.doc ORDER BY q.id",
    )?;
    let rows = stmt.query_map([], |row| {
        Ok(QuarantineEntry {
            id: row.get(0)?,
            document: row.get(1)?,
            crdt: row.get(2)?,
            kind: row.get(3)?,
            seq: row.get::<_, i64>(4)? as u64,
            size: row.get::<_, i64>(5)? as u64,
            user_id: row.get(6)?,
            written_at: row.get(7)?,
            quarantined_at: row.get(8)?,
            reason: row.get(9)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// The bytes of quarantined item `id`, exactly as they were stored.
///
/// # Errors
/// [`StorageError::Corrupt`] when there is no such item; other variants when reading fails.
pub async fn export(data_dir: &Path, id: i64) -> Result<Bytes, StorageError> {
    let conn = open(data_dir)?;
    let found: Option<(Option<Vec<u8>>, Option<String>)> = if has_quarantine(&conn)? {
        conn.query_row("SELECT bytes, blob_key FROM quarantine WHERE id = ?1", [id], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()?
    } else {
        None
    };
    match found {
        None => Err(StorageError::Corrupt(format!("no quarantined item {id}"))),
        Some((Some(bytes), _)) => Ok(Bytes::from(bytes)),
        Some((None, Some(key))) => {
            let blobs = LocalFileSystem::new_with_prefix(data_dir.join("blobs"))?;
            Ok(blobs.get(&BlobPath::from(key)).await?.bytes().await?)
        }
        Some((None, None)) => Ok(Bytes::new()),
    }
}

fn open(data_dir: &Path) -> Result<Connection, StorageError> {
    let path = data_dir.join("weft.sqlite3");
    if !path.exists() {
        return Err(StorageError::Database(format!("no Weft database at {}", path.display())));
    }
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

fn has_quarantine(conn: &Connection) -> Result<bool, StorageError> {
    let found: Option<i64> = conn
        .query_row("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'quarantine'", [], |row| {
            row.get(0)
        })
        .optional()?;
    Ok(found.is_some())
}
