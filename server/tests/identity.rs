//! External identity providers against the real server: tokens signed with an RS256, ES256 or
//! EdDSA key in PEM, a JWKS file or an HS256 secret are accepted with the configured issuer and
//! audience, their subject maps to one account created on first use, and such an account works
//! everywhere a Weft token does (REST, invites, WebSocket documents). Every way a token can be
//! wrong is refused with 401: `alg: none`, another key's signature, expired, not yet valid, wrong
//! audience, wrong issuer, no subject. Keys: `tests/fixtures/idp/` (see its README).

mod common;

use std::path::PathBuf;

use common::api::{Api, code, create_workspace, invite, person};
use common::{TestServer, temp_dir};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use weft::Config;
use weft::config::Settings;

const ISSUER: &str = "https://id.example.com";
const AUDIENCE: &str = "weft";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/idp").join(name)
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// The claims of a good token for `sub`, with `extra` merged in (a `null` removes a claim).
fn claims(sub: &str, extra: Value) -> Value {
    let mut claims = json!({ "iss": ISSUER, "aud": AUDIENCE, "sub": sub, "exp": now() + 600, "iat": now() });
    for (key, value) in extra.as_object().unwrap() {
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(key);
        } else {
            claims[key] = value.clone();
        }
    }
    claims
}

fn sign(algorithm: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(algorithm);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn pem_key(name: &str, algorithm: Algorithm) -> EncodingKey {
    let pem = std::fs::read(fixture(name)).unwrap();
    match algorithm {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem),
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem),
        other => panic!("{other:?}"),
    }
    .unwrap()
}

async fn server_with(dir: &std::path::Path, settings: Settings) -> TestServer {
    let settings = Settings {
        data_dir: Some(dir.to_path_buf()),
        idp_issuer: Some(ISSUER.into()),
        idp_audience: Some(AUDIENCE.into()),
        ..settings
    };
    TestServer::start_with(Config::load(settings).expect("valid idp settings")).await
}

async fn me(api: &Api, token: &str) -> (StatusCode, Value) {
    api.get("/api/me", Some(token)).await
}

#[tokio::test]
async fn an_rs256_provider_maps_subjects_to_accounts_and_refuses_every_bad_token() {
    let dir = temp_dir();
    let server = server_with(
        dir.path(),
        Settings { idp_public_key_file: Some(fixture("rsa.pub")), ..Settings::default() },
    )
    .await;
    let api = Api::new(&server);
    let key = pem_key("rsa.key", Algorithm::RS256);
    let good = |sub: &str, extra: Value| sign(Algorithm::RS256, &key, None, &claims(sub, extra));

    // First use creates the account, from the token's name and address; later tokens find it.
    let token = good("user-42", json!({ "email": "Kim@Example.com", "name": "Kim Lee" }));
    let (status, first) = me(&api, &token).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!((first["name"].as_str(), first["email"].as_str()), (Some("Kim Lee"), Some("kim@example.com")));
    let (_, again) = me(&api, &good("user-42", json!({ "name": "Renamed" }))).await;
    assert_eq!(again["id"], first["id"], "the same subject is the same account");
    let (_, other) = me(&api, &good("user-43", json!({}))).await;
    assert_ne!(other["id"], first["id"]);
    assert_eq!(other["name"], "user-43", "no name claim: the subject");

    // An address that already has an account is not taken over: the new account goes without it.
    let ada = person(&api, "ada@example.com").await;
    let (status, imposter) = me(&api, &good("user-44", json!({ "email": "ada@example.com" }))).await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(imposter["id"].as_str(), Some(ada.id.as_str()));
    assert!(imposter["email"].is_null(), "{imposter}");

    // Every wrong token is a 401 `unauthorized`, and creates nothing.
    let other_key = pem_key("other.key", Algorithm::RS256);
    let header_none = base64url(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = base64url(claims("user-99", json!({})).to_string().as_bytes());
    let past = now() - 3600;
    let bad = [
        ("alg none", format!("{header_none}.{payload}.")),
        ("another key", sign(Algorithm::RS256, &other_key, None, &claims("user-99", json!({})))),
        ("HS256 with the public key as secret", {
            let pem = std::fs::read(fixture("rsa.pub")).unwrap();
            sign(Algorithm::HS256, &EncodingKey::from_secret(&pem), None, &claims("user-99", json!({})))
        }),
        ("expired", good("user-99", json!({ "exp": past }))),
        ("not yet valid", good("user-99", json!({ "nbf": now() + 3600 }))),
        ("wrong audience", good("user-99", json!({ "aud": "someone-else" }))),
        ("wrong issuer", good("user-99", json!({ "iss": "https://evil.example.com" }))),
        ("no issuer", good("user-99", json!({ "iss": null }))),
        ("no expiry", good("user-99", json!({ "exp": null }))),
        ("no subject", good("user-99", json!({ "sub": null }))),
        ("empty subject", good("", json!({}))),
        ("garbage", "not.a.token".to_owned()),
    ];
    for (what, token) in bad {
        let (status, body) = me(&api, &token).await;
        assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "unauthorized"), "{what}: {body}");
    }

    // The external account accepts an invite to its address and opens a workspace document with
    // the provider's token, like any member.
    let ws = create_workspace(&api, &ada, "Acme").await;
    let (_, created) = invite(&api, &ada, &ws, "kim@example.com", "editor").await;
    let (status, body) =
        api.call(Method::POST, created["accept_path"].as_str().unwrap(), Some(&token), Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, doc) = api
        .call(
            Method::POST,
            &format!("/api/workspaces/{ws}/docs"),
            Some(&token),
            json!({ "kind": "document", "crdt": "yjs", "title": "From Kim" }),
        )
        .await;
    let id = doc["id"].as_str().expect("created by the external member");
    let client = common::client(&format!("{}?token={token}", server.yjs_url(id))).await;
    common::insert(client.doc(), 0, "hi");
    client.wait_acknowledged(common::WAIT).await.expect("the edit is acknowledged");
    client.stop().await;
    server.stop().await;
}

