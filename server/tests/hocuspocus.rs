//! End-to-end behaviour of the Hocuspocus endpoint (`/ws/hocuspocus`) against the real server,
//! speaking raw Hocuspocus frames: many documents per socket, the token handshake and the bounded
//! queue before it, sync status only after durability, ping/pong, and every kind of bad input with
//! the close code (whole socket) or close/permission-denied message (one document) it earns.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures_util::StreamExt;
use jsonwebtoken::{EncodingKey, Header};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use weft::Config;
use weft_sync_core::DocId;
use weft_sync_core::hocuspocus::{self, Frame, Message, RoutingKey};
use weft_sync_core::yjs::Message as YMessage;
use yrs::updates::decoder::Decode;
use yrs::{Doc, ReadTxn, StateVector, Transact};

const V4: Option<&str> = Some("4.8.0");

fn frame(key: &str, message: Message) -> Vec<u8> {
    Frame::Document { key: RoutingKey::new(key), message }.encode().to_vec()
}

fn token(key: &str, token: &str, version: Option<&str>) -> Vec<u8> {
    let message = Message::Token { token: token.into(), provider_version: version.map(str::to_owned) };
    frame(key, message)
}

fn yjs(key: &str, message: YMessage) -> Vec<u8> {
    frame(key, Message::Yjs(message))
}

fn update(key: &str, bytes: Vec<u8>) -> Vec<u8> {
    yjs(key, YMessage::Update(bytes.into()))
}

/// An update that inserts `s` at the start of text "t", from a fresh doc with `client` as its id.
fn text_update(client: u64, s: &str) -> Vec<u8> {
    let doc = Doc::with_client_id(client);
    insert(&doc, 0, s);
    doc.transact().encode_state_as_update_v1(&StateVector::default())
}

fn is(key: &str, want: impl Fn(&Message) -> bool) -> impl Fn(&Frame) -> bool {
    let key = key.to_owned();
    move |frame| matches!(frame, Frame::Document { key: k, message } if k.as_str() == key && want(message))
}

fn status(applied: bool) -> impl Fn(&Message) -> bool {
    move |m| *m == Message::SyncStatus(applied)
}

fn step2(m: &Message) -> bool {
    matches!(m, Message::Yjs(YMessage::SyncStep2(_)))
}

/// A raw socket speaking Hocuspocus frames.
struct Raw {
    ws: Ws,
    /// Every frame received so far, in order.
    seen: Vec<Frame>,
}

impl Raw {
    async fn connect(url: &str) -> Self {
        Self { ws: raw(url).await, seen: Vec::new() }
    }

    async fn send(&mut self, bytes: Vec<u8>) {
        send(&mut self.ws, bytes).await;
    }

    /// Reads until a frame satisfies `want` and returns it; fails on a close or after [`WAIT`].
    async fn expect(&mut self, what: &str, want: impl Fn(&Frame) -> bool) -> Frame {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {what}; seen {:?}", self.seen));
            match next {
                Some(Ok(WsMessage::Binary(bytes))) => {
                    let frame = hocuspocus::decode_frame(&bytes).expect("the server sends valid frames");
                    self.seen.push(frame.clone());
                    if want(&frame) {
                        return frame;
                    }
                }
                Some(Ok(WsMessage::Close(close))) => panic!("closed ({close:?}) while waiting for {what}"),
                Some(Ok(_)) => {}
                Some(Err(err)) => panic!("socket failed ({err}) while waiting for {what}"),
                None => panic!("socket ended while waiting for {what}"),
            }
        }
    }

    /// Sends a token for `key` and waits for the answer: `Ok(scope)` or `Err(reason)`.
    async fn authenticate(&mut self, key: &str, with: &str, version: Option<&str>) -> Result<String, String> {
        self.send(token(key, with, version)).await;
        let answer = self
            .expect(
                &format!("the auth answer for {key:?}"),
                is(key, |m| matches!(m, Message::Authenticated(_) | Message::PermissionDenied(_))),
            )
            .await;
        match answer {
            Frame::Document { message: Message::Authenticated(scope), .. } => Ok(scope),
            Frame::Document { message: Message::PermissionDenied(reason), .. } => Err(reason),
            other => unreachable!("filtered above: {other:?}"),
        }
    }

    /// Authenticates `key` on an open relay and syncs it: step 1 answered with step 2.
    async fn open(&mut self, key: &str) {
        assert_eq!(self.authenticate(key, "", V4).await, Ok("read-write".into()));
        self.send(yjs(key, YMessage::SyncStep1(Bytes::from_static(&[0])))).await;
        self.expect(&format!("step 2 for {key:?}"), is(key, step2)).await;
    }

    /// Sends `bytes` as an update for `key` and waits for its sync status.
    async fn write(&mut self, key: &str, bytes: Vec<u8>) -> bool {
        self.send(update(key, bytes)).await;
        let answer = self
            .expect(&format!("the sync status for {key:?}"), is(key, |m| matches!(m, Message::SyncStatus(_))))
            .await;
        matches!(answer, Frame::Document { message: Message::SyncStatus(true), .. })
    }

    async fn close_code(&mut self) -> Option<u16> {
        close_code(&mut self.ws).await
    }
}

