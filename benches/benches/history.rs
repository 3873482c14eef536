//! Version history on the standard editing trace (`benches/data/`, 259,778 edits): the trace's
//! updates go through a real room as three peers taking turns edit by edit (three members, each
//! update attributed to the one whose turn it is — the worst case for attribution, whose runs then
//! never merge), with a version every 1,000 updates (the loop waits for each, as typing speed
//! would let it be made); then, on the real server (`weft::run` on
//! loopback, SQLite in a temp dir, fsync on), the history routes are timed against reading the
//! current content in the same run.
//!
//! Reported: storage bytes per version (the version rows, and the authorship runs per version),
//! what keeping deleted content (`skip_gc`) costs the stored snapshot against the same text with
//! garbage collection, and the time to list versions, to read the content at a version (cold: the
//! document loads; warm), to diff, to blame, and to restore.
//! `WEFT_BENCH_HISTORY_EDITS` (default: the whole trace) replays only a prefix.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use weft::config::Config;
use weft::metrics::Metrics;
use weft::rooms::{Dialect, Identity, Inbound, Rooms, link};
use weft::storage::{Crdt, Storage};
use weft_benches::Trace;
use weft_sync_core::DocId;
use weft_sync_core::relay::Access;
use weft_sync_core::yjs::Message;
use yrs::{ReadTxn, StateVector, Transact};

const USERS: [&str; 3] = ["u-ann", "u-ben", "u-cat"];
const VERSION_EVERY: usize = 1_000;
const SAMPLES: usize = 15;

fn config(dir: &std::path::Path) -> Config {
    let mut config = Config::with_data_dir(dir);
    config.rooms.history.every_updates = VERSION_EVERY;
    config.rooms.history.idle = Duration::from_secs(3600);
    config.rooms.history.every = Duration::from_secs(36_000);
    // Keep every version: the bench measures what they cost, not what thinning saves.
    config.rooms.history.retention = weft::storage::versions::Retention { tiers: vec![] };
    // Replaying the whole trace with a version every 1,000 updates takes longer than an access
    // token's default 15 minutes.
    config.accounts.access_ttl = Duration::from_secs(4 * 3600);
    config
}

struct Server {
    base: String,
    shutdown: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start(dir: &std::path::Path) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let mut config = config(dir);
    config.listen = listener.local_addr().unwrap();
    let task = tokio::spawn(weft::run(config, listener, shutdown.clone()));
    Server { base, shutdown, task }
}

