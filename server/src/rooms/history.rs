//! Version history in a room: when to checkpoint (an editing session gone idle, every N updates
//! or T minutes of continuous editing, a named version or a restore asked for, before compaction
//! and before unloading), capturing the version on the room task, and — off it — folding the log
//! since the last checkpoint into attribution, summarizing what changed and recording the version.
//!
//! A checkpoint is captured on the room at the relay's last sequence number, and its task waits
//! until the log holds everything up to there before it reads the rows it attributes, so the
//! version, the state it is summarized from and the rows all end at the same sequence number.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use weft_sync_core::DocKind;
use weft_sync_core::domain::Projection;
use weft_sync_core::history::{self, Author, Run};
use weft_sync_core::{automerge::history as am, yjs::history as yh};

use crate::clock::now_ms;
use crate::storage::versions::{Checkpoint, LoggedUpdate, Retention, StoredVersion, Version, VersionKind};
use crate::storage::{Crdt, DocKey, Storage, StorageError};

/// When rooms make automatic versions, and how long they keep them.
#[derive(Debug, Clone)]
pub struct HistoryConfig {
    /// An editing session ends (and is checkpointed) after this long without an update.
    pub idle: Duration,
    /// A checkpoint at least every this many updates of continuous editing.
    pub every_updates: usize,
    /// And at least this often.
    pub every: Duration,
    /// How automatic versions are thinned with age.
    pub retention: Retention,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self {
            idle: Duration::from_secs(30),
            every_updates: 500,
            every: Duration::from_secs(600),
            retention: Retention::default(),
        }
    }
}

/// A version asked for: named, or the one a restore makes.
pub(super) struct Request {
    pub kind: VersionKind,
    pub name: Option<String>,
    pub by: Option<Arc<str>>,
    pub restored_from: Option<String>,
    /// Served by the first checkpoint whose log reaches this far (a restore's own update).
    pub after_seq: u64,
    pub reply: oneshot::Sender<Result<Version, String>>,
}

/// What the room captured for a checkpoint.
pub(super) struct Captured {
    /// The version's state (a Yjs snapshot or Automerge heads).
    pub version: Vec<u8>,
    /// The full state (a Yjs update or a saved Automerge document).
    pub state: Vec<u8>,
    /// The last sequence number both hold.
    pub upto: u64,
    /// The last sequence number the log holds: the checkpoint waits until it reaches `upto`.
    pub durable: tokio::sync::watch::Receiver<u64>,
}

/// Edits since the last checkpoint.
struct Session {
    started: Instant,
    last: Instant,
    updates: usize,
}

type Task = JoinHandle<Result<(u64, Option<Version>), String>>;

/// A room's history state. See the module documentation.
pub(super) struct History {
    config: HistoryConfig,
    session: Option<Session>,
    requests: Vec<Request>,
    /// A checkpoint wanted before compaction or unloading, even if no session is due.
    forced: bool,
    /// The running checkpoint, with the requests it answers.
    running: Option<(Vec<Request>, Task)>,
    /// How far the log is attributed (as the last checkpoint recorded it).
    attributed_upto: u64,
}

impl History {
    pub fn new(config: HistoryConfig) -> Self {
        Self { config, session: None, requests: Vec::new(), forced: false, running: None, attributed_upto: 0 }
    }

    /// `count` updates were appended (one batch: once per batch, not per update).
    pub fn edited(&mut self, now: Instant, count: usize) {
        match &mut self.session {
            Some(session) => {
                session.last = now;
                session.updates += count;
            }
            None => self.session = Some(Session { started: now, last: now, updates: count }),
        }
    }

    pub fn ask(&mut self, request: Request) {
        self.requests.push(request);
    }

    /// Asks for a checkpoint at the next quiet point if anything is unattributed.
    pub fn force(&mut self) {
        if self.session.is_some() {
            self.forced = true;
        }
    }

    /// How far the log is attributed, as far as this room knows.
    pub fn attributed_upto(&self) -> u64 {
        self.attributed_upto
    }

