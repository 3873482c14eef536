//! Notifications against the real server: mentions (REST and a Yjs client over y-websocket),
//! replies in a thread, assignments; each exactly once, live over `/ws/events` to the person
//! concerned and to no one else; withdrawn when the mention goes before it is read; never for
//! someone who may not read the document; listed, counted and marked read over REST; unchanged
//! by `weft rebuild-derived`. Bad input gets clear errors.

mod common;

use std::time::Duration;

use common::api::{Api, Person, code, create_doc, create_workspace, member, person, succeed};
use common::{TestServer, WAIT, Ws, temp_dir};
use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use weft_client::YjsSync;
use yrs::{Map, MapPrelim, Transact};

async fn create(api: &Api, who: &Person, ws: &str, kind: &str, private: bool) -> String {
    create_doc(api, who, ws, kind, kind, private).await
}

async fn call(api: &Api, method: Method, who: &Person, path: &str, body: Value) -> Value {
    succeed(api, method, who, path, body).await
}

/// `who`'s notifications (newest first) as `reason item`.
async fn listed(api: &Api, who: &Person) -> Vec<String> {
    let (status, page) = api.get("/api/me/notifications", Some(&who.token)).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| format!("{} {}", n["reason"].as_str().unwrap(), n["item"].as_str().unwrap()))
        .collect()
}

async fn until_listed(api: &Api, who: &Person, expected: &[&str]) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = listed(api, who).await;
        if now == expected {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "listed {now:?}, expected {expected:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn events(server: &TestServer, who: &Person) -> Ws {
    let mut ws = common::raw(&format!("ws://{}/ws/events?token={}", server.addr, who.token)).await;
    let ready = next_event(&mut ws, WAIT).await.expect("ready");
    assert_eq!(ready["type"], "ready", "{ready}");
    ws
}

