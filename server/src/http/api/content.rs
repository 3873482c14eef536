//! Reading a workspace document's content through its kind's projection
//! (`weft_sync_core::domain`): a document as JSON blocks, plain text or Markdown; a board's tasks
//! with filters; a channel's messages newest first and its threads; a whiteboard's shapes and its
//! SVG. The room answers once everything it holds is durable, so a reader never sees an edit a
//! crash could take back. Every route asks `read_document` first (404 for whoever may not see
//! it); a route of another kind's content is `400 wrong_kind`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use weft_sync_core::domain::board::{Priority, Task};
use weft_sync_core::domain::channel::{Cursor, Message};
use weft_sync_core::domain::whiteboard::Shape;
use weft_sync_core::domain::{Projection, Skipped};
use weft_sync_core::{DocId, DocKind};

use super::docs::document;
use super::{Caller, Params};
use crate::http::{ApiError, AppState};
use crate::storage::documents::Document;

/// Longest page of messages.
const MAX_MESSAGES: usize = 100;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(content))
        .routes(routes!(comments))
        .routes(routes!(tasks))
        .routes(routes!(messages))
        .routes(routes!(thread))
        .routes(routes!(shapes))
        .routes(routes!(export_svg))
}

/// The caller's document `id` of kind `kind`, read through its projection.
async fn project(state: &AppState, id: &str, caller: &Caller, kind: DocKind) -> Result<Projection, ApiError> {
    let (found, _): (Document, _) = document(state, id, caller, &[]).await?;
    if found.kind != kind {
        return Err(ApiError::Invalid {
            code: "wrong_kind",
            message: format!(
                "this route reads a {}; the document is a {}",
                kind.as_str(),
                found.kind.as_str()
            ),
        });
    }
    let doc = DocId::new(found.id.clone())?;
    state.rooms.project(&doc, found.crdt, kind).await.map_err(|err| {
        tracing::warn!(doc = %doc, error = %err, "projection failed");
        ApiError::NotReady("the document cannot be read right now")
    })
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
        _ => Json(ContentBlocks { blocks: doc.blocks, skipped: doc.skipped }).into_response(),
    })
}

/// A document's comments.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Comments {
    /// Comments and replies, oldest first: `{ id, author, body, at, parent, resolved, quote,
    /// mentions }`; `quote` is the anchored text as it reads now.
    #[schema(value_type = Vec<Object>)]
    comments: Vec<weft_sync_core::domain::document::Comment>,
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

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct TaskQuery {
    /// Only tasks in this column (its id).
    column: Option<String>,
    /// Only tasks assigned to this user id.
    assignee: Option<String>,
    /// Only this priority: low, medium, high or urgent.
    priority: Option<String>,
    /// Only tasks due on or after this date (`YYYY-MM-DD`).
    due_from: Option<String>,
    /// Only tasks due on or before this date (`YYYY-MM-DD`).
    due_to: Option<String>,
    /// Archived tasks (`true`) or the others (default).
    archived: Option<bool>,
    /// Only tasks overdue on this date (`YYYY-MM-DD`, the caller's today).
    overdue_on: Option<String>,
}

/// A board's tasks.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Tasks {
    /// The board's columns in order: `{ id, name }`.
    #[schema(value_type = Vec<Object>)]
    columns: Vec<weft_sync_core::domain::board::Column>,
    /// The tasks that match, by column, then order.
    #[schema(value_type = Vec<Object>)]
    tasks: Vec<Task>,
    /// What the projection could not read, and why.
    #[schema(value_type = Vec<Object>)]
    skipped: Vec<Skipped>,
}

fn date(raw: Option<String>, name: &'static str) -> Result<Option<String>, ApiError> {
    match raw {
        Some(d) if !weft_sync_core::domain::board::is_date(&d) => {
            Err(ApiError::invalid("invalid_date", format!("{name} is a YYYY-MM-DD date")))
        }
        other => Ok(other),
    }
}

