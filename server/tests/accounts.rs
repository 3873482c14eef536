//! Accounts end to end, over real HTTP against the real server: sign-up, log-in, the profile,
//! refresh-token rotation and reuse detection, log-out, and bad input — every refusal a 4xx with
//! the JSON error body.

mod common;

use common::api::{Api, code, read};
use common::{TestServer, temp_dir};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn sign_up_log_in_and_edit_the_profile() {
    let dir = temp_dir();
    let server = TestServer::start(dir.path()).await;
    let api = Api::new(&server);

    let session = api.signup("Ada@Example.com ", "correct horse").await;
    assert_eq!(session["user"]["email"], "ada@example.com");
    assert_eq!(session["user"]["name"], "ada");
    assert_eq!(session["user"]["status"], "available");
    assert_eq!(session["token_type"], "Bearer");
    assert_eq!(session["expires_in"], 900, "access tokens live 15 minutes by default");
    let access = session["access_token"].as_str().unwrap();

    let (status, me) = api.get("/api/me", Some(access)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["id"], session["user"]["id"]);

    let (status, me) = api
        .patch(
            "/api/me",
            access,
            json!({ "name": "Ada Lovelace", "avatar_url": "https://example.com/ada.png", "status": "busy" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!((me["name"].as_str(), me["status"].as_str()), (Some("Ada Lovelace"), Some("busy")));
    let (_, me) = api.patch("/api/me", access, json!({ "avatar_url": null })).await;
    assert_eq!(me["avatar_url"], Value::Null);
    assert_eq!(me["name"], "Ada Lovelace", "absent fields stay as they are");

    for (patch, expected) in [
        (json!({ "avatar_url": "javascript:alert(1)" }), "invalid_avatar_url"),
        (json!({ "name": "" }), "invalid_name"),
        (json!({ "name": "x".repeat(101) }), "invalid_name"),
        (json!({ "status": "asleep" }), "invalid_body"),
        (json!({ "role": "owner" }), "invalid_body"),
    ] {
        let (status, body) = api.patch("/api/me", access, patch.clone()).await;
        assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, expected), "{patch}");
    }

    // The same address, in any case, cannot sign up twice.
    let (status, body) =
        api.post("/api/auth/signup", json!({ "email": "ADA@example.com", "password": "another one" })).await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "taken"));

    // Log-in: a wrong password and an unknown address get the same answer.
    for (email, password) in [("ada@example.com", "wrong horse"), ("nobody@example.com", "correct horse")] {
        let (status, body) =
            api.post("/api/auth/login", json!({ "email": email, "password": password })).await;
        assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "invalid_credentials"));
    }
    let (status, body) =
        api.post("/api/auth/login", json!({ "email": "ada@EXAMPLE.com", "password": "correct horse" })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user"]["name"], "Ada Lovelace");

    // Sessions outlive a restart: the signing secret is in the database.
    let server = server.restart().await;
    let api = Api::new(&server);
    let (status, _) = api.get("/api/me", body["access_token"].as_str()).await;
    assert_eq!(status, StatusCode::OK);

    // The audit log saw the sign-up, both log-ins and the failed attempt.
    server.stop().await;
    let storage =
        weft::storage::Storage::open(&weft::Config::with_data_dir(dir.path()).storage).await.unwrap();
    let user = storage.user_by_email("ada@example.com").await.unwrap().unwrap().0;
    use weft::storage::accounts::AuditScope::Actor;
    let actions: Vec<String> = storage
        .audit_page(Actor(user.id.clone()), None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    for expected in ["account.signup", "session.login", "session.login_failed"] {
        assert!(actions.iter().any(|a| a == expected), "{expected} in {actions:?}");
    }
    storage.close().await;
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_reused_one_revokes_its_family() {
    let dir = temp_dir();
    let server = TestServer::start(dir.path()).await;
    let api = Api::new(&server);
    let first = api.signup("grace@example.com", "hopper1906").await;
    let first_refresh = first["refresh_token"].as_str().unwrap().to_owned();

    let (status, second) = api.post("/api/auth/refresh", json!({ "refresh_token": first_refresh })).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    let second_refresh = second["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(second_refresh, first_refresh, "a refresh token is used once");
    let (status, _) = api.get("/api/me", second["access_token"].as_str()).await;
    assert_eq!(status, StatusCode::OK);

    // Someone replays the first token: the whole family is revoked, the current token included.
    let (status, body) = api.post("/api/auth/refresh", json!({ "refresh_token": first_refresh })).await;
    assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "refresh_token_reused"));
    let (status, body) = api.post("/api/auth/refresh", json!({ "refresh_token": second_refresh })).await;
    assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "invalid_refresh_token"));

    // A fresh log-in starts a new family; logging out ends it.
    let (_, session) =
        api.post("/api/auth/login", json!({ "email": "grace@example.com", "password": "hopper1906" })).await;
    let refresh = session["refresh_token"].as_str().unwrap().to_owned();
    let (status, _) = api.post("/api/auth/logout", json!({ "refresh_token": refresh })).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = api.post("/api/auth/refresh", json!({ "refresh_token": refresh })).await;
    assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "invalid_refresh_token"));

    // Tokens that are not tokens.
    for token in ["", "garbage", "a.b.c", &format!("{}x", &refresh[..refresh.len() - 1])] {
        let (status, body) = api.post("/api/auth/refresh", json!({ "refresh_token": token })).await;
        assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "invalid_refresh_token"), "{token:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn bad_requests_get_json_errors() {
    let dir = temp_dir();
    let server = TestServer::start(dir.path()).await;
    let api = Api::new(&server);
    let url = format!("{}/api/auth/signup", api.base);

    let cases: Vec<(reqwest::RequestBuilder, StatusCode, &str)> = vec![
        (
            api.http.post(&url).header("content-type", "application/json").body("{not json"),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            api.http.post(&url).body(r#"{"email":"a@b.c","password":"12345678"}"#),
            StatusCode::BAD_REQUEST,
            "invalid_content_type",
        ),
        (api.http.post(&url).json(&json!({ "email": "a@b.c" })), StatusCode::BAD_REQUEST, "invalid_body"),
        (
            api.http.post(&url).json(&json!({ "email": "not-an-address", "password": "12345678" })),
            StatusCode::BAD_REQUEST,
            "invalid_email",
        ),
        (
            api.http.post(&url).json(&json!({ "email": "a@b.c", "password": "short" })),
            StatusCode::BAD_REQUEST,
            "weak_password",
        ),
        (
            api.http.post(&url).json(&json!({ "email": "a@b.c", "password": "p".repeat(2000) })),
            StatusCode::BAD_REQUEST,
            "invalid_password",
        ),
        (
            api.http.post(&url).json(&json!({ "email": "a@b.c", "password": "x".repeat(100_000) })),
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
        ),
        (api.http.get(format!("{}/api/me", api.base)), StatusCode::UNAUTHORIZED, "unauthorized"),
        (
            api.http.get(format!("{}/api/me", api.base)).bearer_auth("not.a.jwt"),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (api.http.get(format!("{}/api/nothing", api.base)), StatusCode::NOT_FOUND, "not_found"),
    ];
    for (request, status, expected) in cases {
        let (got, body) = read(request.send().await.unwrap()).await;
        assert_eq!((got, code(&body)), (status, expected), "{body}");
    }

    // An access token signed by someone else is refused.
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({ "sub": "someone", "iss": "weft", "aud": "weft", "exp": 4_000_000_000u64 }),
        &jsonwebtoken::EncodingKey::from_secret(b"not the server's secret"),
    )
    .unwrap();
    let (status, body) = api.get("/api/me", Some(&forged)).await;
    assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "unauthorized"));
    server.stop().await;
}

