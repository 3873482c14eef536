//! Workspace documents: the workspace columns of `documents` and the `document_members` table.
//!
//! A document created through the API belongs to one workspace for good and has a kind, a title,
//! archived and deleted flags and, when private, the list of members who may see it. A document a
//! client merely names over a WebSocket (a free document) has none of these and never gains them.
//! Every write is one writer job that records its audit entry; rules that depend on the rows
//! (every listed member belongs to the workspace) are checked inside that job.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;
use weft_sync_core::DocKind;
use weft_sync_core::access::Role;

use super::accounts::{AuditEntry, record};
use super::{Crdt, Storage, StorageError, jobs, role_of, taken};

/// A workspace document, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Document {
    /// Its id: the name WebSocket clients open it by (an automerge-repo document id).
    pub id: String,
    /// The workspace it belongs to.
    pub workspace: String,
    /// What it is.
    #[schema(value_type = String, example = "document")]
    pub kind: DocKind,
    /// Its CRDT.
    pub crdt: Crdt,
    /// Display title.
    pub title: String,
    /// Only the listed members see it.
    pub private: bool,
    /// A direct-message conversation (a private channel between its members).
    pub dm: bool,
    /// Archived documents are read-only.
    pub archived: bool,
    /// Who created it.
    pub created_by: String,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    /// Who may see it, when private (the creator among them); empty otherwise.
    pub members: Vec<String>,
    /// Deleted (never shown by the API).
    #[serde(skip)]
    pub deleted: bool,
}

/// A new workspace document.
#[derive(Debug, Clone)]
pub struct NewDocument {
    /// Its id.
    pub id: String,
    /// Its workspace.
    pub workspace: String,
    /// Its kind.
    pub kind: DocKind,
    /// Its CRDT.
    pub crdt: Crdt,
    /// Its title.
    pub title: String,
    /// Whether only `members` see it.
    pub private: bool,
    /// Whether it is a direct-message conversation.
    pub dm: bool,
    /// Its creator.
    pub created_by: String,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    /// Who may see it, when private (the creator is added).
    pub members: Vec<String>,
}

/// A change to a document; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct DocumentChange {
    /// New title.
    pub title: Option<String>,
    /// Archive (`true`) or unarchive.
    pub archived: Option<bool>,
    /// New member list of a private document (the creator stays on it).
    pub members: Option<Vec<String>>,
}

/// Which documents of a workspace to list.
#[derive(Debug, Clone, Copy, Default)]
pub struct DocumentFilter {
    /// Only this kind.
    pub kind: Option<DocKind>,
    /// Archived ones (`true`) or the others (`false`, the default).
    pub archived: bool,
}

/// What the access decision needs about a document and one person: the document, and their role
/// in its workspace (`None`: not a member).
#[derive(Debug, Clone)]
pub struct DocumentAccess {
    /// The document.
    pub document: Document,
    /// Their role.
    pub role: Option<Role>,
}

impl Document {
    /// Whether `user_id` is on its member list.
    pub fn lists(&self, user_id: &str) -> bool {
        self.members.iter().any(|m| m == user_id)
    }
}

const DOCUMENT_COLUMNS: &str = "d.key, d.name, d.workspace, d.kind, d.crdt, d.title, d.private, d.dm, \
     d.archived_at, d.created_by, d.created_at, d.deleted_at";

fn document_row(row: &Row<'_>) -> rusqlite::Result<(i64, Document, String, String)> {
    let kind: String = row.get(3)?;
    let crdt: String = row.get(4)?;
    Ok((
        row.get(0)?,
        Document {
            id: row.get(1)?,
            workspace: row.get(2)?,
            kind: DocKind::Document,
            crdt: Crdt::Yjs,
            title: row.get::<_, Option<String>>(5)?.unwrap_or_default(),
            private: row.get(6)?,
            dm: row.get(7)?,
            archived: row.get::<_, Option<i64>>(8)?.is_some(),
            created_by: row.get::<_, Option<String>>(9)?.unwrap_or_default(),
            created_at: row.get(10)?,
            members: Vec::new(),
            deleted: row.get::<_, Option<i64>>(11)?.is_some(),
        },
        kind,
        crdt,
    ))
}

