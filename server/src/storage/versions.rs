//! Version history rows: `versions` (checkpoints with their time range, authors and summary),
//! `authorship` (who wrote which clocks, folded from the log so that compaction may delete it)
//! and `documents.attributed_upto` (how far the log has been folded). A checkpoint is one writer
//! job: its runs, its version, the new `attributed_upto` and the retention thinning commit together.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;
use weft_sync_core::history::{Author, Run, Summary};

use super::{DocKey, Storage, StorageError};

/// What made a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum VersionKind {
    /// A checkpoint after an editing session (idle, or every N updates or T minutes).
    Auto,
    /// Named by a member through the API; never thinned.
    Named,
    /// The state right after a restore; never thinned.
    Restore,
}

impl VersionKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Named => "named",
            Self::Restore => "restore",
        }
    }

    fn parse(s: &str) -> Result<Self, StorageError> {
        match s {
            "auto" => Ok(Self::Auto),
            "named" => Ok(Self::Named),
            "restore" => Ok(Self::Restore),
            other => Err(StorageError::Corrupt(format!("unknown version kind {other:?}"))),
        }
    }
}

/// A version as the API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Version {
    /// Its id (unique across the server).
    pub id: String,
    /// What made it.
    pub kind: VersionKind,
    /// Its name (named versions; restores are named after what they restored).
    pub name: Option<String>,
    /// The last log position it includes.
    pub upto: u64,
    /// When the first edit it holds (since the version before) reached the relay, in ms since
    /// the Unix epoch.
    pub started_at: i64,
    /// When the last one did.
    pub ended_at: i64,
    /// The members whose edits it holds (since the version before), in order of first edit.
    pub authors: Vec<String>,
    /// What changed since the version before.
    #[schema(value_type = Object)]
    pub summary: Summary,
    /// Who named it or restored (named and restore versions).
    pub created_by: Option<String>,
    /// The version a restore brought back.
    pub restored_from: Option<String>,
    /// When it was made.
    pub created_at: i64,
}

/// A version with the state it records: a Yjs snapshot or Automerge heads.
#[derive(Debug, Clone)]
pub struct StoredVersion {
    /// The version.
    pub version: Version,
    /// Its state, as `weft_sync_core::{yjs,automerge}::history::capture` wrote it.
    pub state: Vec<u8>,
}

/// A log row, for attribution.
#[derive(Debug, Clone)]
pub struct LoggedUpdate {
    /// Its log position.
    pub seq: u64,
    /// The update (or Automerge entry).
    pub bytes: Vec<u8>,
    /// Who wrote it.
    pub user_id: Option<String>,
    /// The connection it came from.
    pub client: Option<String>,
    /// When it reached the relay.
    pub at: i64,
}

/// Thinning of automatic versions with age: past each tier's age, consecutive kept automatic
/// versions are at least its spacing apart. Named and restore versions, and the newest version,
/// are always kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// `(age_ms, spacing_ms)`, by increasing age.
    pub tiers: Vec<(i64, i64)>,
}

impl Default for Retention {
    /// Every version for a day, then one an hour for a week, then one a day.
    fn default() -> Self {
        const HOUR: i64 = 3_600_000;
        Self { tiers: vec![(24 * HOUR, HOUR), (7 * 24 * HOUR, 24 * HOUR)] }
    }
}

impl Retention {
    /// Parses `AGE=SPACING,...` with durations like `30s`, `15m`, `1h`, `7d` (`24h=1h,7d=1d`).
    ///
    /// # Errors
    /// A description of what does not parse.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let duration = |s: &str| -> Result<i64, String> {
            let s = s.trim();
            let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
            let n: i64 = number.parse().map_err(|_| format!("{s:?} is not a duration like 15m, 1h or 7d"))?;
            let unit = match unit {
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                _ => return Err(format!("{s:?} is not a duration like 15m, 1h or 7d")),
            };
            n.checked_mul(unit).ok_or_else(|| format!("{s:?} is too long"))
        };
        let mut tiers = Vec::new();
        for tier in spec.split(',').filter(|t| !t.trim().is_empty()) {
            let (age, spacing) =
                tier.split_once('=').ok_or_else(|| format!("{tier:?} is not AGE=SPACING (like 7d=1d)"))?;
            tiers.push((duration(age)?, duration(spacing)?));
        }
        if tiers.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err("the tiers' ages must increase".into());
        }
        Ok(Self { tiers })
    }

    /// The spacing automatic versions of age `age` keep, if any.
    fn spacing(&self, age: i64) -> Option<i64> {
        self.tiers.iter().rev().find(|(tier_age, _)| age >= *tier_age).map(|(_, spacing)| *spacing)
    }
}

