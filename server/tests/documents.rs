//! Workspace documents end to end against the real server: the REST lifecycle (create, list with
//! filters, read, rename, archive, share, delete), what strangers and unlisted members see (404,
//! never 403), every role against every document action (the answer must be what
//! `weft_sync_core::access` decides), hostile strings kept as data, and the WebSocket side: who
//! may open a document over y-websocket and with what access, read-only writes refused visibly,
//! and live connections cut off within a second of a removal, a lower role or a deletion. (The Node tests drive the same through the real
//! y-websocket, Hocuspocus and automerge-repo clients.)

mod common;

use std::time::{Duration, Instant};

use common::api::{Api, Person, code, create_workspace, member, person};
use common::{TestServer, WAIT, Ws, temp_dir};
use futures_util::{SinkExt, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use weft_sync_core::yjs::codec::{Message, decode_frame};
use yrs::{Doc, ReadTxn, StateVector, Text, Transact};

async fn new_doc(api: &Api, who: &Person, ws: &str, body: Value) -> (StatusCode, Value) {
    api.call(Method::POST, &format!("/api/workspaces/{ws}/docs"), Some(&who.token), body).await
}

async fn created(api: &Api, who: &Person, ws: &str, body: Value) -> String {
    let (status, doc) = new_doc(api, who, ws, body).await;
    assert_eq!(status, StatusCode::CREATED, "{doc}");
    doc["id"].as_str().unwrap().to_owned()
}

fn ids(list: &Value) -> Vec<&str> {
    list["documents"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn the_document_lifecycle_and_what_others_see() {
    let dir = temp_dir();
    let server = TestServer::start(dir.path()).await;
    let api = Api::new(&server);
    let ada = person(&api, "ada@example.com").await;
    let ws = create_workspace(&api, &ada, "Acme").await;
    let eve = member(&api, &ada, &ws, "eve@example.com", "editor").await;
    let val = member(&api, &ada, &ws, "val@example.com", "viewer").await;
    let out = person(&api, "out@example.com").await;
    let other_ws = create_workspace(&api, &out, "Elsewhere").await;

    let (status, doc) =
        new_doc(&api, &eve, &ws, json!({ "kind": "document", "crdt": "yjs", "title": "  Plan  " })).await;
    assert_eq!(status, StatusCode::CREATED, "{doc}");
    assert_eq!(
        (doc["kind"].as_str(), doc["crdt"].as_str(), doc["title"].as_str(), doc["archived"].as_bool()),
        (Some("document"), Some("yjs"), Some("Plan"), Some(false))
    );
    let plan = doc["id"].as_str().unwrap().to_owned();
    weft_sync_core::automerge::DocumentId::new(plan.clone()).expect("an automerge-repo document id");
    let board =
        created(&api, &ada, &ws, json!({ "kind": "board", "crdt": "automerge", "title": "Tasks" })).await;
    let secret = created(
        &api,
        &ada,
        &ws,
        json!({ "kind": "channel", "crdt": "yjs", "title": "leads", "private": true, "members": [eve.id] }),
    )
    .await;
    let dm = created(
        &api,
        &eve,
        &ws,
        json!({ "kind": "channel", "crdt": "yjs", "title": "eve+val", "dm": true, "members": [val.id] }),
    )
    .await;

    // Bad input: each a 400 with its own code, nothing created.
    for (body, expected) in [
        (json!({ "kind": "sheet", "crdt": "yjs", "title": "x" }), "invalid_kind"),
        (json!({ "kind": "document", "crdt": "json", "title": "x" }), "invalid_crdt"),
        (json!({ "kind": "document", "crdt": "yjs", "title": " " }), "invalid_title"),
        (json!({ "kind": "document", "crdt": "yjs", "title": "a\u{0}b" }), "invalid_title"),
        (json!({ "kind": "document", "crdt": "yjs", "title": "x".repeat(201) }), "invalid_title"),
        (
            json!({ "kind": "document", "crdt": "yjs", "title": "x", "dm": true, "members": [val.id] }),
            "invalid_dm",
        ),
        (
            json!({ "kind": "document", "crdt": "yjs", "title": "x", "private": true, "members": [out.id] }),
            "not_a_member",
        ),
        (json!({ "kind": "document", "crdt": "yjs", "title": "x", "owner": "me" }), "invalid_body"),
    ] {
        let (status, body) = new_doc(&api, &ada, &ws, body).await;
        assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, expected), "{body}");
    }
    // A viewer may not create; a stranger cannot tell the workspace exists.
    let (status, body) =
        new_doc(&api, &val, &ws, json!({ "kind": "document", "crdt": "yjs", "title": "x" })).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "forbidden"));
    let (status, body) =
        new_doc(&api, &out, &ws, json!({ "kind": "document", "crdt": "yjs", "title": "x" })).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));

    // Lists: newest first, private ones only for their members, filters by kind.
    let list = |who: &Person, query: &str| {
        let path = format!("/api/workspaces/{ws}/docs{query}");
        let token = who.token.clone();
        let api = &api;
        async move {
            let (status, body) = api.get(&path, Some(&token)).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body
        }
    };
    assert_eq!(ids(&list(&ada, "").await), [secret.as_str(), board.as_str(), plan.as_str()]);
    assert_eq!(ids(&list(&eve, "").await), [dm.as_str(), secret.as_str(), board.as_str(), plan.as_str()]);
    assert_eq!(ids(&list(&val, "").await), [dm.as_str(), board.as_str(), plan.as_str()]);
    assert_eq!(ids(&list(&eve, "?kind=channel").await), [dm.as_str(), secret.as_str()]);
    let page = list(&eve, "?limit=2").await;
    assert_eq!(ids(&page), [dm.as_str(), secret.as_str()]);
    let next = page["next"].as_i64().expect("a next cursor");
    assert_eq!(ids(&list(&eve, &format!("?limit=2&before={next}")).await), [board.as_str(), plan.as_str()]);
    let (status, body) = api.get(&format!("/api/workspaces/{ws}/docs?kind=sheet"), Some(&eve.token)).await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "invalid_kind"));
    let (status, _) = api.get(&format!("/api/workspaces/{ws}/docs"), Some(&out.token)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Reading one: members yes; the unlisted, strangers and the other workspace's owner get 404.
    let (status, body) = api.get(&format!("/api/docs/{secret}"), Some(&eve.token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let listed = |body: &Value| {
        let mut members: Vec<String> =
            body["members"].as_array().unwrap().iter().map(|m| m.as_str().unwrap().to_owned()).collect();
        members.sort();
        members
    };
    let sorted = |mut ids: Vec<String>| {
        ids.sort();
        ids
    };
    assert_eq!(listed(&body), sorted(vec![ada.id.clone(), eve.id.clone()]));
    for (who, doc) in [(&val, &secret), (&out, &plan), (&out, &secret)] {
        let (status, body) = api.get(&format!("/api/docs/{doc}"), Some(&who.token)).await;
        assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"), "{body}");
        // And every write on it is the same 404, not a 403.
        let (status, _) =
            api.patch(&format!("/api/docs/{doc}"), &who.token, json!({ "title": "mine" })).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    let (status, _) = api.get("/api/docs/no-such-doc", Some(&ada.token)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let _ = other_ws;

    // Rename and archive (editors may), share (owners, admins, or the editor who created it).
    let (status, body) =
        api.patch(&format!("/api/docs/{plan}"), &val.token, json!({ "title": "Mine" })).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "forbidden"));
    let (status, body) = api
        .patch(&format!("/api/docs/{plan}"), &eve.token, json!({ "title": "Plan B", "archived": true }))
        .await;
    assert_eq!(
        (status, body["title"].as_str(), body["archived"].as_bool()),
        (StatusCode::OK, Some("Plan B"), Some(true))
    );
    assert_eq!(ids(&list(&ada, "").await), [secret.as_str(), board.as_str()]);
    assert_eq!(ids(&list(&ada, "?archived=true").await), [plan.as_str()]);
    let (status, body) =
        api.patch(&format!("/api/docs/{plan}"), &eve.token, json!({ "archived": false })).await;
    assert_eq!((status, body["archived"].as_bool()), (StatusCode::OK, Some(false)));
    let (status, body) = api.patch(&format!("/api/docs/{plan}"), &ada.token, json!({ "members": [] })).await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "not_private"));
    let (status, body) =
        api.patch(&format!("/api/docs/{secret}"), &eve.token, json!({ "members": [] })).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "forbidden"),
        "an editor shares only their own"
    );
    let (status, body) =
        api.patch(&format!("/api/docs/{secret}"), &ada.token, json!({ "members": [val.id] })).await;
    assert_eq!((status, listed(&body)), (StatusCode::OK, sorted(vec![ada.id.clone(), val.id.clone()])));
    let (status, _) = api.get(&format!("/api/docs/{secret}"), Some(&eve.token)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "eve is no longer listed");

    // Delete: editors their own, owners any; then it is gone for everyone, and audited.
    let (status, _) =
        api.call(Method::DELETE, &format!("/api/docs/{board}"), Some(&eve.token), Value::Null).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) =
        api.call(Method::DELETE, &format!("/api/docs/{plan}"), Some(&eve.token), Value::Null).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api.get(&format!("/api/docs/{plan}"), Some(&ada.token)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) =
        api.call(Method::DELETE, &format!("/api/docs/{plan}"), Some(&ada.token), Value::Null).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, audit) = api.get(&format!("/api/workspaces/{ws}/audit"), Some(&ada.token)).await;
    let actions: Vec<&str> =
        audit["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    for action in
        ["document.create", "document.archive", "document.unarchive", "document.share", "document.delete"]
    {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }

    // Deleting the workspace deletes its documents.
    let (status, _) =
        api.call(Method::DELETE, &format!("/api/workspaces/{ws}"), Some(&ada.token), Value::Null).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api.get(&format!("/api/docs/{dm}"), Some(&eve.token)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    server.stop().await;
}

/// Opens `/ws/yjs/{doc}` with `token` (as `?token=`); the HTTP status when the upgrade is refused.
async fn open(server: &TestServer, doc: &str, token: Option<&str>) -> Result<Ws, u16> {
    let url = match token {
        Some(token) => format!("{}?token={token}", server.yjs_url(doc)),
        None => server.yjs_url(doc),
    };
    let request = url.into_client_request().unwrap();
    match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request)).await.expect("in time") {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
        Err(err) => panic!("connect: {err}"),
    }
}