/// Fills in what [`document_row`] read raw: the kind, the CRDT and the member list.
fn finish(
    conn: &Connection,
    (key, mut doc, kind, crdt): (i64, Document, String, String),
) -> Result<Document, StorageError> {
    doc.kind =
        DocKind::parse(&kind).ok_or_else(|| StorageError::Corrupt(format!("unknown kind {kind:?}")))?;
    doc.crdt = Crdt::parse(&crdt)?;
    if doc.private {
        let mut stmt = conn.prepare_cached(
            "SELECT user_id FROM document_members WHERE doc = ?1 ORDER BY added_at, user_id",
        )?;
        doc.members = stmt.query_map([key], |row| row.get(0))?.collect::<rusqlite::Result<_>>()?;
    }
    Ok(doc)
}

/// Workspace document `id`. A channel segment answers as its channel (the channel's key, flags,
/// members and title: its access is the channel's) with its own id and CRDT.
fn document_by_id(conn: &Connection, id: &str) -> Result<Option<(i64, Document)>, StorageError> {
    let segment_of: Option<Option<String>> = conn
        .query_row(
            "SELECT segment_of FROM documents WHERE name = ?1 AND workspace IS NOT NULL",
            [id],
            |row| row.get(0),
        )
        .optional()?;
    let (lookup, segment) = match segment_of {
        None => return Ok(None),
        Some(Some(channel)) => (channel, true),
        Some(None) => (id.to_owned(), false),
    };
    let sql =
        format!("SELECT {DOCUMENT_COLUMNS} FROM documents d WHERE d.name = ?1 AND d.workspace IS NOT NULL");
    let Some(raw) = conn.query_row(&sql, [&lookup], document_row).optional()? else { return Ok(None) };
    let key = raw.0;
    let mut document = finish(conn, raw)?;
    if segment {
        document.id = id.to_owned();
    }
    Ok(Some((key, document)))
}

/// The SQL condition under which the person whose id is the parameter `user` may see the
/// document row `alias` of a workspace they belong to: it is not private, or they are on its
/// list. Every listing and search filters with it; single documents go through `access::decide`.
pub(super) fn visible_to(alias: &str, user: &str) -> String {
    format!(
        "({alias}.private = 0 OR EXISTS (SELECT 1 FROM document_members dm \
         WHERE dm.doc = {alias}.key AND dm.user_id = {user}))"
    )
}

/// Checks that every one of `members` belongs to `workspace`.
fn check_members(conn: &Connection, workspace: &str, members: &[String]) -> Result<(), StorageError> {
    for member in members {
        if role_of(conn, workspace, member)?.is_none() {
            return Err(StorageError::NotAMember(member.clone()));
        }
    }
    Ok(())
}

fn set_members(conn: &Connection, key: i64, members: &[String], now_ms: i64) -> Result<(), StorageError> {
    conn.execute("DELETE FROM document_members WHERE doc = ?1", [key])?;
    let mut insert = conn.prepare_cached(
        "INSERT OR IGNORE INTO document_members (doc, user_id, added_at) VALUES (?1, ?2, ?3)",
    )?;
    for member in members {
        insert.execute(params![key, member, now_ms])?;
    }
    Ok(())
}

/// `members` with `creator` first and no repeats.
fn with_creator(creator: &str, members: &[String]) -> Vec<String> {
    let mut all = vec![creator.to_owned()];
    for member in members {
        if !all.contains(member) {
            all.push(member.clone());
        }
    }
    all
}

