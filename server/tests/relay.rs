//! End-to-end behaviour of the y-websocket endpoint against the real server on `127.0.0.1:0` with a
//! temporary data directory: Rust SDK clients for well-behaved peers, raw WebSocket clients for
//! everything else.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft::Config;
use weft_sync_core::yjs::Message;
use yrs::updates::encoder::Encode;
use yrs::{Doc, ReadTxn, StateVector, Transact};

#[tokio::test]
async fn two_clients_converge_through_the_relay() {
    let dir = temp_dir();
    let server = TestServer::start(dir.path()).await;
    let a = client(&server.yjs_url("converge")).await;
    let b = client(&server.yjs_url("converge")).await;
    for i in 0..20 {
        insert(a.doc(), 0, &format!("a{i} "));
        insert(b.doc(), 0, &format!("b{i} "));
    }
    eventually("both replicas to hold all 40 edits", || {
        let (ta, tb) = (text(a.doc()), text(b.doc()));
        ta == tb && ta.matches('a').count() == 20 && ta.matches('b').count() == 20
    })
    .await;
    a.wait_acknowledged(WAIT).await.unwrap();
    b.wait_acknowledged(WAIT).await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn state_survives_a_restart_and_clients_reconnect_by_themselves() {
    let dir = temp_dir();
    let server = TestServer::start(dir.path()).await;
    let a = client(&server.yjs_url("restart")).await;
    insert(a.doc(), 0, "before restart");
    a.wait_acknowledged(WAIT).await.unwrap();

    let server = server.restart().await;
    a.wait_for(WAIT, "reconnect", |s| s.connections >= 2 && s.synced).await.unwrap();
    insert(a.doc(), 0, "after restart, ");
    a.wait_acknowledged(WAIT).await.unwrap();

    let fresh = client(&server.yjs_url("restart")).await;
    assert_eq!(text(fresh.doc()), "after restart, before restart");
    server.stop().await;
}

#[tokio::test]
async fn edits_made_while_the_server_is_down_merge_when_it_returns() {
    let dir = temp_dir();
    let server = TestServer::start(dir.path()).await;
    let url = server.yjs_url("offline");
    let a = client(&url).await;
    let b = client(&url).await;
    let addr = server.addr;
    let config = server.config.clone();
    server.stop().await;
    a.wait_for(WAIT, "disconnect", |s| !s.connected).await.unwrap();
    insert(a.doc(), 0, "A offline. ");
    insert(b.doc(), 0, "B offline. ");

    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(weft::run(config, listener, shutdown.clone()));
    eventually("offline edits to merge", || {
        let (ta, tb) = (text(a.doc()), text(b.doc()));
        ta == tb && ta.contains("A offline") && ta.contains("B offline")
    })
    .await;
    a.wait_acknowledged(WAIT).await.unwrap();
    b.wait_acknowledged(WAIT).await.unwrap();
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn awareness_reaches_others_and_is_removed_when_its_owner_leaves() {
    let dir = temp_dir();
    let server = TestServer::start(dir.path()).await;
    let a = client(&server.yjs_url("presence")).await;
    let b = client(&server.yjs_url("presence")).await;
    let a_id = a.doc().client_id().get();
    a.set_awareness(Some(r#"{"user":{"name":"ann"}}"#.into()));
    b.wait_for(WAIT, "ann's presence", |s| s.remote_awareness.get(&a_id).is_some_and(|v| v.contains("ann")))
        .await
        .unwrap();
    a.stop().await;
    b.wait_for(WAIT, "ann's presence to go", |s| !s.remote_awareness.contains_key(&a_id)).await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn a_ten_megabyte_paste_syncs() {
    let dir = temp_dir();
    let server = TestServer::start(dir.path()).await;
    let a = client(&server.yjs_url("paste")).await;
    let b = client(&server.yjs_url("paste")).await;
    let paste: String = (0..10 * 1024 * 1024).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    insert(a.doc(), 0, &paste);
    a.wait_acknowledged(WAIT).await.unwrap();
    eventually("the paste to reach b", || text(b.doc()).len() == paste.len()).await;
    server.stop().await;
}

#[tokio::test]
async fn a_message_over_the_size_limit_closes_with_4413_and_other_peers_are_unaffected() {
    let dir = temp_dir();
    let mut config = Config::with_data_dir(dir.path());
    config.max_message_bytes = 64 * 1024;
    let server = TestServer::start_with(config).await;
    let good = client(&server.yjs_url("limit")).await;
    insert(good.doc(), 0, "kept");
    good.wait_acknowledged(WAIT).await.unwrap();

    let mut ws = raw(&server.yjs_url("limit")).await;
    send(&mut ws, Message::Update(vec![0; 100 * 1024].into()).encode().to_vec()).await;
    assert_eq!(close_code(&mut ws).await, Some(4413));

    insert(good.doc(), 4, " and more");
    good.wait_acknowledged(WAIT).await.unwrap();
    let fresh = client(&server.yjs_url("limit")).await;
    assert_eq!(text(fresh.doc()), "kept and more");
    server.stop().await;
}

#[tokio::test]
async fn an_update_that_would_exceed_the_document_limit_closes_with_4414() {
    let dir = temp_dir();
    let mut config = Config::with_data_dir(dir.path());
    config.rooms.limits.max_document_bytes = 4096;
    let server = TestServer::start_with(config).await;
    let small = client(&server.yjs_url("doc-limit")).await;
    insert(small.doc(), 0, "small");
    small.wait_acknowledged(WAIT).await.unwrap();

    let big = Doc::new();
    insert(&big, 0, &"x".repeat(8000));
    let update = big.transact().encode_state_as_update_v1(&StateVector::default());
    let mut ws = raw(&server.yjs_url("doc-limit")).await;
    send(&mut ws, Message::Update(update.into()).encode().to_vec()).await;
    assert_eq!(close_code(&mut ws).await, Some(4414));
    let fresh = client(&server.yjs_url("doc-limit")).await;
    assert_eq!(text(fresh.doc()), "small");
    server.stop().await;
}

#[tokio::test]
async fn bad_input_gets_its_close_code_and_corrupts_nothing() {
    let dir = temp_dir();
    let server = TestServer::start(dir.path()).await;
    let url = server.yjs_url("bad-input");
    let good = client(&url).await;
    insert(good.doc(), 0, "intact");
    good.wait_acknowledged(WAIT).await.unwrap();

    let valid_sv = Doc::new().transact().state_vector().encode_v1();
    // An item in root "t" holding one value: arrays nested 200,000 deep (yrs alone would recurse
    // once per level and overflow the stack, aborting the server).
    let mut nested = vec![1, 1, 1, 0, 8, 1, 1, b't', 1];
    nested.extend(std::iter::repeat_n([117u8, 1], 200_000).flatten());
    nested.extend([126, 0]);
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "a step 1 declaring 2^29 state vector entries in 5 bytes",
            vec![0, 0, 5, 0x80, 0x80, 0x80, 0x80, 2],
            4422,
        ),
        ("an update declaring 2^28 clients in 5 bytes", vec![0, 2, 5, 0x80, 0x80, 0x80, 0x80, 1], 4422),
        (
            "a step 2 whose map value declares 2^27 entries",
            vec![0, 1, 14, 1, 1, 1, 0, 8, 1, 1, b't', 1, 118, 0x80, 0x80, 0x80, 0x40],
            4422,
        ),
        ("an update of values nested 200,000 deep", Message::Update(nested.into()).encode().to_vec(), 4422),
        ("garbage bytes", vec![0xde, 0xad, 0xbe, 0xef, 0x42], 4400),
        ("a truncated varint", vec![0x80, 0x80, 0x80], 4400),
        ("an unknown message type", vec![9, 1, 2, 3], 4400),
        ("an unknown sync type", vec![0, 7, 0], 4400),
        ("a payload longer than the frame", vec![0, 2, 50, 1, 2, 3], 4400),
        ("an awareness state that is not JSON", vec![1, 6, 1, 5, 1, 2, b'{', b'x'], 4400),
        ("an empty frame", vec![], 4400),
        ("a step 2 that is not an update", vec![0, 1, 4, 0xff, 0xff, 0xff, 0xff], 4422),
        ("an update that is not an update", vec![0, 2, 3, 9, 9, 9], 4422),
        ("a step 1 whose state vector does not decode", vec![0, 0, 3, 5, 1, 1], 4422),
        (
            "a valid message followed by garbage",
            [vec![0, 0, valid_sv.len() as u8], valid_sv.clone(), vec![0xff]].concat(),
            4400,
        ),
    ];
    for (what, bytes, expected) in cases {
        let mut ws = raw(&url).await;
        send(&mut ws, bytes).await;
        assert_eq!(close_code(&mut ws).await, Some(expected), "{what}");
    }
    let mut ws = raw(&url).await;
    futures_util::SinkExt::send(&mut ws, tokio_tungstenite::tungstenite::Message::Text("hello".into()))
        .await
        .unwrap();
    assert_eq!(close_code(&mut ws).await, Some(4415), "a text frame");

    assert!(good.status().borrow().connected, "the well-behaved peer stays connected");
    insert(good.doc(), 6, " still");
    good.wait_acknowledged(WAIT).await.unwrap();
    let server = server.restart().await;
    let fresh = client(&server.yjs_url("bad-input")).await;
    assert_eq!(text(fresh.doc()), "intact still");
    server.stop().await;
}

#[tokio::test]
async fn a_slow_peer_is_disconnected_then_resyncs() {
    init_logging();
    let dir = temp_dir();
    let mut config = Config::with_data_dir(dir.path());
    config.rooms.peer_outbox = 16;
    let server = TestServer::start_with(config).await;
    let url = server.yjs_url("slow");
    let writer = client(&url).await;
    // Joins and asks for the document like any client, then reads nothing while the writer produces
    // far more than socket buffers hold.
    let mut slow = raw(&url).await;
    send(&mut slow, Message::SyncStep1(vec![0].into()).encode().to_vec()).await;
    let chunk = "y".repeat(64 * 1024);
    for i in 0..320 {
        push(writer.doc(), &format!("{i}:{chunk}"));
        // Paced by acknowledgements, the writer reads its echoes and keeps up; only the peer that
        // reads nothing falls behind.
        if i % 8 == 7 {
            writer.wait_acknowledged(WAIT).await.unwrap();
        }
    }
    writer.wait_acknowledged(WAIT).await.unwrap();

    // Reading now drains what was buffered, then the connection ends: with 4529 when the close frame
    // could still be queued, otherwise with the TCP connection dropped.
    let ended = close_code(&mut slow).await;
    assert!(matches!(ended, Some(4529) | None), "slow peer ended with {ended:?}");

    let resynced = client(&url).await;
    eventually("the resynced peer to hold everything", || items(resynced.doc()).len() == 320).await;
    let writer_status = writer.status().borrow().clone();
    assert_eq!((writer_status.connected, writer_status.connections), (true, 1), "the writer was never cut");
    server.stop().await;
}

#[tokio::test]
async fn graceful_shutdown_closes_connections_with_1001() {
    let dir = temp_dir();
    let server = TestServer::start(dir.path()).await;
    let mut ws = raw(&server.yjs_url("shutdown")).await;
    let _greeting = ws.next().await;
    let stopping = tokio::spawn(server.stop());
    assert_eq!(close_code(&mut ws).await, Some(1001));
    stopping.await.unwrap();
}

#[tokio::test]
async fn idle_documents_unload_after_folding_their_log_into_a_snapshot() {
    let dir = temp_dir();
    let mut config = Config::with_data_dir(dir.path());
    config.rooms.idle_unload = Duration::from_millis(200);
    let server = TestServer::start_with(config).await;
    let a = client(&server.yjs_url("idle")).await;
    for i in 0..5 {
        push(a.doc(), &format!("item {i}"));
    }
    a.wait_acknowledged(WAIT).await.unwrap();
    a.stop().await;

    let db = rusqlite::Connection::open(db_path(dir.path())).unwrap();
    let counts = || -> (i64, i64) {
        let updates = db.query_row("SELECT count(*) FROM updates", [], |r| r.get(0)).unwrap();
        let snapshots = db.query_row("SELECT count(*) FROM snapshots", [], |r| r.get(0)).unwrap();
        (updates, snapshots)
    };
    eventually("the log to be folded into a snapshot", || counts() == (0, 1)).await;
    let b = client(&server.yjs_url("idle")).await;
    assert_eq!(items(b.doc()), (0..5).map(|i| format!("item {i}")).collect::<Vec<_>>());
    server.stop().await;
}

#[tokio::test]
async fn compaction_under_load_keeps_every_update() {
    let dir = temp_dir();
    let mut config = Config::with_data_dir(dir.path());
    config.rooms.compact_after_updates = 10;
    config.storage.snapshot_inline_max = 256;
    let server = TestServer::start_with(config).await;
    let a = client(&server.yjs_url("compaction")).await;
    for i in 0..200 {
        push(a.doc(), &format!("{i}"));
        if i % 7 == 0 {
            a.wait_acknowledged(WAIT).await.unwrap();
        }
    }
    a.wait_acknowledged(WAIT).await.unwrap();
    let db = rusqlite::Connection::open(db_path(dir.path())).unwrap();
    let blob_snapshots: i64 =
        db.query_row("SELECT count(*) FROM snapshots WHERE blob_key IS NOT NULL", [], |r| r.get(0)).unwrap();
    assert_eq!(blob_snapshots, 1, "a snapshot over the inline limit lives in the blob store");
    let remaining: i64 = db.query_row("SELECT count(*) FROM updates", [], |r| r.get(0)).unwrap();
    assert!(remaining < 200, "the log was compacted ({remaining} entries left)");

    let server = server.restart().await;
    let fresh = client(&server.yjs_url("compaction")).await;
    assert_eq!(items(fresh.doc()), (0..200).map(|i| i.to_string()).collect::<Vec<_>>());
    let blobs = std::fs::read_dir(dir.path().join("blobs/snapshots")).unwrap().count();
    assert_eq!(blobs, 1, "replaced snapshot blobs are deleted");
    server.stop().await;
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

#[tokio::test]
async fn http_endpoints_answer_with_json() {
    let dir = temp_dir();
    let server = TestServer::start(dir.path()).await;
    assert_eq!(http_get(server.addr, "/healthz").await, (200, r#"{"status":"ok"}"#.into()));
    let (status, body) = http_get(server.addr, "/readyz").await;
    assert_eq!(status, 200);
    assert!(body.contains(r#""status":"ready""#));
    let (status, body) = http_get(server.addr, "/ws/yjs/doc").await;
    assert_eq!(status, 426);
    assert!(body.contains(r#""code":"upgrade_required""#));
    let (status, body) = http_get(server.addr, "/ws/yjs/bad%01name").await;
    assert_eq!(status, 400);
    assert!(body.contains(r#""code":"invalid_doc_id""#));
    let (status, body) = http_get(server.addr, "/nowhere").await;
    assert_eq!((status, body.contains("not_found")), (404, true));
    server.stop().await;
}
