//! Long channels: opening the latest page of a channel with 1,000,000 messages against a channel
//! with 1,000, on the real server (`weft::run` on loopback, SQLite in a temp dir, fsync on).
//!
//! Setup: the channels are created over REST; their messages are written through the real write
//! path (`Rooms::write`, the relay's own updates, what REST posts do) in batches of one segment,
//! the long channel continuing in segment documents exactly as the REST route segments it
//! (`channel::add_segment` on the channel, `Storage::create_segment`). Then the server starts
//! afresh and each sample is a cold `GET /api/docs/{id}/messages?limit=50` (rooms unload between
//! samples), timed from the request to the parsed answer; and the bytes the server loaded for it
//! (the channel document and the newest segment) against the channel's whole stored history.
//! `WEFT_BENCH_CHANNEL_MESSAGES` (default 1,000,000) sets the long channel's length.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use weft::config::Config;
use weft::metrics::Metrics;
use weft::rooms::Rooms;
use weft::storage::{Crdt, Storage};
use weft_sync_core::DocId;
use weft_sync_core::domain::channel::{self, NewMessage};

const SEGMENT: usize = 2_000;
const SAMPLES: usize = 15;

fn config(dir: &std::path::Path) -> Config {
    let mut config = Config::with_data_dir(dir);
    config.channel_segment_messages = SEGMENT;
    config.rooms.idle_unload = Duration::from_millis(50);
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
    token: Option<&str>,
    body: Value,
) -> Value {
    let mut request = http.request(method, url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if !body.is_null() {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    response.json().await.unwrap()
}

/// The changes that post `count` messages numbered from `first`, a millisecond apart.
fn batch(first: usize, count: usize, author: &str) -> Vec<weft_sync_core::domain::write::Change> {
    (first..first + count)
        .flat_map(|i| {
            let id = format!("m{i:07}");
            let body = format!("message {i}: the quick brown fox jumps over the lazy dog");
            channel::post(&NewMessage {
                id: &id,
                author,
                body: &body,
                at: 1_700_000_000_000 + i as i64,
                parent: None,
                attachments: &[],
            })
        })
        .collect()
}

/// Writes `total` messages into channel `id` through the rooms, segment by segment.
async fn fill(dir: &std::path::Path, id: &str, total: usize, author: &str) -> (usize, u64) {
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
    let author: Arc<str> = Arc::from(author);
    let channel = DocId::new(id.to_owned()).unwrap();
    let mut written = 0;
    let mut segments = 0;
    while written < total {
        let count = SEGMENT.min(total - written);
        let target = if written == 0 {
            channel.clone()
        } else {
            let segment = format!("{id}-{segments}");
            let at = 1_700_000_000_000 + written as i64;
            storage.create_segment(id, &segment, Crdt::Yjs, at).await.unwrap();
            rooms
                .write(&channel, Crdt::Yjs, channel::add_segment(&segment, at), author.clone())
                .await
                .unwrap();
            segments += 1;
            DocId::new(segment).unwrap()
        };
        rooms.write(&target, Crdt::Yjs, batch(written, count, &author), author.clone()).await.unwrap();
        written += count;
        if written % 100_000 == 0 {
            eprintln!("  {written} messages written");
        }
    }
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
    storage.close().await;
    let bytes = dir_bytes(dir);
    (segments, bytes)
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    walk(dir)
}

fn walk(path: &std::path::Path) -> u64 {
    let Ok(meta) = std::fs::metadata(path) else { return 0 };
    if meta.is_file() {
        return meta.len();
    }
    std::fs::read_dir(path).map_or(0, |entries| entries.flatten().map(|e| walk(&e.path())).sum())
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let long: usize =
        std::env::var("WEFT_BENCH_CHANNEL_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();

    // Accounts, a workspace and two channels, over REST.
    let server = start(dir.path()).await;
    let session = call(
        &http,
        reqwest::Method::POST,
        format!("{}/api/auth/signup", server.base),
        None,
        json!({ "email": "bench@example.com", "password": "correct horse" }),
    )
    .await;
    let token = session["access_token"].as_str().unwrap().to_owned();
    let user = session["user"]["id"].as_str().unwrap().to_owned();
    let ws = call(
        &http,
        reqwest::Method::POST,
        format!("{}/api/workspaces", server.base),
        Some(&token),
        json!({ "name": "Bench" }),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut channels = Vec::new();
    for title in ["short", "long"] {
        let doc = call(
            &http,
            reqwest::Method::POST,
            format!("{}/api/workspaces/{ws}/docs", server.base),
            Some(&token),
            json!({ "kind": "channel", "crdt": "yjs", "title": title }),
        )
        .await;
        channels.push(doc["id"].as_str().unwrap().to_owned());
    }
    server.stop().await;

    eprintln!("writing 1,000 messages, then {long}");
    let started = Instant::now();
    fill(dir.path(), &channels[0], 1_000, &user).await;
    let before_long = dir_bytes(dir.path());
    let (segments, after) = fill(dir.path(), &channels[1], long, &user).await;
    eprintln!(
        "written in {:.1} s; the long channel has {segments} segments",
        started.elapsed().as_secs_f64()
    );

    // Cold latest pages, alternating between the two channels.
    let server = start(dir.path()).await;
    let mut times = [Vec::new(), Vec::new()];
    for _ in 0..SAMPLES {
        for (i, id) in channels.iter().enumerate() {
            tokio::time::sleep(Duration::from_millis(400)).await;
            let t = Instant::now();
            let page = call(
                &http,
                reqwest::Method::GET,
                format!("{}/api/docs/{id}/messages?limit=50", server.base),
                Some(&token),
                Value::Null,
            )
            .await;
            times[i].push(t.elapsed());
            assert_eq!(page["messages"].as_array().map(Vec::len), Some(50));
        }
    }
    // Posting over REST into each channel (rooms warm): the cost of the checks and the write.
    let mut posts = [Vec::new(), Vec::new()];
    for round in 0..SAMPLES {
        for (i, id) in channels.iter().enumerate() {
            let t = Instant::now();
            call(
                &http,
                reqwest::Method::POST,
                format!("{}/api/docs/{id}/messages", server.base),
                Some(&token),
                json!({ "body": format!("posted {round}") }),
            )
            .await;
            posts[i].push(t.elapsed());
        }
    }
    server.stop().await;
    let (short, long_time) = (median(times[0].clone()), median(times[1].clone()));
    let (post_short, post_long) = (median(posts[0].clone()), median(posts[1].clone()));
    println!("| channel | messages | documents read for the latest page | median cold latest page (50) |");
    println!("|---|---|---|---|");
    println!("| short | 1,000 | 1 | {:.1} ms |", short.as_secs_f64() * 1e3);
    println!("| long | {long} | 2 of {} | {:.1} ms |", segments + 1, long_time.as_secs_f64() * 1e3);
    println!("ratio long / short: {:.2}", long_time.as_secs_f64() / short.as_secs_f64());
    println!(
        "median REST post (warm): short {:.1} ms, long {:.1} ms, ratio {:.2}",
        post_short.as_secs_f64() * 1e3,
        post_long.as_secs_f64() * 1e3,
        post_long.as_secs_f64() / post_short.as_secs_f64()
    );
    println!(
        "data directory: {:.1} MB after the long channel ({:.1} MB before it)",
        after as f64 / 1e6,
        before_long as f64 / 1e6
    );
}
