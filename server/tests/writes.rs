//! REST writes against the real server: each route writes an ordinary CRDT update through the
//! document's room — a connected y-websocket client sees it live, the log attributes it to the
//! caller, it survives SIGKILL once answered — and each is refused as it should be: by role
//! (viewers write nothing, commenters only comment and react), by ownership (only its author
//! edits or deletes a message), for an archived document or task, and for bad input.

mod common;

use common::api::{Api, Person, code, create_workspace, member, person};
use common::{ProcessServer, TestServer, WAIT, db_path, eventually, temp_dir};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use yrs::{GetString, Map, Out, Text, Transact};

async fn create(api: &Api, who: &Person, ws: &str, kind: &str, crdt: &str) -> String {
    let (status, doc) = api
        .call(
            Method::POST,
            &format!("/api/workspaces/{ws}/docs"),
            Some(&who.token),
            json!({ "kind": kind, "crdt": crdt, "title": kind }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{doc}");
    doc["id"].as_str().unwrap().to_owned()
}

async fn call(api: &Api, method: Method, path: &str, who: &Person, body: Value) -> (StatusCode, Value) {
    api.call(method, path, Some(&who.token), body).await
}

/// The body of message `id` in a y-websocket client's copy of a channel, if it has it.
fn body_in(doc: &yrs::Doc, id: &str) -> Option<String> {
    let messages = doc.get_or_insert_map("messages");
    let txn = doc.transact();
    let Some(Out::YMap(message)) = messages.get(&txn, id) else { return None };
    match message.get(&txn, "body") {
        Some(Out::YText(body)) => Some(body.get_string(&txn)),
        _ => Some(String::new()),
    }
}

#[tokio::test]
async fn messages_are_written_over_rest_and_reach_connected_clients_live() {
    let dir = temp_dir();
    let server = TestServer::start(dir.path()).await;
    let api = Api::new(&server);
    let ada = person(&api, "ada@example.com").await;
    let ws = create_workspace(&api, &ada, "Acme").await;
    let bob = member(&api, &ada, &ws, "bob@example.com", "editor").await;
    let cy = member(&api, &ada, &ws, "cy@example.com", "commenter").await;
    let val = member(&api, &ada, &ws, "val@example.com", "viewer").await;
    let channel = create(&api, &ada, &ws, "channel", "yjs").await;
    let messages = format!("/api/docs/{channel}/messages");

    // Bob is connected with an unmodified y-websocket-protocol client.
    let live = common::client(&format!("{}?token={}", server.yjs_url(&channel), bob.token)).await;

    let (status, posted) =
        call(&api, Method::POST, &messages, &ada, json!({ "body": "Launch Friday? <@bob>", "id": "m1" }))
            .await;
    assert_eq!(status, StatusCode::CREATED, "{posted}");
    assert_eq!((posted["id"].as_str(), posted["author"].as_str()), (Some("m1"), Some(ada.id.as_str())));
    assert_eq!(posted["mentions"], json!(["bob"]));
    eventually("the client sees the message", || {
        body_in(live.doc(), "m1").as_deref() == Some("Launch Friday? <@bob>")
    })
    .await;

    // Repeating the request with the same id writes the same message, not a second one.
    let (status, _) =
        call(&api, Method::POST, &messages, &ada, json!({ "body": "Launch Friday? <@bob>", "id": "m1" }))
            .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, page) = api.get(&messages, Some(&val.token)).await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 1, "{page}");

    // A reply in the thread, by Bob; reactions by a commenter; nothing by a viewer.
    let (status, reply) =
        call(&api, Method::POST, &messages, &bob, json!({ "body": "Yes", "parent": "m1" })).await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    let reactions = format!("{messages}/m1/reactions/%F0%9F%91%8D");
    assert_eq!(call(&api, Method::PUT, &reactions, &cy, Value::Null).await.0, StatusCode::NO_CONTENT);
    assert_eq!(call(&api, Method::PUT, &reactions, &cy, Value::Null).await.0, StatusCode::NO_CONTENT);
    let (status, body) = call(&api, Method::POST, &messages, &cy, json!({ "body": "hi" })).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "forbidden"));
    for (method, path, body) in [
        (Method::POST, messages.clone(), json!({ "body": "hi" })),
        (Method::PUT, reactions.clone(), Value::Null),
        (Method::PATCH, format!("{messages}/m1"), json!({ "body": "x" })),
    ] {
        let (status, body) = call(&api, method, &path, &val, body).await;
        assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "forbidden"), "{path}");
    }
    // A non-member learns nothing: every write route answers as for a missing document.
    let out = person(&api, "out@example.com").await;
    for (method, path, body) in [
        (Method::POST, messages.clone(), json!({ "body": "hi" })),
        (Method::PUT, reactions.clone(), Value::Null),
        (Method::DELETE, format!("{messages}/m1"), Value::Null),
        (Method::POST, format!("/api/docs/{channel}/tasks"), json!({ "title": "t" })),
        (Method::POST, format!("/api/docs/{channel}/comments"), json!({ "body": "c" })),
    ] {
        let (status, body) = call(&api, method, &path, &out, body).await;
        assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"), "{path}");
    }
    let (_, thread) = api.get(&format!("{messages}/m1/thread"), Some(&val.token)).await;
    assert_eq!(thread["replies"][0]["body"], "Yes");
    assert_eq!(thread["parent"]["reactions"], json!([{ "emoji": "👍", "users": [cy.id] }]));

    // Only its author edits or deletes a message.
    let (status, body) =
        call(&api, Method::PATCH, &format!("{messages}/m1"), &bob, json!({ "body": "x" })).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "not_author"));
    let (status, edited) = call(
        &api,
        Method::PATCH,
        &format!("{messages}/m1"),
        &ada,
        json!({ "body": "Launch Monday? <@bob>" }),
    )
    .await;
    assert_eq!((status, edited["body"].as_str()), (StatusCode::OK, Some("Launch Monday? <@bob>")));
    assert!(edited["edited_at"].is_i64(), "{edited}");
    eventually("the client sees the edit", || {
        body_in(live.doc(), "m1").as_deref() == Some("Launch Monday? <@bob>")
    })
    .await;
    let reply_id = reply["id"].as_str().unwrap();
    let (status, body) =
        call(&api, Method::DELETE, &format!("{messages}/{reply_id}"), &ada, Value::Null).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "not_author"));
    let (status, _) = call(&api, Method::DELETE, &format!("{messages}/{reply_id}"), &bob, Value::Null).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, thread) = api.get(&format!("{messages}/m1/thread"), Some(&val.token)).await;
    assert_eq!(
        (thread["replies"][0]["deleted"].as_bool(), thread["replies"][0]["body"].as_str()),
        (Some(true), Some(""))
    );

    // Bad input: a clear 4xx, nothing written.
    for (body, want) in [
        (json!({ "body": "" }), "invalid_body"),
        (json!({ "body": "x", "parent": "nope" }), "not_found"),
        (json!({ "body": "x", "id": "a/b" }), "invalid_id"),
        (json!({ "body": "x", "colour": "red" }), "invalid_body"),
        (json!({ "body": "x", "attachments": ["../etc"] }), "invalid_attachments"),
    ] {
        let (status, answer) = call(&api, Method::POST, &messages, &ada, body.clone()).await;
        assert!(status.is_client_error() && code(&answer) == want, "{body}: {status} {answer}");
    }
    let (status, body) =
        call(&api, Method::PATCH, &format!("{messages}/nope"), &ada, json!({ "body": "x" })).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    let (status, body) =
        call(&api, Method::POST, &format!("/api/docs/{channel}/tasks"), &ada, json!({ "title": "t" })).await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "wrong_kind"));

    // The log attributes every write to its caller.
    live.stop().await;
    server.stop().await;
    let db = rusqlite::Connection::open(db_path(dir.path())).unwrap();
    let authors: Vec<Option<String>> = db
        .prepare(
            "SELECT user_id FROM updates u JOIN documents d ON d.key = u.doc WHERE d.name = ?1 ORDER BY seq",
        )
        .unwrap()
        .query_map([&channel], |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(!authors.is_empty() && authors.iter().all(Option::is_some), "{authors:?}");
    for who in [&ada, &bob, &cy] {
        assert!(authors.contains(&Some(who.id.clone())), "{} wrote", who.id);
    }
}

