//! A document's comments: read them (`GET …/comments`, with each one's `quote` as the anchored
//! text reads now), add one or a reply (`POST`, anchored to a range of the plain text), resolve
//! or reopen a thread (`PATCH …/comments/{comment_id}`). Adding and resolving take the `comment`
//! action (commenters may).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use weft_sync_core::DocKind;
use weft_sync_core::access::Action;
use weft_sync_core::domain::Projection;
use weft_sync_core::domain::document::{self, Comment, NewComment};

use super::{entry_id, project, writable, write};
use crate::clock::now_ms;
use crate::http::api::{Body, Caller};
use crate::http::{ApiError, AppState};

/// Longest comment body, in characters.
const MAX_BODY: usize = 10_000;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(comments, add)).routes(routes!(resolve))
}

/// A document's comments.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Comments {
    /// Comments and replies, oldest first: `{ id, author, body, at, parent, resolved, quote,
    /// mentions }`; `quote` is the anchored text as it reads now.
    #[schema(value_type = Vec<Object>)]
    comments: Vec<Comment>,
}

#[utoipa::path(
    get,
    path = "/api/docs/{doc_id}/comments",
    tag = "content",
    operation_id = "content_comments",
    params(("doc_id" = String, Path, description = "Document id")),
    responses((status = 200, description = "Done", body = Comments), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
    security(("bearer" = []))
)]
async fn comments(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Comments>, ApiError> {
    let Projection::Document(doc) = project(&state, &id, &caller, DocKind::Document).await? else {
        return Err(ApiError::Internal(anyhow::anyhow!("a document projection of another kind")));
    };
    Ok(Json(Comments { comments: doc.comments }))
}

/// A comment to add.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewCommentBody {
    /// Your id for it (1–64 letters, digits, `-`, `_`), so that repeating the request adds it once;
    /// a UUID by default.
    id: Option<String>,
    /// Its text; mention members as `<@user-id>`.
    body: String,
    /// The comment this one replies to.
    parent: Option<String>,
    /// The commented range of the document's plain text, in characters (`start` < `end`).
    #[schema(value_type = Option<Object>)]
    anchor: Option<Anchor>,
}

/// A range of the plain text (`GET …/content?format=text` without the line breaks of blocks:
/// the `content` text itself).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Anchor {
    start: usize,
    end: usize,
}

/// The comments of the document as they read now, and the one named `id`.
async fn find(state: &AppState, doc: &str, caller: &Caller, id: &str) -> Result<Comment, ApiError> {
    let Projection::Document(now) = project(state, doc, caller, DocKind::Document).await? else {
        return Err(ApiError::Internal(anyhow::anyhow!("a document projection of another kind")));
    };
    now.comments.into_iter().find(|c| c.id == id).ok_or(ApiError::Missing("comment"))
}

#[utoipa::path(
    post,
    path = "/api/docs/{doc_id}/comments",
    tag = "content",
    operation_id = "content_comment_add",
    request_body = NewCommentBody,
    params(("doc_id" = String, Path, description = "Document id")),
    responses((status = 201, description = "The comment as it reads now", body = Object), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
    security(("bearer" = []))
)]
async fn add(
    State(state): State<AppState>,
    caller: Caller,
    Path(doc): Path<String>,
    Body(new): Body<NewCommentBody>,
) -> Result<(StatusCode, Json<Comment>), ApiError> {
    let id = entry_id(new.id)?;
    if new.body.trim().is_empty() || new.body.chars().count() > MAX_BODY {
        return Err(ApiError::invalid("invalid_body", format!("a comment has 1 to {MAX_BODY} characters")));
    }
    let anchor = match new.anchor {
        Some(Anchor { start, end }) if start >= end => {
            return Err(ApiError::invalid("invalid_anchor", "an anchor's start comes before its end"));
        }
        other => other.map(|a| (a.start, a.end)),
    };
    let (found, now) = writable(&state, &doc, &caller, DocKind::Document, Action::Comment).await?;
    let Projection::Document(now) = now else {
        return Err(ApiError::Internal(anyhow::anyhow!("a document projection of another kind")));
    };
    if let Some(parent) = &new.parent
        && !now.comments.iter().any(|c| &c.id == parent)
    {
        return Err(ApiError::Missing("comment to reply to"));
    }
    let comment = NewComment {
        id: &id,
        author: &caller.user_id,
        body: &new.body,
        at: now_ms(),
        parent: new.parent.as_deref(),
        anchor,
    };
    write(&state, &found, &caller, document::add_comment(&comment)).await?;
    Ok((StatusCode::CREATED, Json(find(&state, &doc, &caller, &id).await?)))
}

/// Resolve or reopen a comment's thread.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CommentChange {
    /// `true` resolves the thread, `false` reopens it.
    resolved: bool,
}

#[utoipa::path(
    patch,
    path = "/api/docs/{doc_id}/comments/{comment_id}",
    tag = "content",
    operation_id = "content_comment_resolve",
    request_body = CommentChange,
    params(("doc_id" = String, Path, description = "Document id"), ("comment_id" = String, Path, description = "Comment id")),
    responses((status = 200, description = "The comment as it reads now", body = Object), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
    security(("bearer" = []))
)]
async fn resolve(
    State(state): State<AppState>,
    caller: Caller,
    Path((doc, comment_id)): Path<(String, String)>,
    Body(change): Body<CommentChange>,
) -> Result<Json<Comment>, ApiError> {
    let (found, now) = writable(&state, &doc, &caller, DocKind::Document, Action::Comment).await?;
    let Projection::Document(now) = now else {
        return Err(ApiError::Internal(anyhow::anyhow!("a document projection of another kind")));
    };
    if !now.comments.iter().any(|c| c.id == comment_id) {
        return Err(ApiError::Missing("comment"));
    }
    write(&state, &found, &caller, document::resolve_comment(&comment_id, change.resolved)).await?;
    Ok(Json(find(&state, &doc, &caller, &comment_id).await?))
}
