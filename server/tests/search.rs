//! Search against the real server: members write messages, tasks, comments, shapes and rich
//! text (over REST and over y-websocket), derivation indexes them off the hot path, and
//! `GET /api/workspaces/{ws}/search` finds them — ranked, highlighted, filtered and paged, only
//! from what the caller may read, ignoring case and accents — and follows edits, renames,
//! archiving and deletion. Bad queries get a 400 saying why.

mod common;

use std::time::Duration;

use common::api::{Api, Person, code, create_doc, create_workspace, member, person, succeed};
use common::{TestServer, WAIT, temp_dir};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use weft_client::YjsSync;
use yrs::{Transact, XmlElementPrelim, XmlFragment, XmlTextPrelim};

async fn create(api: &Api, who: &Person, ws: &str, kind: &str, title: &str, private: bool) -> String {
    create_doc(api, who, ws, kind, title, private).await
}

async fn post(api: &Api, who: &Person, path: &str, body: Value) -> Value {
    succeed(api, Method::POST, who, path, body).await
}

fn search_path(ws: &str, query: &str) -> String {
    let mut url = reqwest::Url::parse("http://x/").unwrap();
    url.set_path(&format!("/api/workspaces/{ws}/search"));
    url.set_query(Some(query));
    format!("{}?{}", url.path(), url.query().unwrap_or(""))
}

/// The results of `query` (a query string, `q=...&kind=...`) for `who`.
async fn search(api: &Api, who: &Person, ws: &str, query: &str) -> Vec<Value> {
    let (status, body) = api.get(&search_path(ws, query), Some(&who.token)).await;
    assert_eq!(status, StatusCode::OK, "{query}: {body}");
    body["results"].as_array().unwrap().clone()
}

/// What each result is: `kind:item` (or `document:<doc id>`).
fn found(results: &[Value]) -> Vec<String> {
    let mut names: Vec<String> = results
        .iter()
        .map(|r| match r["item"].as_str() {
            Some(item) => format!("{}:{item}", r["kind"].as_str().unwrap()),
            None => format!("document:{}", r["document"].as_str().unwrap()),
        })
        .collect();
    names.sort();
    names
}

