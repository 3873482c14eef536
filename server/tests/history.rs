//! Version history against the real server: versions after idle editing sessions and on request,
//! the content at a version, diffs, blame after interleaved edits by three members over
//! y-websocket, restore as a forward update reaching a connected client, attribution that survives
//! compaction and a restart, idle sessions on an Automerge board, retention thinning that keeps
//! every kept version readable after compaction, an Automerge board restored over REST, and every
//! refusal (unknown versions, another document's version, roles, archived documents, bad names).

mod common;

use std::time::Duration;

use common::api::{Api, Person, code, create_workspace, member, person};
use common::{TestServer, WAIT, eventually, temp_dir};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use weft::Config;
use yrs::{GetString, Text, Transact};

fn config(dir: &std::path::Path) -> Config {
    let mut config = Config::with_data_dir(dir);
    config.rooms.history.idle = Duration::from_millis(300);
    config
}

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

fn content_text(doc: &yrs::Doc) -> String {
    let t = doc.get_or_insert_text("content");
    t.get_string(&doc.transact())
}

fn type_at(doc: &yrs::Doc, at: u32, s: &str) {
    let t = doc.get_or_insert_text("content");
    t.insert(&mut doc.transact_mut(), at, s);
}

/// The body of `GET path` as `who`, which must answer 200 (the `?format=text` reads).
async fn plain(api: &Api, path: &str, who: &Person) -> String {
    let response = api.http.get(format!("{}{path}", api.base)).bearer_auth(&who.token).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    response.text().await.unwrap()
}

async fn text_of(api: &Api, doc: &str, who: &Person) -> String {
    plain(api, &format!("/api/docs/{doc}/content?format=text"), who).await
}

/// The plain text of `doc` at version `v`.
async fn version_text(api: &Api, doc: &str, v: &str, who: &Person) -> String {
    plain(api, &format!("/api/docs/{doc}/versions/{v}?format=text"), who).await
}