/// The next JSON event within `wait`, if any.
async fn next_event(ws: &mut Ws, wait: Duration) -> Option<Value> {
    loop {
        match tokio::time::timeout(wait, ws.next()).await {
            Err(_) => return None,
            Ok(Some(Ok(Message::Text(text)))) => return Some(serde_json::from_str(&text).unwrap()),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
            Ok(other) => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn each_fact_notifies_once_live_to_its_person_only_and_follows_edits() {
    let dir = temp_dir();
    let server = TestServer::start(dir.path()).await;
    let api = Api::new(&server);
    let ada = person(&api, "ada@example.com").await;
    let ws = create_workspace(&api, &ada, "Acme").await;
    let bob = member(&api, &ada, &ws, "bob@example.com", "editor").await;
    let cy = member(&api, &ada, &ws, "cy@example.com", "viewer").await;
    let general = create(&api, &ada, &ws, "channel", false).await;
    let secret = create(&api, &ada, &ws, "channel", true).await;
    let board = create(&api, &ada, &ws, "board", false).await;
    let mut bob_events = events(&server, &bob).await;
    let mut cy_events = events(&server, &cy).await;

    // A mention over REST reaches its person live, once, and no one else.
    let messages = format!("/api/docs/{general}/messages");
    call(
        &api,
        Method::POST,
        &ada,
        &messages,
        json!({ "id": "m1", "body": format!("Ready, <@{}>?", bob.id) }),
    )
    .await;
    let event = next_event(&mut bob_events, WAIT).await.expect("bob is notified live");
    assert_eq!(event["type"], "notification");
    let n = &event["notification"];
    assert_eq!((n["reason"].as_str(), n["item"].as_str()), (Some("mention"), Some("message:m1")), "{n}");
    assert_eq!(
        (n["actor"].as_str(), n["document"].as_str()),
        (Some(ada.id.as_str()), Some(general.as_str()))
    );
    assert_eq!(n["excerpt"], format!("Ready, <@{}>?", bob.id));
    assert_eq!(n["read"], false);
    // Editing the message (the mention kept) notifies no one again.
    call(
        &api,
        Method::PATCH,
        &ada,
        &format!("{messages}/m1"),
        json!({ "body": format!("Ready now, <@{}>?", bob.id) }),
    )
    .await;
    // A reply in the thread notifies the thread's author; bob wrote it, so not bob.
    call(&api, Method::POST, &bob, &messages, json!({ "id": "r1", "parent": "m1", "body": "Yes" })).await;
    until_listed(&api, &ada, &["reply message:r1"]).await;
    assert_eq!(listed(&api, &bob).await, ["mention message:m1"]);
    assert!(next_event(&mut bob_events, Duration::from_millis(500)).await.is_none(), "nothing more for bob");
    assert!(next_event(&mut cy_events, Duration::from_millis(10)).await.is_none(), "nothing for cy");

    // A mention removed before it is read is withdrawn.
    call(&api, Method::POST, &ada, &messages, json!({ "id": "m2", "body": format!("<@{}> look", cy.id) }))
        .await;
    assert!(next_event(&mut cy_events, WAIT).await.is_some());
    until_listed(&api, &cy, &["mention message:m2"]).await;
    call(&api, Method::PATCH, &ada, &format!("{messages}/m2"), json!({ "body": "never mind" })).await;
    until_listed(&api, &cy, &[]).await;

    // Nobody is notified of a document they may not read, nor of their own writing.
    let secret_messages = format!("/api/docs/{secret}/messages");
    call(
        &api,
        Method::POST,
        &ada,
        &secret_messages,
        json!({ "id": "s1", "body": format!("<@{}> <@{}>", cy.id, ada.id) }),
    )
    .await;
    // A task assigned to cy: notified.
    call(
        &api,
        Method::POST,
        &ada,
        &format!("/api/docs/{board}/tasks"),
        json!({ "id": "t1", "title": "Review", "assignees": [cy.id] }),
    )
    .await;
    until_listed(&api, &cy, &["assigned task:t1"]).await;
    assert_eq!(listed(&api, &ada).await, ["reply message:r1"]);

    // A mention typed by a Yjs client over y-websocket, in the channel layout.
    let client: YjsSync = common::client(&format!("{}?token={}", server.yjs_url(&general), bob.token)).await;
    {
        let doc = client.doc();
        let messages = doc.get_or_insert_map("messages");
        let mut txn = doc.transact_mut();
        messages.insert(
            &mut txn,
            "y1",
            MapPrelim::from([
                ("author".to_owned(), yrs::Any::from(bob.id.as_str())),
                ("body".to_owned(), yrs::Any::from(format!("over to you <@{}>", ada.id))),
                ("at".to_owned(), yrs::Any::from(1_800_000_000_000_f64)),
            ]),
        );
    }
    client.wait_acknowledged(WAIT).await.expect("acknowledged");
    client.stop().await;
    until_listed(&api, &ada, &["mention message:y1", "reply message:r1"]).await;

    // Counting and marking read.
    let (_, count) = api.get("/api/me/notifications/unread", Some(&ada.token)).await;
    assert_eq!(count["unread"], 2);
    let (_, page) = api.get("/api/me/notifications", Some(&ada.token)).await;
    let ids: Vec<i64> =
        page["notifications"].as_array().unwrap().iter().map(|n| n["id"].as_i64().unwrap()).collect();
    let read = "/api/me/notifications/read";
    let (status, body) = api.call(Method::POST, read, Some(&bob.token), json!({ "ids": [ids[0]] })).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"), "another's notification: {body}");
    let (status, body) =
        api.call(Method::POST, read, Some(&ada.token), json!({ "ids": [ids[0], 999_999] })).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"), "{body}");
    let (_, count) = api.get("/api/me/notifications/unread", Some(&ada.token)).await;
    assert_eq!(count["unread"], 2, "a refused request marks nothing");
    let marked = call(&api, Method::POST, &ada, read, json!({ "ids": [ids[0]] })).await;
    assert_eq!((marked["marked"].as_i64(), marked["unread"].as_i64()), (Some(1), Some(1)));
    let (_, unread) = api.get("/api/me/notifications?unread=true", Some(&ada.token)).await;
    assert_eq!(unread["notifications"].as_array().unwrap().len(), 1);
    let marked = call(&api, Method::POST, &ada, read, json!({ "all": true })).await;
    assert_eq!((marked["marked"].as_i64(), marked["unread"].as_i64()), (Some(1), Some(0)));
    for bad in [json!({}), json!({ "ids": [] }), json!({ "ids": [1], "all": true }), json!({ "ids": "x" })] {
        let (status, body) = api.call(Method::POST, read, Some(&ada.token), bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    let (status, _) = api.get("/api/me/notifications", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let refused =
        tokio_tungstenite::connect_async(format!("ws://{}/ws/events?token=nope", server.addr)).await;
    assert!(refused.is_err(), "an unauthenticated /ws/events is refused before the upgrade");

    // A rebuild from the log creates nothing twice and keeps what was read.
    let before = (listed(&api, &ada).await, listed(&api, &bob).await, listed(&api, &cy).await);
    let config = server.config.clone();
    server.stop().await;
    weft::admin::rebuild_derived(&config).await.expect("rebuild");
    let server = TestServer::start_with(config).await;
    let api = Api::new(&server);
    assert_eq!((listed(&api, &ada).await, listed(&api, &bob).await, listed(&api, &cy).await), before);
    let (_, count) = api.get("/api/me/notifications/unread", Some(&ada.token)).await;
    assert_eq!(count["unread"], 0);
    server.stop().await;
}

#[tokio::test]
async fn preferences_and_mutes_decide_what_notifies_and_nothing_arrives_late() {
    let dir = temp_dir();
    let server = TestServer::start(dir.path()).await;
    let api = Api::new(&server);
    let ada = person(&api, "ada@example.com").await;
    let ws = create_workspace(&api, &ada, "Acme").await;
    let bob = member(&api, &ada, &ws, "bob@example.com", "editor").await;
    let general = create(&api, &ada, &ws, "channel", false).await;
    let secret = create(&api, &ada, &ws, "channel", true).await;
    let board = create(&api, &ada, &ws, "board", false).await;
    let messages = format!("/api/docs/{general}/messages");
    let tasks = format!("/api/docs/{board}/tasks");

    // Bob mutes the channel and turns assignments off.
    let (status, _) =
        api.call(Method::PUT, &format!("/api/docs/{general}/mute"), Some(&bob.token), Value::Null).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let prefs =
        call(&api, Method::PATCH, &bob, "/api/me/notification-preferences", json!({ "assigned": false }))
            .await;
    assert_eq!(prefs, json!({ "mention": true, "reply": true, "assigned": false, "muted": [general] }));

    call(&api, Method::POST, &bob, &messages, json!({ "id": "m1", "body": "Thoughts?" })).await;
    call(&api, Method::POST, &ada, &messages, json!({ "id": "r1", "parent": "m1", "body": "Yes" })).await;
    call(&api, Method::POST, &ada, &tasks, json!({ "id": "t1", "title": "Review", "assignees": [bob.id] }))
        .await;
    // A mention in a muted channel still notifies.
    call(&api, Method::POST, &ada, &messages, json!({ "id": "m2", "body": format!("<@{}> urgent", bob.id) }))
        .await;
    until_listed(&api, &bob, &["mention message:m2"]).await;
    // The board is derived (its search row and its notifications commit together) before
    // assignments are turned on again: preferences apply when a fact is derived.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, found) = api.get(&format!("/api/workspaces/{ws}/search?q=review"), Some(&bob.token)).await;
        if found["results"].as_array().is_some_and(|r| !r.is_empty()) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the board is never derived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Turned on again, neither the reply nor the assignment arrives late; new ones do.
    let (status, _) =
        api.call(Method::DELETE, &format!("/api/docs/{general}/mute"), Some(&bob.token), Value::Null).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    call(&api, Method::PATCH, &bob, "/api/me/notification-preferences", json!({ "assigned": true })).await;
    call(&api, Method::POST, &ada, &tasks, json!({ "id": "t2", "title": "Ship", "assignees": [bob.id] }))
        .await;
    call(&api, Method::POST, &ada, &messages, json!({ "id": "r2", "parent": "m1", "body": "Also" })).await;
    until_listed(&api, &bob, &["reply message:r2", "assigned task:t2", "mention message:m2"]).await;
    let (_, count) = api.get("/api/me/notifications/unread", Some(&bob.token)).await;
    assert_eq!(count["unread"], 3);

    // Bad input.
    let (status, body) =
        api.call(Method::PUT, &format!("/api/docs/{secret}/mute"), Some(&bob.token), Value::Null).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::NOT_FOUND, "not_found"),
        "a document bob may not see: {body}"
    );
    let (status, _) = api.call(Method::PUT, "/api/docs/nope/mute", Some(&bob.token), Value::Null).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = api
        .call(Method::PATCH, "/api/me/notification-preferences", Some(&bob.token), json!({ "digest": true }))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    server.stop().await;
}