#[tokio::test]
async fn tasks_shapes_and_comments_are_written_over_rest_on_both_crdts() {
    let dir = temp_dir();
    let server = TestServer::start(dir.path()).await;
    let api = Api::new(&server);
    let ada = person(&api, "ada@example.com").await;
    let ws = create_workspace(&api, &ada, "Acme").await;
    let cy = member(&api, &ada, &ws, "cy@example.com", "commenter").await;

    for crdt in ["yjs", "automerge"] {
        // A board: columns, a task created, moved, assigned, archived.
        let board = create(&api, &ada, &ws, "board", crdt).await;
        for (id, name) in [("todo", "To do"), ("doing", "Doing")] {
            let (status, columns) = call(
                &api,
                Method::POST,
                &format!("/api/docs/{board}/columns"),
                &ada,
                json!({ "id": id, "name": name }),
            )
            .await;
            assert_eq!(status, StatusCode::CREATED, "{columns}");
        }
        let tasks = format!("/api/docs/{board}/tasks");
        let (status, task) = call(
            &api,
            Method::POST,
            &tasks,
            &ada,
            json!({ "title": "Write the post", "column": "todo", "priority": "high", "due": "2026-12-24", "labels": ["launch"] }),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{crdt}: {task}");
        let task_path = format!("{tasks}/{}", task["id"].as_str().unwrap());
        let (status, moved) = call(
            &api,
            Method::PATCH,
            &task_path,
            &ada,
            json!({ "column": "doing", "order": 0.5, "assignees": [cy.id], "due": null }),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{moved}");
        assert_eq!(
            (moved["column"].as_str(), moved["due"].as_str(), moved["assignees"].clone()),
            (Some("doing"), None, json!([cy.id]))
        );
        let (_, filtered) = api.get(&format!("{tasks}?assignee={}", cy.id), Some(&cy.token)).await;
        assert_eq!(filtered["tasks"].as_array().unwrap().len(), 1, "{filtered}");
        assert_eq!(
            call(&api, Method::PATCH, &task_path, &ada, json!({ "archived": true })).await.0,
            StatusCode::OK
        );
        let (status, body) = call(&api, Method::PATCH, &task_path, &ada, json!({ "title": "x" })).await;
        assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "archived"));
        assert_eq!(
            call(&api, Method::PATCH, &task_path, &ada, json!({ "archived": false })).await.0,
            StatusCode::OK
        );
        for (body, want) in [
            (json!({ "column": "nope" }), "unknown_column"),
            (json!({ "due": "Friday" }), "invalid_task"),
            (json!({ "priority": "someday" }), "invalid_body"),
        ] {
            let (status, answer) = call(&api, Method::PATCH, &task_path, &ada, body.clone()).await;
            assert!(status == StatusCode::BAD_REQUEST && code(&answer) == want, "{body}: {status} {answer}");
        }
        let (status, body) = call(&api, Method::POST, &tasks, &cy, json!({ "title": "t" })).await;
        assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "forbidden"));

        // A whiteboard: a shape added, moved, removed.
        let wb = create(&api, &ada, &ws, "whiteboard", crdt).await;
        let shapes = format!("/api/docs/{wb}/shapes");
        let (status, shape) = call(
            &api,
            Method::POST,
            &shapes,
            &ada,
            json!({ "id": "box-1", "type": "rectangle", "x": 0, "y": 0, "width": 120, "height": 60, "text": "Plan" }),
        )
        .await;
        assert_eq!((status, shape["text"].as_str()), (StatusCode::CREATED, Some("Plan")), "{shape}");
        let (status, shape) =
            call(&api, Method::PATCH, &format!("{shapes}/box-1"), &ada, json!({ "x": 40, "fill": "#eee" }))
                .await;
        assert_eq!(
            (status, shape["x"].as_f64(), shape["fill"].as_str()),
            (StatusCode::OK, Some(40.0), Some("#eee"))
        );
        let (status, body) = call(&api, Method::POST, &shapes, &ada, json!({ "x": 1 })).await;
        assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "invalid_shape"));
        let (status, body) = call(&api, Method::POST, &shapes, &ada, json!({ "type": "blob" })).await;
        assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "invalid_body"));
        assert_eq!(
            call(&api, Method::DELETE, &format!("{shapes}/box-1"), &ada, Value::Null).await.0,
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            call(&api, Method::DELETE, &format!("{shapes}/box-1"), &ada, Value::Null).await.0,
            StatusCode::NOT_FOUND
        );

        // A text document: comments anchored in its text, a reply, resolved by a commenter.
        let doc = create(&api, &ada, &ws, "document", crdt).await;
        let comments = format!("/api/docs/{doc}/comments");
        let (status, body) = call(
            &api,
            Method::POST,
            &comments,
            &ada,
            json!({ "body": "?", "anchor": { "start": 0, "end": 2 } }),
        )
        .await;
        assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "layout_conflict"), "no text yet: {body}");
        let (status, body) = call(&api, Method::POST, &comments, &ada, json!({ "body": "A note" })).await;
        assert_eq!(status, StatusCode::CREATED, "a comment without an anchor needs no text: {body}");
        if crdt == "yjs" {
            let client = common::client(&format!("{}?token={}", server.yjs_url(&doc), ada.token)).await;
            client.doc().get_or_insert_text("content").insert(
                &mut client.doc().transact_mut(),
                0,
                "Hello brave new world",
            );
            client.wait_acknowledged(WAIT).await.unwrap();
            client.stop().await;
        } else {
            continue;
        }
        let (status, c1) = call(
            &api,
            Method::POST,
            &comments,
            &cy,
            json!({ "body": "Too much? <@ada>", "anchor": { "start": 6, "end": 15 } }),
        )
        .await;
        assert_eq!((status, c1["quote"].as_str()), (StatusCode::CREATED, Some("brave new")), "{c1}");
        let c1_id = c1["id"].as_str().unwrap();
        let (status, reply) =
            call(&api, Method::POST, &comments, &ada, json!({ "body": "Keep it", "parent": c1_id })).await;
        assert_eq!((status, reply["parent"].as_str()), (StatusCode::CREATED, Some(c1_id)));
        let (status, resolved) =
            call(&api, Method::PATCH, &format!("{comments}/{c1_id}"), &cy, json!({ "resolved": true })).await;
        assert_eq!((status, resolved["resolved"].as_bool()), (StatusCode::OK, Some(true)));
        let (status, body) = call(
            &api,
            Method::POST,
            &comments,
            &ada,
            json!({ "body": "x", "anchor": { "start": 6, "end": 500 } }),
        )
        .await;
        assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "layout_conflict"));
        let (status, body) = call(
            &api,
            Method::POST,
            &comments,
            &ada,
            json!({ "body": "x", "anchor": { "start": 6, "end": 6 } }),
        )
        .await;
        assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "invalid_anchor"));

        // Archived: readable, not writable.
        assert_eq!(
            api.patch(&format!("/api/docs/{doc}"), &ada.token, json!({ "archived": true })).await.0,
            StatusCode::OK
        );
        let (status, body) = call(&api, Method::POST, &comments, &ada, json!({ "body": "late" })).await;
        assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "archived"));
        assert_eq!(api.get(&comments, Some(&cy.token)).await.0, StatusCode::OK);
    }
}