/// Reads frames until the server's sync step 1 (the join is complete).
async fn joined(ws: &mut Ws) {
    loop {
        let frame =
            tokio::time::timeout(WAIT, ws.next()).await.expect("a frame in time").expect("open").unwrap();
        if let WsMessage::Binary(bytes) = frame
            && decode_frame(&bytes).unwrap().iter().any(|m| matches!(m, Message::SyncStep1(_)))
        {
            return;
        }
    }
}

/// An update typing `text` as client `client`.
fn typed(client: u64, text: &str) -> Vec<u8> {
    let doc = Doc::with_client_id(client);
    doc.get_or_insert_text("t").push(&mut doc.transact_mut(), text);
    let update = doc.transact().encode_state_as_update_v1(&StateVector::default());
    Message::Update(update.into()).encode().to_vec()
}

/// Reads until the close; returns the permission-denied reasons seen, the close code and reason.
async fn until_closed(ws: &mut Ws) -> (Vec<String>, Option<u16>, String) {
    let mut denied = Vec::new();
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await.expect("closed in time") {
            Some(Ok(WsMessage::Binary(bytes))) => {
                for message in decode_frame(&bytes).unwrap() {
                    if let Message::PermissionDenied(reason) = message {
                        denied.push(reason);
                    }
                }
            }
            Some(Ok(WsMessage::Close(frame))) => {
                let (code, reason) =
                    frame.map_or((None, String::new()), |f| (Some(f.code.into()), f.reason.to_string()));
                return (denied, code, reason);
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return (denied, None, String::new()),
        }
    }
}