#[tokio::test]
async fn one_socket_syncs_many_documents_and_shares_them_with_y_websocket() {
    init_logging();
    let dir = temp_dir();
    let server = TestServer::start(dir.path()).await;
    let mut hp = Raw::connect(&server.hocuspocus_url()).await;
    let session_key = "notes\0k3x9";
    hp.open(session_key).await;
    hp.open("tasks").await;
    let y = client(&server.yjs_url("notes")).await;

    assert!(hp.write(session_key, text_update(7, "from hocuspocus")).await, "applied");
    eventually("the y-websocket client to see the edit", || text(y.doc()) == "from hocuspocus").await;
    assert!(hp.write("tasks", text_update(8, "a task")).await, "applied");

    insert(y.doc(), 0, ">> ");
    y.wait_acknowledged(WAIT).await.unwrap();
    // The y-websocket edit arrives addressed with the whole session-aware key.
    hp.expect("the y-websocket edit", is(session_key, |m| matches!(m, Message::Yjs(YMessage::Update(_)))))
        .await;
    let tasks = client(&server.yjs_url("tasks")).await;
    assert_eq!(text(tasks.doc()), "a task", "documents stay apart");
    assert_eq!(text(y.doc()), ">> from hocuspocus");
    server.stop().await;
}

#[tokio::test]
async fn frames_that_do_not_decode_close_the_socket_with_their_code() {
    let dir = temp_dir();
    let mut config = Config::with_data_dir(dir.path());
    config.max_message_bytes = 64 * 1024;
    let server = TestServer::start_with(config).await;
    let good = client(&server.yjs_url("intact")).await;
    insert(good.doc(), 0, "intact");
    good.wait_acknowledged(WAIT).await.unwrap();

    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("an empty frame", vec![], 4400),
        ("a routing key longer than the frame", vec![40, b'd', b'o', b'c'], 4400),
        ("a routing key that is not UTF-8", vec![2, 0xff, 0xfe, 3], 4400),
        ("a truncated message type", [vec![1, b'd'], vec![0x80]].concat(), 4400),
        ("the server-internal broadcast-stateless type", vec![1, b'd', 6, 1, b'x'], 4400),
        ("the sync-reply type", vec![1, b'd', 4, 0, 1, 0], 4400),
        ("an unknown message type", vec![1, b'd', 42], 4400),
        ("an unknown auth sub-type", vec![1, b'd', 2, 9, 0], 4400),
        ("an unknown sync sub-type", vec![1, b'd', 0, 7, 0], 4400),
        ("a sync payload longer than the frame", vec![1, b'd', 0, 2, 50, 1], 4400),
        ("a stateless message followed by more bytes", vec![1, b'd', 5, 1, b'x', 0], 4400),
        ("two messages in one frame", vec![1, b'd', 3, 3], 4400),
        ("a message over the size limit", token("d", &"x".repeat(100 * 1024), V4), 4413),
    ];
    for (what, bytes, expected) in cases {
        let mut hp = Raw::connect(&server.hocuspocus_url()).await;
        hp.open("intact").await;
        hp.send(bytes).await;
        assert_eq!(hp.close_code().await, Some(expected), "{what}");
    }
    let mut hp = Raw::connect(&server.hocuspocus_url()).await;
    futures_util::SinkExt::send(&mut hp.ws, WsMessage::Text("hello".into())).await.unwrap();
    assert_eq!(hp.close_code().await, Some(4415), "a text frame");

    insert(good.doc(), 6, " still");
    good.wait_acknowledged(WAIT).await.unwrap();
    let server = server.restart().await;
    let fresh = client(&server.yjs_url("intact")).await;
    assert_eq!(text(fresh.doc()), "intact still");
    server.stop().await;
}

