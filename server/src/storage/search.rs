//! The search index: one `search_items` row per searchable item of a workspace document, its
//! title and text in the FTS5 table `search_text` (BM25 ranking, snippets; case and accents
//! folded by the `unicode61` tokenizer), and how far each document's log has been derived
//! (`documents.derived_upto`). Derivation writes it (`crate::derive`); the search route reads it.

use std::collections::{HashMap, HashSet};

use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use weft_sync_core::DocKind;
use weft_sync_core::notify::Fact;
use weft_sync_core::search::{Entry, ItemKind, Query};

use super::documents::visible_to;
use super::jobs;
use super::notifications::{self, Notified};
use super::{Crdt, Storage, StorageError};

/// Marks the start of a highlighted match in what SQLite returns (a private-use character, so
/// no document text is mistaken for it).
const MARK_START: char = '\u{e000}';
/// Marks its end.
const MARK_END: char = '\u{e001}';
/// Words of context a snippet shows.
const SNIPPET_WORDS: u32 = 16;

/// The last log position committed for the document row `d`: its newest log entry, or what
/// its snapshot holds when compaction took the entries.
const LOGGED_UPTO: &str = "MAX(COALESCE((SELECT MAX(seq) FROM updates WHERE doc = d.key), 0), \
     COALESCE((SELECT upto FROM snapshots WHERE doc = d.key), 0))";

/// Enqueues, due `now`, the derivation of every live workspace document `d` that meets `and`
/// (SQL starting with `AND`, or empty for all); returns how many.
fn enqueue_derivations(conn: &rusqlite::Connection, and: &str, now: i64) -> Result<usize, StorageError> {
    let names: Vec<String> = conn
        .prepare(&format!(
            "SELECT d.name FROM documents d WHERE d.workspace IS NOT NULL AND d.deleted_at IS NULL {and}"
        ))?
        .query_map([], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for name in &names {
        jobs::enqueue_derive_of(conn, name, now, now)?;
    }
    Ok(names.len())
}

/// A workspace document as derivation needs it.
#[derive(Debug, Clone)]
pub struct Derivable {
    /// Its row.
    pub key: i64,
    /// Its id.
    pub id: String,
    /// Its kind.
    pub kind: DocKind,
    /// Its CRDT.
    pub crdt: Crdt,
    /// Its title.
    pub title: String,
    /// When it was created.
    pub created_at: i64,
    /// A segment of a long channel (its title and flags are the channel's).
    pub segment: bool,
    /// Deleted: it has no search rows.
    pub deleted: bool,
    /// The last log position committed when this was read.
    pub upto: u64,
}

/// What one derivation changed in the index.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Indexed {
    /// Rows added.
    pub added: usize,
    /// Rows whose text or facts changed.
    pub changed: usize,
    /// Rows removed.
    pub removed: usize,
}

/// What to search for, where, and which page.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    /// The parsed query.
    pub query: Query,
    /// Only items of this kind.
    pub kind: Option<ItemKind>,
    /// Only messages of this channel (its id; its segments included).
    pub channel: Option<String>,
    /// Only items this person wrote.
    pub author: Option<String>,
    /// Only items written at or after this time (milliseconds since the Unix epoch).
    pub from: Option<i64>,
    /// Only items written before this time.
    pub to: Option<i64>,
    /// Archived documents and tasks too (default: left out).
    pub archived: bool,
    /// The page after this cursor (the `next` of the previous page).
    pub after: Option<Cursor>,
    /// Results at most.
    pub limit: u32,
}

/// Where a page of results ends: the last result's score and row, so the next page starts after it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cursor {
    score: f64,
    row: i64,
}

impl Cursor {
    /// The cursor's text, as the API hands it out.
    pub fn encode(self) -> String {
        format!("{:016x}.{}", self.score.to_bits(), self.row)
    }

    /// The cursor `text` encodes, if it is one.
    pub fn decode(text: &str) -> Option<Self> {
        let (bits, row) = text.split_once('.')?;
        let score = f64::from_bits(u64::from_str_radix(bits, 16).ok()?);
        Some(Self { score: score.is_finite().then_some(score)?, row: row.parse().ok()? })
    }
}