#[tokio::test]
async fn an_answered_rest_write_survives_sigkill() {
    let dir = temp_dir();
    let server = ProcessServer::start(dir.path(), &[]);
    let api = Api { base: format!("http://{}", server.addr), http: reqwest::Client::new() };
    let ada = person(&api, "ada@example.com").await;
    let ws = create_workspace(&api, &ada, "Acme").await;
    let mut written = Vec::new();
    for crdt in ["yjs", "automerge"] {
        let channel = create(&api, &ada, &ws, "channel", crdt).await;
        for i in 0..20 {
            let path = format!("/api/docs/{channel}/messages");
            let (status, _) = call(&api, Method::POST, &path, &ada, json!({ "body": format!("m{i}") })).await;
            assert_eq!(status, StatusCode::CREATED);
        }
        written.push(channel);
    }
    server.kill();
    let server = ProcessServer::start(dir.path(), &[]);
    let api = Api { base: format!("http://{}", server.addr), http: reqwest::Client::new() };
    let (_, session) =
        api.post("/api/auth/login", json!({ "email": "ada@example.com", "password": "correct horse" })).await;
    let token = session["access_token"].as_str().expect("logged in").to_owned();
    for channel in written {
        let (status, page) = api.get(&format!("/api/docs/{channel}/messages?limit=100"), Some(&token)).await;
        assert_eq!((status, page["messages"].as_array().map(Vec::len)), (StatusCode::OK, Some(20)), "{page}");
    }
    server.kill();
}