fn base64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test]
async fn es256_eddsa_jwks_and_hs256_providers_accept_their_own_tokens_only() {
    let secret = "provider-secret-0123456789";
    let cases: Vec<(&str, Settings, String, String)> = vec![
        (
            "ES256 PEM",
            Settings { idp_public_key_file: Some(fixture("ec.pub")), ..Settings::default() },
            sign(Algorithm::ES256, &pem_key("ec.key", Algorithm::ES256), None, &claims("a", json!({}))),
            sign(Algorithm::RS256, &pem_key("rsa.key", Algorithm::RS256), None, &claims("a", json!({}))),
        ),
        (
            "EdDSA PEM",
            Settings { idp_public_key_file: Some(fixture("ed.pub")), ..Settings::default() },
            sign(Algorithm::EdDSA, &pem_key("ed.key", Algorithm::EdDSA), None, &claims("b", json!({}))),
            sign(Algorithm::ES256, &pem_key("ec.key", Algorithm::ES256), None, &claims("b", json!({}))),
        ),
        (
            "JWKS",
            Settings { idp_jwks_file: Some(fixture("jwks.json")), ..Settings::default() },
            sign(
                Algorithm::RS256,
                &pem_key("rsa.key", Algorithm::RS256),
                Some("key-1"),
                &claims("c", json!({})),
            ),
            sign(
                Algorithm::RS256,
                &pem_key("other.key", Algorithm::RS256),
                Some("key-1"),
                &claims("c", json!({})),
            ),
        ),
        (
            "HS256 secret",
            Settings { idp_secret: Some(secret.into()), ..Settings::default() },
            sign(
                Algorithm::HS256,
                &EncodingKey::from_secret(secret.as_bytes()),
                None,
                &claims("d", json!({})),
            ),
            sign(
                Algorithm::HS256,
                &EncodingKey::from_secret(b"another-secret-0123456789"),
                None,
                &claims("d", json!({})),
            ),
        ),
    ];
    for (what, settings, good, forged) in cases {
        let dir = temp_dir();
        let server = server_with(dir.path(), settings).await;
        let api = Api::new(&server);
        let (status, body) = me(&api, &good).await;
        assert_eq!(status, StatusCode::OK, "{what}: {body}");
        let (status, _) = me(&api, &forged).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: a token signed otherwise");
        server.stop().await;
    }
}

#[test]
fn bad_provider_settings_are_refused_at_start() {
    let base = || Settings {
        idp_issuer: Some(ISSUER.into()),
        idp_audience: Some(AUDIENCE.into()),
        ..Settings::default()
    };
    for (what, settings) in [
        ("no key", base()),
        (
            "two keys",
            Settings {
                idp_secret: Some("x".repeat(20)),
                idp_jwks_file: Some(fixture("jwks.json")),
                ..base()
            },
        ),
        ("short secret", Settings { idp_secret: Some("short".into()), ..base() }),
        (
            "a private key file that is not a public key",
            Settings { idp_public_key_file: Some(fixture("README.md")), ..base() },
        ),
        ("no audience", Settings { idp_audience: None, idp_secret: Some("x".repeat(20)), ..base() }),
        ("no issuer", Settings { idp_issuer: None, idp_secret: Some("x".repeat(20)), ..base() }),
        ("missing file", Settings { idp_jwks_file: Some(fixture("nope.json")), ..base() }),
    ] {
        assert!(Config::load(settings).is_err(), "{what} must be refused");
    }
}

#[tokio::test]
async fn jwt_secret_tokens_name_accounts_too() {
    let dir = temp_dir();
    let secret = "relay-secret-0123456789";
    let config = Config::load(Settings {
        data_dir: Some(dir.path().to_path_buf()),
        jwt_secret: Some(secret.into()),
        ..Settings::default()
    })
    .unwrap();
    let server = TestServer::start_with(config).await;
    let api = Api::new(&server);
    let token = |sub: &str| {
        jsonwebtoken::encode(
            &Header::default(),
            &json!({ "sub": sub, "exp": now() + 600 }),
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    };
    let (status, first) = me(&api, &token("app-user-1")).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let (_, again) = me(&api, &token("app-user-1")).await;
    assert_eq!(first["id"], again["id"]);
    let unsigned = jsonwebtoken::encode(
        &Header::default(),
        &json!({ "sub": "x", "exp": now() + 600 }),
        &EncodingKey::from_secret(b"not-the-relay-secret-0123"),
    )
    .unwrap();
    assert_eq!(me(&api, &unsigned).await.0, StatusCode::UNAUTHORIZED);
    server.stop().await;
}