/// Waits until the document's plain text over REST is `expected` (durable on the server).
async fn wait_text(api: &Api, doc: &str, who: &Person, expected: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while text_of(api, doc, who).await != expected {
        assert!(tokio::time::Instant::now() < deadline, "the text never became {expected:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn versions(api: &Api, doc: &str, who: &Person) -> Vec<Value> {
    let (status, page) = api.get(&format!("/api/docs/{doc}/versions"), Some(&who.token)).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["versions"].as_array().unwrap().clone()
}

/// Waits until the document has `n` versions and returns them, newest first.
async fn wait_versions(api: &Api, doc: &str, who: &Person, n: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let list = versions(api, doc, who).await;
        if list.len() >= n {
            return list;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {n} versions: {list:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A workspace owned by ada with bob and cy as editors.
async fn three_members(api: &Api) -> (String, Person, Person, Person) {
    let ada = person(api, "ada@example.com").await;
    let ws = create_workspace(api, &ada, "Acme").await;
    let bob = member(api, &ada, &ws, "bob@example.com", "editor").await;
    let cy = member(api, &ada, &ws, "cy@example.com", "editor").await;
    (ws, ada, bob, cy)
}

#[tokio::test]
async fn idle_sessions_become_versions_with_authors_content_diff_and_blame() {
    let dir = temp_dir();
    let server = TestServer::start_with(config(dir.path())).await;
    let api = Api::new(&server);
    let (ws, ada, bob, cy) = three_members(&api).await;
    let val = member(&api, &ada, &ws, "val@example.com", "viewer").await;
    let doc = create(&api, &ada, &ws, "document", "yjs").await;
    let url = |who: &Person| format!("{}?token={}", server.yjs_url(&doc), who.token);

    // Three members type in turn over y-websocket; each session goes idle and becomes a version.
    let turns: [(&Person, u32, &str, &str); 3] = [
        (&ada, 0, "alpha ", "alpha "),
        (&bob, 6, "beta ", "alpha beta "),
        (&cy, 0, "gamma ", "gamma alpha beta "),
    ];
    for (n, (who, at, word, expected)) in turns.into_iter().enumerate() {
        let client = common::client(&url(who)).await;
        type_at(client.doc(), at, word);
        eventually("the server has the edit", || content_text(client.doc()) == expected).await;
        wait_text(&api, &doc, &ada, expected).await;
        let list = wait_versions(&api, &doc, &ada, n + 1).await;
        assert_eq!(list[0]["kind"], "auto");
        assert_eq!(list[0]["authors"], json!([who.id]), "{list:?}");
        assert_eq!(list[0]["summary"]["chars_added"], word.len(), "{list:?}");
        client.stop().await;
    }
    let list = versions(&api, &doc, &val).await;
    assert_eq!(list.len(), 3, "a viewer lists versions too");
    let (first, second) = (list[2]["id"].as_str().unwrap(), list[1]["id"].as_str().unwrap());

    // The content at a version is the content then.
    assert_eq!(version_text(&api, &doc, first, &val).await, "alpha ");
    let (status, at_second) = api.get(&format!("/api/docs/{doc}/versions/{second}"), Some(&val.token)).await;
    assert_eq!(status, StatusCode::OK, "{at_second}");
    assert_eq!(at_second["content"]["blocks"][0]["spans"][0]["text"], "alpha beta ");

    // A diff between two versions, and from a version to now.
    let (status, diff) =
        api.get(&format!("/api/docs/{doc}/versions/{first}/diff?to={second}"), Some(&val.token)).await;
    assert_eq!(status, StatusCode::OK, "{diff}");
    assert_eq!(
        diff["text"],
        json!([{ "op": "equal", "text": "alpha " }, { "op": "insert", "text": "beta " }])
    );
    let (_, to_now) = api.get(&format!("/api/docs/{doc}/versions/{first}/diff"), Some(&val.token)).await;
    assert_eq!(to_now["summary"]["chars_added"], 11, "{to_now}");

    // Blame names the member who wrote each span.
    let (status, blame) = api.get(&format!("/api/docs/{doc}/blame"), Some(&val.token)).await;
    assert_eq!(status, StatusCode::OK, "{blame}");
    assert_eq!(blame["text"], "gamma alpha beta ");
    let spans: Vec<(String, String)> = blame["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["text"].as_str().unwrap().to_owned(), s["author"]["user"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        spans,
        vec![
            ("gamma ".into(), cy.id.clone()),
            ("alpha ".into(), ada.id.clone()),
            ("beta ".into(), bob.id.clone())
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn restore_is_a_forward_update_that_reaches_connected_clients_and_can_be_restored_away() {
    let dir = temp_dir();
    let server = TestServer::start_with(config(dir.path())).await;
    let api = Api::new(&server);
    let ada = person(&api, "ada@example.com").await;
    let ws = create_workspace(&api, &ada, "Acme").await;
    let val = member(&api, &ada, &ws, "val@example.com", "viewer").await;
    let doc = create(&api, &ada, &ws, "document", "yjs").await;
    let live = common::client(&format!("{}?token={}", server.yjs_url(&doc), ada.token)).await;
    type_at(live.doc(), 0, "The quick fox");
    wait_text(&api, &doc, &ada, "The quick fox").await;
    let (status, named) = api
        .call(
            Method::POST,
            &format!("/api/docs/{doc}/versions"),
            Some(&ada.token),
            json!({ "name": "Draft 1" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{named}");
    assert_eq!((named["kind"].as_str(), named["name"].as_str()), (Some("named"), Some("Draft 1")));
    let draft = named["id"].as_str().unwrap().to_owned();

    {
        let t = live.doc().get_or_insert_text("content");
        t.remove_range(&mut live.doc().transact_mut(), 4, 6);
    }
    wait_text(&api, &doc, &ada, "The fox").await;

    // A viewer may not restore; the owner may, and the connected client converges.
    let restore = format!("/api/docs/{doc}/versions/{draft}/restore");
    let (status, refused) = api.call(Method::POST, &restore, Some(&val.token), Value::Null).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    let (status, made) = api.call(Method::POST, &restore, Some(&ada.token), Value::Null).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    assert_eq!(
        (made["kind"].as_str(), made["restored_from"].as_str()),
        (Some("restore"), Some(draft.as_str()))
    );
    assert_eq!(made["created_by"], ada.id.as_str());
    assert_eq!(text_of(&api, &doc, &val).await, "The quick fox");
    eventually("the connected client converges", || content_text(live.doc()) == "The quick fox").await;

    // The restore is a version of its own: restoring the one before it takes the text back again.
    let list = versions(&api, &doc, &ada).await;
    let before_restore = list
        .iter()
        .find(|v| v["kind"] == "auto" && v["upto"].as_u64() < made["upto"].as_u64())
        .unwrap_or_else(|| panic!("an automatic version before the restore: {list:?}"))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = api
        .call(
            Method::POST,
            &format!("/api/docs/{doc}/versions/{before_restore}/restore"),
            Some(&ada.token),
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    eventually("the client follows the second restore", || content_text(live.doc()) == "The fox").await;
    live.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn versions_refuse_what_they_should() {
    let dir = temp_dir();
    let server = TestServer::start_with(config(dir.path())).await;
    let api = Api::new(&server);
    let ada = person(&api, "ada@example.com").await;
    let eve = person(&api, "eve@example.com").await;
    let ws = create_workspace(&api, &ada, "Acme").await;
    let other_ws = create_workspace(&api, &eve, "Elsewhere").await;
    let doc = create(&api, &ada, &ws, "document", "yjs").await;
    let other = create(&api, &eve, &other_ws, "document", "yjs").await;
    let (status, theirs) = api
        .call(Method::POST, &format!("/api/docs/{other}/versions"), Some(&eve.token), json!({ "name": "x" }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{theirs}");
    let theirs = theirs["id"].as_str().unwrap();

    // A stranger sees nothing; another document's (or workspace's) version is unknown here.
    let (status, body) = api.get(&format!("/api/docs/{doc}/versions"), Some(&eve.token)).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"), "{body}");
    for path in [
        format!("/api/docs/{doc}/versions/{theirs}"),
        format!("/api/docs/{doc}/versions/{theirs}/diff"),
        format!("/api/docs/{doc}/versions/nope"),
    ] {
        let (status, body) = api.get(&path, Some(&ada.token)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
    }
    let (status, _) = api
        .call(
            Method::POST,
            &format!("/api/docs/{doc}/versions/{theirs}/restore"),
            Some(&ada.token),
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, mine) = api
        .call(Method::POST, &format!("/api/docs/{doc}/versions"), Some(&ada.token), json!({ "name": "v1" }))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let mine = mine["id"].as_str().unwrap();
    let (status, body) =
        api.get(&format!("/api/docs/{doc}/versions/{mine}/diff?to={theirs}"), Some(&ada.token)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a diff across documents: {body}");

    // Bad names, formats and pages.
    for name in [json!(""), json!("   "), json!("x".repeat(201)), json!(7)] {
        let (status, body) = api
            .call(
                Method::POST,
                &format!("/api/docs/{doc}/versions"),
                Some(&ada.token),
                json!({ "name": name }),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {body}");
    }
    let (status, _) = api.get(&format!("/api/docs/{doc}/versions?limit=0"), Some(&ada.token)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = api.get(&format!("/api/docs/{doc}/versions/{mine}?format=pdf"), Some(&ada.token)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // An archived document keeps its history readable and takes no restore.
    let (status, _) = api.patch(&format!("/api/docs/{doc}"), &ada.token, json!({ "archived": true })).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = api
        .call(
            Method::POST,
            &format!("/api/docs/{doc}/versions/{mine}/restore"),
            Some(&ada.token),
            Value::Null,
        )
        .await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "archived"));
    assert_eq!(versions(&api, &doc, &ada).await.len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn attribution_survives_compaction_and_restart() {
    let dir = temp_dir();
    let mut config = config(dir.path());
    config.rooms.compact_after_updates = 20;
    config.rooms.history.every_updates = 15;
    let server = TestServer::start_with(config).await;
    let api = Api::new(&server);
    let ada = person(&api, "ada@example.com").await;
    let ws = create_workspace(&api, &ada, "Acme").await;
    let bob = member(&api, &ada, &ws, "bob@example.com", "editor").await;
    let doc = create(&api, &ada, &ws, "document", "yjs").await;
    let mut expected = String::new();
    for (who, letter) in [(&ada, 'a'), (&bob, 'b')] {
        let client = common::client(&format!("{}?token={}", server.yjs_url(&doc), who.token)).await;
        for _ in 0..40 {
            let at = content_text(client.doc()).len() as u32;
            type_at(client.doc(), at, &letter.to_string());
            expected.push(letter);
        }
        eventually("the client is acknowledged", || {
            let status = client.status().borrow().clone();
            status.synced && status.acknowledged_upto == Some(40)
        })
        .await;
        client.stop().await;
    }
    wait_text(&api, &doc, &ada, &expected).await;
    wait_versions(&api, &doc, &ada, 2).await;
    let server = server.restart().await;
    let api = Api::new(&server);
    let (status, blame) = api.get(&format!("/api/docs/{doc}/blame"), Some(&ada.token)).await;
    assert_eq!(status, StatusCode::OK, "{blame}");
    let spans: Vec<(String, Option<String>)> = blame["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["text"].as_str().unwrap().to_owned(), s["author"]["user"].as_str().map(str::to_owned)))
        .collect();
    let authors: Vec<Option<String>> = spans.iter().map(|(_, a)| a.clone()).collect();
    assert!(authors.iter().all(Option::is_some), "every character is attributed: {spans:?}");
    let by = |user: &str| {
        spans.iter().filter(|(_, a)| a.as_deref() == Some(user)).map(|(t, _)| t.clone()).collect::<String>()
    };
    assert_eq!(by(&ada.id), "a".repeat(40));
    assert_eq!(by(&bob.id), "b".repeat(40));
    // The log was compacted: fewer rows than edits remain.
    let conn = rusqlite::Connection::open(common::db_path(dir.path())).unwrap();
    let rows: i64 = conn.query_row("SELECT count(*) FROM updates", [], |r| r.get(0)).unwrap();
    assert!(rows < 80, "compaction deleted attributed rows ({rows} left)");
    server.stop().await;
}

#[tokio::test]
async fn an_automerge_board_is_restored_over_rest() {
    let dir = temp_dir();
    let server = TestServer::start_with(config(dir.path())).await;
    let api = Api::new(&server);
    let ada = person(&api, "ada@example.com").await;
    let ws = create_workspace(&api, &ada, "Acme").await;
    let bob = member(&api, &ada, &ws, "bob@example.com", "editor").await;
    let board = create(&api, &ada, &ws, "board", "automerge").await;
    let tasks = format!("/api/docs/{board}/tasks");
    for (who, id, title) in [(&ada, "t1", "Ship"), (&bob, "t2", "Test")] {
        let (status, body) =
            api.call(Method::POST, &tasks, Some(&who.token), json!({ "id": id, "title": title })).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (_, before) = api.get(&tasks, Some(&ada.token)).await;
    let (status, named) = api
        .call(
            Method::POST,
            &format!("/api/docs/{board}/versions"),
            Some(&ada.token),
            json!({ "name": "Plan" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{named}");
    assert_eq!(named["authors"], json!([ada.id, bob.id]));
    assert_eq!(named["summary"]["items_added"], 2);
    let plan = named["id"].as_str().unwrap().to_owned();

    let (status, _) = api.patch(&format!("{tasks}/t1"), &bob.token, json!({ "title": "Shipped" })).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) =
        api.call(Method::POST, &tasks, Some(&bob.token), json!({ "id": "t3", "title": "New" })).await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, diff) = api.get(&format!("/api/docs/{board}/versions/{plan}/diff"), Some(&ada.token)).await;
    assert_eq!(
        (diff["summary"]["items_added"].as_u64(), diff["summary"]["items_changed"].as_u64()),
        (Some(1), Some(1)),
        "{diff}"
    );

    let (status, made) = api
        .call(
            Method::POST,
            &format!("/api/docs/{board}/versions/{plan}/restore"),
            Some(&ada.token),
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let (_, after) = api.get(&tasks, Some(&ada.token)).await;
    assert_eq!(after, before, "the board is as it was at the version");
    let (_, at_plan) = api.get(&format!("/api/docs/{board}/versions/{plan}"), Some(&ada.token)).await;
    assert_eq!(at_plan["content"]["tasks"].as_array().map(Vec::len), Some(2), "{at_plan}");
    server.stop().await;
}

#[tokio::test]
async fn idle_sessions_on_an_automerge_board_become_versions() {
    let dir = temp_dir();
    let server = TestServer::start_with(config(dir.path())).await;
    let api = Api::new(&server);
    let (ws, ada, bob, cy) = three_members(&api).await;
    let board = create(&api, &ada, &ws, "board", "automerge").await;
    let tasks = format!("/api/docs/{board}/tasks");

    // Three members each add a task and go quiet; each session becomes a version of its own.
    for (n, (who, id)) in [(&ada, "t1"), (&bob, "t2"), (&cy, "t3")].into_iter().enumerate() {
        let (status, body) =
            api.call(Method::POST, &tasks, Some(&who.token), json!({ "id": id, "title": id })).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let list = wait_versions(&api, &board, &ada, n + 1).await;
        assert_eq!(list[0]["kind"], "auto", "{list:?}");
        assert_eq!(list[0]["authors"], json!([who.id]), "{list:?}");
        assert_eq!(list[0]["summary"]["items_added"], 1, "{list:?}");
    }
    // Each version holds the board as it was: one, two, then three tasks.
    let list = versions(&api, &board, &cy).await;
    assert_eq!(list.len(), 3, "{list:?}");
    for (v, expected) in list.iter().rev().zip([vec!["t1"], vec!["t1", "t2"], vec!["t1", "t2", "t3"]]) {
        let (status, at) = api
            .get(&format!("/api/docs/{board}/versions/{}", v["id"].as_str().unwrap()), Some(&cy.token))
            .await;
        assert_eq!(status, StatusCode::OK, "{at}");
        let mut ids: Vec<&str> =
            at["content"]["tasks"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap()).collect();
        ids.sort_unstable();
        assert_eq!(ids, expected, "{at}");
    }
    server.stop().await;
}

#[tokio::test]
async fn retention_thins_automatic_versions_and_every_kept_version_still_reads() {
    let dir = temp_dir();
    let mut config = config(dir.path());
    // Keep one automatic version per hour at any age (plus the newest), so a quick run thins; and
    // compact often, so the log that the thinned versions covered is gone too.
    config.rooms.history.retention = weft::storage::versions::Retention::parse("0s=1h").unwrap();
    config.rooms.compact_after_updates = 3;
    let server = TestServer::start_with(config).await;
    let api = Api::new(&server);
    let ada = person(&api, "ada@example.com").await;
    let ws = create_workspace(&api, &ada, "Acme").await;
    let doc = create(&api, &ada, &ws, "document", "yjs").await;
    let url = format!("{}?token={}", server.yjs_url(&doc), ada.token);

    // Five sessions, each one edit and then idle; a named version after the second.
    let mut existed = Vec::new();
    let mut named = None;
    for (n, word) in ["one ", "two ", "three ", "four ", "five "].into_iter().enumerate() {
        let client = common::client(&url).await;
        let at = content_text(client.doc()).len() as u32;
        type_at(client.doc(), at, word);
        let expected = format!("{}{word}", existed.last().map_or("", String::as_str));
        wait_text(&api, &doc, &ada, &expected).await;
        client.stop().await;
        // The session became the newest version.
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let list = versions(&api, &doc, &ada).await;
            let newest = list.first().map(|v| v["id"].as_str().unwrap().to_owned());
            if let Some(v) = newest
                && version_text(&api, &doc, &v, &ada).await == expected
            {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "session {n} never became a version: {list:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        existed.push(expected);
        if n == 1 {
            let (status, body) = api
                .call(
                    Method::POST,
                    &format!("/api/docs/{doc}/versions"),
                    Some(&ada.token),
                    json!({ "name": "Two" }),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            named = Some(body["id"].as_str().unwrap().to_owned());
        }
    }

    // After a restart: the oldest automatic version, the named one and the newest are kept, the
    // rest thinned; every kept version reads back as a text that existed, the named one as it was.
    let server = server.restart().await;
    let api = Api::new(&server);
    let list = versions(&api, &doc, &ada).await;
    let kinds: Vec<&str> = list.iter().map(|v| v["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["auto", "named", "auto"],
        "thinned to one automatic version per hour plus the newest: {list:?}"
    );
    let texts: Vec<String> = {
        let mut texts = Vec::new();
        for v in &list {
            texts.push(version_text(&api, &doc, v["id"].as_str().unwrap(), &ada).await);
        }
        texts
    };
    assert_eq!(texts[0], existed[4], "the newest");
    assert_eq!(list[1]["id"].as_str(), named.as_deref());
    assert_eq!(texts[1], existed[1], "the named version");
    assert_eq!(texts[2], existed[0], "the oldest");
    // A kept version whose log was compacted away still diffs and restores.
    let oldest = list[2]["id"].as_str().unwrap();
    let (status, diff) = api.get(&format!("/api/docs/{doc}/versions/{oldest}/diff"), Some(&ada.token)).await;
    assert_eq!(status, StatusCode::OK, "{diff}");
    assert_eq!(diff["summary"]["chars_added"], existed[4].len() - existed[0].len(), "{diff}");
    let (status, body) = api
        .call(
            Method::POST,
            &format!("/api/docs/{doc}/versions/{oldest}/restore"),
            Some(&ada.token),
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(text_of(&api, &doc, &ada).await, existed[0]);
    let conn = rusqlite::Connection::open(common::db_path(dir.path())).unwrap();
    let rows: i64 = conn.query_row("SELECT count(*) FROM updates", [], |r| r.get(0)).unwrap();
    assert!(rows < 5, "the log was compacted ({rows} rows left)");
    server.stop().await;
}
