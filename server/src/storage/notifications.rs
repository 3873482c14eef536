//! Notifications: one row per document and fact key (`weft_sync_core::notify`), so a fact is
//! notified once however often its document is derived, a replay included. Derivation adds the
//! facts a document now calls for (to people who may read it) and withdraws unread ones it no
//! longer calls for; read ones stay. People list theirs, count the unread and mark them read.

use std::collections::HashMap;

use rusqlite::{Connection, params};
use serde::Serialize;
use weft_sync_core::notify::{Fact, Reason};

use super::documents::visible_to;
use super::{Storage, StorageError};

/// What a person wants to be notified of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Preferences {
    /// Mentions.
    pub mention: bool,
    /// Replies in threads they wrote in.
    pub reply: bool,
    /// Tasks assigned to them.
    pub assigned: bool,
    /// Documents (channels, boards, …) they muted: only mentions there notify.
    pub muted: Vec<String>,
}

/// A notification, as its recipient sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Notification {
    /// Its id.
    pub id: i64,
    /// Why: `mention`, `reply` or `assigned`.
    #[schema(value_type = String, example = "mention")]
    pub reason: Reason,
    /// The workspace.
    pub workspace: String,
    /// The document it is about (a channel segment answers as its channel).
    pub document: String,
    /// That document's title.
    pub document_title: String,
    /// The item: `text`, `comment:<id>`, `message:<id>` or `task:<id>`.
    pub item: String,
    /// Who caused it, when known.
    pub actor: Option<String>,
    /// The start of the item's text.
    pub excerpt: String,
    /// When the item was written, when known (milliseconds since the Unix epoch).
    pub at: Option<i64>,
    /// When it was notified.
    pub created_at: i64,
    /// Whether it was read.
    pub read: bool,
}

/// What one derivation changed in a document's notifications.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notified {
    /// Notifications created: (row id, recipient).
    pub created: Vec<(i64, String)>,
    /// Unread notifications withdrawn (the fact is gone).
    pub withdrawn: usize,
}

/// Makes document `doc`'s notifications follow `facts`, in the caller's transaction: a fact
/// without a row is notified (when its person may read the document), an unread row without
/// a fact is withdrawn.
pub(super) fn follow(conn: &Connection, doc: i64, facts: &[Fact], now: i64) -> rusqlite::Result<Notified> {
    let mut existing: HashMap<String, (i64, bool)> = conn
        .prepare_cached("SELECT key, id, read_at IS NOT NULL FROM notifications WHERE doc = ?1")?
        .query_map([doc], |row| Ok((row.get(0)?, (row.get(1)?, row.get(2)?))))?
        .collect::<rusqlite::Result<_>>()?;
    let mut notified = Notified::default();
    // A fact its person turned off (the reason, or the document muted: all but mentions) is
    // stored muted: never listed or delivered, and not notified later when they turn it on.
    let insert = format!(
        "INSERT INTO notifications (doc, key, user_id, reason, actor, item, excerpt, at, created_at, muted)
         SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9,
                EXISTS (SELECT 1 FROM notification_preferences p
                        WHERE p.user_id = ?3 AND p.reason = ?4 AND p.enabled = 0)
                OR (?4 <> 'mention' AND EXISTS (SELECT 1 FROM notification_mutes mu
                                               WHERE mu.user_id = ?3 AND mu.doc = o.name))
         FROM documents d JOIN documents o ON o.name = COALESCE(d.segment_of, d.name)
         WHERE d.key = ?1 AND o.deleted_at IS NULL
           AND EXISTS (SELECT 1 FROM members m WHERE m.workspace = o.workspace AND m.user_id = ?3)
           AND {visible}
         RETURNING id, muted",
        visible = visible_to("o", "?3")
    );
    for fact in facts {
        if existing.remove(&fact.key).is_some() {
            continue;
        }
        let mut stmt = conn.prepare_cached(&insert)?;
        let mut rows = stmt.query(params![
            doc,
            fact.key,
            fact.user,
            fact.reason.as_str(),
            fact.actor,
            fact.item,
            fact.excerpt,
            fact.at,
            now
        ])?;
        if let Some(row) = rows.next()?
            && !row.get::<_, bool>(1)?
        {
            notified.created.push((row.get(0)?, fact.user.clone()));
        }
    }
    for (id, read) in existing.into_values() {
        if !read {
            conn.prepare_cached("DELETE FROM notifications WHERE id = ?1")?.execute([id])?;
            notified.withdrawn += 1;
        }
    }
    Ok(notified)
}