/// One search result.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Hit {
    /// What it is: `document`, `comment`, `message`, `task` or `shape`.
    #[schema(value_type = String, example = "message")]
    pub kind: ItemKind,
    /// The item's id in its document (a message, comment, task or shape id); absent for a document.
    pub item: Option<String>,
    /// The document it is in.
    pub document: String,
    /// That document's kind.
    #[schema(value_type = String, example = "channel")]
    pub document_kind: DocKind,
    /// That document's title.
    pub document_title: String,
    /// The channel a message is in (a long channel's segments answer as the channel).
    pub channel: Option<String>,
    /// The item's title with the matches marked: HTML, escaped, matches in `<mark>`.
    pub title: String,
    /// The best-matching passage of its text, the same way.
    pub snippet: String,
    /// Who wrote it, when known.
    pub author: Option<String>,
    /// When it was written (milliseconds since the Unix epoch), when known.
    pub at: Option<i64>,
    /// In an archived document, or an archived task.
    pub archived: bool,
    /// Its rank: lower is better (BM25, title matches weighted above text).
    pub score: f64,
}

impl Storage {
    /// Workspace document `id` as derivation needs it; `None` for a free document.
    ///
    /// # Errors
    /// [`StorageError`] when storage fails.
    pub async fn derivable(&self, id: &str) -> Result<Option<Derivable>, StorageError> {
        let id = id.to_owned();
        let raw = self
            .read(move |conn| {
                conn.query_row(
                    &format!(
                        "SELECT d.key, d.kind, d.crdt, COALESCE(c.title, d.title), d.created_at, d.segment_of,
                            COALESCE(c.deleted_at, d.deleted_at),
                            {LOGGED_UPTO}
                     FROM documents d LEFT JOIN documents c ON c.name = d.segment_of
                     WHERE d.name = ?1 AND d.workspace IS NOT NULL"
                    ),
                    [&id],
                    |row| {
                        Ok((
                            row.get::<_, i64>(0)?,
                            row.get::<_, Option<String>>(1)?,
                            row.get::<_, String>(2)?,
                            row.get::<_, Option<String>>(3)?,
                            row.get::<_, i64>(4)?,
                            row.get::<_, Option<String>>(5)?,
                            row.get::<_, Option<i64>>(6)?,
                            row.get::<_, i64>(7)?,
                        ))
                    },
                )
                .optional()
                .map(|found| found.map(|raw| (id, raw)))
            })
            .await?;
        let Some((id, (key, kind, crdt, title, created_at, segment_of, deleted_at, upto))) = raw else {
            return Ok(None);
        };
        let kind = kind
            .as_deref()
            .and_then(DocKind::parse)
            .ok_or_else(|| StorageError::Corrupt(format!("workspace document {id} has no kind")))?;
        Ok(Some(Derivable {
            key,
            id,
            kind,
            crdt: Crdt::parse(&crdt)?,
            title: title.unwrap_or_default(),
            created_at,
            segment: segment_of.is_some(),
            deleted: deleted_at.is_some(),
            upto: upto.max(0) as u64,
        }))
    }