#[tokio::test]
async fn who_may_open_a_workspace_document_and_how_live_connections_follow_changes() {
    let dir = temp_dir();
    let server = TestServer::start(dir.path()).await;
    let api = Api::new(&server);
    let ada = person(&api, "ada@example.com").await;
    let ws = create_workspace(&api, &ada, "Acme").await;
    let eve = member(&api, &ada, &ws, "eve@example.com", "editor").await;
    let cat = member(&api, &ada, &ws, "cat@example.com", "commenter").await;
    let val = member(&api, &ada, &ws, "val@example.com", "viewer").await;
    let out = person(&api, "out@example.com").await;
    let doc = created(&api, &ada, &ws, json!({ "kind": "document", "crdt": "yjs", "title": "Plan" })).await;

    // Never anonymously, never a stranger (404 like a missing document), never a bad token: even
    // on this zero-configuration server, where free documents are open to all.
    assert_eq!(open(&server, &doc, None).await.err(), Some(401));
    assert_eq!(open(&server, &doc, Some("not-a-token")).await.err(), Some(401));
    assert_eq!(open(&server, &doc, Some(&out.token)).await.err(), Some(404));
    assert!(open(&server, "a-free-document", None).await.is_ok());

    // A viewer watching through the SDK sees an editor's write.
    let watcher = common::client(&format!("{}?token={}", server.yjs_url(&doc), val.token)).await;
    let mut editor = open(&server, &doc, Some(&eve.token)).await.unwrap();
    joined(&mut editor).await;
    editor.send(WsMessage::Binary(typed(7, "hello").into())).await.unwrap();
    common::eventually("the editor's text reaches the viewer", || common::text(watcher.doc()) == "hello")
        .await;

    // Commenters and viewers read, and their writes are refused visibly: permission denied, 4403.
    for who in [&cat, &val] {
        let mut reader = open(&server, &doc, Some(&who.token)).await.unwrap();
        joined(&mut reader).await;
        reader.send(WsMessage::Binary(typed(8, " forged").into())).await.unwrap();
        let (denied, code, _) = until_closed(&mut reader).await;
        assert_eq!(code, Some(4403));
        assert_eq!(denied.len(), 1, "one permission-denied message before the close: {denied:?}");
    }
    // Nothing of theirs got in (the next write is seen, theirs never were).
    editor.send(WsMessage::Binary(typed(7, "hello!").into())).await.unwrap();
    common::eventually("the editor's next write", || common::text(watcher.doc()).ends_with('!')).await;
    assert!(!common::text(watcher.doc()).contains("forged"), "{}", common::text(watcher.doc()));
    drop(editor);

    // A member removed while connected is cut off within a second, and cannot come back.
    let mut removed = open(&server, &doc, Some(&cat.token)).await.unwrap();
    joined(&mut removed).await;
    let started = Instant::now();
    let (status, _) = api
        .call(
            Method::DELETE,
            &format!("/api/workspaces/{ws}/members/{}", cat.id),
            Some(&ada.token),
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, code, reason) = until_closed(&mut removed).await;
    assert!(started.elapsed() < Duration::from_secs(1), "cut off after {:?}", started.elapsed());
    assert_eq!((code, reason.as_str()), (Some(4403), "forbidden: access revoked"));
    assert_eq!(open(&server, &doc, Some(&cat.token)).await.err(), Some(404));

    // A lowered role closes the connection (4503, reconnect); reconnecting reads only.
    let mut lowered = open(&server, &doc, Some(&eve.token)).await.unwrap();
    joined(&mut lowered).await;
    let started = Instant::now();
    let (status, _) = api
        .patch(&format!("/api/workspaces/{ws}/members/{}", eve.id), &ada.token, json!({ "role": "viewer" }))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, code, reason) = until_closed(&mut lowered).await;
    assert!(started.elapsed() < Duration::from_secs(1), "downgraded after {:?}", started.elapsed());
    assert_eq!(
        (code, reason.as_str()),
        (Some(4503), "access changed; reconnect: your role or the document changed")
    );
    let mut again = open(&server, &doc, Some(&eve.token)).await.unwrap();
    joined(&mut again).await;
    again.send(WsMessage::Binary(typed(9, "!").into())).await.unwrap();
    assert_eq!(until_closed(&mut again).await.1, Some(4403));

    // Archiving makes it read-only for everyone, the owner included; live writers reconnect.
    let mut owner = open(&server, &doc, Some(&ada.token)).await.unwrap();
    joined(&mut owner).await;
    let (status, _) = api.patch(&format!("/api/docs/{doc}"), &ada.token, json!({ "archived": true })).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(until_closed(&mut owner).await.1, Some(4503));
    let mut owner = open(&server, &doc, Some(&ada.token)).await.unwrap();
    joined(&mut owner).await;
    owner.send(WsMessage::Binary(typed(10, "?").into())).await.unwrap();
    assert_eq!(until_closed(&mut owner).await.1, Some(4403));
    api.patch(&format!("/api/docs/{doc}"), &ada.token, json!({ "archived": false })).await;

    watcher.stop().await;

    // Deleting the document closes everyone on it at once.
    let mut watching = open(&server, &doc, Some(&val.token)).await.unwrap();
    joined(&mut watching).await;
    let started = Instant::now();
    let (status, _) =
        api.call(Method::DELETE, &format!("/api/docs/{doc}"), Some(&ada.token), Value::Null).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(until_closed(&mut watching).await.1, Some(4403));
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(open(&server, &doc, Some(&ada.token)).await.err(), Some(404));
    server.stop().await;
}

