//! Workspaces, members and invites end to end, over real HTTP against the real server: every
//! role against every workspace action (the answer must be what `weft_sync_core::access` decides),
//! the invite lifecycle with each of its refusals, the last-owner rule, and no leaks to strangers.

mod common;

use common::api::{Api, Person, code, create_workspace, invite, member, person};
use common::{TestServer, temp_dir};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use weft_sync_core::access::{self, Action, Decision, Role, Target};

#[tokio::test]
async fn workspaces_and_the_invite_lifecycle() {
    let dir = temp_dir();
    let server = TestServer::start(dir.path()).await;
    let api = Api::new(&server);
    let ada = person(&api, "ada@example.com").await;
    let bob = person(&api, "bob@example.com").await;
    let carol = person(&api, "carol@example.com").await;

    let (status, created) =
        api.call(Method::POST, "/api/workspaces", Some(&ada.token), json!({ "name": "Acme Design!" })).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!((created["slug"].as_str(), created["role"].as_str()), (Some("acme-design"), Some("owner")));
    let ws = created["id"].as_str().unwrap().to_owned();
    // The same name again gets a slug of its own; a slug asked for and taken is a conflict.
    let (_, again) =
        api.call(Method::POST, "/api/workspaces", Some(&ada.token), json!({ "name": "Acme Design" })).await;
    assert!(again["slug"].as_str().unwrap().starts_with("acme-design-"), "{again}");
    let (status, body) = api
        .call(
            Method::POST,
            "/api/workspaces",
            Some(&bob.token),
            json!({ "name": "Mine", "slug": "acme-design" }),
        )
        .await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "taken"));
    let (_, mine) = api.get("/api/workspaces", Some(&ada.token)).await;
    assert_eq!(mine["workspaces"].as_array().unwrap().len(), 2);

    // A stranger cannot tell a workspace that exists from one that does not.
    let (status, hidden) = api.get(&format!("/api/workspaces/{ws}"), Some(&bob.token)).await;
    let (status_missing, missing) = api.get("/api/workspaces/no-such-id", Some(&bob.token)).await;
    assert_eq!((status, &hidden), (status_missing, &missing));
    assert_eq!((status, code(&hidden)), (StatusCode::NOT_FOUND, "not_found"));
    let (status, _) = api.get(&format!("/api/workspaces/{ws}"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // An invite is accepted once, by the address it was sent to.
    let (status, sent) = invite(&api, &ada, &ws, "Bob@Example.com", "editor").await;
    assert_eq!(status, StatusCode::CREATED, "{sent}");
    assert_eq!((sent["email"].as_str(), sent["status"].as_str()), (Some("bob@example.com"), Some("pending")));
    let accept = sent["accept_path"].as_str().unwrap().to_owned();
    let (status, body) = api.call(Method::POST, &accept, Some(&carol.token), Value::Null).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "invite_for_another_address"));
    let (status, body) = api.call(Method::POST, &accept, Some(&bob.token), Value::Null).await;
    assert_eq!(
        (status, body["role"].as_str(), body["id"].as_str()),
        (StatusCode::OK, Some("editor"), Some(&*ws))
    );
    let (status, body) = api.call(Method::POST, &accept, Some(&bob.token), Value::Null).await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "invite_used"));
    let (status, body) =
        api.call(Method::POST, "/api/invites/not-a-token/accept", Some(&bob.token), Value::Null).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    let (status, body) =
        api.call(Method::POST, "/api/invites/%2e%2e%2f%00/accept", Some(&bob.token), Value::Null).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"), "{body}");

    // A revoked invite is gone; revoking it again, or from another workspace, finds nothing.
    let (_, for_carol) = invite(&api, &ada, &ws, "carol@example.com", "viewer").await;
    let id = for_carol["id"].as_str().unwrap();
    let other = create_workspace(&api, &ada, "Other").await;
    let (status, body) = api
        .call(Method::DELETE, &format!("/api/workspaces/{other}/invites/{id}"), Some(&ada.token), Value::Null)
        .await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    let (status, _) = api
        .call(Method::DELETE, &format!("/api/workspaces/{ws}/invites/{id}"), Some(&ada.token), Value::Null)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = api
        .call(Method::DELETE, &format!("/api/workspaces/{ws}/invites/{id}"), Some(&ada.token), Value::Null)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let path = for_carol["accept_path"].as_str().unwrap();
    let (status, body) = api.call(Method::POST, path, Some(&carol.token), Value::Null).await;
    assert_eq!((status, code(&body)), (StatusCode::GONE, "invite_revoked"));
    let (_, listed) = api.get(&format!("/api/workspaces/{ws}/invites"), Some(&ada.token)).await;
    let statuses: Vec<&str> =
        listed["invites"].as_array().unwrap().iter().map(|i| i["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["revoked", "accepted"], "{listed}");
    assert!(listed["invites"][0].get("token").is_none(), "a listed invite never shows its token");

    // Bad input: roles, addresses, expiry, slugs and names.
    for (body, expected) in [
        (json!({ "email": "x@example.com", "role": "god" }), "invalid_role"),
        (json!({ "email": "not an address", "role": "viewer" }), "invalid_email"),
        (json!({ "email": "x@example.com", "role": "viewer", "expires_in_hours": 0 }), "invalid_expiry"),
        (json!({ "email": "x@example.com", "role": "viewer", "expires_in_hours": 100000 }), "invalid_expiry"),
        (json!({ "email": "x@example.com" }), "invalid_body"),
    ] {
        let (status, answer) = api
            .call(Method::POST, &format!("/api/workspaces/{ws}/invites"), Some(&ada.token), body.clone())
            .await;
        assert_eq!((status, code(&answer)), (StatusCode::BAD_REQUEST, expected), "{body}");
    }
    for (body, expected) in [
        (json!({ "slug": "Has Caps" }), "invalid_slug"),
        (json!({ "slug": "-edge" }), "invalid_slug"),
        (json!({ "slug": "x".repeat(49) }), "invalid_slug"),
        (json!({ "name": "" }), "invalid_name"),
        (json!({ "name": "a\u{0}b" }), "invalid_name"),
        (json!({ "owner": "me" }), "invalid_body"),
    ] {
        let (status, answer) = api.patch(&format!("/api/workspaces/{ws}"), &ada.token, body.clone()).await;
        assert_eq!((status, code(&answer)), (StatusCode::BAD_REQUEST, expected), "{body}");
    }
    let (status, renamed) = api
        .patch(&format!("/api/workspaces/{ws}"), &ada.token, json!({ "name": "Acme", "slug": "acme" }))
        .await;
    assert_eq!(
        (status, renamed["name"].as_str(), renamed["slug"].as_str()),
        (StatusCode::OK, Some("Acme"), Some("acme"))
    );

    // The audit log of the workspace, newest first, page by page; bad paging is a 400.
    let audit = format!("/api/workspaces/{ws}/audit");
    let (status, first) = api.get(&format!("{audit}?limit=2"), Some(&ada.token)).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let next = first["next"].as_i64().expect("a full page has a next cursor");
    let (_, rest) = api.get(&format!("{audit}?before={next}&limit=100"), Some(&ada.token)).await;
    assert!(rest["next"].is_null(), "{rest}");
    let actions: Vec<&str> = first["entries"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rest["entries"].as_array().unwrap())
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "workspace.update",
            "invite.revoke",
            "invite.create",
            "invite.accept",
            "invite.create",
            "workspace.create"
        ]
    );
    assert!(first["entries"][0]["address"].as_str().is_some_and(|a| a == "127.0.0.1"), "{first}");
    for query in ["?limit=0", "?limit=101", "?before=yesterday", "?page=2"] {
        let (status, body) = api.get(&format!("{audit}{query}"), Some(&ada.token)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert!(["invalid_limit", "invalid_query"].contains(&code(&body)), "{body}");
    }
    let (status, _) = api.get(&audit, Some(&bob.token)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "an editor does not read the audit log");
    let (_, own) = api.get("/api/me/audit", Some(&bob.token)).await;
    let own: Vec<&str> =
        own["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(own, ["invite.accept", "session.login", "account.signup"]);

    // The last owner can neither leave nor be demoted; once someone else owns it, they can.
    let me = format!("/api/workspaces/{ws}/members/{}", ada.id);
    let (status, body) = api.call(Method::DELETE, &me, Some(&ada.token), Value::Null).await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "last_owner"));
    let (status, body) = api.patch(&me, &ada.token, json!({ "role": "viewer" })).await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "last_owner"));
    let bob_path = format!("/api/workspaces/{ws}/members/{}", bob.id);
    let (status, body) = api.patch(&bob_path, &ada.token, json!({ "role": "owner" })).await;
    assert_eq!((status, body["role"].as_str()), (StatusCode::OK, Some("owner")), "{body}");
    let (status, _) = api.call(Method::DELETE, &me, Some(&ada.token), Value::Null).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api.get(&format!("/api/workspaces/{ws}"), Some(&ada.token)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a member who left is a stranger");
    let (_, members) = api.get(&format!("/api/workspaces/{ws}/members"), Some(&bob.token)).await;
    assert_eq!(members["members"].as_array().unwrap().len(), 1, "{members}");

    // Deleting the workspace takes its invites with it.
    let (status, _) =
        api.call(Method::DELETE, &format!("/api/workspaces/{ws}"), Some(&bob.token), Value::Null).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api.get(&format!("/api/workspaces/{ws}"), Some(&bob.token)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// What `decide` says a role may do, as the status a route must answer with.
fn expected(role: Option<Role>, action: Action, allowed: StatusCode) -> StatusCode {
    match access::decide(role, action, Target::WORKSPACE) {
        Decision::Allow => allowed,
        Decision::Forbidden => StatusCode::FORBIDDEN,
        Decision::Hidden => StatusCode::NOT_FOUND,
    }
}

#[tokio::test]
async fn every_role_against_every_workspace_action() {
    let dir = temp_dir();
    let server = TestServer::start(dir.path()).await;
    let api = Api::new(&server);
    let owner = person(&api, "owner@example.com").await;
    let ws = create_workspace(&api, &owner, "Roles").await;
    let mut actors: Vec<(Option<Role>, Person)> = vec![(Some(Role::Owner), owner)];
    for role in [Role::Admin, Role::Editor, Role::Commenter, Role::Viewer] {
        let email = format!("{}@example.com", role.as_str());
        let joined = member(&api, &actors[0].1, &ws, &email, role.as_str()).await;
        actors.push((Some(role), joined));
    }
    actors.push((None, person(&api, "stranger@example.com").await));

    for (index, (role, actor)) in actors.iter().enumerate() {
        let label = role.map_or("stranger", Role::as_str);
        let owner = &actors[0].1;
        let token = Some(actor.token.as_str());
        // A viewer the actor may act on, and an invite they may revoke.
        let spare = member(&api, owner, &ws, &format!("spare{index}@example.com"), "viewer").await;
        let (_, pending) = invite(&api, owner, &ws, &format!("pending{index}@example.com"), "viewer").await;
        let pending = pending["id"].as_str().unwrap();
        let members = format!("/api/workspaces/{ws}/members");
        let cases: [(Action, Method, String, Value, StatusCode); 9] = [
            (
                Action::ReadAudit,
                Method::GET,
                format!("/api/workspaces/{ws}/audit"),
                Value::Null,
                StatusCode::OK,
            ),
            (
                Action::ReadWorkspace,
                Method::GET,
                format!("/api/workspaces/{ws}"),
                Value::Null,
                StatusCode::OK,
            ),
            (
                Action::UpdateWorkspace,
                Method::PATCH,
                format!("/api/workspaces/{ws}"),
                json!({ "name": "Renamed" }),
                StatusCode::OK,
            ),
            (Action::ListMembers, Method::GET, members.clone(), Value::Null, StatusCode::OK),
            (
                Action::Invite,
                Method::POST,
                format!("/api/workspaces/{ws}/invites"),
                json!({ "email": format!("new{index}@example.com"), "role": "viewer" }),
                StatusCode::CREATED,
            ),
            (
                Action::ListInvites,
                Method::GET,
                format!("/api/workspaces/{ws}/invites"),
                Value::Null,
                StatusCode::OK,
            ),
            (
                Action::RevokeInvite,
                Method::DELETE,
                format!("/api/workspaces/{ws}/invites/{pending}"),
                Value::Null,
                StatusCode::NO_CONTENT,
            ),
            (
                Action::ChangeRole,
                Method::PATCH,
                format!("{members}/{}", spare.id),
                json!({ "role": "commenter" }),
                StatusCode::OK,
            ),
            (
                Action::RemoveMember,
                Method::DELETE,
                format!("{members}/{}", spare.id),
                Value::Null,
                StatusCode::NO_CONTENT,
            ),
        ];
        for (action, method, path, body, allowed) in cases {
            let (status, answer) = api.call(method.clone(), &path, token, body).await;
            assert_eq!(
                status,
                expected(*role, action, allowed),
                "{label} {}: {method} {path}: {answer}",
                action.as_str()
            );
            if !status.is_success() {
                assert!(answer["error"]["code"].is_string(), "{answer}");
            }
        }
        if *role != Some(Role::Owner) {
            let (status, _) =
                api.call(Method::DELETE, &format!("/api/workspaces/{ws}"), token, Value::Null).await;
            assert_eq!(
                status,
                expected(*role, Action::DeleteWorkspace, StatusCode::NO_CONTENT),
                "{label} delete"
            );
        }
    }

    // An admin acts only below admin, and grants at most admin.
    let admin = &actors[1].1;
    let editor_path = format!("/api/workspaces/{ws}/members/{}", actors[2].1.id);
    let owner_path = format!("/api/workspaces/{ws}/members/{}", actors[0].1.id);
    let (status, _) = api.patch(&editor_path, &admin.token, json!({ "role": "owner" })).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = api.call(Method::DELETE, &owner_path, Some(&admin.token), Value::Null).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = invite(&api, admin, &ws, "boss@example.com", "owner").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Anyone may leave.
    let viewer = &actors[4].1;
    let (status, _) = api
        .call(
            Method::DELETE,
            &format!("/api/workspaces/{ws}/members/{}", viewer.id),
            Some(&viewer.token),
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api
        .call(Method::DELETE, &format!("/api/workspaces/{ws}"), Some(&actors[0].1.token), Value::Null)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn invite_only_sign_up_admits_the_first_account_and_invited_addresses() {
    let dir = temp_dir();
    let mut config = weft::Config::with_data_dir(dir.path());
    config.accounts.signup = weft::config::SignupPolicy::Invite;
    let server = TestServer::start_with(config).await;
    let api = Api::new(&server);
    let first = person(&api, "first@example.com").await;
    let signup = |email: &str| json!({ "email": email, "password": "correct horse" });
    let (status, body) = api.post("/api/auth/signup", signup("walk-in@example.com")).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "signup_by_invite_only"));

    let ws = create_workspace(&api, &first, "Closed").await;
    let (_, revoked) = invite(&api, &first, &ws, "revoked@example.com", "viewer").await;
    let id = revoked["id"].as_str().unwrap();
    api.call(Method::DELETE, &format!("/api/workspaces/{ws}/invites/{id}"), Some(&first.token), Value::Null)
        .await;
    let (status, _) = api.post("/api/auth/signup", signup("revoked@example.com")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a revoked invite admits nobody");

    // `member` signs up the invited address, then accepts.
    member(&api, &first, &ws, "Guest@Example.com", "editor").await;
    let (status, _) = api.post("/api/auth/signup", signup("walk-in@example.com")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

/// A real SMTP server (`aiosmtpd`, which `scripts/test` installs into `target/test-python`),
/// delivering into a maildir; killed on drop.
struct SmtpSink {
    child: std::process::Child,
    port: u16,
    maildir: std::path::PathBuf,
}

impl SmtpSink {
    fn start(dir: &std::path::Path) -> Self {
        let python = std::env::var("WEFT_TEST_PYTHON").unwrap_or_else(|_| {
            let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/test-python/bin/python");
            if std::path::Path::new(venv).exists() { venv.to_owned() } else { "python3".to_owned() }
        });
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let maildir = dir.join("maildir");
        let child = std::process::Command::new(&python)
            .args([
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &format!("127.0.0.1:{port}"),
                "-c",
                "aiosmtpd.handlers.Mailbox",
            ])
            .arg(&maildir)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{python} did not start ({e}); run scripts/test, which installs aiosmtpd")
            });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "aiosmtpd ({python}) did not listen; is it installed?"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Self { child, port, maildir }
    }

    /// Every message delivered so far, raw.
    fn messages(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.maildir.join("new")) else { return Vec::new() };
        entries.map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap()).collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn an_invite_mailed_over_real_smtp_is_accepted_with_the_token_from_the_email() {
    let dir = temp_dir();
    let sink = SmtpSink::start(dir.path());
    let mut config = weft::Config::with_data_dir(dir.path().join("data"));
    config.mail = Some(weft::mail::MailConfig {
        url: format!("smtp://127.0.0.1:{}", sink.port),
        from: "Weft <weft@example.com>".parse().unwrap(),
    });
    let server = TestServer::start_with(config).await;
    let api = Api::new(&server);
    let ada = person(&api, "ada@example.com").await;
    let ws = create_workspace(&api, &ada, "Mailed").await;

    let (status, created) = invite(&api, &ada, &ws, "grace@example.com", "commenter").await;
    assert_eq!((status, created["delivery"].as_str()), (StatusCode::CREATED, Some("email")), "{created}");
    assert!(created.get("token").is_none(), "a mailed invite's token goes to the invitee only: {created}");
    let messages = sink.messages();
    assert_eq!(messages.len(), 1, "{messages:?}");
    // The body is quoted-printable: undo its soft line breaks (the token is base64url, no `=`).
    let mail = &messages[0].replace("=\r\n", "").replace("=\n", "");
    assert!(mail.contains("To: grace@example.com"), "{mail}");
    assert!(mail.contains("Subject: You are invited to Mailed on Weft"), "{mail}");
    let token = mail
        .lines()
        .find_map(|line| line.strip_prefix("Your invite token: "))
        .expect("the email carries the token")
        .trim()
        .to_owned();
    assert!(mail.contains(&format!("/api/invites/{token}/accept")), "{mail}");

    let grace = person(&api, "grace@example.com").await;
    let (status, joined) = api
        .call(Method::POST, &format!("/api/invites/{token}/accept"), Some(&grace.token), Value::Null)
        .await;
    assert_eq!((status, joined["role"].as_str()), (StatusCode::OK, Some("commenter")), "{joined}");

    // With the SMTP server gone, the invite is still made and its link goes to the inviter.
    drop(sink);
    let (status, created) = invite(&api, &ada, &ws, "late@example.com", "viewer").await;
    assert_eq!((status, created["delivery"].as_str()), (StatusCode::CREATED, Some("link")), "{created}");
    assert!(created["token"].is_string() && created["email_error"].is_string(), "{created}");
}
