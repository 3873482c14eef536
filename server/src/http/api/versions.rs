//! A workspace document's version history over REST: list versions, name one, read the content
//! at a version through its kind's projection, diff two versions, blame the current text, and
//! restore a version (an ordinary forward CRDT update through the room, attributed to the caller).
//!
//! Reading history takes `read_document` (404 for whoever may not see the document); naming a
//! version and restoring take `edit_document` (403), and an archived document refuses both (409).
//! A version id is looked up within the document in the path only: one of another document, or
//! of another workspace, is as unknown as a made-up one (404 `not_found`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use weft_sync_core::access::Action;
use weft_sync_core::domain::Projection;
use weft_sync_core::history::{self, Authorship, BlameSpan, Diff};
use weft_sync_core::{DocId, automerge::history as am, yjs::history as yh};

use super::docs::document;
use super::{Body, Caller, Page, Params};
use crate::http::{ApiError, AppState};
use crate::storage::documents::Document;
use crate::storage::versions::{StoredVersion, Version};
use crate::storage::{Crdt, DocKey};

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(read))
        .routes(routes!(diff))
        .routes(routes!(restore))
        .routes(routes!(blame))
}

/// Longest version name.
const MAX_NAME_CHARS: usize = 200;

/// A page of versions, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct VersionPage {
    versions: Vec<Version>,
    /// The `before` of the next page; absent on the last.
    next: Option<i64>,
}

/// A version to name.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewVersion {
    /// 1 to 200 characters.
    name: String,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ReadQuery {
    /// `json` (the projection, the default), or for documents `text` or `markdown`.
    format: Option<String>,
}

/// The content at a version.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct VersionContent {
    version: Version,
    /// The kind's projection as the content routes show it: a document's `blocks`, `comments` and
    /// `mentions`; a channel's `messages`; a board's `columns` and `tasks`; a whiteboard's `shapes`.
    #[schema(value_type = Object)]
    content: serde_json::Value,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct DiffQuery {
    /// The later version's id, or `current` (the default): the document as it is now.
    to: Option<String>,
}

/// The difference between two versions.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct VersionDiff {
    from: String,
    to: String,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    diff: Diff,
}

/// Blame of a text document.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Blame {
    /// The plain text (`GET …/content?format=text`).
    text: String,
    /// Spans of it in order, each with the member who wrote it (`author: null` for line breaks
    /// between blocks and text written before history was kept).
    #[schema(value_type = Vec<Object>)]
    spans: Vec<BlameSpan>,
}

#[utoipa::path(
    get,
    path = "/api/docs/{doc_id}/versions",
    tag = "history",
    operation_id = "versions_list",
    params(("doc_id" = String, Path, description = "Document id"), Page),
    responses((status = 200, description = "Versions, newest first", body = VersionPage), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Params(page): Params<Page>,
) -> Result<Json<VersionPage>, ApiError> {
    let limit = page.limit()?;
    let (_, key) = readable(&state, &id, &caller, &[]).await?;
    let (versions, next) = state.storage.versions(key, page.before, limit as usize).await?;
    Ok(Json(VersionPage { versions, next }))
}

#[utoipa::path(
    post,
    path = "/api/docs/{doc_id}/versions",
    tag = "history",
    operation_id = "versions_create",
    request_body = NewVersion,
    params(("doc_id" = String, Path, description = "Document id")),
    responses((status = 201, description = "The named version of everything written so far", body = Version), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<NewVersion>,
) -> Result<(StatusCode, Json<Version>), ApiError> {
    let name = body.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "invalid_name",
            "a version name is 1 to 200 characters, no control characters",
        ));
    }
    let (found, _) = editable(&state, &id, &caller).await?;
    let doc = DocId::new(found.id.clone())?;
    let by = std::sync::Arc::from(caller.user_id.as_str());
    let version = state.rooms.checkpoint(&doc, found.crdt, name, by).await.map_err(unavailable)?;
    Ok((StatusCode::CREATED, Json(version)))
}

