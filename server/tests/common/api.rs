//! A JSON client for the REST API over real HTTP: every call returns the status and the parsed
//! body, so tests can assert on the error shape as well as on success.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::TestServer;

/// The REST API of one test server.
pub struct Api {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The HTTP client (for requests the helpers do not cover).
    pub http: reqwest::Client,
}

impl Api {
    pub fn new(server: &TestServer) -> Self {
        Self { base: format!("http://{}", server.addr), http: reqwest::Client::new() }
    }

    /// Sends `method path` with `token` as the bearer and `body` as JSON (when not null).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if !body.is_null() {
            request = request.json(&body);
        }
        read(request.send().await.unwrap()).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, None, body).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.call(Method::GET, path, token, Value::Null).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, path, Some(token), body).await
    }

    /// Signs up `email`; returns the session (user, access and refresh token).
    pub async fn signup(&self, email: &str, password: &str) -> Value {
        let (status, body) =
            self.post("/api/auth/signup", json!({ "email": email, "password": password })).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }
}

pub async fn read(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.unwrap();
    let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).expect("a JSON body") };
    (status, body)
}

/// The error code of a JSON error body.
pub fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_else(|| panic!("an error body: {body}"))
}

/// A signed-up person: their access token and user id.
pub struct Person {
    pub token: String,
    pub id: String,
}

pub async fn person(api: &Api, email: &str) -> Person {
    let session = api.signup(email, "correct horse").await;
    Person {
        token: session["access_token"].as_str().unwrap().to_owned(),
        id: session["user"]["id"].as_str().unwrap().to_owned(),
    }
}

pub async fn create_workspace(api: &Api, owner: &Person, name: &str) -> String {
    let (status, body) =
        api.call(Method::POST, "/api/workspaces", Some(&owner.token), json!({ "name": name })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["role"], "owner");
    body["id"].as_str().unwrap().to_owned()
}

pub async fn invite(api: &Api, by: &Person, ws: &str, email: &str, role: &str) -> (StatusCode, Value) {
    api.call(
        Method::POST,
        &format!("/api/workspaces/{ws}/invites"),
        Some(&by.token),
        json!({ "email": email, "role": role }),
    )
    .await
}

/// Invites `email` into `ws` with `role` (from `owner`), signs them up, and accepts the invite.
pub async fn member(api: &Api, owner: &Person, ws: &str, email: &str, role: &str) -> Person {
    let (status, created) = invite(api, owner, ws, email, role).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let joined = person(api, email).await;
    let path = created["accept_path"].as_str().unwrap();
    let (status, body) = api.call(Method::POST, path, Some(&joined.token), Value::Null).await;
    assert_eq!((status, body["role"].as_str()), (StatusCode::OK, Some(role)), "{body}");
    joined
}

/// Creates a Yjs workspace document of `kind` titled `title` (private: only its creator listed)
/// as `who`; returns its id.
pub async fn create_doc(api: &Api, who: &Person, ws: &str, kind: &str, title: &str, private: bool) -> String {
    let body = json!({ "kind": kind, "crdt": "yjs", "title": title, "private": private });
    let doc = succeed(api, Method::POST, who, &format!("/api/workspaces/{ws}/docs"), body).await;
    doc["id"].as_str().unwrap().to_owned()
}

/// `method path` as `who` with `body`, insisting on a 2xx; returns the body.
pub async fn succeed(api: &Api, method: Method, who: &Person, path: &str, body: Value) -> Value {
    let (status, answer) = api.call(method, path, Some(&who.token), body).await;
    assert!(status.is_success(), "{path}: {status} {answer}");
    answer
}