const NOTIFICATION_SELECT: &str =
    "SELECT n.id, n.reason, o.workspace, o.name, o.title, n.item, n.actor, n.excerpt, n.at,
            n.created_at, n.read_at IS NOT NULL
     FROM notifications n
     JOIN documents d ON d.key = n.doc
     JOIN documents o ON o.name = COALESCE(d.segment_of, d.name)";

fn notification(row: &rusqlite::Row<'_>) -> rusqlite::Result<Notification> {
    let reason: String = row.get(1)?;
    Ok(Notification {
        id: row.get(0)?,
        reason: Reason::parse(&reason).unwrap_or(Reason::Mention),
        workspace: row.get(2)?,
        document: row.get(3)?,
        document_title: row.get::<_, Option<String>>(4)?.unwrap_or_default(),
        item: row.get(5)?,
        actor: row.get(6)?,
        excerpt: row.get(7)?,
        at: row.get(8)?,
        created_at: row.get(9)?,
        read: row.get(10)?,
    })
}

/// The condition a listed notification meets: it is `?1`'s, and they may still read its
/// document (a member of its workspace; listed, when it is private; not deleted).
fn readable() -> String {
    format!(
        "n.user_id = ?1 AND n.muted = 0 AND o.deleted_at IS NULL
         AND EXISTS (SELECT 1 FROM members m WHERE m.workspace = o.workspace AND m.user_id = ?1)
         AND {visible}",
        visible = visible_to("o", "?1")
    )
}

