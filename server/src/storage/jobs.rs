//! The job queue: durable background work with retries, exponential backoff and a dead-letter
//! state, shared by every background task (derivation now; email, push and reminders as they
//! come). `docs/derivation.md` describes it.
//!
//! A job has a key, and there is at most one job per key: enqueuing a key that is already queued
//! re-arms it (it runs once more after the run in progress, or keeps its earlier due time when it
//! has not started), so a burst of edits to one document costs one derivation. Jobs are enqueued
//! inside the transaction of the write that causes them (an append enqueues its document's
//! derivation), so a crash can lose neither. A job runs at least once; what it does is idempotent.

use std::sync::atomic::{AtomicI64, Ordering};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use tokio::sync::Notify;

use super::{DocKey, Storage, StorageError};

/// The kind of the job that derives a document's search rows (payload: the document's id).
pub const DERIVE: &str = "derive";
/// How long after a write its document's derivation runs: the writes of that window share it.
pub const DERIVE_DEBOUNCE_MS: i64 = 250;
/// Attempts before a failing job is dead (kept, with its last error, for an operator).
pub const MAX_ATTEMPTS: u32 = 8;
/// The first retry's delay; each further one doubles it, up to [`MAX_BACKOFF_MS`].
pub const FIRST_BACKOFF_MS: i64 = 1_000;
/// The longest delay between two attempts.
pub const MAX_BACKOFF_MS: i64 = 3_600_000;

/// A job claimed to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Its row.
    pub id: i64,
    /// What it does.
    pub kind: String,
    /// Its key.
    pub key: String,
    /// What it needs, as its kind defines it.
    pub payload: String,
    /// How often it was armed when claimed: a re-arm while it runs makes it run again.
    armed: i64,
    /// Attempts before this one.
    pub attempts: u32,
}

/// A job as an operator sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobRow {
    /// Its kind.
    pub kind: String,
    /// Its key.
    pub key: String,
    /// `pending`, `running` or `dead`.
    pub state: String,
    /// Failed attempts so far.
    pub attempts: u32,
    /// When it is due (milliseconds since the Unix epoch).
    pub run_at: i64,
    /// Why its last attempt failed.
    pub last_error: Option<String>,
}

/// What became of a job that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failed {
    /// It runs again at this time.
    Retry(i64),
    /// It failed [`MAX_ATTEMPTS`] times and is dead.
    Dead,
}

/// How the job worker learns that something was enqueued: the earliest due time enqueued since
/// it last looked, and a wake-up. Signalled after the enqueuing write commits, never before.
#[derive(Debug)]
pub struct Wake {
    earliest: AtomicI64,
    notify: Notify,
}

impl Default for Wake {
    fn default() -> Self {
        Self { earliest: AtomicI64::new(i64::MAX), notify: Notify::new() }
    }
}

impl Wake {
    /// A job due at `at` is committed.
    pub fn scheduled(&self, at: i64) {
        self.earliest.fetch_min(at, Ordering::AcqRel);
        self.notify.notify_one();
    }

    /// The earliest due time scheduled since the last call, if any.
    pub fn take(&self) -> Option<i64> {
        Some(self.earliest.swap(i64::MAX, Ordering::AcqRel)).filter(|&at| at != i64::MAX)
    }

    /// Waits for the next [`Wake::scheduled`].
    pub async fn notified(&self) {
        self.notify.notified().await;
    }
}

/// Enqueues (or re-arms) the job `key` in `conn`'s transaction, due at `run_at`.
pub(super) fn enqueue(
    conn: &Connection,
    kind: &str,
    key: &str,
    payload: &str,
    run_at: i64,
    now: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO jobs (kind, key, payload, state, run_at, created_at, updated_at)
         VALUES (?1, ?2, ?3, 'pending', ?4, ?5, ?5)
         ON CONFLICT (key) DO UPDATE SET
             armed = armed + 1,
             payload = excluded.payload,
             attempts = CASE state WHEN 'dead' THEN 0 ELSE attempts END,
             run_at = CASE state WHEN 'pending' THEN MIN(run_at, excluded.run_at) ELSE excluded.run_at END,
             state = CASE state WHEN 'dead' THEN 'pending' ELSE state END,
             updated_at = excluded.updated_at",
    )?
    .execute(params![kind, key, payload, run_at, now])?;
    Ok(())
}