#[tokio::test]
async fn credential_attempts_past_the_limit_get_429_with_retry_after_and_do_no_work() {
    let dir = temp_dir();
    let mut config = weft::Config::with_data_dir(dir.path());
    config.accounts.auth_attempts_per_minute = std::num::NonZeroU32::new(3).unwrap();
    let server = TestServer::start_with(config).await;
    let api = Api::new(&server);
    api.signup("rita@example.com", "a long enough password").await;
    let wrong = json!({ "email": "rita@example.com", "password": "not the password" });
    for _ in 0..2 {
        assert_eq!(api.post("/api/auth/login", wrong.clone()).await.0, StatusCode::UNAUTHORIZED);
    }
    // The fourth attempt in the minute is refused before the password is looked at, even the right one.
    let response = api
        .http
        .post(format!("{}/api/auth/login", api.base))
        .json(&json!({ "email": "rita@example.com", "password": "a long enough password" }))
        .send()
        .await
        .unwrap();
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    let (status, body) = read(response).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    // Sign-up and refresh share the allowance.
    let (status, _) =
        api.post("/api/auth/signup", json!({ "email": "sam@example.com", "password": "x".repeat(12) })).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let (status, _) = api.post("/api/auth/refresh", json!({ "refresh_token": "a.b" })).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    // The refused attempts were not audited as failed log-ins: only the two that ran were.
    let db = rusqlite::Connection::open(common::db_path(dir.path())).unwrap();
    let failed: i64 = db
        .query_row(
            "SELECT count(*) FROM audit WHERE action = 'session.login_failed' AND address = '127.0.0.1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(failed, 2);
    server.stop().await;
}

#[tokio::test]
async fn log_ins_to_one_account_are_limited_across_addresses_and_other_accounts_are_not() {
    let dir = temp_dir();
    let mut config = weft::Config::with_data_dir(dir.path());
    config.accounts.login_attempts_per_account_per_hour = std::num::NonZeroU32::new(3).unwrap();
    let server = TestServer::start_with(config).await;
    let api = Api::new(&server);
    api.signup("victim@example.com", "a long enough password").await;
    api.signup("other@example.com", "a long enough password").await;
    let login = |email: &str, password: &str| json!({ "email": email, "password": password });
    for _ in 0..3 {
        let (status, _) = api.post("/api/auth/login", login("victim@example.com", "guess guess")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    // The account's allowance is spent, whatever the address, in any spelling of the address.
    let (status, body) =
        api.post("/api/auth/login", login("VICTIM@example.com ", "a long enough password")).await;
    assert_eq!((status, code(&body)), (StatusCode::TOO_MANY_REQUESTS, "rate_limited"));
    let (status, body) =
        api.post("/api/auth/login", login("other@example.com", "a long enough password")).await;
    assert_eq!(status, StatusCode::OK, "another account is not limited: {body}");
    server.stop().await;
}

/// Runs the `weft` binary with `args`, `stdin` on its standard input; returns (success, stdout, stderr).
fn weft(args: &[&str], stdin: &str) -> (bool, String, String) {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.success(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

#[tokio::test]
async fn the_cli_creates_accounts_and_issues_tokens_the_server_accepts() {
    let dir = temp_dir();
    let data = dir.path().to_str().unwrap();
    let (ok, out, err) = weft(
        &["user", "create", "--email", "Root@Example.com", "--name", "Root", "--data-dir", data],
        "correct horse\n",
    );
    assert!(ok, "{err}");
    let user: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!((user["email"].as_str(), user["name"].as_str()), (Some("root@example.com"), Some("Root")));
    for (args, stdin, expected) in [
        (
            vec!["user", "create", "--email", "root@example.com", "--data-dir", data],
            "another password\n",
            "already taken",
        ),
        (
            vec!["user", "create", "--email", "x@example.com", "--data-dir", data],
            "short\n",
            "at least 8 characters",
        ),
        (
            vec!["user", "create", "--email", "not an address", "--data-dir", data],
            "correct horse\n",
            "not an email address",
        ),
        (
            vec!["token", "issue", "--email", "nobody@example.com", "--data-dir", data],
            "",
            "no account has the address",
        ),
    ] {
        let (ok, _, err) = weft(&args, stdin);
        assert!(!ok && err.contains(expected), "{args:?}: {err}");
    }
    let (ok, token, err) = weft(&["token", "issue", "--email", "root@example.com", "--data-dir", data], "");
    assert!(ok, "{err}");

    let server = TestServer::start(dir.path()).await;
    let api = Api::new(&server);
    let (status, me) = api.get("/api/me", Some(token.trim())).await;
    assert_eq!((status, me["id"].as_str()), (StatusCode::OK, user["id"].as_str()), "{me}");
    let (status, _) = api
        .post("/api/auth/login", json!({ "email": "root@example.com", "password": "correct horse" }))
        .await;
    assert_eq!(status, StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn each_user_has_a_request_allowance_of_their_own() {
    let dir = temp_dir();
    let mut config = weft::Config::with_data_dir(dir.path());
    config.accounts.api_requests_per_minute = std::num::NonZeroU32::new(3).unwrap();
    let server = TestServer::start_with(config).await;
    let api = Api::new(&server);
    let busy = api.signup("busy@example.com", "a long enough password").await;
    let calm = api.signup("calm@example.com", "a long enough password").await;
    let busy = busy["access_token"].as_str().unwrap();
    for _ in 0..3 {
        assert_eq!(api.get("/api/me", Some(busy)).await.0, StatusCode::OK);
    }
    let response = api.http.get(format!("{}/api/me", api.base)).bearer_auth(busy).send().await.unwrap();
    assert!(response.headers().contains_key("retry-after"));
    let (status, body) = read(response).await;
    assert_eq!((status, code(&body)), (StatusCode::TOO_MANY_REQUESTS, "rate_limited"));
    let (status, _) = api.get("/api/me", calm["access_token"].as_str()).await;
    assert_eq!(status, StatusCode::OK, "another user keeps their allowance");
    server.stop().await;
}

#[tokio::test]
async fn access_tokens_signed_with_the_servers_own_key_are_still_checked_claim_by_claim() {
    let dir = temp_dir();
    let server = TestServer::start(dir.path()).await;
    let api = Api::new(&server);
    let session = api.signup("ada@example.com", "correct horse").await;
    let sub = session["user"]["id"].as_str().unwrap().to_owned();
    // The server's signing key, as an attacker who read the database would have it.
    let key: Vec<u8> = rusqlite::Connection::open(common::db_path(dir.path()))
        .unwrap()
        .query_row("SELECT secret FROM server_keys WHERE name = 'access-token-hs256'", [], |row| row.get(0))
        .unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let sign = |claims: serde_json::Value| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(&key),
        )
        .unwrap()
    };
    let good = sign(json!({ "sub": sub, "iss": "weft", "aud": "weft", "iat": now, "exp": now + 600 }));
    assert_eq!(api.get("/api/me", Some(&good)).await.0, StatusCode::OK, "the key is the server's");
    use base64::Engine;
    let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(json!({ "sub": sub, "iss": "weft", "aud": "weft", "iat": now, "exp": now + 600 })
            .to_string()
            .as_bytes())
    );
    let tampered = {
        let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
        parts[1] =
            b64(json!({ "sub": "someone-else", "iss": "weft", "aud": "weft", "iat": now, "exp": now + 600 })
                .to_string()
                .as_bytes());
        parts.join(".")
    };
    for (what, token) in [
        ("alg none", none),
        ("payload changed after signing", tampered),
        ("expired", sign(json!({ "sub": sub, "iss": "weft", "aud": "weft", "iat": now, "exp": now - 120 }))),
        (
            "not yet valid",
            sign(
                json!({ "sub": sub, "iss": "weft", "aud": "weft", "iat": now, "exp": now + 600, "nbf": now + 300 }),
            ),
        ),
        (
            "wrong audience",
            sign(json!({ "sub": sub, "iss": "weft", "aud": "other", "iat": now, "exp": now + 600 })),
        ),
        (
            "wrong issuer",
            sign(json!({ "sub": sub, "iss": "other", "aud": "weft", "iat": now, "exp": now + 600 })),
        ),
        ("no expiry", sign(json!({ "sub": sub, "iss": "weft", "aud": "weft", "iat": now }))),
        (
            "an account that does not exist",
            sign(json!({ "sub": "nobody", "iss": "weft", "aud": "weft", "iat": now, "exp": now + 600 })),
        ),
    ] {
        let (status, body) = api.get("/api/me", Some(&token)).await;
        assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "unauthorized"), "{what}: {body}");
    }
    server.stop().await;
}