#[tokio::test]
async fn a_permanent_problem_with_one_document_closes_only_that_document() {
    init_logging();
    let dir = temp_dir();
    let mut config = Config::with_data_dir(dir.path());
    config.rooms.limits.max_document_bytes = 4096;
    let server = TestServer::start_with(config).await;
    let mut hp = Raw::connect(&server.hocuspocus_url()).await;
    hp.open("good").await;

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("an update that is not an update", vec![9, 9, 9], "4422 invalid update"),
        ("an update past the document limit", text_update(3, &"x".repeat(8000)), "4414 document too large"),
    ];
    for (i, (what, bytes, reason)) in cases.into_iter().enumerate() {
        let bad = format!("bad-{i}");
        hp.open(&bad).await;
        hp.send(update(&bad, bytes)).await;
        let closed = hp.expect(what, is(&bad, |m| matches!(m, Message::Close(_)))).await;
        assert!(
            matches!(closed, Frame::Document { message: Message::Close(Some(ref r)), .. } if r.starts_with(reason)),
            "{what}: {closed:?}"
        );
        assert!(hp.write("good", text_update(10 + i as u64, "ok ")).await, "the socket goes on after {what}");
    }

    // An awareness state that is not JSON, the same way.
    hp.open("presence").await;
    hp.send(yjs("presence", YMessage::Awareness(Bytes::from_static(&[1, 5, 1, 2, b'{', b'x'])))).await;
    hp.expect(
        "the close message",
        is(
            "presence",
            |m| matches!(m, Message::Close(Some(r)) if r.starts_with("4400 malformed message: awareness")),
        ),
    )
    .await;

    // Frames for a closed document are dropped; a new token opens it again.
    hp.send(update("bad-0", text_update(20, "dropped"))).await;
    assert!(hp.write("good", text_update(21, "ok ")).await);
    assert!(hp.seen.iter().all(|f| !is("bad-0", status(true))(f)), "nothing applied to the closed document");
    hp.open("bad-0").await;
    assert!(hp.write("bad-0", text_update(22, "reopened")).await);

    // Names the relay cannot serve are refused per document, with the reason.
    for (key, reason) in [("", "document name is empty"), ("tab\there", "control character")] {
        let refused = hp.authenticate(key, "", V4).await.expect_err("refused");
        assert!(refused.contains(reason), "{key:?}: {refused}");
    }
    let long_session = format!("good\0{}", "s".repeat(300));
    assert!(hp.authenticate(&long_session, "", V4).await.unwrap_err().contains("session id"));
    assert!(hp.write("good", text_update(23, "ok ")).await, "the socket outlives every refusal");

    let fresh = client(&server.yjs_url("bad-0")).await;
    assert_eq!(text(fresh.doc()), "reopened");
    let good = client(&server.yjs_url("good")).await;
    assert_eq!(text(good.doc()).matches("ok ").count(), 4);
    server.stop().await;
}