/// Enqueues the derivation of `doc` after a write at `at`, when it is a workspace document;
/// returns the job's due time if one was enqueued.
pub(super) fn enqueue_derive(conn: &Connection, doc: DocKey, at: i64) -> rusqlite::Result<Option<i64>> {
    let name: Option<String> = conn
        .prepare_cached("SELECT name FROM documents WHERE key = ?1 AND workspace IS NOT NULL")?
        .query_row([doc.0], |row| row.get(0))
        .optional()?;
    let Some(name) = name else { return Ok(None) };
    let run_at = at + DERIVE_DEBOUNCE_MS;
    enqueue_derive_of(conn, &name, run_at, at)?;
    Ok(Some(run_at))
}

/// Enqueues the derivation of workspace document `doc` (by id), due at `run_at`.
pub(super) fn enqueue_derive_of(conn: &Connection, doc: &str, run_at: i64, now: i64) -> rusqlite::Result<()> {
    enqueue(conn, DERIVE, &derive_key(doc), doc, run_at, now)
}

fn derive_key(doc: &str) -> String {
    format!("{DERIVE}:{doc}")
}

/// The delay before the retry that follows `attempts` failed attempts.
pub fn backoff(attempts: u32) -> i64 {
    let doublings = attempts.saturating_sub(1).min(32);
    FIRST_BACKOFF_MS.saturating_mul(1_i64 << doublings).min(MAX_BACKOFF_MS)
}

impl Storage {
    /// The queue's wake-up, for the job worker.
    pub fn job_wake(&self) -> &Wake {
        &self.inner.wake
    }

    /// Enqueues (or re-arms) job `key` of `kind`, due at `run_at`.
    ///
    /// # Errors
    /// [`StorageError`] when storage fails.
    pub async fn enqueue_job(
        &self,
        kind: &str,
        key: &str,
        payload: &str,
        run_at: i64,
        now: i64,
    ) -> Result<(), StorageError> {
        let (kind, key, payload) = (kind.to_owned(), key.to_owned(), payload.to_owned());
        self.run(move |conn| Ok(enqueue(conn, &kind, &key, &payload, run_at, now)?)).await?;
        self.inner.wake.scheduled(run_at);
        Ok(())
    }