/// A checkpoint to record: the version, the runs it attributes and how far the log is folded.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// The version.
    pub version: StoredVersion,
    /// Attributed runs folded from the log up to `attributed_upto`.
    pub runs: Vec<(Run, Author, Option<String>)>,
    /// The log is attributed up to here once the checkpoint commits.
    pub attributed_upto: u64,
}

const VERSION_COLUMNS: &str = "id, kind, name, upto, started_at, ended_at, authors, summary, created_by, restored_from, created_at, state";

fn version_row(row: &Row<'_>) -> rusqlite::Result<(Version, Vec<u8>, String, String, String)> {
    let kind: String = row.get(1)?;
    let version = Version {
        id: row.get(0)?,
        kind: VersionKind::Auto,
        name: row.get(2)?,
        upto: row.get::<_, i64>(3)? as u64,
        started_at: row.get(4)?,
        ended_at: row.get(5)?,
        authors: Vec::new(),
        summary: Summary::default(),
        created_by: row.get(8)?,
        restored_from: row.get(9)?,
        created_at: row.get(10)?,
    };
    Ok((version, row.get(11)?, kind, row.get(6)?, row.get(7)?))
}

fn finish_row(raw: (Version, Vec<u8>, String, String, String)) -> Result<StoredVersion, StorageError> {
    let (mut version, state, kind, authors, summary) = raw;
    version.kind = VersionKind::parse(&kind)?;
    version.authors = serde_json::from_str(&authors).map_err(|e| StorageError::Corrupt(e.to_string()))?;
    version.summary = serde_json::from_str(&summary).map_err(|e| StorageError::Corrupt(e.to_string()))?;
    Ok(StoredVersion { version, state })
}

impl Storage {
    /// The key of the document named `name`.
    ///
    /// # Errors
    /// [`StorageError`] when the read fails.
    pub async fn document_key(&self, name: &str) -> Result<Option<DocKey>, StorageError> {
        let name = name.to_owned();
        self.read(move |conn| {
            conn.query_row("SELECT key FROM documents WHERE name = ?1", [name], |row| row.get(0))
                .optional()
                .map(|key| key.map(DocKey))
        })
        .await
    }

    /// The kind of workspace document `doc` (`None` for a free document).
    ///
    /// # Errors
    /// [`StorageError`] when the read fails.
    pub async fn document_kind(&self, doc: DocKey) -> Result<Option<weft_sync_core::DocKind>, StorageError> {
        let kind: Option<String> = self
            .read(move |conn| {
                conn.query_row("SELECT kind FROM documents WHERE key = ?1", [doc.0], |row| row.get(0))
                    .optional()
                    .map(Option::flatten)
            })
            .await?;
        Ok(kind.as_deref().and_then(weft_sync_core::DocKind::parse))
    }

    /// The newest version of `doc`, with its state.
    ///
    /// # Errors
    /// [`StorageError`] when the read fails or a row is corrupt.
    pub async fn latest_version(&self, doc: DocKey) -> Result<Option<StoredVersion>, StorageError> {
        let raw = self
            .read(move |conn| {
                conn.query_row(
                    &format!(
                        "SELECT {VERSION_COLUMNS} FROM versions WHERE doc = ?1
                         ORDER BY upto DESC, created_at DESC, id DESC LIMIT 1"
                    ),
                    [doc.0],
                    version_row,
                )
                .optional()
            })
            .await?;
        raw.map(finish_row).transpose()
    }

    /// Version `id` of `doc` (`None` for an unknown id, or one of another document).
    ///
    /// # Errors
    /// [`StorageError`] when the read fails or the row is corrupt.
    pub async fn version(&self, doc: DocKey, id: &str) -> Result<Option<StoredVersion>, StorageError> {
        let id = id.to_owned();
        let raw = self
            .read(move |conn| {
                conn.query_row(
                    &format!("SELECT {VERSION_COLUMNS} FROM versions WHERE doc = ?1 AND id = ?2"),
                    params![doc.0, id],
                    version_row,
                )
                .optional()
            })
            .await?;
        raw.map(finish_row).transpose()
    }