#[tokio::test]
async fn a_document_of_the_other_crdt_is_refused_with_4409_for_that_document_only() {
    let dir = temp_dir();
    let config = Config::with_data_dir(dir.path());
    let storage = weft::storage::Storage::open(&config.storage).await.unwrap();
    let automerge_doc = DocId::new("an-automerge-doc").unwrap();
    storage.load_or_create(&automerge_doc, weft::storage::Crdt::Automerge, 0).await.unwrap();
    storage.close().await;

    let server = TestServer::start_with(config).await;
    let mut hp = Raw::connect(&server.hocuspocus_url()).await;
    hp.open("yjs-doc").await;
    // The token is fine, so the provider hears `authenticated` first; loading the document is
    // what fails, and that is reported as permission denied, the way Hocuspocus reports it.
    assert_eq!(hp.authenticate("an-automerge-doc", "", V4).await, Ok("read-write".into()));
    let denied =
        hp.expect("the refusal", is("an-automerge-doc", |m| matches!(m, Message::PermissionDenied(_)))).await;
    assert!(matches!(
        denied,
        Frame::Document { message: Message::PermissionDenied(r), .. } if r == "4409 document uses a different CRDT"
    ));
    assert!(hp.write("yjs-doc", text_update(1, "unaffected")).await);
    server.stop().await;
}

#[tokio::test]
async fn frames_before_the_token_wait_for_it_and_are_then_applied() {
    let dir = temp_dir();
    let server = TestServer::start(dir.path()).await;
    let mut hp = Raw::connect(&server.hocuspocus_url()).await;
    hp.send(yjs("early", YMessage::SyncStep1(Bytes::from_static(&[0])))).await;
    hp.send(update("early", text_update(5, "sent before the token"))).await;
    hp.send(frame("early", Message::Stateless("hello".into()))).await;
    hp.send(token("early", "", V4)).await;
    hp.expect("authenticated", is("early", |m| matches!(m, Message::Authenticated(_)))).await;
    // In the order sent: the step 1 is answered (before the update, so with an empty document),
    // then the update is stored and acknowledged.
    hp.expect("the answer to the queued step 1", is("early", step2)).await;
    hp.expect("the status of the queued update", is("early", status(true))).await;
    let fresh = client(&server.yjs_url("early")).await;
    assert_eq!(text(fresh.doc()), "sent before the token");
    server.stop().await;
}

#[tokio::test]
async fn too_much_before_the_token_closes_the_socket_with_4429() {
    let dir = temp_dir();
    let mut config = Config::with_data_dir(dir.path());
    config.max_message_bytes = 64 * 1024;
    let server = TestServer::start_with(config).await;

    // Count: the bound (1024 messages, docs/protocol.md) is per socket, across every document
    // still waiting.
    let mut hp = Raw::connect(&server.hocuspocus_url()).await;
    hp.open("joined").await;
    for i in 0..1024 {
        hp.send(yjs(&format!("waiting-{}", i % 3), YMessage::QueryAwareness)).await;
    }
    // Frames for a joined document are not queued: the socket is still fine.
    assert!(hp.write("joined", text_update(1, "ok")).await);
    hp.send(yjs("one-too-many", YMessage::QueryAwareness)).await;
    assert_eq!(hp.close_code().await, Some(4429));

    // Bytes: the bound is `max_message_bytes`.
    let mut hp = Raw::connect(&server.hocuspocus_url()).await;
    for i in 0..3 {
        hp.send(frame(&format!("waiting-{i}"), Message::Stateless("x".repeat(30 * 1024)))).await;
    }
    assert_eq!(hp.close_code().await, Some(4429));
    server.stop().await;
}