impl Storage {
    /// Creates a workspace document.
    ///
    /// # Errors
    /// [`StorageError::Taken`] when a document with its id exists; [`StorageError::NotAMember`]
    /// when a listed member does not belong to the workspace.
    pub async fn create_document(
        &self,
        new: NewDocument,
        audit: AuditEntry,
    ) -> Result<Document, StorageError> {
        self.run(move |conn| {
            let members = if new.private { with_creator(&new.created_by, &new.members) } else { Vec::new() };
            check_members(conn, &new.workspace, &members)?;
            conn.execute(
                "INSERT INTO documents (name, crdt, created_at, workspace, kind, title, private, dm, created_by)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    new.id,
                    new.crdt.as_str(),
                    new.created_at,
                    new.workspace,
                    new.kind.as_str(),
                    new.title,
                    new.private,
                    new.dm,
                    new.created_by
                ],
            )
            .map_err(|e| taken(e, "document id"))?;
            let key = conn.last_insert_rowid();
            set_members(conn, key, &members, new.created_at)?;
            record(
                conn,
                new.created_at,
                &AuditEntry { target: Some(new.id.clone()), workspace: Some(new.workspace.clone()), ..audit },
            )?;
            Ok(Document {
                id: new.id,
                workspace: new.workspace,
                kind: new.kind,
                crdt: new.crdt,
                title: new.title,
                private: new.private,
                dm: new.dm,
                archived: false,
                created_by: new.created_by,
                created_at: new.created_at,
                members,
                deleted: false,
            })
        })
        .await
    }

    /// The workspace document `id` (deleted ones too: check [`Document::deleted`]) and `user_id`'s
    /// role in its workspace, read together; `None` when `id` is not a workspace document.
    ///
    /// # Errors
    /// [`StorageError`] when storage fails.
    pub async fn document_access(
        &self,
        id: &str,
        user_id: &str,
    ) -> Result<Option<DocumentAccess>, StorageError> {
        let (id, user_id) = (id.to_owned(), user_id.to_owned());
        self.read(move |conn| {
            Ok((|| {
                let Some((_, document)) = document_by_id(conn, &id)? else { return Ok(None) };
                let role = role_of(conn, &document.workspace, &user_id)?;
                Ok(Some(DocumentAccess { document, role }))
            })())
        })
        .await?
    }

    /// The documents of `workspace` that `user_id` may see (private ones only when listed),
    /// newest first, `limit` at most, older than the document with row cursor `before`. Returns
    /// them with the cursor of the next page.
    ///
    /// # Errors
    /// [`StorageError`] when storage fails.
    pub async fn documents_in(
        &self,
        workspace: &str,
        user_id: &str,
        filter: DocumentFilter,
        before: Option<i64>,
        limit: u32,
    ) -> Result<(Vec<Document>, Option<i64>), StorageError> {
        let (workspace, user_id) = (workspace.to_owned(), user_id.to_owned());
        self.read(move |conn| {
            Ok((|| {
                let sql = format!(
                    "SELECT {DOCUMENT_COLUMNS} FROM documents d
                     WHERE d.workspace = ?1 AND d.deleted_at IS NULL AND d.key < ?2 AND d.segment_of IS NULL
                       AND (?3 IS NULL OR d.kind = ?3) AND ((d.archived_at IS NOT NULL) = ?4)
                       AND {visible}
                     ORDER BY d.key DESC LIMIT ?6",
                    visible = visible_to("d", "?5")
                );
                let mut stmt = conn.prepare(&sql)?;
                let rows = stmt
                    .query_map(
                        params![
                            workspace,
                            before.unwrap_or(i64::MAX),
                            filter.kind.map(DocKind::as_str),
                            filter.archived,
                            user_id,
                            i64::from(limit) + 1
                        ],
                        document_row,
                    )?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                let mut next = None;
                let mut documents = Vec::with_capacity(rows.len());
                for (index, raw) in rows.into_iter().enumerate() {
                    if index == limit as usize {
                        break;
                    }
                    next = Some(raw.0);
                    documents.push(finish(conn, raw)?);
                }
                let more = documents.len() == limit as usize;
                Ok((documents, next.filter(|_| more)))
            })())
        })
        .await?
    }

    /// Renames, archives or unarchives a document, or replaces a private document's member list;
    /// returns it after the change (`None` when it does not exist or is deleted).
    ///
    /// # Errors
    /// [`StorageError::NotAMember`] when a listed member does not belong to the workspace.
    pub async fn update_document(
        &self,
        id: &str,
        change: DocumentChange,
        audit: AuditEntry,
        now_ms: i64,
    ) -> Result<Option<Document>, StorageError> {
        let id = id.to_owned();
        let change_title = change.title.is_some();
        let updated = self.run(move |conn| {
            let Some((key, document)) = document_by_id(conn, &id)? else { return Ok(None) };
            if document.deleted {
                return Ok(None);
            }
            if let Some(title) = &change.title {
                conn.execute("UPDATE documents SET title = ?2 WHERE key = ?1", params![key, title])?;
                // The title is searchable: derive the document again.
                jobs::enqueue_derive_of(conn, &id, now_ms, now_ms)?;
            }
            if let Some(archived) = change.archived {
                conn.execute(
                    "UPDATE documents SET archived_at = CASE WHEN ?2 THEN coalesce(archived_at, ?3) END WHERE key = ?1",
                    params![key, archived, now_ms],
                )?;
            }
            if let Some(members) = &change.members {
                let members = with_creator(&document.created_by, members);
                check_members(conn, &document.workspace, &members)?;
                set_members(conn, key, &members, now_ms)?;
            }
            record(
                conn,
                now_ms,
                &AuditEntry { target: Some(id.clone()), workspace: Some(document.workspace.clone()), ..audit },
            )?;
            Ok(document_by_id(conn, &id)?.map(|(_, document)| document))
        })
        .await;
        if change_title {
            self.job_wake().scheduled(now_ms);
        }
        updated
    }

    /// Marks a document deleted. Returns whether it existed (and was not deleted already).
    ///
    /// # Errors
    /// [`StorageError`] when storage fails.
    pub async fn delete_document(
        &self,
        id: &str,
        audit: AuditEntry,
        now_ms: i64,
    ) -> Result<bool, StorageError> {
        let id = id.to_owned();
        let deleted = self
            .run(move |conn| {
                let Some((key, document)) = document_by_id(conn, &id)? else { return Ok(false) };
                if document.deleted {
                    return Ok(false);
                }
                conn.execute("UPDATE documents SET deleted_at = ?2 WHERE key = ?1", params![key, now_ms])?;
                // Its search rows go.
                jobs::enqueue_derive_of(conn, &id, now_ms, now_ms)?;
                record(
                    conn,
                    now_ms,
                    &AuditEntry {
                        target: Some(id.clone()),
                        workspace: Some(document.workspace.clone()),
                        ..audit
                    },
                )?;
                Ok(true)
            })
            .await?;
        if deleted {
            self.job_wake().scheduled(now_ms);
        }
        Ok(deleted)
    }

    /// Adds segment `segment` (a new document of `crdt`) to channel `channel`; see
    /// [`Storage::segments_of`].
    ///
    /// # Errors
    /// [`StorageError`] when storage fails, or `channel` is not a workspace document.
    pub async fn create_segment(
        &self,
        channel: &str,
        segment: &str,
        crdt: Crdt,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        let (channel, segment) = (channel.to_owned(), segment.to_owned());
        self.run(move |conn| {
            let added = conn
                .execute(
                    "INSERT INTO documents (name, crdt, created_at, workspace, kind, title, created_by, segment_of)
                     SELECT ?1, ?2, ?3, workspace, 'channel', title, created_by, name FROM documents
                     WHERE name = ?4 AND workspace IS NOT NULL AND segment_of IS NULL",
                    params![segment, crdt.as_str(), now_ms, channel],
                )
                .map_err(|e| taken(e, "document id"))?;
            if added == 0 {
                return Err(StorageError::Corrupt(format!("{channel} is not a channel to segment")));
            }
            Ok(())
        })
        .await
    }

    /// The segment documents of channel `channel`, oldest first.
    ///
    /// # Errors
    /// [`StorageError`] when storage fails.
    pub async fn segments_of(&self, channel: &str) -> Result<Vec<String>, StorageError> {
        let channel = channel.to_owned();
        self.read(move |conn| {
            let mut stmt =
                conn.prepare_cached("SELECT name FROM documents WHERE segment_of = ?1 ORDER BY key")?;
            stmt.query_map([channel], |row| row.get(0))?.collect::<rusqlite::Result<_>>()
        })
        .await
    }

    /// The ids of every workspace document, deleted ones included (for the access directory).
    ///
    /// # Errors
    /// [`StorageError`] when storage fails.
    pub async fn workspace_document_ids(&self) -> Result<Vec<String>, StorageError> {
        self.read(|conn| {
            let mut stmt = conn.prepare("SELECT name FROM documents WHERE workspace IS NOT NULL")?;
            stmt.query_map([], |row| row.get(0))?.collect()
        })
        .await
    }
}

/// Marks every document of `workspace` deleted (its workspace is being deleted).
pub(super) fn delete_all_in(conn: &Connection, workspace: &str, now_ms: i64) -> Result<(), StorageError> {
    conn.execute(
        "UPDATE documents SET deleted_at = ?2 WHERE workspace = ?1 AND deleted_at IS NULL",
        params![workspace, now_ms],
    )?;
    Ok(())
}