impl Server {
    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Value,
) -> Value {
    let mut request = http.request(method, url).bearer_auth(token);
    if !body.is_null() {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "{status}: {text}");
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

/// Sends the trace's updates into document `id` as three peers taking turns.
async fn fill(dir: &std::path::Path, id: &str, updates: &[bytes::Bytes]) -> (Duration, usize) {
    let config = config(dir);
    let storage = Storage::open(&config.storage).await.unwrap();
    let tracker = tokio_util::task::TaskTracker::new();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let rooms = Rooms::new(
        storage.clone(),
        config.rooms.clone(),
        Metrics::default(),
        tracker.clone(),
        shutdown.clone(),
    );
    let doc = DocId::new(id.to_owned()).unwrap();
    let mut peers = Vec::new();
    for user in USERS {
        let (peer_link, mut outbox, _closer) = link(1 << 16, Dialect::YWebsocket);
        // Drain what the room sends this peer (echoes), as a connection's writer would.
        tokio::spawn(async move { while outbox.recv().await.is_some() {} });
        let identity = Identity { access: Access::ReadWrite, author: Some(Arc::from(user)) };
        let membership = rooms.join(&doc, Crdt::Yjs, identity, peer_link).await.unwrap();
        let sv = bytes::Bytes::from(yrs::updates::encoder::Encode::encode_v1(&StateVector::default()));
        membership.send(Inbound::Yjs(vec![Message::SyncStep1(sv)])).await.unwrap();
        peers.push(membership);
    }
    let started = Instant::now();
    let key = storage.document_key(id).await.unwrap().unwrap();
    for (i, update) in updates.iter().enumerate() {
        peers[i % USERS.len()].send(Inbound::Yjs(vec![Message::Update(update.clone())])).await.unwrap();
        // People type far slower than this loop sends: let each version be made before the
        // next thousand updates arrive, as it would be at typing speed.
        if (i + 1) % VERSION_EVERY == 0 {
            let sent = (i + 1) as u64;
            while storage.latest_version(key).await.unwrap().is_none_or(|v| v.version.upto < sent) {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    // Answered once everything appended is durable.
    let state = rooms.state(&doc, Crdt::Yjs).await.unwrap();
    let elapsed = started.elapsed();
    for membership in peers {
        membership.leave().await;
    }
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
    storage.close().await;
    (elapsed, state.len())
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

async fn time<F, Fut>(n: usize, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        f().await;
        samples.push(started.elapsed());
    }
    median(samples)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let trace = Trace::load_standard().expect("the standard trace (benches/data/)");
    let started = Instant::now();
    let (mut updates, replayed) = trace.replay_yjs_as("content");
    if let Some(n) = std::env::var("WEFT_BENCH_HISTORY_EDITS").ok().and_then(|v| v.parse().ok()) {
        updates.truncate(n);
    }
    eprintln!("replayed {} edits in {:.1} s", updates.len(), started.elapsed().as_secs_f64());
    drop(replayed);
    let collected = {
        let doc = yrs::Doc::new();
        for update in &updates {
            let decoded = <yrs::Update as yrs::updates::decoder::Decode>::decode_v1(update).unwrap();
            doc.transact_mut().apply_update(decoded).unwrap();
        }
        doc.transact().encode_state_as_update_v1(&StateVector::default()).len()
    };

    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let server = start(dir.path()).await;
    let session: Value = call(
        &http,
        reqwest::Method::POST,
        format!("{}/api/auth/signup", server.base),
        "",
        json!({ "email": "ann@example.com", "password": "correct horse battery" }),
    )
    .await;
    let token = session["access_token"].as_str().unwrap().to_owned();
    let ws = call(
        &http,
        reqwest::Method::POST,
        format!("{}/api/workspaces", server.base),
        &token,
        json!({ "name": "Bench" }),
    )
    .await;
    let ws = ws["id"].as_str().unwrap();
    let doc = call(
        &http,
        reqwest::Method::POST,
        format!("{}/api/workspaces/{ws}/docs", server.base),
        &token,
        json!({ "kind": "document", "crdt": "yjs", "title": "paper" }),
    )
    .await;
    let id = doc["id"].as_str().unwrap().to_owned();
    server.stop().await;

    let (filled, kept) = fill(dir.path(), &id, &updates).await;
    eprintln!("{} updates through the room in {:.1} s", updates.len(), filled.as_secs_f64());

    let conn = rusqlite::Connection::open(dir.path().join("weft.sqlite3")).unwrap();
    let (versions, state_bytes, row_bytes): (i64, i64, i64) = conn
        .query_row(
            "SELECT count(*), sum(length(state)),
                    sum(length(state) + length(id) + length(authors) + length(summary) + coalesce(length(name), 0) + 48)
             FROM versions",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    let (runs, run_bytes): (i64, i64) = conn
        .query_row(
            "SELECT count(*), coalesce(sum(length(origin) + coalesce(length(user_id), 0) + coalesce(length(client), 0) + 32), 0) FROM authorship",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    drop(conn);

    let server = start(dir.path()).await;
    let base = format!("{}/api/docs/{id}", server.base);
    let get = |url: String| {
        let (http, token) = (http.clone(), token.clone());
        async move { call(&http, reqwest::Method::GET, url, &token, Value::Null).await }
    };
    // Cold: the first read loads the document (snapshot + log) into a room.
    let page = get(format!("{base}/versions?limit=100")).await;
    let listed = page["versions"].as_array().unwrap().clone();
    let middle = listed[listed.len() / 2]["id"].as_str().unwrap().to_owned();
    let newest = listed[0]["id"].as_str().unwrap().to_owned();
    let cold_started = Instant::now();
    get(format!("{base}/versions/{middle}?format=text")).await;
    let cold_read = cold_started.elapsed();

    let current = time(SAMPLES, || async {
        get(format!("{base}/content?format=text")).await;
    })
    .await;
    let list = time(SAMPLES, || async {
        get(format!("{base}/versions?limit=50")).await;
    })
    .await;
    let read = time(SAMPLES, || async {
        get(format!("{base}/versions/{middle}?format=text")).await;
    })
    .await;
    let diff = time(5, || async {
        get(format!("{base}/versions/{middle}/diff")).await;
    })
    .await;
    let blame = time(5, || async {
        get(format!("{base}/blame")).await;
    })
    .await;
    let mut restores = Vec::new();
    for target in [&middle, &newest, &middle, &newest] {
        let started = Instant::now();
        call(&http, reqwest::Method::POST, format!("{base}/versions/{target}/restore"), &token, Value::Null)
            .await;
        restores.push(started.elapsed());
    }
    server.stop().await;

    println!(
        "history on the standard trace ({} edits, 3 members taking turns, a version every {VERSION_EVERY})",
        updates.len()
    );
    println!(
        "  ingest through the room: {:.1} s ({:.0} updates/s, checkpoints included)",
        filled.as_secs_f64(),
        updates.len() as f64 / filled.as_secs_f64()
    );
    println!(
        "  versions: {versions}; version state {:.0} B each; version row {:.0} B each",
        state_bytes as f64 / versions as f64,
        row_bytes as f64 / versions as f64
    );
    println!(
        "  authorship: {runs} runs, {run_bytes} B ({:.0} B per version)",
        run_bytes as f64 / versions as f64
    );
    println!(
        "  full state keeping deleted content (skip_gc) {kept} B vs the same edits garbage-collected {collected} B: {:.2}x",
        kept as f64 / collected as f64
    );
    println!("  read current content (baseline): {}", ms(current));
    println!(
        "  list 50 versions: {} ({:.2}x the baseline)",
        ms(list),
        list.as_secs_f64() / current.as_secs_f64()
    );
    println!(
        "  content at a version: cold {} (loads the document), warm {} ({:.2}x the baseline)",
        ms(cold_read),
        ms(read),
        read.as_secs_f64() / current.as_secs_f64()
    );
    println!("  diff a version to now: {}; blame: {}", ms(diff), ms(blame));
    println!(
        "  restore (middle, newest, middle, newest): {}",
        restores.iter().map(|d| ms(*d)).collect::<Vec<_>>().join(", ")
    );
}