#[tokio::test]
async fn every_role_against_every_document_action_over_rest() {
    use weft_sync_core::access::{self, Action, Decision, Role, Target};
    let dir = temp_dir();
    let server = TestServer::start(dir.path()).await;
    let api = Api::new(&server);
    let ada = person(&api, "ada@example.com").await;
    let ws = create_workspace(&api, &ada, "Acme").await;
    let mut actors: Vec<(Option<Role>, Person)> = Vec::new();
    for role in [Role::Owner, Role::Admin, Role::Editor, Role::Commenter, Role::Viewer] {
        let email = format!("{}-x@example.com", role.as_str());
        actors.push((Some(role), member(&api, &ada, &ws, &email, role.as_str()).await));
    }
    actors.push((None, person(&api, "stranger@example.com").await));

    for (role, who) in &actors {
        let expect = |action: Action, target: Target| match access::decide(*role, action, target) {
            Decision::Allow => "allow",
            Decision::Forbidden => "forbidden",
            Decision::Hidden => "hidden",
        };
        let got = |status: StatusCode| match status.as_u16() {
            200 | 201 | 204 => "allow",
            403 => "forbidden",
            404 => "hidden",
            other => panic!("unexpected status {other}"),
        };
        let label = role.map_or("stranger", Role::as_str);
        // Each action on a document someone else (ada) created, open to the workspace, and on a
        // private one the actor is not listed on.
        for private in [false, true] {
            let body = json!({ "kind": "document", "crdt": "yjs", "title": "T", "private": private });
            let doc = created(&api, &ada, &ws, body).await;
            let target = Target { private, listed: false, creator: false };
            let (status, _) = api.get(&format!("/api/docs/{doc}"), Some(&who.token)).await;
            assert_eq!(got(status), expect(Action::ReadDocument, target), "{label} read (private {private})");
            let (status, _) =
                api.patch(&format!("/api/docs/{doc}"), &who.token, json!({ "title": "New" })).await;
            assert_eq!(
                got(status),
                expect(Action::ManageDocument, target),
                "{label} rename (private {private})"
            );
            let (status, _) =
                api.patch(&format!("/api/docs/{doc}"), &who.token, json!({ "members": [ada.id] })).await;
            if private {
                assert_eq!(got(status), expect(Action::ShareDocument, target), "{label} share");
            }
            let (status, _) =
                api.call(Method::DELETE, &format!("/api/docs/{doc}"), Some(&who.token), Value::Null).await;
            assert_eq!(
                got(status),
                expect(Action::DeleteDocument, target),
                "{label} delete (private {private})"
            );
        }
        // Creating, and deleting what one created.
        let (status, body) =
            new_doc(&api, who, &ws, json!({ "kind": "board", "crdt": "automerge", "title": "Mine" })).await;
        assert_eq!(got(status), expect(Action::CreateDocument, Target::WORKSPACE), "{label} create");
        if status == StatusCode::CREATED {
            let own = body["id"].as_str().unwrap();
            let target = Target { private: false, listed: false, creator: true };
            let (status, _) =
                api.call(Method::DELETE, &format!("/api/docs/{own}"), Some(&who.token), Value::Null).await;
            assert_eq!(got(status), expect(Action::DeleteDocument, target), "{label} delete own");
        }
    }

    // Hostile strings are data: stored and returned exactly, never interpreted.
    for hostile in [
        "'); DROP TABLE documents; --",
        "<script>alert(1)</script>",
        "\u{202e}gnp.exe",
        "🧵 Weft — ünïcödé",
        "%s%n%x {{title}} ${HOME}",
        &"界".repeat(200),
    ] {
        let (status, doc) =
            new_doc(&api, &ada, &ws, json!({ "kind": "document", "crdt": "yjs", "title": hostile })).await;
        assert_eq!(status, StatusCode::CREATED, "{doc}");
        let (_, read) =
            api.get(&format!("/api/docs/{}", doc["id"].as_str().unwrap()), Some(&ada.token)).await;
        assert_eq!(read["title"].as_str(), Some(hostile));
    }
    let (status, _) = api.get("/api/docs/'%20OR%201=1%20--", Some(&ada.token)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    server.stop().await;
}