impl Storage {
    /// `user_id`'s notifications, newest first, only unread ones when `unread`, `limit` at most,
    /// older than the row `before`; with the cursor of the next page.
    ///
    /// # Errors
    /// [`StorageError`] when storage fails.
    pub async fn notifications(
        &self,
        user_id: &str,
        unread: bool,
        before: Option<i64>,
        limit: u32,
    ) -> Result<(Vec<Notification>, Option<i64>), StorageError> {
        let user_id = user_id.to_owned();
        let mut rows = self
            .read(move |conn| {
                let sql = format!(
                    "{NOTIFICATION_SELECT} WHERE {readable} AND n.id < ?2 AND (NOT ?3 OR n.read_at IS NULL)
                     ORDER BY n.id DESC LIMIT ?4",
                    readable = readable()
                );
                conn.prepare_cached(&sql)?
                    .query_map(
                        params![user_id, before.unwrap_or(i64::MAX), unread, i64::from(limit) + 1],
                        notification,
                    )?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next = rows.last().filter(|_| more).map(|n| n.id);
        Ok((rows, next))
    }

    /// How many of `user_id`'s notifications are unread.
    ///
    /// # Errors
    /// [`StorageError`] when storage fails.
    pub async fn unread_notifications(&self, user_id: &str) -> Result<u64, StorageError> {
        let user_id = user_id.to_owned();
        self.read(move |conn| {
            let sql = format!(
                "SELECT COUNT(*) FROM notifications n JOIN documents d ON d.key = n.doc
                 JOIN documents o ON o.name = COALESCE(d.segment_of, d.name)
                 WHERE {readable} AND n.read_at IS NULL",
                readable = readable()
            );
            conn.prepare_cached(&sql)?.query_row([user_id], |row| row.get::<_, i64>(0))
        })
        .await
        .map(|count| count.max(0) as u64)
    }

    /// `user_id`'s notifications `ids`, read ones included (for live delivery and checks);
    /// another person's, or one they may no longer read, is not among them.
    ///
    /// # Errors
    /// [`StorageError`] when storage fails.
    pub async fn notifications_by_id(
        &self,
        user_id: &str,
        ids: Vec<i64>,
    ) -> Result<Vec<Notification>, StorageError> {
        let user_id = user_id.to_owned();
        self.read(move |conn| {
            let sql = format!(
                "{NOTIFICATION_SELECT} WHERE {readable} AND n.id IN (SELECT value FROM json_each(?2)) ORDER BY n.id",
                readable = readable()
            );
            let ids = serde_json::to_string(&ids).unwrap_or_else(|_| "[]".into());
            conn.prepare_cached(&sql)?.query_map(params![user_id, ids], notification)?.collect()
        })
        .await
    }

    /// Marks `user_id`'s notifications `ids` read (all of them when `None`); returns how many
    /// were unread. With `ids`, every one must be theirs, or nothing is marked and the first
    /// unknown id is returned as the error.
    ///
    /// # Errors
    /// `Ok(Err(id))` for an id that is not theirs; [`StorageError`] when storage fails.
    pub async fn mark_notifications_read(
        &self,
        user_id: &str,
        ids: Option<Vec<i64>>,
        now: i64,
    ) -> Result<Result<usize, i64>, StorageError> {
        let user_id = user_id.to_owned();
        self.run(move |conn| {
            let Some(ids) = ids else {
                let marked = conn.execute(
                    "UPDATE notifications SET read_at = ?2 WHERE user_id = ?1 AND read_at IS NULL AND muted = 0",
                    params![user_id, now],
                )?;
                return Ok(Ok(marked));
            };
            let mut marked = 0;
            for id in &ids {
                let theirs: Option<bool> = conn
                    .prepare_cached(
                        "SELECT read_at IS NULL FROM notifications WHERE id = ?1 AND user_id = ?2",
                    )?
                    .query_row(params![id, user_id], |row| row.get(0))
                    .map(Some)
                    .or_else(|err| match err {
                        rusqlite::Error::QueryReturnedNoRows => Ok(None),
                        other => Err(other),
                    })?;
                match theirs {
                    None => return Err(StorageError::Missing(*id)),
                    Some(unread) => {
                        if unread {
                            conn.prepare_cached("UPDATE notifications SET read_at = ?2 WHERE id = ?1")?
                                .execute(params![id, now])?;
                            marked += 1;
                        }
                    }
                }
            }
            Ok(Ok(marked))
        })
        .await
        .or_else(|err| match err {
            StorageError::Missing(id) => Ok(Err(id)),
            other => Err(other),
        })
    }
}

impl Storage {
    /// `user_id`'s notification preferences (every reason on unless turned off).
    ///
    /// # Errors
    /// [`StorageError`] when storage fails.
    pub async fn notification_preferences(&self, user_id: &str) -> Result<Preferences, StorageError> {
        let user_id = user_id.to_owned();
        self.read(move |conn| {
            let off: Vec<String> = conn
                .prepare_cached(
                    "SELECT reason FROM notification_preferences WHERE user_id = ?1 AND enabled = 0",
                )?
                .query_map([&user_id], |row| row.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let muted = conn
                .prepare_cached("SELECT doc FROM notification_mutes WHERE user_id = ?1 ORDER BY doc")?
                .query_map([&user_id], |row| row.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let on = |reason: Reason| !off.iter().any(|r| r == reason.as_str());
            Ok(Preferences {
                mention: on(Reason::Mention),
                reply: on(Reason::Reply),
                assigned: on(Reason::Assigned),
                muted,
            })
        })
        .await
    }

    /// Turns each of `changes` on or off for `user_id`.
    ///
    /// # Errors
    /// [`StorageError`] when storage fails.
    pub async fn set_notification_preferences(
        &self,
        user_id: &str,
        changes: Vec<(Reason, bool)>,
    ) -> Result<(), StorageError> {
        let user_id = user_id.to_owned();
        self.run(move |conn| {
            for (reason, enabled) in changes {
                conn.prepare_cached(
                    "INSERT INTO notification_preferences (user_id, reason, enabled) VALUES (?1, ?2, ?3)
                     ON CONFLICT (user_id, reason) DO UPDATE SET enabled = excluded.enabled",
                )?
                .execute(params![user_id, reason.as_str(), enabled])?;
            }
            Ok(())
        })
        .await
    }

    /// Mutes (or unmutes) workspace document `doc` for `user_id`; a channel segment's id mutes
    /// its channel.
    ///
    /// # Errors
    /// [`StorageError`] when storage fails.
    pub async fn mute_document(&self, user_id: &str, doc: &str, muted: bool) -> Result<(), StorageError> {
        let (user_id, doc) = (user_id.to_owned(), doc.to_owned());
        self.run(move |conn| {
            let sql = if muted {
                "INSERT OR IGNORE INTO notification_mutes (user_id, doc)
                 SELECT ?1, COALESCE(segment_of, name) FROM documents WHERE name = ?2"
            } else {
                "DELETE FROM notification_mutes
                 WHERE user_id = ?1 AND doc = (SELECT COALESCE(segment_of, name) FROM documents WHERE name = ?2)"
            };
            conn.execute(sql, params![user_id, doc])?;
            Ok(())
        })
        .await
    }
}
