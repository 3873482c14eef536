//! The job queue on real SQLite: one job per key (re-arming instead of adding), due times,
//! claims with leases, a re-arm while a job runs making it run once more, retries with
//! exponential backoff into the dead-letter state, jobs left running by a stopped process, and
//! the queue surviving a reopen of the store.

mod common;

use weft::Config;
use weft::storage::Storage;
use weft::storage::jobs::{Failed, MAX_ATTEMPTS, backoff};

async fn open(dir: &std::path::Path) -> Storage {
    Storage::open(&Config::with_data_dir(dir).storage).await.expect("open storage")
}

#[tokio::test]
async fn one_job_per_key_rearmed_retried_with_backoff_then_dead_and_kept_across_a_reopen() {
    let dir = common::temp_dir();
    let storage = open(dir.path()).await;
    let t0 = 1_000_000;

    // A burst on one key is one job, due at the earliest time asked.
    storage.enqueue_job("mail", "mail:1", "a", t0 + 500, t0).await.unwrap();
    storage.enqueue_job("mail", "mail:1", "b", t0 + 100, t0).await.unwrap();
    storage.enqueue_job("mail", "mail:1", "c", t0 + 900, t0).await.unwrap();
    assert_eq!(storage.jobs(None).await.unwrap().len(), 1);
    assert_eq!(storage.next_job_at().await.unwrap(), Some(t0 + 100));
    assert!(storage.claim_jobs(t0 + 99, 10).await.unwrap().is_empty(), "not due yet");
    let claimed = storage.claim_jobs(t0 + 100, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].payload, "c", "the payload of the latest enqueue");
    assert!(storage.claim_jobs(t0 + 100, 10).await.unwrap().is_empty(), "a claimed job is leased");

    // Re-armed while it runs: finishing it leaves it due again, once.
    storage.enqueue_job("mail", "mail:1", "d", t0 + 300, t0 + 200).await.unwrap();
    storage.finish_job(&claimed[0], t0 + 250).await.unwrap();
    let again = storage.claim_jobs(t0 + 300, 10).await.unwrap();
    assert_eq!((again.len(), again[0].payload.as_str()), (1, "d"));
    storage.finish_job(&again[0], t0 + 310).await.unwrap();
    assert!(storage.jobs(None).await.unwrap().is_empty(), "done and not re-armed: gone");

    // Failures back off exponentially, then the job is dead, kept with its error.
    storage.enqueue_job("push", "push:9", "p", t0, t0).await.unwrap();
    let mut now = t0;
    for attempt in 1..=MAX_ATTEMPTS {
        let job = storage.claim_jobs(now, 10).await.unwrap().pop().expect("due");
        assert_eq!(job.attempts, attempt - 1);
        match storage.fail_job(&job, &format!("endpoint said 500 ({attempt})"), now).await.unwrap() {
            Failed::Retry(at) => {
                assert!(attempt < MAX_ATTEMPTS);
                assert_eq!(at, now + backoff(attempt));
                assert!(storage.claim_jobs(at - 1, 10).await.unwrap().is_empty(), "not before its backoff");
                now = at;
            }
            Failed::Dead => assert_eq!(attempt, MAX_ATTEMPTS),
        }
    }
    assert_eq!(backoff(2), 2 * backoff(1));
    let dead = storage.jobs(Some("dead")).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].last_error.as_deref(), Some(format!("endpoint said 500 ({MAX_ATTEMPTS})").as_str()));
    assert!(storage.claim_jobs(i64::MAX / 2, 10).await.unwrap().is_empty(), "dead jobs do not run");
    // Enqueued again, a dead job lives again with a fresh count.
    storage.enqueue_job("push", "push:9", "p2", now, now).await.unwrap();
    let revived = storage.claim_jobs(now, 10).await.unwrap();
    assert_eq!((revived.len(), revived[0].attempts), (1, 0));

    // A job left running by a process that stopped is due again after a reopen.
    storage.close().await;
    let storage = open(dir.path()).await;
    assert!(storage.claim_jobs(now, 10).await.unwrap().is_empty(), "still leased");
    storage.release_running_jobs(now).await.unwrap();
    let resumed = storage.claim_jobs(now, 10).await.unwrap();
    assert_eq!((resumed.len(), resumed[0].key.as_str()), (1, "push:9"));
    storage.close().await;
}