    /// Whether anything was written since the last checkpoint.
    pub fn has_session(&self) -> bool {
        self.session.is_some()
    }

    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Whether a checkpoint is due at `now` with the log at `last_seq`.
    pub fn due(&self, now: Instant, last_seq: u64) -> bool {
        if self.running.is_some() {
            return false;
        }
        if self.requests.iter().any(|r| r.after_seq <= last_seq) || self.forced {
            return true;
        }
        self.session.as_ref().is_some_and(|s| {
            now >= s.last + self.config.idle
                || s.updates >= self.config.every_updates
                || now >= s.started + self.config.every
        })
    }

    /// When the session will be due by time alone.
    pub fn wake_at(&self) -> Option<Instant> {
        let s = self.session.as_ref()?;
        if self.running.is_some() {
            return None;
        }
        Some((s.last + self.config.idle).min(s.started + self.config.every))
    }

    /// Starts recording a checkpoint of `captured` (taken with nothing outstanding).
    pub fn start(&mut self, captured: Captured, key: DocKey, crdt: Crdt, storage: Storage) {
        let (due, waiting): (Vec<Request>, Vec<Request>) =
            std::mem::take(&mut self.requests).into_iter().partition(|r| r.after_seq <= captured.upto);
        self.requests = waiting;
        self.session = None;
        self.forced = false;
        // One version per checkpoint: the first request names it (a restore before a name).
        let mut order = due;
        order.sort_by_key(|r| r.kind != VersionKind::Restore);
        let meta = order.first().map(|r| (r.kind, r.name.clone(), r.by.clone(), r.restored_from.clone()));
        let retention = self.config.retention.clone();
        let task = tokio::spawn(record(captured, key, crdt, storage, meta, retention));
        self.running = Some((order, task));
    }

    /// Waits for the running checkpoint (pending forever when none runs).
    pub async fn join(&mut self) -> (Vec<Request>, Result<(u64, Option<Version>), String>) {
        let Some((_, task)) = self.running.as_mut() else {
            return std::future::pending().await;
        };
        let result = task.await.unwrap_or_else(|e| Err(format!("checkpoint task failed: {e}")));
        let (requests, _) = self.running.take().expect("a checkpoint was running");
        (requests, result)
    }

    /// A checkpoint finished: `upto` is attributed; the requests it answers are told.
    pub fn finished(&mut self, requests: Vec<Request>, result: Result<(u64, Option<Version>), String>) {
        match result {
            Ok((upto, version)) => {
                self.attributed_upto = self.attributed_upto.max(upto);
                for request in requests {
                    let _ = request
                        .reply
                        .send(version.clone().ok_or_else(|| "no version was recorded".to_owned()));
                }
            }
            Err(err) => {
                for request in requests {
                    let _ = request.reply.send(Err(err.clone()));
                }
            }
        }
    }

    /// Drops the running checkpoint (its requests are told it failed).
    pub fn abort(&mut self) {
        if let Some((requests, task)) = self.running.take() {
            task.abort();
            self.finished(requests, Err("the document stopped before the version was recorded".into()));
        }
    }

    /// Answers every waiting request (the room is stopping).
    pub fn abandon(&mut self, why: &str) {
        for request in self.requests.drain(..) {
            let _ = request.reply.send(Err(why.to_owned()));
        }
    }
}

type Meta = Option<(VersionKind, Option<String>, Option<Arc<str>>, Option<String>)>;

