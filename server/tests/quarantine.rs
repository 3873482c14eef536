//! The quarantine, tested on a data directory that the server at 7ea3ca8 wrote after FRAME_A
//! (`tests/fixtures/frame-a-7ea3ca8`, see its README). The current binary quarantines the stored
//! FRAME_A update once, when it loads the document. It serves the good content from before the
//! update (and later edits, across a SIGKILL) and leaves the other document alone. It counts the
//! item in `/metrics`, and `weft quarantine list` and `weft quarantine export` show the item and
//! give back exactly its bytes.

mod common;

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft_sync_core::yjs::Message;
use weft_sync_core::yjs::codec::decode_frame;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/frame-a-7ea3ca8/weft.sqlite3");
const FRAME_A: &[u8] = include_bytes!("../../sync-core/tests/crafted/frame_a.bin");
const QUARANTINED_UPDATE: &str = "weft_quarantined_items_total{kind=\"update\"} 1";

/// FRAME_A's sync step 2 payload, which the old server logged as `victim`'s update 4.
fn frame_a_update() -> Vec<u8> {
    // `[0 (sync), 1 (step 2), varuint 225 = e1 01, payload]`
    assert_eq!(&FRAME_A[..4], &[0, 1, 0xe1, 0x01], "FRAME_A's header");
    let payload = FRAME_A[4..].to_vec();
    assert_eq!(payload.len(), 225);
    let decoded = decode_frame(&bytes::Bytes::from_static(FRAME_A)).expect("FRAME_A decodes as a frame");
    assert_eq!(decoded, vec![Message::SyncStep2(payload.clone().into())], "FRAME_A is one sync step 2");
    payload
}

/// Runs `weft ARGS…` (the binary under test) to completion; fails unless it succeeds.
fn weft(args: &[&OsStr]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_weft")).args(args).output().expect("run weft");
    assert!(
        out.status.success(),
        "weft {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// `weft quarantine list --data-dir DIR --json`, one JSON value per line.
fn quarantine_list(dir: &Path) -> Vec<Value> {
    weft(&["quarantine".as_ref(), "list".as_ref(), "--data-dir".as_ref(), dir.as_os_str(), "--json".as_ref()])
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect()
}

async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let exchange = async {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        tcp.read_to_string(&mut response).await.unwrap();
        response
    };
    let response = tokio::time::timeout(WAIT, exchange).await.expect("an HTTP answer in time");
    let status = response[9..12].parse().unwrap();
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_old_builds_wrote_after_frame_a_loads_with_the_update_quarantined() {
    init_logging();
    let update = frame_a_update();
    let dir = temp_dir();
    std::fs::copy(FIXTURE, db_path(dir.path())).expect("copy the fixture");
    assert!(quarantine_list(dir.path()).is_empty(), "nothing is quarantined before a load");

    // First load: `victim` serves what was written before FRAME_A; the update is set aside.
    let server = ProcessServer::start(dir.path(), &[]);
    let victim = client(&server.yjs_url("victim")).await;
    assert_eq!(text(victim.doc()), "before ");
    insert(victim.doc(), 7, "and after");
    victim.wait_acknowledged(WAIT).await.expect("the edit is acknowledged");
    let bystander = client(&server.yjs_url("bystander")).await;
    assert_eq!(text(bystander.doc()), "bystander stays intact");

    let (status, metrics) = http_get(server.addr, "/metrics").await;
    assert_eq!(status, 200, "{metrics}");
    assert!(metrics.contains(QUARANTINED_UPDATE), "{metrics}");
    assert!(!metrics.contains("weft_quarantined_items_total{kind=\"snapshot\"}"), "{metrics}");

    // The quarantine is written before the document is served, and readable beside the server.
    let listed = quarantine_list(dir.path());
    assert_eq!(listed.len(), 1, "{listed:?}");
    victim.stop().await;
    bystander.stop().await;
    server.kill();

    // After a SIGKILL: the acknowledged edit is there, and nothing is quarantined again.
    let server = ProcessServer::start(dir.path(), &[]);
    let victim = client(&server.yjs_url("victim")).await;
    assert_eq!(text(victim.doc()), "before and after");
    let bystander = client(&server.yjs_url("bystander")).await;
    assert_eq!(text(bystander.doc()), "bystander stays intact");
    let (_, metrics) = http_get(server.addr, "/metrics").await;
    assert!(!metrics.contains(QUARANTINED_UPDATE), "the item left the log on the first load: {metrics}");
    victim.stop().await;
    bystander.stop().await;
    assert!(server.terminate().success(), "a clean exit on SIGTERM");

    let listed = quarantine_list(dir.path());
    assert_eq!(listed.len(), 1, "exactly one item: {listed:?}");
    let item = &listed[0];
    assert_eq!(item["document"], "victim", "{item}");
    assert_eq!(item["crdt"], "yjs", "{item}");
    assert_eq!(item["kind"], "update", "{item}");
    assert_eq!(item["seq"], 4, "FRAME_A was the old log's fourth update: {item}");
    assert_eq!(item["size"], 225, "{item}");
    let reason = item["reason"].as_str().expect("a reason");
    assert!(reason.contains("does not load"), "{item}");

    let id = item["id"].as_i64().expect("an id").to_string();
    let out = dir.path().join("exported.bin");
    let printed = weft(&[
        "quarantine".as_ref(),
        "export".as_ref(),
        id.as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
        "--data-dir".as_ref(),
        dir.path().as_os_str(),
    ]);
    assert!(printed.contains("wrote 225 bytes"), "{printed}");
    assert_eq!(std::fs::read(&out).expect("the exported file"), update, "exactly FRAME_A's update bytes");
}
