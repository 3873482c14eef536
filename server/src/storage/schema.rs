//! The SQLite schema and its migrations, applied in order and recorded in `PRAGMA user_version`.
//!
//! `docs/storage.md` describes every table; keep the two in step.

use rusqlite::Connection;

/// Each entry migrates from version `index` to `index + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: documents, the update log and compacted snapshots.
    "CREATE TABLE documents (
         key        INTEGER PRIMARY KEY,
         name       TEXT NOT NULL UNIQUE,
         crdt       TEXT NOT NULL CHECK (crdt IN ('yjs', 'automerge')),
         created_at INTEGER NOT NULL
     );
     CREATE TABLE updates (
         doc     INTEGER NOT NULL REFERENCES documents (key),
         seq     INTEGER NOT NULL,
         bytes   BLOB NOT NULL,
         user_id TEXT,
         at      INTEGER NOT NULL,
         PRIMARY KEY (doc, seq)
     );
     CREATE TABLE snapshots (
         doc      INTEGER PRIMARY KEY REFERENCES documents (key),
         upto     INTEGER NOT NULL,
         bytes    BLOB,
         blob_key TEXT,
         size     INTEGER NOT NULL,
         at       INTEGER NOT NULL,
         CHECK ((bytes IS NULL) <> (blob_key IS NULL))
     );",
    // 2: the quarantine, where stored items that broke their document are kept, never deleted.
    "CREATE TABLE quarantine (
         id             INTEGER PRIMARY KEY,
         doc            INTEGER NOT NULL REFERENCES documents (key),
         kind           TEXT NOT NULL CHECK (kind IN ('update', 'snapshot')),
         seq            INTEGER NOT NULL,
         bytes          BLOB,
         blob_key       TEXT,
         size           INTEGER NOT NULL,
         user_id        TEXT,
         written_at     INTEGER NOT NULL,
         quarantined_at INTEGER NOT NULL,
         reason         TEXT NOT NULL,
         CHECK ((bytes IS NULL) <> (blob_key IS NULL))
     );
     CREATE INDEX quarantine_by_doc ON quarantine (doc);",
];

/// Brings the database up to the latest schema.
///
/// # Errors
/// The SQLite error of the first statement that fails; the migration's transaction is rolled back.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    for (version, sql) in MIGRATIONS.iter().enumerate().skip(current.max(0) as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", version as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

/// The schema version this build writes.
pub fn latest_version() -> usize {
    MIGRATIONS.len()
}