#[tokio::test]
async fn a_provider_closing_a_document_leaves_its_room_and_keeps_the_socket() {
    let dir = temp_dir();
    let server = TestServer::start(dir.path()).await;
    let mut hp = Raw::connect(&server.hocuspocus_url()).await;
    hp.open("kept").await;
    hp.open("left").await;
    let mut watcher = Raw::connect(&server.hocuspocus_url()).await;
    watcher.open("left").await;
    // Presence of client 77 on "left", then the provider leaves the document.
    let presence = Bytes::from_static(&[1, 77, 1, 2, b'{', b'}']);
    hp.send(yjs("left", YMessage::Awareness(presence))).await;
    watcher.expect("the presence", is("left", |m| matches!(m, Message::Yjs(YMessage::Awareness(_))))).await;
    hp.send(frame("left", Message::Close(None))).await;
    let removal = watcher
        .expect("the presence removal", is("left", |m| matches!(m, Message::Yjs(YMessage::Awareness(_)))))
        .await;
    let Frame::Document { message: Message::Yjs(YMessage::Awareness(payload)), .. } = removal else {
        unreachable!()
    };
    let entries = weft_sync_core::yjs::awareness::decode_update(&payload).unwrap();
    assert_eq!((entries[0].client_id, entries[0].state.as_ref()), (77, b"null".as_slice()));

    assert!(hp.write("kept", text_update(1, "kept")).await, "the socket stays");
    // After closing, the document needs a token again: an update waits for it, then is applied.
    hp.send(update("left", text_update(2, "after reopening"))).await;
    assert_eq!(hp.authenticate("left", "", V4).await, Ok("read-write".into()));
    hp.expect("the queued update's status", is("left", status(true))).await;
    let fresh = client(&server.yjs_url("left")).await;
    assert_eq!(text(fresh.doc()), "after reopening");
    server.stop().await;
}

#[tokio::test]
async fn tokens_decide_scope_and_read_only_writes_are_not_applied() {
    const SECRET: &str = "test-secret-0123456789";
    let sign = |claims: serde_json::Value| {
        jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(SECRET.as_bytes()))
            .unwrap()
    };
    let dir = temp_dir();
    let mut config = Config::with_data_dir(dir.path());
    config.jwt_secret = Some(SECRET.into());
    config.anonymous = weft::config::Anonymous::None;
    let server = TestServer::start_with(config).await;
    let exp = 4_000_000_000u64;
    let mut hp = Raw::connect(&server.hocuspocus_url()).await;

    let writer = sign(serde_json::json!({ "exp": exp, "sub": "ann" }));
    assert_eq!(hp.authenticate("doc", &writer, V4).await, Ok("read-write".into()));
    hp.send(yjs("doc", YMessage::SyncStep1(Bytes::from_static(&[0])))).await;
    hp.expect("step 2", is("doc", step2)).await;
    assert!(hp.write("doc", text_update(1, "written")).await);

    let reader = sign(serde_json::json!({ "exp": exp, "scope": "readonly" }));
    let key = "doc\0reader";
    assert_eq!(hp.authenticate(key, &reader, None).await, Ok("readonly".into()));
    assert!(!hp.write(key, text_update(2, "forbidden ")).await, "not applied");
    assert!(hp.write(key, vec![0, 0]).await, "an empty update (a fresh read-only handshake) is acknowledged");

    assert!(hp.authenticate("doc\0none", "", V4).await.unwrap_err().contains("token is required"));
    assert!(hp.authenticate("doc\0bad", "not.a.jwt", V4).await.unwrap_err().contains("invalid token"));
    let elsewhere = sign(serde_json::json!({ "exp": exp, "docs": ["other/*"] }));
    assert!(
        hp.authenticate("doc\0else", &elsewhere, V4).await.unwrap_err().contains("does not grant access")
    );
    // A token on the upgrade request stands in for a provider that sends an empty one.
    let mut with_query = Raw::connect(&format!("{}?token={writer}", server.hocuspocus_url())).await;
    assert_eq!(with_query.authenticate("doc", "", V4).await, Ok("read-write".into()));

    assert!(hp.write("doc", text_update(3, "more ")).await, "the socket outlives the refusals");
    let server = server.restart().await;
    let mut check = Raw::connect(&format!("{}?token={writer}", server.hocuspocus_url())).await;
    check.open("doc").await;
    let state = check.seen.iter().find_map(|f| match f {
        Frame::Document { message: Message::Yjs(YMessage::SyncStep2(u)), .. } => Some(u.clone()),
        _ => None,
    });
    let doc = Doc::new();
    let update = yrs::Update::decode_v1(&state.unwrap()).unwrap();
    doc.transact_mut().apply_update(update).unwrap();
    let stored = text(&doc);
    assert!(stored.contains("written") && stored.contains("more "), "{stored:?}");
    assert!(!stored.contains("forbidden"), "the read-only write was never stored: {stored:?}");
    server.stop().await;
}