    /// Records one derivation of document `doc`, in one transaction: its search rows become
    /// `entries` (adding, changing and removing only what differs; an item that appears twice
    /// keeps its first entry), its notifications follow `facts` (`notifications::follow`), and
    /// its derivation cursor moves to `upto`.
    ///
    /// # Errors
    /// [`StorageError`] when storage fails; nothing is changed then.
    pub async fn record_derivation(
        &self,
        doc: i64,
        entries: Vec<Entry>,
        facts: Vec<Fact>,
        upto: u64,
        now: i64,
    ) -> Result<(Indexed, Notified), StorageError> {
        self.run(move |conn| {
            type Row = (i64, String, String, String, Option<String>, Option<i64>, bool);
            let mut existing: HashMap<String, Row> = conn
                .prepare_cached(
                    "SELECT item, id, kind, title, body, author, at, archived FROM search_items WHERE doc = ?1",
                )?
                .query_map([doc], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        (row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?, row.get(6)?, row.get(7)?),
                    ))
                })?
                .collect::<rusqlite::Result<_>>()?;
            let mut seen = HashSet::new();
            let mut indexed = Indexed::default();
            for entry in &entries {
                if !seen.insert(entry.item.as_str()) {
                    continue;
                }
                let fields = (
                    entry.kind.as_str().to_owned(),
                    entry.title.clone(),
                    entry.body.clone(),
                    entry.author.clone(),
                    entry.at,
                    entry.archived,
                );
                match existing.remove(&entry.item) {
                    Some((id, kind, title, body, author, at, archived)) => {
                        if (kind, title, body, author, at, archived) == fields {
                            continue;
                        }
                        conn.prepare_cached(
                            "UPDATE search_items SET kind = ?2, title = ?3, body = ?4, author = ?5, at = ?6,
                                 archived = ?7 WHERE id = ?1",
                        )?
                        .execute(params![id, fields.0, fields.1, fields.2, fields.3, fields.4, fields.5])?;
                        indexed.changed += 1;
                    }
                    None => {
                        conn.prepare_cached(
                            "INSERT INTO search_items (doc, item, kind, title, body, author, at, archived)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                        )?
                        .execute(params![doc, entry.item, fields.0, fields.1, fields.2, fields.3, fields.4, fields.5])?;
                        indexed.added += 1;
                    }
                }
            }
            for (id, ..) in existing.into_values() {
                conn.prepare_cached("DELETE FROM search_items WHERE id = ?1")?.execute([id])?;
                indexed.removed += 1;
            }
            let notified = notifications::follow(conn, doc, &facts, now)?;
            conn.prepare_cached("UPDATE documents SET derived_upto = MAX(derived_upto, ?2) WHERE key = ?1")?
                .execute(params![doc, upto as i64])?;
            Ok((indexed, notified))
        })
        .await
    }

    /// Workspace documents whose log runs past their derivation cursor (written before derived
    /// state existed, or by a build whose job was lost), enqueued for derivation now. Returns
    /// how many.
    ///
    /// # Errors
    /// [`StorageError`] when storage fails.
    pub async fn enqueue_underived(&self, now: i64) -> Result<usize, StorageError> {
        let count = self
            .run(move |conn| enqueue_derivations(conn, &format!("AND d.derived_upto < {LOGGED_UPTO}"), now))
            .await?;
        if count > 0 {
            self.job_wake().scheduled(now);
        }
        Ok(count)
    }

    /// Forgets all derived search state (rows and cursors) and enqueues the derivation of every
    /// workspace document: `weft rebuild-derived`. Returns how many documents were enqueued.
    ///
    /// # Errors
    /// [`StorageError`] when storage fails; nothing is changed then.
    pub async fn reset_derived(&self, now: i64) -> Result<usize, StorageError> {
        let count = self
            .run(move |conn| {
                conn.execute_batch(
                    "DELETE FROM search_items;
                     INSERT INTO search_text (search_text) VALUES ('rebuild');
                     UPDATE documents SET derived_upto = 0 WHERE workspace IS NOT NULL;",
                )?;
                enqueue_derivations(conn, "", now)
            })
            .await?;
        self.job_wake().scheduled(now);
        Ok(count)
    }

    /// The page of `request`'s results in `workspace` that `user_id` may read, best first, and
    /// the cursor of the next page. The caller has checked that `user_id` is a member.
    ///
    /// # Errors
    /// [`StorageError`] when storage fails. Every query [`Query::parse`] accepts is one FTS5 reads.
    pub async fn search(
        &self,
        workspace: &str,
        user_id: &str,
        request: SearchRequest,
    ) -> Result<(Vec<Hit>, Option<Cursor>), StorageError> {
        let (workspace, user_id) = (workspace.to_owned(), user_id.to_owned());
        let rows = self
            .read(move |conn| {
                let sql = format!(
                    "WITH hits AS (
                         SELECT s.id AS row, s.kind, s.item, s.author, s.at, s.archived,
                                d.name, d.kind AS doc_kind, o.title AS doc_title, d.segment_of,
                                o.archived_at IS NOT NULL AS doc_archived,
                                highlight(search_text, 0, ?9, ?10) AS title,
                                snippet(search_text, 1, ?9, ?10, '…', ?11) AS snippet,
                                bm25(search_text, 4.0, 1.0) AS score
                         FROM search_text
                         JOIN search_items s ON s.id = search_text.rowid
                         JOIN documents d ON d.key = s.doc
                         JOIN documents o ON o.name = COALESCE(d.segment_of, d.name)
                         WHERE search_text MATCH ?1
                           AND d.workspace = ?2 AND o.workspace = ?2 AND o.deleted_at IS NULL
                           AND {visible}
                           AND (?4 IS NULL OR s.kind = ?4)
                           AND (?5 IS NULL OR o.name = ?5)
                           AND (?6 IS NULL OR s.author = ?6)
                           AND (?7 IS NULL OR s.at >= ?7)
                           AND (?8 IS NULL OR s.at < ?8)
                           AND (?12 OR (o.archived_at IS NULL AND s.archived = 0))
                     )
                     SELECT row, kind, item, author, at, archived, name, doc_kind, doc_title, segment_of,
                            doc_archived, title, snippet, score
                     FROM hits
                     WHERE ?13 IS NULL OR score > ?13 OR (score = ?13 AND row > ?14)
                     ORDER BY score, row LIMIT ?15",
                    visible = visible_to("o", "?3"),
                );
                let mut stmt = conn.prepare_cached(&sql)?;
                let rows = stmt
                    .query_map(
                        params![
                            request.query.to_fts5(),
                            workspace,
                            user_id,
                            request.kind.map(ItemKind::as_str),
                            request.channel,
                            request.author,
                            request.from,
                            request.to,
                            MARK_START.to_string(),
                            MARK_END.to_string(),
                            SNIPPET_WORDS,
                            request.archived,
                            request.after.map(|c| c.score),
                            request.after.map(|c| c.row),
                            i64::from(request.limit) + 1,
                        ],
                        |row| {
                            Ok(RawHit {
                                row: row.get(0)?,
                                kind: row.get(1)?,
                                item: row.get(2)?,
                                author: row.get(3)?,
                                at: row.get(4)?,
                                archived: row.get::<_, bool>(5)? || row.get::<_, bool>(10)?,
                                document: row.get(6)?,
                                document_kind: row.get(7)?,
                                document_title: row.get::<_, Option<String>>(8)?.unwrap_or_default(),
                                channel: row.get(9)?,
                                title: row.get(11)?,
                                snippet: row.get(12)?,
                                score: row.get(13)?,
                            })
                        },
                    )?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok((rows, request.limit))
            })
            .await;
        let (rows, limit) = rows?;
        let more = rows.len() > limit as usize;
        let hits =
            rows.into_iter().take(limit as usize).map(RawHit::finish).collect::<Result<Vec<_>, _>>()?;
        let next = hits.last().filter(|_| more).map(|hit| Cursor { score: hit.score, row: hit.row });
        Ok((hits.into_iter().map(|h| h.hit).collect(), next))
    }
}

