//! A board's tasks and columns: read tasks with filters (`GET …/tasks`), create one (`POST`),
//! change, move, assign or archive one (`PATCH …/tasks/{task_id}`: each field given is written
//! under its own key, so concurrent edits of other fields survive), and add a column
//! (`POST …/columns`). Writes take `edit_document`; an archived task takes no change but being
//! unarchived (`409 archived`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use weft_sync_core::DocKind;
use weft_sync_core::access::Action;
use weft_sync_core::domain::board::{self, Board, Column, Priority, Task, TaskChange};
use weft_sync_core::domain::{Projection, Skipped};

use super::{entry_id, project, with_id, writable, write};
use crate::clock::now_ms;
use crate::http::api::{Body, Caller, Params};
use crate::http::{ApiError, AppState};

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(tasks, create)).routes(routes!(update)).routes(routes!(add_column))
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
    columns: Vec<Column>,
    /// The tasks that match, by column, then order.
    #[schema(value_type = Vec<Object>)]
    tasks: Vec<Task>,
    /// What the projection could not read, and why.
    #[schema(value_type = Vec<Object>)]
    skipped: Vec<Skipped>,
}

fn date(raw: Option<String>, name: &'static str) -> Result<Option<String>, ApiError> {
    match raw {
        Some(d) if !board::is_date(&d) => {
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
    let board = board_of(project(&state, &id, &caller, DocKind::Board).await?)?;
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

/// The board as it reads now.
fn board_of(now: Projection) -> Result<Board, ApiError> {
    match now {
        Projection::Board(board) => Ok(board),
        _ => Err(ApiError::Internal(anyhow::anyhow!("a board projection of another kind"))),
    }
}

/// `change` checked against `board`: valid fields, and a column the board has.
fn check(change: &TaskChange, board: &Board) -> Result<(), ApiError> {
    change.check().map_err(|e| ApiError::invalid("invalid_task", e))?;
    if let Some(column) = &change.column
        && !board.columns.iter().any(|c| &c.id == column)
    {
        return Err(ApiError::invalid("unknown_column", format!("the board has no column {column:?}")));
    }
    Ok(())
}

/// Task `id` as it reads now.
async fn find(state: &AppState, doc: &str, caller: &Caller, id: &str) -> Result<Task, ApiError> {
    let board = board_of(project(state, doc, caller, DocKind::Board).await?)?;
    board.tasks.into_iter().find(|t| t.id == id).ok_or(ApiError::Missing("task"))
}

#[utoipa::path(
    post,
    path = "/api/docs/{doc_id}/tasks",
    tag = "content",
    operation_id = "content_task_create",
    request_body(content = Object, description = "The task's fields as `docs/schemas.md` names them (`title` required; `description`, `column`, `priority`, `assignees`, `labels`, `due`, `order`, `archived`), and optionally your `id` for it so that repeating the request creates it once"),
    params(("doc_id" = String, Path, description = "Document id")),
    responses((status = 201, description = "The task as it reads now", body = Object), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
    security(("bearer" = []))
)]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path(doc): Path<String>,
    Body(body): Body<serde_json::Map<String, serde_json::Value>>,
) -> Result<(StatusCode, Json<Task>), ApiError> {
    let (id, change): (_, TaskChange) = with_id(body)?;
    let id = entry_id(id)?;
    if change.title.as_deref().is_none_or(|t| t.trim().is_empty()) {
        return Err(ApiError::invalid("invalid_task", "a new task has a title"));
    }
    let (found, now) = writable(&state, &doc, &caller, DocKind::Board, Action::EditDocument).await?;
    check(&change, &board_of(now)?)?;
    write(&state, &found, &caller, board::create_task(&id, &change, &caller.user_id, now_ms())).await?;
    Ok((StatusCode::CREATED, Json(find(&state, &doc, &caller, &id).await?)))
}

#[utoipa::path(
    patch,
    path = "/api/docs/{doc_id}/tasks/{task_id}",
    tag = "content",
    operation_id = "content_task_update",
    request_body(content = Object, description = "The fields to change (`docs/schemas.md`): move with `column` and `order`, assign with `assignees`, archive with `archived`; `due: null` removes the due date"),
    params(("doc_id" = String, Path, description = "Document id"), ("task_id" = String, Path, description = "Task id")),
    responses((status = 200, description = "The task as it reads now", body = Object), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
    security(("bearer" = []))
)]
async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path((doc, task_id)): Path<(String, String)>,
    Body(change): Body<TaskChange>,
) -> Result<Json<Task>, ApiError> {
    let (found, now) = writable(&state, &doc, &caller, DocKind::Board, Action::EditDocument).await?;
    let board = board_of(now)?;
    let task = board.tasks.iter().find(|t| t.id == task_id).ok_or(ApiError::Missing("task"))?;
    if task.archived && change.archived != Some(false) {
        return Err(ApiError::Conflict {
            code: "archived",
            message: "the task is archived: unarchive it to change it",
        });
    }
    check(&change, &board)?;
    write(&state, &found, &caller, change.changes(&task_id)).await?;
    Ok(Json(find(&state, &doc, &caller, &task_id).await?))
}

/// A column to add at the end of the board.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewColumn {
    /// Its id (1–64 letters, digits, `-`, `_`); a UUID by default.
    id: Option<String>,
    /// Its name.
    name: String,
}

#[utoipa::path(
    post,
    path = "/api/docs/{doc_id}/columns",
    tag = "content",
    operation_id = "content_column_add",
    request_body = NewColumn,
    params(("doc_id" = String, Path, description = "Document id")),
    responses((status = 201, description = "The board's columns, in order", body = Object), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
    security(("bearer" = []))
)]
async fn add_column(
    State(state): State<AppState>,
    caller: Caller,
    Path(doc): Path<String>,
    Body(new): Body<NewColumn>,
) -> Result<(StatusCode, Json<Vec<Column>>), ApiError> {
    let id = entry_id(new.id)?;
    if new.name.trim().is_empty() || new.name.chars().count() > 200 {
        return Err(ApiError::invalid("invalid_name", "a column name has 1 to 200 characters"));
    }
    let (found, now) = writable(&state, &doc, &caller, DocKind::Board, Action::EditDocument).await?;
    if board_of(now)?.columns.iter().any(|c| c.id == id) {
        return Err(ApiError::Taken("column id"));
    }
    write(&state, &found, &caller, board::add_column(&id, new.name.trim())).await?;
    let board = board_of(project(&state, &doc, &caller, DocKind::Board).await?)?;
    Ok((StatusCode::CREATED, Json(board.columns)))
}