    /// Versions of `doc`, newest first: `limit` of them older than the cursor `before`, and the
    /// cursor of the next page.
    ///
    /// # Errors
    /// [`StorageError`] when the read fails or a row is corrupt.
    pub async fn versions(
        &self,
        doc: DocKey,
        before: Option<i64>,
        limit: usize,
    ) -> Result<(Vec<Version>, Option<i64>), StorageError> {
        let rows = self
            .read(move |conn| {
                let mut statement = conn.prepare_cached(&format!(
                    "SELECT {VERSION_COLUMNS}, rowid FROM versions WHERE doc = ?1 AND rowid < ?2
                     ORDER BY rowid DESC LIMIT ?3"
                ))?;
                statement
                    .query_map(params![doc.0, before.unwrap_or(i64::MAX), limit as i64 + 1], |row| {
                        Ok((version_row(row)?, row.get::<_, i64>(12)?))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?;
        let more = rows.len() > limit;
        let mut page = Vec::with_capacity(limit);
        let mut next = None;
        for (raw, rowid) in rows.into_iter().take(limit) {
            page.push(finish_row(raw)?.version);
            next = Some(rowid);
        }
        Ok((page, if more { next } else { None }))
    }

    /// How far `doc`'s log has been folded into attribution, and the log rows after that.
    ///
    /// # Errors
    /// [`StorageError`] when the read fails.
    pub async fn unattributed(&self, doc: DocKey) -> Result<(u64, Vec<LoggedUpdate>), StorageError> {
        self.read(move |conn| {
            let upto: i64 = conn.query_row("SELECT attributed_upto FROM documents WHERE key = ?1", [doc.0], |r| r.get(0))?;
            let mut statement = conn.prepare_cached(
                "SELECT seq, bytes, user_id, client, at FROM updates WHERE doc = ?1 AND seq > ?2 ORDER BY seq",
            )?;
            let rows = statement
                .query_map(params![doc.0, upto], |row| {
                    Ok(LoggedUpdate {
                        seq: row.get::<_, i64>(0)? as u64,
                        bytes: row.get(1)?,
                        user_id: row.get(2)?,
                        client: row.get(3)?,
                        at: row.get(4)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((upto as u64, rows))
        })
        .await
    }

    /// Every attributed run of `doc`.
    ///
    /// # Errors
    /// [`StorageError`] when the read fails.
    pub async fn authorship(&self, doc: DocKey) -> Result<Vec<(Run, Author)>, StorageError> {
        self.read(move |conn| {
            let mut statement =
                conn.prepare_cached("SELECT origin, start, end, user_id, at FROM authorship WHERE doc = ?1")?;
            statement
                .query_map([doc.0], |row| {
                    Ok((
                        Run {
                            origin: row.get(0)?,
                            start: row.get::<_, i64>(1)? as u64,
                            end: row.get::<_, i64>(2)? as u64,
                        },
                        Author { user: row.get(3)?, at: row.get(4)? },
                    ))
                })?
                .collect()
        })
        .await
    }

    /// Records a checkpoint: its runs, its version and the new `attributed_upto`, then thins the
    /// document's automatic versions by `retention` as of `now`. Returns how many it removed.
    ///
    /// # Errors
    /// [`StorageError`] when the write fails (nothing is recorded).
    pub async fn record_checkpoint(
        &self,
        doc: DocKey,
        checkpoint: Checkpoint,
        retention: Retention,
        now: i64,
    ) -> Result<usize, StorageError> {
        self.run(move |conn| {
            insert_runs(conn, doc, &checkpoint.runs)?;
            let v = &checkpoint.version.version;
            let authors = serde_json::to_string(&v.authors).map_err(|e| StorageError::Corrupt(e.to_string()))?;
            let summary = serde_json::to_string(&v.summary).map_err(|e| StorageError::Corrupt(e.to_string()))?;
            conn.prepare_cached(
                "INSERT INTO versions (id, doc, kind, name, upto, state, started_at, ended_at, authors, summary,
                                       created_by, restored_from, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            )?
            .execute(params![
                v.id,
                doc.0,
                v.kind.as_str(),
                v.name,
                v.upto as i64,
                checkpoint.version.state,
                v.started_at,
                v.ended_at,
                authors,
                summary,
                v.created_by,
                v.restored_from,
                v.created_at
            ])?;
            conn.prepare_cached("UPDATE documents SET attributed_upto = MAX(attributed_upto, ?2) WHERE key = ?1")?
                .execute(params![doc.0, checkpoint.attributed_upto as i64])?;
            thin(conn, doc, &retention, now)
        })
        .await
    }
}

/// Inserts runs, merging each into the stored run it continues (same origin, author and
/// connection, adjacent clocks).
fn insert_runs(
    conn: &Connection,
    doc: DocKey,
    runs: &[(Run, Author, Option<String>)],
) -> Result<(), StorageError> {
    let mut previous = conn.prepare_cached(
        "SELECT start, user_id, client FROM authorship WHERE doc = ?1 AND origin = ?2 AND end = ?3",
    )?;
    let mut extend =
        conn.prepare_cached("UPDATE authorship SET end = ?4 WHERE doc = ?1 AND origin = ?2 AND start = ?3")?;
    let mut insert = conn.prepare_cached(
        "INSERT OR IGNORE INTO authorship (doc, origin, start, end, user_id, client, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for (run, author, client) in runs {
        let continued: Option<(i64, Option<String>, Option<String>)> = previous
            .query_row(params![doc.0, run.origin, run.start as i64], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })
            .optional()?;
        match continued {
            Some((start, user, from)) if user == author.user && from == *client => {
                extend.execute(params![doc.0, run.origin, start, run.end as i64])?;
            }
            _ => {
                insert.execute(params![
                    doc.0,
                    run.origin,
                    run.start as i64,
                    run.end as i64,
                    author.user,
                    client,
                    author.at
                ])?;
            }
        }
    }
    Ok(())
}

/// Removes automatic versions retention no longer keeps; returns how many.
fn thin(conn: &Connection, doc: DocKey, retention: &Retention, now: i64) -> Result<usize, StorageError> {
    let mut statement = conn
        .prepare_cached("SELECT id, kind, created_at FROM versions WHERE doc = ?1 ORDER BY created_at, id")?;
    let rows: Vec<(String, String, i64)> = statement
        .query_map([doc.0], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let newest = rows.last().map(|r| r.0.clone());
    let mut last_kept: Option<i64> = None;
    let mut removed = Vec::new();
    for (id, kind, at) in &rows {
        let keep = kind != "auto"
            || Some(id) == newest.as_ref()
            || match (retention.spacing(now - at), last_kept) {
                (None, _) | (_, None) => true,
                (Some(spacing), Some(kept)) => at - kept >= spacing,
            };
        if keep {
            last_kept = Some(*at);
        } else {
            removed.push(id.clone());
        }
    }
    let mut delete = conn.prepare_cached("DELETE FROM versions WHERE id = ?1")?;
    for id in &removed {
        delete.execute([id])?;
    }
    Ok(removed.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    fn db() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::schema::migrate(&mut conn).unwrap();
        conn.execute("INSERT INTO documents (key, name, crdt, created_at) VALUES (1, 'd', 'yjs', 0)", [])
            .unwrap();
        conn
    }

    fn add(conn: &Connection, id: &str, kind: &str, at: i64) {
        conn.execute(
            "INSERT INTO versions (id, doc, kind, upto, state, started_at, ended_at, authors, summary, created_at)
             VALUES (?1, 1, ?2, 0, x'', 0, 0, '[]', '{}', ?3)",
            params![id, kind, at],
        )
        .unwrap();
    }

    fn kept(conn: &Connection) -> Vec<String> {
        let mut s = conn.prepare("SELECT id FROM versions ORDER BY created_at").unwrap();
        s.query_map([], |r| r.get(0)).unwrap().collect::<rusqlite::Result<_>>().unwrap()
    }

    #[test]
    fn retention_thins_old_automatic_versions_and_keeps_named_ones_and_the_newest() {
        let conn = db();
        let now = 30 * 24 * HOUR;
        // Ten days ago, one automatic version every ten minutes for two hours, and a named one.
        let start = now - 10 * 24 * HOUR;
        for i in 0..12 {
            add(&conn, &format!("old{i:02}"), "auto", start + i * HOUR / 6);
        }
        add(&conn, "named", "named", start + 5);
        // An hour ago, three automatic versions a minute apart.
        for i in 0..3 {
            add(&conn, &format!("new{i}"), "auto", now - HOUR + i * 60_000);
        }
        let removed = thin(&conn, DocKey(1), &Retention::default(), now).unwrap();
        // Past 7 days one a day is kept: the first old one (and the named one, always).
        assert_eq!(kept(&conn), vec!["old00", "named", "new0", "new1", "new2"]);
        assert_eq!(removed, 11);
        // One a day past a second: of the recent three only the first is a day after the one
        // before it; the newest version is kept whatever its age.
        let removed = thin(&conn, DocKey(1), &Retention::parse("1s=1d").unwrap(), now).unwrap();
        assert_eq!(removed, 1);
        assert_eq!(kept(&conn), vec!["old00", "named", "new0", "new2"]);
    }

    #[test]
    fn retention_specs_parse_or_say_why_not() {
        assert_eq!(Retention::parse("24h=1h,7d=1d").unwrap(), Retention::default());
        assert_eq!(Retention::parse("").unwrap().tiers, vec![]);
        for bad in ["1h", "x=1h", "1h=1y", "7d=1d,1d=1h", "99999999999999999d=1s"] {
            assert!(Retention::parse(bad).is_err(), "{bad}");
        }
    }
}