#[utoipa::path(
    get,
    path = "/api/docs/{doc_id}/tasks",
    tag = "content",
    operation_id = "content_tasks",
    params(("doc_id" = String, Path, description = "Document id"), TaskQuery),
    responses((status = 200, description = "Done", body = Tasks), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
    security(("bearer" = []))
)]
async fn tasks(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Params(q): Params<TaskQuery>,
) -> Result<Json<Tasks>, ApiError> {
    let priority = q
        .priority
        .as_deref()
        .map(|p| {
            Priority::parse(p).ok_or_else(|| {
                ApiError::invalid("invalid_priority", "a priority is low, medium, high or urgent")
            })
        })
        .transpose()?;
    let (from, to, overdue) =
        (date(q.due_from, "due_from")?, date(q.due_to, "due_to")?, date(q.overdue_on, "overdue_on")?);
    let Projection::Board(board) = project(&state, &id, &caller, DocKind::Board).await? else {
        return Err(ApiError::Internal(anyhow::anyhow!("a board projection of another kind")));
    };
    let archived = q.archived.unwrap_or(false);
    let tasks = board
        .tasks
        .into_iter()
        .filter(|t| t.archived == archived)
        .filter(|t| q.column.as_ref().is_none_or(|c| t.column.as_ref() == Some(c)))
        .filter(|t| q.assignee.as_ref().is_none_or(|a| t.assignees.contains(a)))
        .filter(|t| priority.is_none_or(|p| t.priority == p))
        .filter(|t| from.as_ref().is_none_or(|f| t.due.as_ref().is_some_and(|d| d >= f)))
        .filter(|t| to.as_ref().is_none_or(|u| t.due.as_ref().is_some_and(|d| d <= u)))
        .filter(|t| overdue.as_ref().is_none_or(|today| t.is_overdue(today)))
        .collect();
    Ok(Json(Tasks { columns: board.columns, tasks, skipped: board.skipped }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct MessageQuery {
    /// Only messages older than this one: the `next.at` of the previous page…
    before_at: Option<i64>,
    /// …and its `next.id`.
    before_id: Option<String>,
    /// How many at most, 1 to 100 (default 50).
    limit: Option<usize>,
}

/// A page of messages, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Messages {
    /// The channel's topic.
    topic: String,
    /// Messages (thread replies are read with `…/thread`).
    #[schema(value_type = Vec<Object>)]
    messages: Vec<Message>,
    /// Where the next page starts (`before_at`, `before_id`), if there is one.
    #[schema(value_type = Option<Object>)]
    next: Option<NextPage>,
}

/// The cursor of the next page.
#[derive(Debug, Serialize)]
struct NextPage {
    at: i64,
    id: String,
}

#[utoipa::path(
    get,
    path = "/api/docs/{doc_id}/messages",
    tag = "content",
    operation_id = "content_messages",
    params(("doc_id" = String, Path, description = "Document id"), MessageQuery),
    responses((status = 200, description = "Done", body = Messages), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
    security(("bearer" = []))
)]
async fn messages(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Params(q): Params<MessageQuery>,
) -> Result<Json<Messages>, ApiError> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=MAX_MESSAGES).contains(&limit) {
        return Err(ApiError::invalid("invalid_limit", format!("limit is 1 to {MAX_MESSAGES}")));
    }
    let before = match (q.before_at, q.before_id) {
        (Some(at), Some(id)) => Some(Cursor { at, id }),
        (None, None) => None,
        _ => return Err(ApiError::invalid("invalid_cursor", "give before_at and before_id together")),
    };
    let Projection::Channel(channel) = project(&state, &id, &caller, DocKind::Channel).await? else {
        return Err(ApiError::Internal(anyhow::anyhow!("a channel projection of another kind")));
    };
    let (page, next) = channel.page(before.as_ref(), limit);
    Ok(Json(Messages {
        messages: page.into_iter().cloned().collect(),
        next: next.map(|c| NextPage { at: c.at, id: c.id }),
        topic: channel.topic,
    }))
}

/// A thread.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Thread {
    /// The message the thread answers.
    #[schema(value_type = Object)]
    parent: Message,
    /// Its replies, oldest first.
    #[schema(value_type = Vec<Object>)]
    replies: Vec<Message>,
}

#[utoipa::path(
    get,
    path = "/api/docs/{doc_id}/messages/{message_id}/thread",
    tag = "content",
    operation_id = "content_thread",
    params(("doc_id" = String, Path, description = "Document id"), ("message_id" = String, Path, description = "The thread's first message")),
    responses((status = 200, description = "Done", body = Thread), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
    security(("bearer" = []))
)]
async fn thread(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, message_id)): Path<(String, String)>,
) -> Result<Json<Thread>, ApiError> {
    let Projection::Channel(channel) = project(&state, &id, &caller, DocKind::Channel).await? else {
        return Err(ApiError::Internal(anyhow::anyhow!("a channel projection of another kind")));
    };
    let parent =
        channel.messages.iter().find(|m| m.id == message_id).cloned().ok_or(ApiError::Missing("message"))?;
    let replies = channel.thread(&message_id).into_iter().cloned().collect();
    Ok(Json(Thread { parent, replies }))
}

/// A whiteboard's shapes.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Shapes {
    /// Shapes in stacking order, lowest first.
    #[schema(value_type = Vec<Object>)]
    shapes: Vec<Shape>,
    /// What the projection could not read, and why.
    #[schema(value_type = Vec<Object>)]
    skipped: Vec<Skipped>,
}

#[utoipa::path(
    get,
    path = "/api/docs/{doc_id}/shapes",
    tag = "content",
    operation_id = "content_shapes",
    params(("doc_id" = String, Path, description = "Document id")),
    responses((status = 200, description = "Done", body = Shapes), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
    security(("bearer" = []))
)]
async fn shapes(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Shapes>, ApiError> {
    let Projection::Whiteboard(board) = project(&state, &id, &caller, DocKind::Whiteboard).await? else {
        return Err(ApiError::Internal(anyhow::anyhow!("a whiteboard projection of another kind")));
    };
    Ok(Json(Shapes { shapes: board.shapes, skipped: board.skipped }))
}

#[utoipa::path(
    get,
    path = "/api/docs/{doc_id}/export.svg",
    tag = "content",
    operation_id = "content_export_svg",
    params(("doc_id" = String, Path, description = "Document id")),
    responses((status = 200, description = "The whiteboard as `image/svg+xml`"), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
    security(("bearer" = []))
)]
async fn export_svg(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let Projection::Whiteboard(board) = project(&state, &id, &caller, DocKind::Whiteboard).await? else {
        return Err(ApiError::Internal(anyhow::anyhow!("a whiteboard projection of another kind")));
    };
    Ok(([(CONTENT_TYPE, "image/svg+xml")], board.to_svg()).into_response())
}