#[tokio::test]
async fn a_long_channel_continues_in_segments_and_reads_across_them() {
    let dir = temp_dir();
    let mut config = weft::config::Config::with_data_dir(dir.path());
    config.channel_segment_messages = 3;
    let server = TestServer::start_with(config).await;
    let api = Api::new(&server);
    let ada = person(&api, "ada@example.com").await;
    let ws = create_workspace(&api, &ada, "Acme").await;
    let val = member(&api, &ada, &ws, "val@example.com", "viewer").await;
    for crdt in ["yjs", "automerge"] {
        let channel = create(&api, &ada, &ws, "channel", crdt).await;
        let messages = format!("/api/docs/{channel}/messages");
        let mut ids: Vec<String> = Vec::new();
        for i in 0..8 {
            let parent = (i == 7).then(|| ids[0].clone());
            let (status, m) = call(
                &api,
                Method::POST,
                &messages,
                &ada,
                json!({ "body": format!("m{i}"), "parent": parent }),
            )
            .await;
            assert_eq!(status, StatusCode::CREATED, "{crdt} {i}: {m}");
            ids.push(m["id"].as_str().unwrap().to_owned());
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        // The channel document lists its segments; they are not documents of their own.
        let (_, listed) = api.get(&format!("/api/workspaces/{ws}/docs?kind=channel"), Some(&ada.token)).await;
        assert_eq!(
            listed["documents"].as_array().map(Vec::len),
            Some(if crdt == "yjs" { 1 } else { 2 }),
            "{listed}"
        );
        // Pages newest first across segments, every channel message once.
        let mut seen = Vec::new();
        let mut next: Option<Value> = None;
        loop {
            let path = match &next {
                Some(c) => format!(
                    "{messages}?limit=2&before_at={}&before_id={}",
                    c["at"],
                    c["id"].as_str().unwrap()
                ),
                None => format!("{messages}?limit=2"),
            };
            let (status, page) = api.get(&path, Some(&val.token)).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            seen.extend(
                page["messages"].as_array().unwrap().iter().map(|m| m["body"].as_str().unwrap().to_owned()),
            );
            next = page.get("next").filter(|n| !n.is_null()).cloned();
            if next.is_none() {
                break;
            }
        }
        assert_eq!(seen, ["m6", "m5", "m4", "m3", "m2", "m1", "m0"], "{crdt}");
        // A thread across segments; edits and reactions reach a message in the first part.
        let (_, thread) = api.get(&format!("{messages}/{}/thread", ids[0]), Some(&val.token)).await;
        assert_eq!(
            (thread["parent"]["replies"].as_u64(), thread["replies"][0]["body"].as_str()),
            (Some(1), Some("m7"))
        );
        let (status, edited) = call(
            &api,
            Method::PATCH,
            &format!("{messages}/{}", ids[0]),
            &ada,
            json!({ "body": "first, edited" }),
        )
        .await;
        assert_eq!((status, edited["body"].as_str()), (StatusCode::OK, Some("first, edited")));
        assert_eq!(
            call(&api, Method::PUT, &format!("{messages}/{}/reactions/ok", ids[1]), &ada, Value::Null)
                .await
                .0,
            StatusCode::NO_CONTENT
        );
        // Repeating a post with its id writes it where it is.
        let (status, again) =
            call(&api, Method::POST, &messages, &ada, json!({ "body": "m1", "id": ids[1] })).await;
        assert_eq!((status, again["reactions"][0]["emoji"].as_str()), (StatusCode::CREATED, Some("ok")));
        // A segment is read and written with the channel's access: a viewer reads it, no one else.
        let (_, head) = api.get(&format!("/api/docs/{channel}"), Some(&ada.token)).await;
        assert_eq!(head["kind"], "channel");
        let out = person(&api, &format!("out-{crdt}@example.com")).await;
        let (status, _) = api.get(&messages, Some(&out.token)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    // A y-websocket client opens the newest segment by the id the channel lists, and sees posts.
    let channel = create(&api, &ada, &ws, "channel", "yjs").await;
    for i in 0..4 {
        call(
            &api,
            Method::POST,
            &format!("/api/docs/{channel}/messages"),
            &ada,
            json!({ "body": format!("x{i}") }),
        )
        .await;
    }
    let head = common::client(&format!("{}?token={}", server.yjs_url(&channel), val.token)).await;
    eventually("the channel's segments arrive", || {
        let segments = head.doc().get_or_insert_array("segments");
        yrs::Array::len(&segments, &head.doc().transact()) > 0
    })
    .await;
    let segment = {
        let doc = head.doc();
        let segments = doc.get_or_insert_array("segments");
        let txn = doc.transact();
        let yrs::Out::YMap(last) =
            yrs::Array::get(&segments, &txn, yrs::Array::len(&segments, &txn) - 1).unwrap()
        else {
            panic!("a segment entry")
        };
        match last.get(&txn, "id") {
            Some(Out::Any(yrs::Any::String(id))) => id.to_string(),
            other => panic!("segment id {other:?}"),
        }
    };
    head.stop().await;
    let live = common::client(&format!("{}?token={}", server.yjs_url(&segment), val.token)).await;
    let (_, posted) =
        call(&api, Method::POST, &format!("/api/docs/{channel}/messages"), &ada, json!({ "body": "live" }))
            .await;
    let id = posted["id"].as_str().unwrap().to_owned();
    eventually("the segment's client sees the post", || body_in(live.doc(), &id).as_deref() == Some("live"))
        .await;
    live.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn every_write_route_asks_the_right_action_of_every_role() {
    let dir = temp_dir();
    let server = TestServer::start(dir.path()).await;
    let api = Api::new(&server);
    let ada = person(&api, "ada@example.com").await;
    let ws = create_workspace(&api, &ada, "Acme").await;
    let roles = [
        ("editor", member(&api, &ada, &ws, "ed@example.com", "editor").await),
        ("commenter", member(&api, &ada, &ws, "co@example.com", "commenter").await),
        ("viewer", member(&api, &ada, &ws, "vi@example.com", "viewer").await),
        ("stranger", person(&api, "st@example.com").await),
    ];
    let (channel, board, wb, doc) = (
        create(&api, &ada, &ws, "channel", "yjs").await,
        create(&api, &ada, &ws, "board", "yjs").await,
        create(&api, &ada, &ws, "whiteboard", "yjs").await,
        create(&api, &ada, &ws, "document", "yjs").await,
    );
    let m = call(&api, Method::POST, &format!("/api/docs/{channel}/messages"), &ada, json!({ "body": "hi" }))
        .await
        .1;
    let t =
        call(&api, Method::POST, &format!("/api/docs/{board}/tasks"), &ada, json!({ "title": "t" })).await.1;
    let s =
        call(&api, Method::POST, &format!("/api/docs/{wb}/shapes"), &ada, json!({ "type": "text" })).await.1;
    let c =
        call(&api, Method::POST, &format!("/api/docs/{doc}/comments"), &ada, json!({ "body": "c" })).await.1;
    let (m, t, s, c) = (
        m["id"].as_str().unwrap(),
        t["id"].as_str().unwrap(),
        s["id"].as_str().unwrap(),
        c["id"].as_str().unwrap(),
    );
    // (method, path, body, whether a commenter may)
    let routes = [
        (Method::POST, format!("/api/docs/{channel}/messages"), json!({ "body": "x" }), false),
        (Method::PUT, format!("/api/docs/{channel}/messages/{m}/reactions/ok"), Value::Null, true),
        (Method::DELETE, format!("/api/docs/{channel}/messages/{m}/reactions/ok"), Value::Null, true),
        (Method::POST, format!("/api/docs/{board}/tasks"), json!({ "title": "x" }), false),
        (Method::PATCH, format!("/api/docs/{board}/tasks/{t}"), json!({ "order": 2 }), false),
        (Method::POST, format!("/api/docs/{board}/columns"), json!({ "name": "x" }), false),
        (Method::POST, format!("/api/docs/{wb}/shapes"), json!({ "type": "text" }), false),
        (Method::PATCH, format!("/api/docs/{wb}/shapes/{s}"), json!({ "x": 1 }), false),
        (Method::POST, format!("/api/docs/{doc}/comments"), json!({ "body": "x" }), true),
        (Method::PATCH, format!("/api/docs/{doc}/comments/{c}"), json!({ "resolved": true }), true),
    ];
    for (method, path, body, commenters) in &routes {
        for (role, who) in &roles {
            let (status, answer) = call(&api, method.clone(), path, who, body.clone()).await;
            let expected = match *role {
                "editor" => None,
                "commenter" if *commenters => None,
                "commenter" | "viewer" => Some((StatusCode::FORBIDDEN, "forbidden")),
                _ => Some((StatusCode::NOT_FOUND, "not_found")),
            };
            match expected {
                None => assert!(status.is_success(), "{role} {method} {path}: {status} {answer}"),
                Some(want) => assert_eq!((status, code(&answer)), want, "{role} {method} {path}"),
            }
        }
    }
    // Deleting routes, last: another member's message, then a deleted one, then a deleted document.
    let editor = &roles[0].1;
    let (status, body) =
        call(&api, Method::DELETE, &format!("/api/docs/{channel}/messages/{m}"), editor, Value::Null).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "not_author"));
    assert_eq!(
        call(&api, Method::DELETE, &format!("/api/docs/{wb}/shapes/{s}"), editor, Value::Null).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        call(&api, Method::DELETE, &format!("/api/docs/{channel}/messages/{m}"), &ada, Value::Null).await.0,
        StatusCode::NO_CONTENT
    );
    let (status, body) = call(
        &api,
        Method::PATCH,
        &format!("/api/docs/{channel}/messages/{m}"),
        &ada,
        json!({ "body": "back" }),
    )
    .await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "deleted"));
    let (status, body) = call(
        &api,
        Method::POST,
        &format!("/api/docs/{channel}/messages"),
        &ada,
        json!({ "body": "x".repeat(40_001) }),
    )
    .await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "invalid_body"));
    assert_eq!(
        call(&api, Method::DELETE, &format!("/api/docs/{channel}"), &ada, Value::Null).await.0,
        StatusCode::NO_CONTENT
    );
    let (status, body) =
        call(&api, Method::POST, &format!("/api/docs/{channel}/messages"), &ada, json!({ "body": "x" }))
            .await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
}