/// Waits until `query` finds exactly `expected` for `who`.
async fn until_found(api: &Api, who: &Person, ws: &str, query: &str, expected: &[&str]) {
    let mut expected: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    expected.sort();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = found(&search(api, who, ws, query).await);
        if now == expected {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{query}: found {now:?}, expected {expected:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn q(text: &str) -> String {
    format!("q={}", urlencode(text))
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn members_find_what_they_may_read_ranked_highlighted_filtered_and_paged() {
    let dir = temp_dir();
    let server = TestServer::start(dir.path()).await;
    let api = Api::new(&server);
    let ada = person(&api, "ada@example.com").await;
    let ws = create_workspace(&api, &ada, "Acme").await;
    let bob = member(&api, &ada, &ws, "bob@example.com", "editor").await;
    let cy = member(&api, &ada, &ws, "cy@example.com", "viewer").await;
    let out = person(&api, "out@example.com").await;

    let general = create(&api, &ada, &ws, "channel", "General", false).await;
    let secret = create(&api, &ada, &ws, "channel", "Board room", true).await;
    let board = create(&api, &ada, &ws, "board", "Roadmap", false).await;
    let notes = create(&api, &ada, &ws, "document", "Notes", false).await;
    let wb = create(&api, &ada, &ws, "whiteboard", "Sketch", false).await;

    let messages = format!("/api/docs/{general}/messages");
    post(&api, &ada, &messages, json!({ "id": "m1", "body": "The launch is on Friday" })).await;
    // Messages a few milliseconds apart, for the date filters below.
    tokio::time::sleep(Duration::from_millis(5)).await;
    post(&api, &bob, &messages, json!({ "id": "m2", "body": "Crème brûlée for the launch party" })).await;
    post(&api, &bob, &messages, json!({ "id": "m3", "parent": "m1", "body": "Friday <works> & suits me" }))
        .await;
    post(
        &api,
        &ada,
        &format!("/api/docs/{secret}/messages"),
        json!({ "id": "s1", "body": "secret launch codes" }),
    )
    .await;
    post(
        &api,
        &bob,
        &format!("/api/docs/{board}/tasks"),
        json!({ "id": "t1", "title": "Launch checklist", "description": "order the cake" }),
    )
    .await;
    post(&api, &ada, &format!("/api/docs/{board}/tasks"), json!({ "id": "t2", "title": "Hire a designer" }))
        .await;
    post(
        &api,
        &bob,
        &format!("/api/docs/{notes}/comments"),
        json!({ "id": "c1", "body": "Is the launch plan final?" }),
    )
    .await;
    post(
        &api,
        &ada,
        &format!("/api/docs/{wb}/shapes"),
        json!({ "id": "sh1", "type": "rectangle", "text": "Launch funnel" }),
    )
    .await;
    // Rich text from a real Yjs client, as Tiptap writes it.
    let client: YjsSync = common::client(&format!("{}?token={}", server.yjs_url(&notes), ada.token)).await;
    {
        let doc = client.doc();
        let root = doc.get_or_insert_xml_fragment("default");
        let mut txn = doc.transact_mut();
        let p = root.insert(&mut txn, 0, XmlElementPrelim::empty("paragraph"));
        p.insert(&mut txn, 0, XmlTextPrelim::new("Our launch plan for the quarter"));
    }
    client.wait_acknowledged(WAIT).await.expect("acknowledged");
    client.stop().await;

    let everything =
        ["message:m1", "message:m2", "task:t1", "comment:c1", "shape:sh1", &format!("document:{notes}")];
    until_found(&api, &bob, &ws, &q("launch"), &everything).await;
    // The private channel is found by the member on its list, and by no one else.
    let mut with_secret = everything.to_vec();
    with_secret.push("message:s1");
    until_found(&api, &ada, &ws, &q("launch"), &with_secret).await;
    assert_eq!(found(&search(&api, &cy, &ws, &q("secret codes")).await), Vec::<String>::new());
    assert_eq!(found(&search(&api, &ada, &ws, &q("secret codes")).await), vec!["message:s1"]);
    let (status, body) = api.get(&search_path(&ws, &q("launch")), Some(&out.token)).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"), "{body}");

    // Case and accents are ignored; phrases keep their order; prefixes match.
    assert_eq!(found(&search(&api, &cy, &ws, &q("CREME brulee")).await), vec!["message:m2"]);
    assert_eq!(
        found(&search(&api, &cy, &ws, &q("\"launch plan\"")).await),
        vec!["comment:c1", &format!("document:{notes}")]
    );
    assert_eq!(found(&search(&api, &cy, &ws, &q("\"plan launch\"")).await), Vec::<String>::new());
    assert_eq!(found(&search(&api, &cy, &ws, &q("desig*")).await), vec!["task:t2"]);
    assert_eq!(found(&search(&api, &cy, &ws, &q("launch -friday -party")).await).len(), 4);
    assert_eq!(found(&search(&api, &cy, &ws, &q("cake OR designer")).await), vec!["task:t1", "task:t2"]);

    // A title match ranks first; matches are marked and the rest is escaped HTML.
    let ranked = search(&api, &cy, &ws, &q("checklist OR cake")).await;
    assert_eq!(ranked[0]["item"], "t1");
    assert_eq!(ranked[0]["title"], "Launch <mark>checklist</mark>", "{ranked:?}");
    assert_eq!(ranked[0]["snippet"], "order the <mark>cake</mark>");
    let thread = search(&api, &cy, &ws, &q("suits")).await;
    assert_eq!(thread[0]["snippet"], "Friday &lt;works&gt; &amp; <mark>suits</mark> me");
    assert_eq!(thread[0]["author"], bob.id.as_str());
    assert_eq!(thread[0]["channel"], general.as_str());
    assert_eq!(thread[0]["document_title"], "General");

    // Filters.
    let launch = q("launch");
    assert_eq!(found(&search(&api, &cy, &ws, &format!("{launch}&kind=task")).await), vec!["task:t1"]);
    assert_eq!(
        found(&search(&api, &cy, &ws, &format!("{launch}&author={}", bob.id)).await),
        vec!["comment:c1", "message:m2", "task:t1"]
    );
    assert_eq!(
        found(&search(&api, &ada, &ws, &format!("{launch}&channel={general}")).await),
        vec!["message:m1", "message:m2"]
    );
    let at = search(&api, &cy, &ws, &format!("{}&kind=message", q("party"))).await[0]["at"].as_i64().unwrap();
    assert_eq!(
        found(&search(&api, &cy, &ws, &format!("{launch}&kind=message&from={at}")).await),
        vec!["message:m2"]
    );
    assert_eq!(
        found(&search(&api, &cy, &ws, &format!("{launch}&kind=message&to={at}")).await),
        vec!["message:m1"]
    );

    // Pages: each result once, in rank order, then no cursor.
    let mut paged = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..10 {
        let query = match &after {
            Some(cursor) => format!("{launch}&limit=2&after={cursor}"),
            None => format!("{launch}&limit=2"),
        };
        let (status, page) = api.get(&search_path(&ws, &query), Some(&bob.token)).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        paged.extend(page["results"].as_array().unwrap().iter().cloned());
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => break,
        }
    }
    let whole = search(&api, &bob, &ws, &format!("{launch}&limit=100")).await;
    assert_eq!(paged, whole);
    assert_eq!(whole.len(), 6);
    assert!(whole.windows(2).all(|w| w[0]["score"].as_f64() <= w[1]["score"].as_f64()), "{whole:?}");

    // Edits follow: a changed message, a renamed document, an archived board, a deleted one.
    let (status, _) = api
        .call(
            Method::PATCH,
            &format!("{messages}/m2"),
            Some(&bob.token),
            json!({ "body": "Crème brûlée after all" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    until_found(&api, &cy, &ws, &q("party"), &[]).await;
    until_found(&api, &cy, &ws, &q("brulee"), &["message:m2"]).await;
    let (status, _) =
        api.patch(&format!("/api/docs/{notes}"), &ada.token, json!({ "title": "Quarterly memo" })).await;
    assert_eq!(status, StatusCode::OK);
    until_found(&api, &cy, &ws, &q("quarterly memo"), &[&format!("document:{notes}")]).await;
    let (status, _) = api.patch(&format!("/api/docs/{board}"), &ada.token, json!({ "archived": true })).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(found(&search(&api, &cy, &ws, &q("cake")).await), Vec::<String>::new());
    assert_eq!(
        found(&search(&api, &cy, &ws, &format!("{}&archived=true", q("cake"))).await),
        vec!["task:t1"]
    );
    let (status, _) =
        api.call(Method::DELETE, &format!("/api/docs/{wb}"), Some(&ada.token), Value::Null).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(found(&search(&api, &cy, &ws, &q("funnel")).await), Vec::<String>::new());

    // Bad input: each refusal says why.
    for (query, expected) in [
        ("q=", "invalid_search"),
        ("q=%22open", "invalid_search"),
        ("q=a*", "invalid_search"),
        ("q=-only", "invalid_search"),
        ("q=x&kind=channel", "invalid_kind"),
        ("q=x&after=nonsense", "invalid_cursor"),
        ("q=x&from=5&to=5", "invalid_range"),
        ("q=x&limit=0", "invalid_limit"),
        ("q=x&sort=new", "invalid_query"),
        ("kind=task", "invalid_query"),
    ] {
        let (status, body) = api.get(&search_path(&ws, query), Some(&cy.token)).await;
        assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, expected), "{query}: {body}");
        assert!(!body["error"]["message"].as_str().unwrap().is_empty());
    }
    server.stop().await;
}

/// Every search row, as derivation wrote it (without row ids), in a stable order.
fn index_rows(dir: &std::path::Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(common::db_path(dir)).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT d.name, s.item, s.kind, s.title, s.body, s.author, s.at, s.archived
             FROM search_items s JOIN documents d ON d.key = s.doc ORDER BY d.name, s.item",
        )
        .unwrap();
    stmt.query_map([], |row| {
        Ok(format!(
            "{}|{}|{}|{}|{}|{:?}|{:?}|{}",
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, String>(2)?,
            row.get::<_, String>(3)?,
            row.get::<_, String>(4)?,
            row.get::<_, Option<String>>(5)?,
            row.get::<_, Option<i64>>(6)?,
            row.get::<_, bool>(7)?,
        ))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

#[tokio::test]
async fn a_crash_before_derivation_is_derived_on_restart_and_a_rebuild_yields_the_same_index() {
    let dir = temp_dir();
    let process = common::ProcessServer::start(dir.path(), &[]);
    let api = Api { base: format!("http://{}", process.addr), http: reqwest::Client::new() };
    let ada = person(&api, "ada@example.com").await;
    let ws = create_workspace(&api, &ada, "Acme").await;
    let general = create(&api, &ada, &ws, "channel", "General", false).await;
    let board = create(&api, &ada, &ws, "board", "Roadmap", false).await;
    post(&api, &ada, &format!("/api/docs/{board}/tasks"), json!({ "id": "t1", "title": "Ship the relay" }))
        .await;
    let messages = format!("/api/docs/{general}/messages");
    for i in 0..5 {
        post(&api, &ada, &messages, json!({ "id": format!("m{i}"), "body": format!("zebra number {i}") }))
            .await;
    }
    // SIGKILL as soon as the last write is acknowledged: its derivation is due 250 ms later.
    process.kill();
    {
        let conn = rusqlite::Connection::open(common::db_path(dir.path())).unwrap();
        let (pending, behind): (i64, i64) = conn
            .query_row(
                "SELECT (SELECT COUNT(*) FROM jobs WHERE kind = 'derive' AND key = 'derive:' || ?1),
                        (SELECT MAX(seq) FROM updates u JOIN documents d ON d.key = u.doc WHERE d.name = ?1)
                        - (SELECT derived_upto FROM documents WHERE name = ?1)",
                [&general],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        assert_eq!(pending, 1, "the derivation of the last write is queued, committed with it");
        assert!(behind > 0, "the crash came before the derivation of the channel");
    }

    let process = common::ProcessServer::start(dir.path(), &[]);
    let api = Api { base: format!("http://{}", process.addr), http: reqwest::Client::new() };
    let zebras: Vec<String> = (0..5).map(|i| format!("message:m{i}")).collect();
    let zebras: Vec<&str> = zebras.iter().map(String::as_str).collect();
    until_found(&api, &ada, &ws, &q("zebra"), &zebras).await;
    until_found(&api, &ada, &ws, &q("relay"), &["task:t1"]).await;
    // A second process on the same data directory is refused while this one runs.
    let second = std::process::Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["rebuild-derived", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("in use"), "{second:?}");
    assert!(process.terminate().success());

    let before = index_rows(dir.path());
    // One row per message, the task, and each document: nothing twice.
    assert_eq!(before.len(), 5 + 1 + 2, "{before:#?}");
    let rebuilt = std::process::Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["rebuild-derived", "--data-dir"])
        .arg(dir.path())
        .env("WEFT_LOG", "warn")
        .output()
        .unwrap();
    assert!(rebuilt.status.success(), "{rebuilt:?}");
    let said = String::from_utf8_lossy(&rebuilt.stdout);
    assert!(said.contains("derived 2 documents again: 2 jobs done, 0 failed"), "{said}");
    assert_eq!(index_rows(dir.path()), before);

    let process = common::ProcessServer::start(dir.path(), &[]);
    let api = Api { base: format!("http://{}", process.addr), http: reqwest::Client::new() };
    assert_eq!(found(&search(&api, &ada, &ws, &q("zebra")).await).len(), 5);
    process.kill();
}