#[utoipa::path(
    get,
    path = "/api/docs/{doc_id}/versions/{version_id}",
    tag = "history",
    operation_id = "versions_read",
    params(("doc_id" = String, Path, description = "Document id"), ("version_id" = String, Path, description = "Version id"), ReadQuery),
    responses((status = 200, description = "The content at the version: JSON, `text/plain` or `text/markdown`", body = VersionContent), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, version_id)): Path<(String, String)>,
    Params(query): Params<ReadQuery>,
) -> Result<Response, ApiError> {
    let format = query.format.unwrap_or_else(|| "json".into());
    if !matches!(format.as_str(), "json" | "text" | "markdown") {
        return Err(ApiError::invalid("invalid_format", "format is json, text or markdown"));
    }
    let (found, key) = readable(&state, &id, &caller, &[]).await?;
    let version = version_of(&state, key, &version_id).await?;
    let state_now = current_state(&state, &found).await?;
    let projected = project(found.crdt, found.kind, state_now, Some(version.state.clone())).await?;
    Ok(match (format.as_str(), projected) {
        ("text", Projection::Document(doc)) => {
            ([(CONTENT_TYPE, "text/plain; charset=utf-8")], doc.to_text()).into_response()
        }
        ("markdown", Projection::Document(doc)) => {
            ([(CONTENT_TYPE, "text/markdown; charset=utf-8")], doc.to_markdown()).into_response()
        }
        ("text" | "markdown", _) => {
            return Err(ApiError::invalid("invalid_format", "text and markdown are for documents; use json"));
        }
        (_, projected) => {
            Json(VersionContent { version: version.version, content: content_json(&projected) })
                .into_response()
        }
    })
}

#[utoipa::path(
    get,
    path = "/api/docs/{doc_id}/versions/{version_id}/diff",
    tag = "history",
    operation_id = "versions_diff",
    params(("doc_id" = String, Path, description = "Document id"), ("version_id" = String, Path, description = "The earlier version's id"), DiffQuery),
    responses((status = 200, description = "What changed from the version to `to`", body = VersionDiff), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
async fn diff(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, version_id)): Path<(String, String)>,
    Params(query): Params<DiffQuery>,
) -> Result<Json<VersionDiff>, ApiError> {
    let (found, key) = readable(&state, &id, &caller, &[]).await?;
    let from = version_of(&state, key, &version_id).await?;
    let to_id = query.to.unwrap_or_else(|| "current".into());
    let to = match to_id.as_str() {
        "current" => None,
        other => Some(version_of(&state, key, other).await?),
    };
    let state_now = current_state(&state, &found).await?;
    let before = project(found.crdt, found.kind, state_now.clone(), Some(from.state.clone())).await?;
    let after = project(found.crdt, found.kind, state_now, to.map(|v| v.state)).await?;
    Ok(Json(VersionDiff { from: version_id, to: to_id, diff: history::diff(&before, &after) }))
}

#[utoipa::path(
    post,
    path = "/api/docs/{doc_id}/versions/{version_id}/restore",
    tag = "history",
    operation_id = "versions_restore",
    params(("doc_id" = String, Path, description = "Document id"), ("version_id" = String, Path, description = "The version to restore")),
    responses((status = 201, description = "Restored: the version the restore made (itself restorable)", body = Version), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
async fn restore(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, version_id)): Path<(String, String)>,
) -> Result<(StatusCode, Json<Version>), ApiError> {
    let (found, key) = editable(&state, &id, &caller).await?;
    let version = version_of(&state, key, &version_id).await?;
    let doc = DocId::new(found.id.clone())?;
    let by = std::sync::Arc::from(caller.user_id.as_str());
    let made = state.rooms.restore(&doc, found.crdt, version, by).await.map_err(unavailable)?;
    Ok((StatusCode::CREATED, Json(made)))
}