struct RawHit {
    row: i64,
    kind: String,
    item: String,
    author: Option<String>,
    at: Option<i64>,
    archived: bool,
    document: String,
    document_kind: String,
    document_title: String,
    channel: Option<String>,
    title: String,
    snippet: String,
    score: f64,
}

struct Ranked {
    hit: Hit,
    score: f64,
    row: i64,
}

impl RawHit {
    fn finish(self) -> Result<Ranked, StorageError> {
        let kind = ItemKind::parse(&self.kind)
            .ok_or_else(|| StorageError::Corrupt(format!("unknown search item kind {:?}", self.kind)))?;
        let document_kind = DocKind::parse(&self.document_kind)
            .ok_or_else(|| StorageError::Corrupt(format!("unknown kind {:?}", self.document_kind)))?;
        let item = self.item.split_once(':').map(|(_, id)| id.to_owned());
        let channel = match document_kind {
            DocKind::Channel => Some(self.channel.unwrap_or_else(|| self.document.clone())),
            _ => None,
        };
        Ok(Ranked {
            hit: Hit {
                kind,
                item,
                document: self.document,
                document_kind,
                document_title: self.document_title,
                channel,
                title: marked_html(&self.title),
                snippet: marked_html(&self.snippet),
                author: self.author,
                at: self.at,
                archived: self.archived,
                score: self.score,
            },
            score: self.score,
            row: self.row,
        })
    }
}

/// `text` with its match markers as `<mark>` and everything else HTML-escaped.
fn marked_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            MARK_START => out.push_str("<mark>"),
            MARK_END => out.push_str("</mark>"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_junk_is_refused() {
        let cursor = Cursor { score: -3.25, row: 42 };
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        assert_eq!(Cursor::decode("zz.1"), None);
        assert_eq!(Cursor::decode("7ff0000000000000.1"), None);
        assert_eq!(Cursor::decode("0000000000000000"), None);
    }

    #[test]
    fn matches_are_marked_and_the_rest_escaped() {
        assert_eq!(
            marked_html("a <b> \u{e000}plan\u{e001} & 'x'"),
            "a &lt;b&gt; <mark>plan</mark> &amp; &#39;x&#39;"
        );
    }
}
