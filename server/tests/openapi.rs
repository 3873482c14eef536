//! The OpenAPI document: generated from the route handlers, served at `/api/openapi.json`, and
//! checked into `docs/openapi.json`. Regenerate the copy with
//! `WEFT_WRITE_OPENAPI=1 cargo test -p weft-server --test openapi`.

mod common;

use common::api::Api;
use common::{TestServer, temp_dir};
use reqwest::StatusCode;

fn checked_in() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json")
}

#[test]
fn the_checked_in_document_is_the_generated_one() {
    let generated = weft::http::openapi().to_pretty_json().unwrap() + "\n";
    if std::env::var_os("WEFT_WRITE_OPENAPI").is_some() {
        std::fs::write(checked_in(), &generated).unwrap();
    }
    let stored = std::fs::read_to_string(checked_in()).unwrap_or_default();
    assert!(
        stored == generated,
        "docs/openapi.json is stale: run WEFT_WRITE_OPENAPI=1 cargo test -p weft-server --test openapi"
    );
}

#[tokio::test]
async fn the_server_serves_it_with_every_route() {
    let dir = temp_dir();
    let server = TestServer::start(dir.path()).await;
    let api = Api::new(&server);
    let (status, served) = api.get("/api/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(served, serde_json::to_value(weft::http::openapi()).unwrap());
    assert!(served["openapi"].as_str().unwrap().starts_with("3.1"), "{}", served["openapi"]);
    let routes = [
        ("post", "/api/auth/signup"),
        ("post", "/api/auth/login"),
        ("post", "/api/auth/refresh"),
        ("post", "/api/auth/logout"),
        ("get", "/api/me"),
        ("patch", "/api/me"),
        ("get", "/api/me/audit"),
        ("post", "/api/workspaces"),
        ("get", "/api/workspaces"),
        ("get", "/api/workspaces/{ws}"),
        ("patch", "/api/workspaces/{ws}"),
        ("delete", "/api/workspaces/{ws}"),
        ("get", "/api/workspaces/{ws}/members"),
        ("patch", "/api/workspaces/{ws}/members/{user_id}"),
        ("delete", "/api/workspaces/{ws}/members/{user_id}"),
        ("post", "/api/workspaces/{ws}/invites"),
        ("get", "/api/workspaces/{ws}/invites"),
        ("delete", "/api/workspaces/{ws}/invites/{id}"),
        ("post", "/api/invites/{token}/accept"),
        ("get", "/api/workspaces/{ws}/audit"),
        ("post", "/api/workspaces/{ws}/docs"),
        ("get", "/api/workspaces/{ws}/docs"),
        ("get", "/api/docs/{doc_id}"),
        ("patch", "/api/docs/{doc_id}"),
        ("delete", "/api/docs/{doc_id}"),
        ("get", "/api/docs/{doc_id}/content"),
        ("get", "/api/docs/{doc_id}/versions"),
        ("post", "/api/docs/{doc_id}/versions"),
        ("get", "/api/docs/{doc_id}/versions/{version_id}"),
        ("get", "/api/docs/{doc_id}/versions/{version_id}/diff"),
        ("post", "/api/docs/{doc_id}/versions/{version_id}/restore"),
        ("get", "/api/docs/{doc_id}/blame"),
        ("get", "/api/docs/{doc_id}/comments"),
        ("get", "/api/docs/{doc_id}/tasks"),
        ("get", "/api/docs/{doc_id}/messages"),
        ("get", "/api/docs/{doc_id}/messages/{message_id}/thread"),
        ("get", "/api/docs/{doc_id}/shapes"),
        ("get", "/api/docs/{doc_id}/export.svg"),
        ("post", "/api/docs/{doc_id}/comments"),
        ("patch", "/api/docs/{doc_id}/comments/{comment_id}"),
        ("post", "/api/docs/{doc_id}/messages"),
        ("patch", "/api/docs/{doc_id}/messages/{message_id}"),
        ("delete", "/api/docs/{doc_id}/messages/{message_id}"),
        ("put", "/api/docs/{doc_id}/messages/{message_id}/reactions/{emoji}"),
        ("delete", "/api/docs/{doc_id}/messages/{message_id}/reactions/{emoji}"),
        ("post", "/api/docs/{doc_id}/tasks"),
        ("patch", "/api/docs/{doc_id}/tasks/{task_id}"),
        ("post", "/api/docs/{doc_id}/columns"),
        ("post", "/api/docs/{doc_id}/shapes"),
        ("patch", "/api/docs/{doc_id}/shapes/{shape_id}"),
        ("delete", "/api/docs/{doc_id}/shapes/{shape_id}"),
        ("get", "/api/workspaces/{ws}/search"),
        ("get", "/api/me/notifications"),
        ("get", "/api/me/notifications/unread"),
        ("post", "/api/me/notifications/read"),
        ("get", "/api/me/notification-preferences"),
        ("patch", "/api/me/notification-preferences"),
        ("put", "/api/docs/{doc_id}/mute"),
        ("delete", "/api/docs/{doc_id}/mute"),
    ];
    let paths = served["paths"].as_object().unwrap();
    let documented: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(
        documented,
        routes.len(),
        "every route, and nothing else: {:?}",
        paths.keys().collect::<Vec<_>>()
    );
    for (method, path) in routes {
        let operation = &served["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is documented");
        assert!(
            operation["responses"]["4XX"]["content"]["application/json"].is_object(),
            "{method} {path} errors"
        );
    }
    let mut ids: Vec<&str> = paths
        .values()
        .flat_map(|p| p.as_object().unwrap().values())
        .map(|op| op["operationId"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    let before = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), before, "operation ids are unique");
    // Schemas the routes refer to are all there.
    let text = served.to_string();
    for schema in ["ErrorBody", "Session", "User", "Membership", "Invite", "Document", "AuditPage"] {
        assert!(served["components"]["schemas"][schema].is_object(), "{schema} in {text:.200}");
    }
    server.stop().await;
}
