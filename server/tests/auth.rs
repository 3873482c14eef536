//! Token enforcement on the y-websocket endpoint when a JWT secret is configured: refused before the
//! upgrade without a valid token, read-only tokens cannot write, tokens limited to other documents
//! are refused.

mod common;

use common::*;
use jsonwebtoken::{EncodingKey, Header};
use weft::Config;
use weft_sync_core::yjs::Message;
use yrs::updates::encoder::Encode;
use yrs::{Doc, ReadTxn, StateVector, Transact};

const SECRET: &str = "test-secret-0123456789";

fn token(claims: serde_json::Value) -> String {
    jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap()
}

async fn secured(dir: &std::path::Path) -> TestServer {
    let mut config = Config::with_data_dir(dir);
    config.jwt_secret = Some(SECRET.into());
    config.anonymous = weft::config::Anonymous::None;
    TestServer::start_with(config).await
}

/// The HTTP status of a WebSocket handshake to `url`, if it was refused.
async fn refused_with(url: &str) -> (u16, String) {
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body =
                response.body().as_ref().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
            (response.status().as_u16(), body)
        }
        other => panic!("expected the handshake to be refused, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn connections_without_a_valid_token_are_refused_before_the_upgrade() {
    let dir = temp_dir();
    let server = secured(dir.path()).await;
    let (status, body) = refused_with(&server.yjs_url("secret-doc")).await;
    assert_eq!(status, 401);
    assert!(body.contains(r#""code":"unauthorized""#), "{body}");
    let forged = jsonwebtoken::encode(
        &Header::default(),
        &serde_json::json!({ "exp": 4_000_000_000u64 }),
        &EncodingKey::from_secret(b"another-secret-456789"),
    )
    .unwrap();
    assert_eq!(refused_with(&format!("{}?token={forged}", server.yjs_url("secret-doc"))).await.0, 401);
    let elsewhere = token(serde_json::json!({ "exp": 4_000_000_000u64, "docs": ["other/*"] }));
    let (status, body) = refused_with(&format!("{}?token={elsewhere}", server.yjs_url("secret-doc"))).await;
    assert_eq!((status, body.contains("forbidden")), (403, true));
    server.stop().await;
}

#[tokio::test]
async fn read_write_tokens_sync_and_read_only_tokens_cannot_write() {
    let dir = temp_dir();
    let server = secured(dir.path()).await;
    let writer_token = token(serde_json::json!({ "sub": "ann", "exp": 4_000_000_000u64 }));
    let writer = client(&format!("{}?token={writer_token}", server.yjs_url("team/notes"))).await;
    insert(writer.doc(), 0, "written by ann");
    writer.wait_acknowledged(WAIT).await.unwrap();

    let reader_token = token(
        serde_json::json!({ "sub": "bob", "exp": 4_000_000_000u64, "scope": "readonly", "docs": ["team/*"] }),
    );
    let reader_url = format!("{}?token={reader_token}", server.yjs_url("team/notes"));
    let reader = client(&reader_url).await;
    assert_eq!(text(reader.doc()), "written by ann");

    let mut ws = raw(&reader_url).await;
    let doc = Doc::new();
    insert(&doc, 0, "bob was here");
    let update = doc.transact().encode_state_as_update_v1(&StateVector::default());
    send(&mut ws, Message::SyncStep1(doc.transact().state_vector().encode_v1().into()).encode().to_vec())
        .await;
    send(&mut ws, Message::Update(update.into()).encode().to_vec()).await;
    assert_eq!(close_code(&mut ws).await, Some(4403));

    let fresh = client(&format!("{}?token={writer_token}", server.yjs_url("team/notes"))).await;
    assert_eq!(text(fresh.doc()), "written by ann", "the refused write was not stored");
    server.stop().await;
}

#[tokio::test]
async fn every_logged_update_names_the_user_whose_token_sent_it() {
    let dir = temp_dir();
    let server = secured(dir.path()).await;
    for (user, text) in [("ann", "from ann "), ("cy", "from cy ")] {
        let token = token(serde_json::json!({ "sub": user, "exp": 4_000_000_000u64 }));
        let writer = client(&format!("{}?token={token}", server.yjs_url("team/log"))).await;
        insert(writer.doc(), 0, text);
        writer.wait_acknowledged(WAIT).await.unwrap();
        writer.stop().await;
    }
    let db = rusqlite::Connection::open(db_path(dir.path())).unwrap();
    let authors: Vec<Option<String>> = db
        .prepare("SELECT user_id FROM updates ORDER BY seq")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(!authors.is_empty() && authors.first() == Some(&Some("ann".into())), "{authors:?}");
    assert_eq!(authors.last(), Some(&Some("cy".into())), "{authors:?}");
    assert!(authors.iter().all(|a| matches!(a.as_deref(), Some("ann" | "cy"))), "{authors:?}");
    server.stop().await;
}

#[tokio::test]
async fn anonymous_access_to_free_documents_is_what_the_setting_allows() {
    use common::api::{Api, person};
    use weft::config::Anonymous;
    // Read: token-less connections sync and read; their writes are refused. An account's token
    // writes, attributed to it.
    let dir = temp_dir();
    let mut config = Config::with_data_dir(dir.path());
    config.anonymous = Anonymous::Read;
    let server = TestServer::start_with(config).await;
    let api = Api::new(&server);
    let ada = person(&api, "ada@example.com").await;
    let writer = client(&format!("{}?token={}", server.yjs_url("free"), ada.token)).await;
    insert(writer.doc(), 0, "signed");
    writer.wait_acknowledged(WAIT).await.unwrap();
    let reader = client(&server.yjs_url("free")).await;
    eventually("the anonymous reader to read", || text(reader.doc()) == "signed").await;
    let mut anonymous = raw(&server.yjs_url("free")).await;
    let doc = Doc::with_client_id(77);
    yrs::Text::push(&doc.get_or_insert_text("t"), &mut doc.transact_mut(), "anonymous");
    let update = doc.transact().encode_state_as_update_v1(&StateVector::default());
    send(&mut anonymous, Message::Update(update.into()).encode().to_vec()).await;
    assert_eq!(close_code(&mut anonymous).await, Some(4403));
    writer.stop().await;
    reader.stop().await;
    server.stop().await;

    // None: no token, no connection; an account's token still opens free documents.
    let dir = temp_dir();
    let mut config = Config::with_data_dir(dir.path());
    config.anonymous = Anonymous::None;
    let server = TestServer::start_with(config).await;
    let api = Api::new(&server);
    let ada = person(&api, "ada@example.com").await;
    assert_eq!(refused_with(&server.yjs_url("free")).await.0, 401);
    assert_eq!(refused_with(&format!("{}?token=junk", server.yjs_url("free"))).await.0, 401);
    let writer = client(&format!("{}?token={}", server.yjs_url("free"), ada.token)).await;
    insert(writer.doc(), 0, "mine");
    writer.wait_acknowledged(WAIT).await.unwrap();
    writer.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn websocket_connection_attempts_are_limited_per_address() {
    let dir = temp_dir();
    let mut config = Config::with_data_dir(dir.path());
    config.accounts.ws_connects_per_address_per_minute = std::num::NonZeroU32::new(3);
    let server = TestServer::start_with(config).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(raw(&server.yjs_url("limited")).await);
    }
    // The fourth attempt in the minute, on any endpoint, is refused before the handshake.
    for url in [server.yjs_url("limited"), server.hocuspocus_url()] {
        match tokio_tungstenite::connect_async(url.as_str()).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status().as_u16(), 429);
                let wait: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
                assert!((1..=60).contains(&wait), "Retry-After {wait}");
                let body =
                    String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).into_owned();
                assert!(body.contains("rate_limited"), "{body}");
            }
            other => panic!("expected 429, got {:?}", other.map(|_| ())),
        }
    }
    drop(open);
    server.stop().await;
}
