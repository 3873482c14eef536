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
    // 3: accounts: people, their refresh tokens (stored hashed), the server's own signing key,
    //    and the audit log of security-relevant actions.
    "CREATE TABLE users (
         id            TEXT PRIMARY KEY,
         email         TEXT UNIQUE COLLATE NOCASE,
         name          TEXT NOT NULL,
         avatar_url    TEXT,
         status        TEXT NOT NULL DEFAULT 'available'
                       CHECK (status IN ('available', 'away', 'busy', 'offline')),
         password_hash TEXT,
         issuer        TEXT,
         subject       TEXT,
         created_at    INTEGER NOT NULL,
         UNIQUE (issuer, subject)
     );
     CREATE TABLE refresh_tokens (
         id         TEXT PRIMARY KEY,
         family     TEXT NOT NULL,
         user_id    TEXT NOT NULL REFERENCES users (id),
         hash       BLOB NOT NULL,
         created_at INTEGER NOT NULL,
         expires_at INTEGER NOT NULL,
         used_at    INTEGER,
         revoked_at INTEGER
     );
     CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family);
     CREATE TABLE server_keys (
         name       TEXT PRIMARY KEY,
         secret     BLOB NOT NULL,
         created_at INTEGER NOT NULL
     );
     CREATE TABLE audit (
         id        INTEGER PRIMARY KEY,
         at        INTEGER NOT NULL,
         actor     TEXT,
         action    TEXT NOT NULL,
         target    TEXT,
         address   TEXT,
         detail    TEXT
     );
     CREATE INDEX audit_by_actor ON audit (actor, at);",
    // 4: workspaces, their members with one role each, and invites (the token stored as its
    //    SHA-256). Deleting a workspace deletes its members and invites with it; its audit
    //    entries (which name it in `audit.workspace`) stay.
    "CREATE TABLE workspaces (
         id         TEXT PRIMARY KEY,
         name       TEXT NOT NULL,
         slug       TEXT NOT NULL UNIQUE,
         created_by TEXT NOT NULL REFERENCES users (id),
         created_at INTEGER NOT NULL
     );
     CREATE TABLE members (
         workspace TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
         user_id   TEXT NOT NULL REFERENCES users (id),
         role      TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'editor', 'commenter', 'viewer')),
         joined_at INTEGER NOT NULL,
         PRIMARY KEY (workspace, user_id)
     ) WITHOUT ROWID;
     CREATE INDEX members_by_user ON members (user_id);
     CREATE TABLE invites (
         id          TEXT PRIMARY KEY,
         workspace   TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
         email       TEXT NOT NULL COLLATE NOCASE,
         role        TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'editor', 'commenter', 'viewer')),
         token_hash  BLOB NOT NULL UNIQUE,
         invited_by  TEXT NOT NULL REFERENCES users (id),
         created_at  INTEGER NOT NULL,
         expires_at  INTEGER NOT NULL,
         revoked_at  INTEGER,
         accepted_at INTEGER,
         accepted_by TEXT REFERENCES users (id)
     );
     CREATE INDEX invites_by_workspace ON invites (workspace, created_at);
     ALTER TABLE audit ADD COLUMN workspace TEXT;
     CREATE INDEX audit_by_workspace ON audit (workspace, id);",
    // 5: documents as workspace objects. A document created through the API belongs to a
    //    workspace and has a kind, a title, flags and (when private) a member list; one a client
    //    merely names (`workspace` NULL) is a free document, open as the token provider says.
    //    Deleting a workspace marks its documents deleted; their logs stay until purged.
    "ALTER TABLE documents ADD COLUMN workspace TEXT;
     ALTER TABLE documents ADD COLUMN kind TEXT
         CHECK (kind IN ('document', 'channel', 'board', 'whiteboard'));
     ALTER TABLE documents ADD COLUMN title TEXT;
     ALTER TABLE documents ADD COLUMN private INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE documents ADD COLUMN dm INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE documents ADD COLUMN archived_at INTEGER;
     ALTER TABLE documents ADD COLUMN deleted_at INTEGER;
     ALTER TABLE documents ADD COLUMN created_by TEXT;
     CREATE INDEX documents_by_workspace ON documents (workspace, kind, created_at)
         WHERE workspace IS NOT NULL;
     CREATE TABLE document_members (
         doc      INTEGER NOT NULL REFERENCES documents (key),
         user_id  TEXT NOT NULL,
         added_at INTEGER NOT NULL,
         PRIMARY KEY (doc, user_id)
     ) WITHOUT ROWID;
     CREATE INDEX document_members_by_user ON document_members (user_id);",
    // 6: channel segments. A long channel's later messages live in segment documents, each a
    //    workspace document of kind `channel` whose `segment_of` names the channel; access,
    //    archiving and deletion are the channel's (`docs/schemas.md`, Long channels).
    "ALTER TABLE documents ADD COLUMN segment_of TEXT;
     CREATE INDEX documents_by_channel ON documents (segment_of) WHERE segment_of IS NOT NULL;",
    // 7: version history: the connection each update came from, who wrote which clocks (kept
    // when compaction deletes the log rows), versions, and how far the log is attributed.
    "ALTER TABLE updates ADD COLUMN client TEXT;
     ALTER TABLE documents ADD COLUMN attributed_upto INTEGER NOT NULL DEFAULT 0;
     CREATE TABLE authorship (
         doc     INTEGER NOT NULL REFERENCES documents (key),
         origin  BLOB NOT NULL,
         start   INTEGER NOT NULL,
         end     INTEGER NOT NULL,
         user_id TEXT,
         client  TEXT,
         at      INTEGER NOT NULL,
         PRIMARY KEY (doc, origin, start)
     ) WITHOUT ROWID;
     CREATE TABLE versions (
         id            TEXT PRIMARY KEY,
         doc           INTEGER NOT NULL REFERENCES documents (key),
         kind          TEXT NOT NULL CHECK (kind IN ('auto', 'named', 'restore')),
         name          TEXT,
         upto          INTEGER NOT NULL,
         state         BLOB NOT NULL,
         started_at    INTEGER NOT NULL,
         ended_at      INTEGER NOT NULL,
         authors       TEXT NOT NULL,
         summary       TEXT NOT NULL,
         created_by    TEXT,
         restored_from TEXT,
         created_at    INTEGER NOT NULL
     );
     CREATE INDEX versions_by_doc ON versions (doc, created_at, id);",
    // 8: derived state. The job queue every background task shares (a key per job: enqueuing
    //    a key that is queued re-arms it instead of adding another), how far each document's log
    //    has been derived, the search index (one row per searchable item, its text in FTS5), and
    //    notifications (one per document and fact key: derived once, however often derived).
    "ALTER TABLE documents ADD COLUMN derived_upto INTEGER NOT NULL DEFAULT 0;
     CREATE TABLE jobs (
         id          INTEGER PRIMARY KEY,
         kind        TEXT NOT NULL,
         key         TEXT NOT NULL UNIQUE,
         payload     TEXT NOT NULL,
         state       TEXT NOT NULL CHECK (state IN ('pending', 'running', 'dead')),
         armed       INTEGER NOT NULL DEFAULT 1,
         attempts    INTEGER NOT NULL DEFAULT 0,
         run_at      INTEGER NOT NULL,
         lease_until INTEGER,
         last_error  TEXT,
         created_at  INTEGER NOT NULL,
         updated_at  INTEGER NOT NULL
     );
     CREATE INDEX jobs_due ON jobs (state, run_at);
     CREATE TABLE search_items (
         id       INTEGER PRIMARY KEY,
         doc      INTEGER NOT NULL REFERENCES documents (key),
         item     TEXT NOT NULL,
         kind     TEXT NOT NULL,
         title    TEXT NOT NULL,
         body     TEXT NOT NULL,
         author   TEXT,
         at       INTEGER,
         archived INTEGER NOT NULL,
         UNIQUE (doc, item)
     );
     CREATE VIRTUAL TABLE search_text USING fts5 (
         title, body, content = 'search_items', content_rowid = 'id',
         tokenize = 'unicode61 remove_diacritics 2', prefix = '2 3'
     );
     CREATE TRIGGER search_items_insert AFTER INSERT ON search_items BEGIN
         INSERT INTO search_text (rowid, title, body) VALUES (new.id, new.title, new.body);
     END;
     CREATE TRIGGER search_items_delete AFTER DELETE ON search_items BEGIN
         INSERT INTO search_text (search_text, rowid, title, body) VALUES ('delete', old.id, old.title, old.body);
     END;
     CREATE TRIGGER search_items_update AFTER UPDATE OF title, body ON search_items BEGIN
         INSERT INTO search_text (search_text, rowid, title, body) VALUES ('delete', old.id, old.title, old.body);
         INSERT INTO search_text (rowid, title, body) VALUES (new.id, new.title, new.body);
     END;
     CREATE TABLE notifications (
         id         INTEGER PRIMARY KEY,
         doc        INTEGER NOT NULL REFERENCES documents (key),
         key        TEXT NOT NULL,
         user_id    TEXT NOT NULL,
         reason     TEXT NOT NULL,
         actor      TEXT,
         item       TEXT NOT NULL,
         excerpt    TEXT NOT NULL,
         at         INTEGER,
         created_at INTEGER NOT NULL,
         read_at    INTEGER,
         muted      INTEGER NOT NULL DEFAULT 0,
         UNIQUE (doc, key)
     );
     CREATE INDEX notifications_by_user ON notifications (user_id, id);
     CREATE TABLE notification_preferences (
         user_id TEXT NOT NULL,
         reason  TEXT NOT NULL,
         enabled INTEGER NOT NULL,
         PRIMARY KEY (user_id, reason)
     ) WITHOUT ROWID;
     CREATE TABLE notification_mutes (
         user_id TEXT NOT NULL,
         doc     TEXT NOT NULL,
         PRIMARY KEY (user_id, doc)
     ) WITHOUT ROWID;",
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