/// Folds the log since the last checkpoint into attribution, summarizes, and records the version.
/// Returns the sequence number now attributed, and the version (none when nothing changed and
/// nothing was asked for).
async fn record(
    captured: Captured,
    key: DocKey,
    crdt: Crdt,
    storage: Storage,
    meta: Meta,
    retention: Retention,
) -> Result<(u64, Option<Version>), String> {
    let failed = |e: StorageError| e.to_string();
    let mut durable = captured.durable.clone();
    let upto = captured.upto;
    durable
        .wait_for(|d| *d >= upto)
        .await
        .map_err(|_| "the document stopped before its log was written".to_owned())?;
    let kind = storage.document_kind(key).await.map_err(failed)?.unwrap_or(DocKind::Document);
    let previous = storage.latest_version(key).await.map_err(failed)?;
    let (_, rows) = storage.unattributed(key).await.map_err(failed)?;
    let rows: Vec<LoggedUpdate> = rows.into_iter().filter(|r| r.seq <= upto).collect();
    let Some(meta) = meta.or_else(|| (!rows.is_empty()).then_some((VersionKind::Auto, None, None, None)))
    else {
        // Nothing written since the last checkpoint and nothing asked for: no version.
        return Ok((upto, None));
    };
    let base = previous.as_ref().map(|p| p.state.clone());
    let folded = tokio::task::spawn_blocking(move || fold(crdt, kind, &captured, base.as_deref(), &rows))
        .await
        .map_err(|e| format!("checkpoint task failed: {e}"))??;
    let now = now_ms();
    let (kind, name, by, restored_from) = meta;
    let id = crate::auth::sessions::random_id().map_err(|e| e.to_string())?;
    let version = Version {
        id,
        kind,
        name,
        upto,
        started_at: folded.started_at.unwrap_or(now),
        ended_at: folded.ended_at.unwrap_or(now),
        authors: folded.authors,
        summary: folded.summary,
        created_by: by.map(|b| b.to_string()),
        restored_from,
        created_at: now,
    };
    let answer = version.clone();
    let checkpoint = Checkpoint {
        version: StoredVersion { version, state: folded.version_state },
        runs: folded.runs,
        attributed_upto: upto,
    };
    storage.record_checkpoint(key, checkpoint, retention, now).await.map_err(failed)?;
    Ok((upto, Some(answer)))
}

struct Folded {
    version_state: Vec<u8>,
    runs: Vec<(Run, Author, Option<String>)>,
    authors: Vec<String>,
    summary: history::Summary,
    started_at: Option<i64>,
    ended_at: Option<i64>,
}

/// Who wrote what in `rows` (log rows after the version `previous` of the full `state`): each
/// row's runs with its author and connection. The one attribution of log rows, for checkpoints
/// and for blame of rows not yet folded.
///
/// # Errors
/// A description of what did not load (Automerge).
pub fn attribute(
    crdt: Crdt,
    state: &[u8],
    previous: Option<&[u8]>,
    rows: &[LoggedUpdate],
) -> Result<Vec<(Run, Author, Option<String>)>, String> {
    let per_row: Vec<Vec<Run>> = match crdt {
        // A row the relay accepted always scans; one that does not attributes nothing.
        Crdt::Yjs => rows.iter().map(|r| yh::insertions(&r.bytes).unwrap_or_default()).collect(),
        Crdt::Automerge => am::attribute(state, previous, rows.iter().map(|r| r.bytes.as_slice()))
            .map_err(|e| e.to_string())?,
    };
    let mut runs = Vec::new();
    for (row, row_runs) in rows.iter().zip(per_row) {
        for run in row_runs {
            runs.push((run, Author { user: row.user_id.clone(), at: row.at }, row.client.clone()));
        }
    }
    Ok(runs)
}

/// The CPU part of a checkpoint: attribution of `rows`, the summary against the version before.
fn fold(
    crdt: Crdt,
    kind: DocKind,
    captured: &Captured,
    previous: Option<&[u8]>,
    rows: &[LoggedUpdate],
) -> Result<Folded, String> {
    let runs = attribute(crdt, &captured.state, previous, rows)?;
    let mut authors: Vec<String> = Vec::new();
    for user in rows.iter().filter_map(|r| r.user_id.as_ref()) {
        if !authors.contains(user) {
            authors.push(user.clone());
        }
    }
    let project = |version: Option<&[u8]>| -> Result<Projection, String> {
        match crdt {
            Crdt::Yjs => yh::project_at(&captured.state, version, kind),
            Crdt::Automerge => am::project_at(&captured.state, version, kind),
        }
        .map_err(|e| e.to_string())
    };
    let after = project(None)?;
    let before = match previous {
        Some(version) => project(Some(version))?,
        None => Projection::empty(kind),
    };
    Ok(Folded {
        version_state: captured.version.clone(),
        runs,
        authors,
        summary: history::diff(&before, &after).summary,
        started_at: rows.first().map(|r| r.at),
        ended_at: rows.last().map(|r| r.at),
    })
}
