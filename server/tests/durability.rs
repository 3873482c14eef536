//! The durability promise, tested the hard way: the `weft` binary is killed with SIGKILL while
//! clients write, and every update that had been acknowledged (echoed) to its sender must be there
//! after a restart. Repeated over many rounds with kill moments drawn from a printed seed
//! (`WEFT_KILL_SEED=<seed>` replays one run).

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;
use weft_client::YjsSync;
use yrs::{Array, Doc, Map, Transact};

const ROUNDS: usize = 10;
const WRITERS: usize = 3;

static PADDING: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| "p".repeat(64 * 1024));

/// Writes tokens in small batches; a batch counts as acknowledged only once the relay echoed it.
async fn write_until_stopped(
    url: String,
    label: String,
    acked: Arc<Mutex<BTreeSet<String>>>,
    stop: CancellationToken,
) {
    let Ok(sync) = YjsSync::start(&url, Doc::new(), fast()) else {
        return;
    };
    if sync.wait_synced(WAIT).await.is_err() {
        return;
    }
    let mut n = 0;
    while !stop.is_cancelled() {
        let batch: Vec<String> = (0..4)
            .map(|_| {
                n += 1;
                format!("{label}-{n}")
            })
            .collect();
        for token in &batch {
            // Each token travels with 64 KiB of text, so that a commit takes long enough to be
            // caught in the middle: a relay that acknowledged before committing would lose some.
            // Overwriting one map entry keeps the document small (the old value is collected).
            let doc = sync.doc();
            let (items, padding) = (doc.get_or_insert_array("items"), doc.get_or_insert_map("padding"));
            let mut txn = doc.transact_mut();
            items.push_back(&mut txn, token.as_str());
            padding.insert(&mut txn, "p", PADDING.as_str());
        }
        tokio::select! {
            acknowledged = sync.wait_acknowledged(Duration::from_secs(3)) => match acknowledged {
                Ok(()) => acked.lock().unwrap().extend(batch),
                Err(_) => return,
            },
            () = stop.cancelled() => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_clients_write_loses_no_acknowledged_update() {
    let seed: u64 = std::env::var("WEFT_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    println!("WEFT_KILL_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = temp_dir();
    let acked = Arc::new(Mutex::new(BTreeSet::new()));

    for round in 0..ROUNDS {
        let durability = if round % 2 == 0 { "fsync" } else { "buffered" };
        let server = ProcessServer::start(dir.path(), &["--durability", durability]);
        let url = server.yjs_url("kill-test");
        let stop = CancellationToken::new();
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                tokio::spawn(write_until_stopped(
                    url.clone(),
                    format!("r{round}w{w}"),
                    acked.clone(),
                    stop.clone(),
                ))
            })
            .collect();
        // Not a synchronisation: this picks the moment of the crash, somewhere mid-stream.
        tokio::time::sleep(Duration::from_millis(rng.random_range(150..700))).await;
        server.kill();
        stop.cancel();
        for writer in writers {
            writer.await.unwrap();
        }

        let server = ProcessServer::start(dir.path(), &[]);
        let check = client(&server.yjs_url("kill-test")).await;
        let present: Vec<String> = items(check.doc());
        let unique: BTreeSet<&String> = present.iter().collect();
        assert_eq!(unique.len(), present.len(), "seed {seed} round {round}: an update was stored twice");
        let acked_now = acked.lock().unwrap().clone();
        let missing: Vec<&String> = acked_now.iter().filter(|t| !unique.contains(t)).collect();
        assert!(
            missing.is_empty(),
            "seed {seed} round {round} ({durability}): acknowledged updates lost after SIGKILL: {missing:?}"
        );
        check.stop().await;
        assert!(server.terminate().success(), "clean exit on SIGTERM");
    }
    let total = acked.lock().unwrap().len();
    assert!(total >= ROUNDS * 8, "only {total} updates were acknowledged; the test proved little");
    println!("{total} acknowledged updates survived {ROUNDS} SIGKILLs");
}