    /// Claims up to `limit` jobs due at `now`, for [`LEASE_MS`](Self::LEASE_MS) each: a job
    /// not finished or failed by then is claimed again.
    ///
    /// # Errors
    /// [`StorageError`] when storage fails.
    pub async fn claim_jobs(&self, now: i64, limit: u32) -> Result<Vec<Job>, StorageError> {
        self.run(move |conn| {
            let mut stmt = conn.prepare_cached(
                "UPDATE jobs SET state = 'running', lease_until = ?2, updated_at = ?1
                 WHERE id IN (SELECT id FROM jobs
                              WHERE (state = 'pending' AND run_at <= ?1)
                                 OR (state = 'running' AND lease_until <= ?1)
                              ORDER BY run_at LIMIT ?3)
                 RETURNING id, kind, key, payload, armed, attempts",
            )?;
            let jobs = stmt
                .query_map(params![now, now + Self::LEASE_MS, limit], |row| {
                    Ok(Job {
                        id: row.get(0)?,
                        kind: row.get(1)?,
                        key: row.get(2)?,
                        payload: row.get(3)?,
                        armed: row.get(4)?,
                        attempts: row.get(5)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(jobs)
        })
        .await
    }

    /// How long a claimed job may run before it counts as abandoned, in milliseconds.
    pub const LEASE_MS: i64 = 300_000;

    /// `job` is done: it leaves the queue, unless it was re-armed while it ran; then it is due
    /// again when the re-arm asked.
    ///
    /// # Errors
    /// [`StorageError`] when storage fails.
    pub async fn finish_job(&self, job: &Job, now: i64) -> Result<(), StorageError> {
        let (id, armed) = (job.id, job.armed);
        let again = self
            .run(move |conn| {
                let deleted = conn
                    .prepare_cached("DELETE FROM jobs WHERE id = ?1 AND armed = ?2")?
                    .execute(params![id, armed])?;
                if deleted > 0 {
                    return Ok(None);
                }
                Ok(conn
                    .prepare_cached(
                        "UPDATE jobs SET state = 'pending', attempts = 0, lease_until = NULL, updated_at = ?2
                         WHERE id = ?1 AND state = 'running' RETURNING run_at",
                    )?
                    .query_row(params![id, now], |row| row.get::<_, i64>(0))
                    .optional()?)
            })
            .await?;
        if let Some(at) = again {
            self.inner.wake.scheduled(at);
        }
        Ok(())
    }

    /// `job` failed with `error`: it is retried after [`backoff`], or is dead after
    /// [`MAX_ATTEMPTS`].
    ///
    /// # Errors
    /// [`StorageError`] when storage fails.
    pub async fn fail_job(&self, job: &Job, error: &str, now: i64) -> Result<Failed, StorageError> {
        let attempts = job.attempts + 1;
        let outcome =
            if attempts >= MAX_ATTEMPTS { Failed::Dead } else { Failed::Retry(now + backoff(attempts)) };
        let (id, error) = (job.id, error.to_owned());
        self.run(move |conn| {
            let (state, run_at) = match outcome {
                Failed::Dead => ("dead", now),
                Failed::Retry(at) => ("pending", at),
            };
            conn.prepare_cached(
                "UPDATE jobs SET state = ?2, attempts = ?3, run_at = ?4, lease_until = NULL,
                     last_error = ?5, updated_at = ?6
                 WHERE id = ?1",
            )?
            .execute(params![id, state, attempts, run_at, error, now])?;
            Ok(())
        })
        .await?;
        if let Failed::Retry(at) = outcome {
            self.inner.wake.scheduled(at);
        }
        Ok(outcome)
    }

    /// Jobs left running by a process that stopped are pending again (one process runs the
    /// queue of an embedded store; call before the worker starts).
    ///
    /// # Errors
    /// [`StorageError`] when storage fails.
    pub async fn release_running_jobs(&self, now: i64) -> Result<(), StorageError> {
        self.run(move |conn| {
            conn.execute(
                "UPDATE jobs SET state = 'pending', lease_until = NULL, updated_at = ?1 WHERE state = 'running'",
                [now],
            )?;
            Ok(())
        })
        .await
    }

    /// When the next pending job is due, if there is one.
    ///
    /// # Errors
    /// [`StorageError`] when storage fails.
    pub async fn next_job_at(&self) -> Result<Option<i64>, StorageError> {
        self.read(|conn| {
            conn.query_row(
                "SELECT MIN(CASE state WHEN 'pending' THEN run_at ELSE lease_until END)
                 FROM jobs WHERE state IN ('pending', 'running')",
                [],
                |row| row.get(0),
            )
        })
        .await
    }

    /// Every job in `state` (all when `None`), oldest due first.
    ///
    /// # Errors
    /// [`StorageError`] when storage fails.
    pub async fn jobs(&self, state: Option<&str>) -> Result<Vec<JobRow>, StorageError> {
        let state = state.map(str::to_owned);
        self.read(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT kind, key, state, attempts, run_at, last_error FROM jobs
                 WHERE ?1 IS NULL OR state = ?1 ORDER BY run_at, id",
            )?;
            stmt.query_map([state], |row| {
                Ok(JobRow {
                    kind: row.get(0)?,
                    key: row.get(1)?,
                    state: row.get(2)?,
                    attempts: row.get(3)?,
                    run_at: row.get(4)?,
                    last_error: row.get(5)?,
                })
            })?
            .collect()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_a_second_up_to_an_hour() {
        assert_eq!(backoff(1), 1_000);
        assert_eq!(backoff(2), 2_000);
        assert_eq!(backoff(4), 8_000);
        assert_eq!(backoff(40), MAX_BACKOFF_MS);
    }
}