#[utoipa::path(
    get,
    path = "/api/docs/{doc_id}/blame",
    tag = "history",
    operation_id = "versions_blame",
    params(("doc_id" = String, Path, description = "Document id")),
    responses((status = 200, description = "Who wrote each span of the current text", body = Blame), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
async fn blame(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Blame>, ApiError> {
    let (found, key) = readable(&state, &id, &caller, &[]).await?;
    if found.kind != weft_sync_core::DocKind::Document {
        return Err(ApiError::invalid("wrong_kind", "blame is for text documents"));
    }
    let full = current_state(&state, &found).await?;
    let mut runs = state.storage.authorship(key).await?;
    // What the last checkpoint has not folded yet is attributed from the log rows themselves.
    let (_, rows) = state.storage.unattributed(key).await?;
    let base = state.storage.latest_version(key).await?.map(|v| v.state);
    let crdt = found.crdt;
    let spans = tokio::task::spawn_blocking(move || -> Result<Vec<BlameSpan>, String> {
        let pending = crate::rooms::attribute(crdt, &full, base.as_deref(), &rows)?;
        runs.extend(pending.into_iter().map(|(run, author, _)| (run, author)));
        let authorship = Authorship::new(runs);
        match crdt {
            Crdt::Yjs => yh::blame(&full, &authorship),
            Crdt::Automerge => am::blame(&full, &authorship),
        }
        .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| ApiError::Internal(anyhow::anyhow!("blame task failed: {e}")))?
    .map_err(|detail| {
        tracing::warn!(doc = %found.id, %detail, "blame failed");
        ApiError::NotReady("the document cannot be read right now")
    })?;
    let text = spans.iter().map(|s| s.text.as_str()).collect();
    Ok(Json(Blame { text, spans }))
}

/// The caller's document `id` (taking `actions`) and its storage key.
async fn readable(
    state: &AppState,
    id: &str,
    caller: &Caller,
    actions: &[Action],
) -> Result<(Document, DocKey), ApiError> {
    let (found, _) = document(state, id, caller, actions).await?;
    let key = state.storage.document_key(&found.id).await?.ok_or(ApiError::Missing("document"))?;
    Ok((found, key))
}

/// As [`readable`], for naming or restoring a version: `edit_document`, and not archived.
async fn editable(state: &AppState, id: &str, caller: &Caller) -> Result<(Document, DocKey), ApiError> {
    let (found, key) = readable(state, id, caller, &[Action::EditDocument]).await?;
    if found.archived {
        return Err(ApiError::Conflict {
            code: "archived",
            message: "the document is archived: it can be read, not written (unarchive it first)",
        });
    }
    Ok((found, key))
}

/// Version `id` of document `key`: 404 for an unknown one or one of another document.
async fn version_of(state: &AppState, key: DocKey, id: &str) -> Result<StoredVersion, ApiError> {
    state.storage.version(key, id).await?.ok_or(ApiError::Missing("version"))
}

async fn current_state(state: &AppState, found: &Document) -> Result<Vec<u8>, ApiError> {
    let doc = DocId::new(found.id.clone())?;
    state.rooms.state(&doc, found.crdt).await.map_err(|err| {
        tracing::warn!(doc = %doc, error = %err, "reading the document's state failed");
        ApiError::NotReady("the document cannot be read right now")
    })
}

/// `full` (or its state at `version`) through `kind`'s projection, off the async workers.
async fn project(
    crdt: Crdt,
    kind: weft_sync_core::DocKind,
    full: Vec<u8>,
    version: Option<Vec<u8>>,
) -> Result<Projection, ApiError> {
    tokio::task::spawn_blocking(move || match crdt {
        Crdt::Yjs => yh::project_at(&full, version.as_deref(), kind),
        Crdt::Automerge => am::project_at(&full, version.as_deref(), kind),
    })
    .await
    .map_err(|e| ApiError::Internal(anyhow::anyhow!("projection task failed: {e}")))?
    .map_err(|failure| {
        tracing::warn!(error = %failure, "reading a version failed");
        ApiError::NotReady("the version cannot be read right now")
    })
}

/// A projection as JSON, in the shape the content routes use.
fn content_json(projection: &Projection) -> serde_json::Value {
    match projection {
        Projection::Document(doc) => serde_json::json!({
            "blocks": doc.blocks, "comments": doc.comments, "mentions": doc.mentions, "skipped": doc.skipped,
        }),
        Projection::Channel(channel) => {
            serde_json::json!({ "messages": channel.messages, "skipped": channel.skipped })
        }
        Projection::Board(board) => {
            serde_json::json!({ "columns": board.columns, "tasks": board.tasks, "skipped": board.skipped })
        }
        Projection::Whiteboard(board) => {
            serde_json::json!({ "shapes": board.shapes, "skipped": board.skipped })
        }
    }
}

fn unavailable(detail: String) -> ApiError {
    tracing::warn!(%detail, "a version was not recorded");
    ApiError::NotReady("the document cannot take this right now; repeat the request")
}
