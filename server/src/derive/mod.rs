//! Derivation: state computed on the server from the merged CRDT state of every workspace
//! document, off the relay's hot path (`docs/derivation.md`). One worker runs the job queue
//! (`storage::jobs`): it sleeps until the next job is due or an enqueuing write commits, claims
//! what is due, runs each job by its kind, and finishes it, or fails it into a retry with backoff
//! and finally the dead-letter state. A job's effects are idempotent, so a job run twice (after a
//! crash mid-run) changes nothing the second time.
//!
//! `document.rs` — the derive job: a document's projection turned into its search rows and
//! notifications.

mod document;

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::now_ms;
use crate::events::Events;
use crate::metrics::{JobOutcome, Metrics};
use crate::rooms::Rooms;
use crate::storage::Storage;
use crate::storage::jobs::{DERIVE, Failed, Job};

/// How soon a due time that found nothing to claim is looked at again, in milliseconds.
const RECHECK_MS: i64 = 50;
/// Jobs claimed at once.
const CLAIM: u32 = 32;
/// The longest the worker sleeps without looking at the queue (a safety net: enqueuing writes
/// wake it).
const IDLE_POLL: Duration = Duration::from_secs(5);

/// What the jobs need.
#[derive(Clone)]
pub struct Deriver {
    storage: Storage,
    rooms: Rooms,
    metrics: Metrics,
    events: Events,
}

impl Deriver {
    /// A worker over `storage`'s queue, reading documents through `rooms`, telling `events`
    /// what it notified.
    pub fn new(storage: Storage, rooms: Rooms, metrics: Metrics, events: Events) -> Self {
        Self { storage, rooms, metrics, events }
    }

    /// Starts the worker on `tracker`; it stops when `shutdown` is cancelled (a job in progress
    /// is finished first).
    pub fn spawn(self, tracker: &TaskTracker, shutdown: CancellationToken) {
        tracker.spawn(async move {
            if let Err(err) = self.prepare().await {
                tracing::error!(error = %err, "the job queue could not start");
                return;
            }
            self.work(shutdown).await;
        });
    }

    /// Jobs a stopped process left running are due again, and documents written before their
    /// derivation was recorded are enqueued.
    async fn prepare(&self) -> Result<(), crate::storage::StorageError> {
        let now = now_ms();
        self.storage.release_running_jobs(now).await?;
        let underived = self.storage.enqueue_underived(now).await?;
        if underived > 0 {
            tracing::info!(
                documents = underived,
                "deriving documents whose log is ahead of their derived state"
            );
        }
        Ok(())
    }

    async fn work(&self, shutdown: CancellationToken) {
        let wake = self.storage.job_wake();
        let mut due = Some(now_ms());
        loop {
            if let Some(at) = wake.take() {
                due = Some(due.map_or(at, |d| d.min(at)));
            }
            let now = now_ms();
            if due.is_some_and(|at| at <= now) {
                match self.storage.claim_jobs(now, CLAIM).await {
                    Ok(jobs) if !jobs.is_empty() => {
                        for job in jobs {
                            self.run(job).await;
                        }
                        due = Some(now_ms());
                        continue;
                    }
                    Ok(_) => {}
                    Err(err) => tracing::warn!(error = %err, "claiming jobs failed"),
                }
                // Never spin: what is due and was not claimed is looked at again a moment later.
                let soonest = now_ms() + RECHECK_MS;
                due = self.storage.next_job_at().await.unwrap_or(Some(soonest)).map(|at| at.max(soonest));
                continue;
            }
            let sleep =
                due.map_or(IDLE_POLL, |at| Duration::from_millis((at - now).max(0) as u64).min(IDLE_POLL));
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = wake.notified() => {}
                () = tokio::time::sleep(sleep) => {
                    if due.is_none() {
                        due = Some(now_ms());
                    }
                }
            }
        }
    }

    /// Runs every job due now, and those they make due, until none is left: what
    /// `weft rebuild-derived` does without a server. Jobs that failed and wait for a retry stay
    /// queued for the server.
    ///
    /// # Errors
    /// [`StorageError`](crate::storage::StorageError) when the queue cannot be read.
    pub async fn drain(&self) -> Result<Drained, crate::storage::StorageError> {
        self.prepare().await?;
        let mut drained = Drained::default();
        loop {
            let jobs = self.storage.claim_jobs(now_ms(), CLAIM).await?;
            if jobs.is_empty() {
                return Ok(drained);
            }
            for job in jobs {
                match self.run(job).await {
                    JobOutcome::Done => drained.done += 1,
                    JobOutcome::Failed => drained.failed += 1,
                    JobOutcome::Dead => drained.dead += 1,
                }
            }
        }
    }

    /// Runs `job` and records how it ended.
    async fn run(&self, job: Job) -> JobOutcome {
        let outcome = match job.kind.as_str() {
            DERIVE => document::derive(self, &job.payload).await,
            other => Err(format!("no job kind {other:?} in this build")),
        };
        let now = now_ms();
        let (ended, recorded) = match outcome {
            Ok(()) => (JobOutcome::Done, self.storage.finish_job(&job, now).await),
            Err(error) => match self.storage.fail_job(&job, &error, now).await {
                Ok(Failed::Retry(at)) => {
                    tracing::warn!(job = %job.key, attempt = job.attempts + 1, %error, retry_at = at, "job failed");
                    (JobOutcome::Failed, Ok(()))
                }
                Ok(Failed::Dead) => {
                    tracing::error!(job = %job.key, attempts = job.attempts + 1, %error, "job failed for good: dead");
                    (JobOutcome::Dead, Ok(()))
                }
                Err(err) => (JobOutcome::Failed, Err(err)),
            },
        };
        self.metrics.count_job(&job.kind, ended);
        if let Err(err) = recorded {
            tracing::warn!(job = %job.key, error = %err, "recording a job's outcome failed; it runs again");
        }
        ended
    }
}

/// What [`Deriver::drain`] ran.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Drained {
    /// Jobs done.
    pub done: usize,
    /// Jobs that failed and wait for a retry.
    pub failed: usize,
    /// Jobs that failed for the last time.
    pub dead: usize,
}
