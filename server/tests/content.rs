//! Reading workspace documents' content over REST, through the projections, against the real
//! server: a client writes a document, a board, a channel and a whiteboard over y-websocket (with
//! the layouts of `docs/schemas.md`), and REST reads them back — text, Markdown and JSON, tasks
//! with filters, messages newest first with a cursor and a thread, shapes and the SVG export —
//! for members only, with the kind and the query checked.

mod common;

use common::api::{Api, Person, code, create_workspace, member, person};
use common::{TestServer, WAIT, temp_dir};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use weft_client::YjsSync;
use yrs::{
    Array, ArrayPrelim, Map, MapPrelim, Text, TextPrelim, Transact, Xml, XmlElementPrelim, XmlFragment,
    XmlTextPrelim,
};

async fn create(api: &Api, who: &Person, ws: &str, kind: &str) -> String {
    let (status, doc) = api
        .call(
            Method::POST,
            &format!("/api/workspaces/{ws}/docs"),
            Some(&who.token),
            json!({ "kind": kind, "crdt": "yjs", "title": kind }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{doc}");
    doc["id"].as_str().unwrap().to_owned()
}

/// Opens `doc` as `who`, lets `write` edit it, and waits until the server acknowledged it.
async fn write(server: &TestServer, who: &Person, doc: &str, write: impl FnOnce(&yrs::Doc)) {
    let client: YjsSync = common::client(&format!("{}?token={}", server.yjs_url(doc), who.token)).await;
    write(client.doc());
    client.wait_acknowledged(WAIT).await.expect("acknowledged");
    client.stop().await;
}

async fn text(api: &Api, path: &str, token: &str) -> (StatusCode, String) {
    let response = api.http.get(format!("{}{path}", api.base)).bearer_auth(token).send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

#[tokio::test]
async fn rest_reads_every_kind_through_its_projection() {
    let dir = temp_dir();
    let server = TestServer::start(dir.path()).await;
    let api = Api::new(&server);
    let ada = person(&api, "ada@example.com").await;
    let ws = create_workspace(&api, &ada, "Acme").await;
    let val = member(&api, &ada, &ws, "val@example.com", "viewer").await;
    let out = person(&api, "out@example.com").await;

    // A document, as Tiptap writes it.
    let doc = create(&api, &ada, &ws, "document").await;
    write(&server, &ada, &doc, |d| {
        let root = d.get_or_insert_xml_fragment("default");
        let mut txn = d.transact_mut();
        let h = root.insert(&mut txn, 0, XmlElementPrelim::empty("heading"));
        h.insert_attribute(&mut txn, "level", "1");
        h.insert(&mut txn, 0, XmlTextPrelim::new("Plan"));
        let p = root.insert(&mut txn, 1, XmlElementPrelim::empty("paragraph"));
        p.insert(&mut txn, 0, XmlTextPrelim::new("Ship it"));
    })
    .await;
    assert_eq!(
        text(&api, &format!("/api/docs/{doc}/content?format=text"), &val.token).await,
        (StatusCode::OK, "Plan\nShip it".into())
    );
    assert_eq!(
        text(&api, &format!("/api/docs/{doc}/content?format=markdown"), &val.token).await.1,
        "# Plan\n\nShip it"
    );
    let (status, comments) = api.get(&format!("/api/docs/{doc}/comments"), Some(&val.token)).await;
    assert_eq!((status, comments["comments"].as_array().map(Vec::len)), (StatusCode::OK, Some(0)));
    let (status, json) = api.get(&format!("/api/docs/{doc}/content"), Some(&val.token)).await;
    assert_eq!(
        (status, json["blocks"][0]["kind"]["type"].as_str()),
        (StatusCode::OK, Some("heading")),
        "{json}"
    );

    // A board.
    let board = create(&api, &ada, &ws, "board").await;
    write(&server, &ada, &board, |d| {
        let columns = d.get_or_insert_array("columns");
        let tasks = d.get_or_insert_map("tasks");
        let mut txn = d.transact_mut();
        for (id, name) in [("todo", "To do"), ("done", "Done")] {
            let c = columns.push_back(&mut txn, MapPrelim::default());
            c.insert(&mut txn, "id", id);
            c.insert(&mut txn, "name", name);
        }
        for (id, column, priority, due, who) in
            [("t1", "todo", "high", "2026-01-01", "u-val"), ("t2", "done", "low", "2030-01-01", "u-ada")]
        {
            let t = tasks.insert(&mut txn, id, MapPrelim::default());
            t.insert(&mut txn, "title", format!("task {id}"));
            t.insert(&mut txn, "column", column);
            t.insert(&mut txn, "priority", priority);
            t.insert(&mut txn, "due", due);
            let a = t.insert(&mut txn, "assignees", ArrayPrelim::default());
            a.push_back(&mut txn, who);
        }
    })
    .await;
    let ids = |v: &Value, key: &str| -> Vec<String> {
        v[key].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap().to_owned()).collect()
    };
    let (_, all) = api.get(&format!("/api/docs/{board}/tasks"), Some(&val.token)).await;
    assert_eq!(ids(&all, "tasks"), ["t1", "t2"]);
    for (query, expected) in [
        ("?column=done", vec!["t2"]),
        ("?assignee=u-val", vec!["t1"]),
        ("?priority=high", vec!["t1"]),
        ("?due_from=2027-01-01", vec!["t2"]),
        ("?due_to=2027-01-01", vec!["t1"]),
        ("?overdue_on=2026-12-07", vec!["t1"]),
        ("?archived=true", vec![]),
    ] {
        let (status, page) = api.get(&format!("/api/docs/{board}/tasks{query}"), Some(&val.token)).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(ids(&page, "tasks"), expected, "{query}");
    }
    for (query, expected) in [
        ("?priority=critical", "invalid_priority"),
        ("?due_to=soon", "invalid_date"),
        ("?colour=red", "invalid_query"),
    ] {
        let (status, body) = api.get(&format!("/api/docs/{board}/tasks{query}"), Some(&val.token)).await;
        assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, expected), "{query}");
    }

    // A channel: pages newest first, a thread.
    let channel = create(&api, &ada, &ws, "channel").await;
    write(&server, &ada, &channel, |d| {
        let messages = d.get_or_insert_map("messages");
        let mut txn = d.transact_mut();
        for (i, parent) in [(1, None), (2, None), (3, Some("m1")), (4, None)] {
            let m = messages.insert(&mut txn, format!("m{i}"), MapPrelim::default());
            m.insert(&mut txn, "author", "u-ada");
            let body = m.insert(&mut txn, "body", TextPrelim::new(""));
            body.push(&mut txn, &format!("message {i} <@u-val>"));
            m.insert(&mut txn, "at", 1000 * i64::from(i));
            if let Some(parent) = parent {
                m.insert(&mut txn, "parent", parent);
            }
        }
    })
    .await;
    let (_, page) = api.get(&format!("/api/docs/{channel}/messages?limit=2"), Some(&val.token)).await;
    assert_eq!(ids(&page, "messages"), ["m4", "m2"]);
    assert_eq!(page["messages"][0]["mentions"], json!(["u-val"]));
    let (at, id) = (page["next"]["at"].as_i64().unwrap(), page["next"]["id"].as_str().unwrap());
    let (_, rest) = api
        .get(&format!("/api/docs/{channel}/messages?limit=2&before_at={at}&before_id={id}"), Some(&val.token))
        .await;
    assert_eq!((ids(&rest, "messages"), rest["next"].is_null()), (vec!["m1".to_owned()], true));
    assert_eq!(rest["messages"][0]["replies"], 1);
    let (_, thread) = api.get(&format!("/api/docs/{channel}/messages/m1/thread"), Some(&val.token)).await;
    assert_eq!(ids(&thread, "replies"), ["m3"]);
    let (status, _) = api.get(&format!("/api/docs/{channel}/messages/nope/thread"), Some(&val.token)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) =
        api.get(&format!("/api/docs/{channel}/messages?before_at=5"), Some(&val.token)).await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "invalid_cursor"));

    // A whiteboard: shapes and SVG.
    let wb = create(&api, &ada, &ws, "whiteboard").await;
    write(&server, &ada, &wb, |d| {
        let shapes = d.get_or_insert_map("shapes");
        let mut txn = d.transact_mut();
        let s = shapes.insert(&mut txn, "box", MapPrelim::default());
        s.insert(&mut txn, "type", "rectangle");
        s.insert(&mut txn, "width", 40.0);
        s.insert(&mut txn, "height", 20.0);
        s.insert(&mut txn, "text", "<hi>");
    })
    .await;
    let (_, shapes) = api.get(&format!("/api/docs/{wb}/shapes"), Some(&val.token)).await;
    assert_eq!(ids(&shapes, "shapes"), ["box"]);
    let response = api
        .http
        .get(format!("{}/api/docs/{wb}/export.svg", api.base))
        .bearer_auth(&val.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "image/svg+xml");
    let svg = response.text().await.unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("&lt;hi&gt;"), "{svg}");

    // The kind, the format, and who may read.
    let (status, body) = api.get(&format!("/api/docs/{board}/content"), Some(&val.token)).await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "wrong_kind"));
    let (status, body) = api.get(&format!("/api/docs/{doc}/content?format=pdf"), Some(&val.token)).await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "invalid_format"));
    for path in [
        format!("/api/docs/{doc}/content"),
        format!("/api/docs/{board}/tasks"),
        format!("/api/docs/{channel}/messages"),
        format!("/api/docs/{wb}/shapes"),
    ] {
        let (status, _) = api.get(&path, Some(&out.token)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        let (status, _) = api.get(&path, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
    }
    server.stop().await;
}
