//! A workspace document's content over REST, one module per resource: the document itself
//! (here), its comments, a channel's messages, a board's tasks and columns, a whiteboard's shapes.
//!
//! Reads go through the kind's projection (`weft_sync_core::domain`); the room answers once
//! everything it holds is durable, so a reader never sees an edit a crash could take back. Writes
//! are the kind's changes (`domain::*`), which the room's relay applies to its replica as one
//! ordinary CRDT update: attributed to the caller in the log, durable before the response, and
//! broadcast to connected clients like any client's update (offline clients merge it later).
//! Every route asks `read_document` first (404 for whoever may not see it), then what it does
//! (`edit_document`, or `comment` for comments and reactions: 403); a route of another kind's
//! content is `400 wrong_kind`; an archived document refuses writes (`409 archived`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use weft_sync_core::access::Action;
use weft_sync_core::domain::write::Change;
use weft_sync_core::domain::{Projection, Skipped};
use weft_sync_core::{DocId, DocKind};

use super::docs::document;
use super::{Caller, Params};
use crate::http::{ApiError, AppState};
use crate::rooms::WriteRefused;
use crate::storage::documents::Document;

mod comments;
mod messages;
mod shapes;
mod tasks;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(content))
        .merge(comments::routes())
        .merge(messages::routes())
        .merge(tasks::routes())
        .merge(shapes::routes())
}

/// `found` is a `kind` document, or the route is the wrong one for it (400 `wrong_kind`).
fn of_kind(found: &Document, kind: DocKind) -> Result<(), ApiError> {
    if found.kind == kind {
        return Ok(());
    }
    Err(ApiError::Invalid {
        code: "wrong_kind",
        message: format!("this route is for a {}; the document is a {}", kind.as_str(), found.kind.as_str()),
    })
}

/// The caller's document `id` of kind `kind`, read through its projection.
async fn project(state: &AppState, id: &str, caller: &Caller, kind: DocKind) -> Result<Projection, ApiError> {
    let (found, _): (Document, _) = document(state, id, caller, &[]).await?;
    of_kind(&found, kind)?;
    read(state, &found).await
}

/// `found` read through its kind's projection.
async fn read(state: &AppState, found: &Document) -> Result<Projection, ApiError> {
    let doc = DocId::new(found.id.clone())?;
    state.rooms.project(&doc, found.crdt, found.kind).await.map_err(|err| {
        tracing::warn!(doc = %doc, error = %err, "projection failed");
        ApiError::NotReady("the document cannot be read right now")
    })
}

/// The caller's document `id` of kind `kind`, for a write that takes `action` (403 without it),
/// and what it holds now (read through its projection, for the checks the write makes first).
/// An archived document refuses writes: 409 `archived`.
async fn writable(
    state: &AppState,
    id: &str,
    caller: &Caller,
    kind: DocKind,
    action: Action,
) -> Result<(Document, Projection), ApiError> {
    let (found, _): (Document, _) = document(state, id, caller, &[action]).await?;
    of_kind(&found, kind)?;
    if found.archived {
        return Err(ApiError::Conflict {
            code: "archived",
            message: "the document is archived: it can be read, not written (unarchive it first)",
        });
    }
    let now = read(state, &found).await?;
    Ok((found, now))
}

/// Writes `changes` to `found` as `caller`: one CRDT update through the document's room, durable
/// when this returns.
async fn write(
    state: &AppState,
    found: &Document,
    caller: &Caller,
    changes: Vec<Change>,
) -> Result<(), ApiError> {
    let doc = DocId::new(found.id.clone())?;
    let author = std::sync::Arc::from(caller.user_id.as_str());
    state.rooms.write(&doc, found.crdt, changes, author).await.map_err(|err| match err {
        WriteRefused::Layout(refused) => ApiError::LayoutConflict(refused.to_string()),
        WriteRefused::TooLarge(_) => ApiError::TooLarge,
        WriteRefused::RoomClosed => {
            ApiError::NotReady("the document cannot take writes right now; repeat the request")
        }
        WriteRefused::Unavailable(detail) => {
            tracing::warn!(doc = %doc, %detail, "a REST write was not made");
            ApiError::NotReady("the document cannot take writes right now; repeat the request")
        }
    })
}

/// The id of a new entry (message, comment, task, column, shape): the caller's, so that a
/// repeated request writes the same entry again instead of a second one, or a new UUID.
fn entry_id(given: Option<String>) -> Result<String, ApiError> {
    match given {
        None => Ok(uuid::Uuid::new_v4().to_string()),
        Some(id)
            if (1..=64).contains(&id.len())
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            Ok(id)
        }
        Some(_) => Err(ApiError::invalid("invalid_id", "an id is 1 to 64 letters, digits, '-' or '_'")),
    }
}

/// Splits a JSON body into its optional `id` and the rest read as `T` (a kind's field set, which
/// refuses unknown fields).
fn with_id<T: serde::de::DeserializeOwned>(
    mut body: serde_json::Map<String, serde_json::Value>,
) -> Result<(Option<String>, T), ApiError> {
    let id = match body.remove("id") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(id)) => Some(id),
        Some(_) => return Err(ApiError::invalid("invalid_id", "id is a string")),
    };
    let fields = serde_json::from_value(serde_json::Value::Object(body))
        .map_err(|e| ApiError::invalid("invalid_body", e.to_string()))?;
    Ok((id, fields))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ContentQuery {
    /// `json` (blocks with styled spans, the default), `text` or `markdown`.
    format: Option<String>,
}

/// What a document's content is as JSON.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct ContentBlocks {
    /// Blocks in order: `{ kind, spans: [{ text, bold, italic, code, strike, link }] }`.
    #[schema(value_type = Vec<Object>)]
    blocks: Vec<weft_sync_core::domain::document::Block>,
    /// User ids mentioned in the text (Tiptap mention nodes and `<@user-id>`), in order.
    mentions: Vec<String>,
    /// What the projection could not read, and why.
    #[schema(value_type = Vec<Object>)]
    skipped: Vec<Skipped>,
}

#[utoipa::path(
    get,
    path = "/api/docs/{doc_id}/content",
    tag = "content",
    operation_id = "content_document",
    params(("doc_id" = String, Path, description = "Document id"), ContentQuery),
    responses(
        (status = 200, description = "The content: JSON blocks, `text/plain` or `text/markdown`", body = ContentBlocks),
        (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn content(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Params(query): Params<ContentQuery>,
) -> Result<Response, ApiError> {
    let format = query.format.unwrap_or_else(|| "json".into());
    if !matches!(format.as_str(), "json" | "text" | "markdown") {
        return Err(ApiError::invalid("invalid_format", "format is json, text or markdown"));
    }
    let Projection::Document(doc) = project(&state, &id, &caller, DocKind::Document).await? else {
        return Err(ApiError::Internal(anyhow::anyhow!("a document projection of another kind")));
    };
    Ok(match format.as_str() {
        "text" => ([(CONTENT_TYPE, "text/plain; charset=utf-8")], doc.to_text()).into_response(),
        "markdown" => ([(CONTENT_TYPE, "text/markdown; charset=utf-8")], doc.to_markdown()).into_response(),
        _ => Json(ContentBlocks { blocks: doc.blocks, mentions: doc.mentions, skipped: doc.skipped })
            .into_response(),
    })
}