#[tokio::test]
async fn v4_sockets_are_pinged_and_pings_are_answered() {
    let dir = temp_dir();
    let mut config = Config::with_data_dir(dir.path());
    config.hocuspocus_ping = Duration::from_millis(30);
    let server = TestServer::start_with(config).await;
    let mut v3 = Raw::connect(&server.hocuspocus_url()).await;
    assert_eq!(v3.authenticate("doc", "", None).await, Ok("read-write".into()));
    let mut v4 = Raw::connect(&server.hocuspocus_url()).await;
    assert_eq!(v4.authenticate("doc", "", V4).await, Ok("read-write".into()));
    for _ in 0..3 {
        v4.expect("a ping", |f| *f == Frame::Ping).await;
        v4.send(hocuspocus::PONG.to_vec()).await;
    }
    v4.send(hocuspocus::PING.to_vec()).await;
    v4.expect("the pong", |f| *f == Frame::Pong).await;

    // The v3 socket lived through as many ping periods; its provider would fail on a frame without a
    // routing key, so it must have been sent none.
    v3.send(hocuspocus::PING.to_vec()).await;
    v3.expect("the pong", |f| *f == Frame::Pong).await;
    assert!(!v3.seen.contains(&Frame::Ping), "a v3 socket is never pinged: {:?}", v3.seen);
    server.stop().await;
}

#[tokio::test]
async fn sync_status_means_the_update_survives_a_kill() {
    let dir = temp_dir();
    let mut expected = String::new();
    let doc = Doc::with_client_id(9);
    for round in 0..3 {
        let server = ProcessServer::start(dir.path(), &[]);
        let mut hp = Raw::connect(&server.hocuspocus_url()).await;
        hp.open("durable").await;
        let before = doc.transact().state_vector();
        let piece = format!("round {round}. ");
        insert(&doc, 0, &piece);
        let diff = doc.transact().encode_state_as_update_v1(&before);
        assert!(hp.write("durable", diff).await);
        // The instant the status arrives, the process dies without any chance to flush.
        server.kill();
        expected.insert_str(0, &piece);

        let server = ProcessServer::start(dir.path(), &[]);
        let fresh = client(&server.yjs_url("durable")).await;
        assert_eq!(text(fresh.doc()), expected, "round {round}");
        fresh.stop().await;
        server.kill();
    }
}

#[tokio::test]
async fn a_socket_that_does_not_read_is_disconnected_as_a_slow_consumer() {
    let dir = temp_dir();
    let mut config = Config::with_data_dir(dir.path());
    config.rooms.peer_outbox = 16;
    let server = TestServer::start_with(config).await;
    let writer = client(&server.yjs_url("slow")).await;
    let mut slow = Raw::connect(&server.hocuspocus_url()).await;
    slow.open("slow").await;
    let chunk = "y".repeat(64 * 1024);
    for i in 0..320 {
        push(writer.doc(), &format!("{i}:{chunk}"));
        if i % 8 == 7 {
            writer.wait_acknowledged(WAIT).await.unwrap();
        }
    }
    writer.wait_acknowledged(WAIT).await.unwrap();
    let ended = slow.close_code().await;
    assert!(matches!(ended, Some(4529) | None), "slow socket ended with {ended:?}");
    let writer_status = writer.status().borrow().clone();
    assert_eq!((writer_status.connected, writer_status.connections), (true, 1), "the writer was never cut");
    server.stop().await;
}

#[tokio::test]
async fn graceful_shutdown_closes_hocuspocus_sockets_with_1001() {
    let dir = temp_dir();
    let server = TestServer::start(dir.path()).await;
    let mut hp = Raw::connect(&server.hocuspocus_url()).await;
    hp.open("shutdown").await;
    let stopping = tokio::spawn(server.stop());
    assert_eq!(hp.close_code().await, Some(1001));
    stopping.await.unwrap();
}
