//! A whiteboard's shapes: read them in stacking order (`GET …/shapes`) or as SVG
//! (`GET …/export.svg`), add one (`POST`), change or remove one (`PATCH`, `DELETE
//! …/shapes/{shape_id}`). Each field sits under its own key: a move and a recolour made at once
//! both survive. Writes take `edit_document`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use weft_sync_core::DocKind;
use weft_sync_core::access::Action;
use weft_sync_core::domain::whiteboard::{self, Shape, ShapeChange, Whiteboard};
use weft_sync_core::domain::{Projection, Skipped};

use super::{entry_id, project, with_id, writable, write};
use crate::http::api::{Body, Caller};
use crate::http::{ApiError, AppState};

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(shapes, add))
        .routes(routes!(update, delete))
        .routes(routes!(export_svg))
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
    let board = whiteboard_of(project(&state, &id, &caller, DocKind::Whiteboard).await?)?;
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
    let board = whiteboard_of(project(&state, &id, &caller, DocKind::Whiteboard).await?)?;
    Ok(([(CONTENT_TYPE, "image/svg+xml")], board.to_svg()).into_response())
}

/// The whiteboard as it reads now.
fn whiteboard_of(now: Projection) -> Result<Whiteboard, ApiError> {
    match now {
        Projection::Whiteboard(board) => Ok(board),
        _ => Err(ApiError::Internal(anyhow::anyhow!("a whiteboard projection of another kind"))),
    }
}

/// Shape `id` as it reads now.
async fn find(state: &AppState, doc: &str, caller: &Caller, id: &str) -> Result<Shape, ApiError> {
    let board = whiteboard_of(project(state, doc, caller, DocKind::Whiteboard).await?)?;
    board.shapes.into_iter().find(|s| s.id == id).ok_or(ApiError::Missing("shape"))
}

#[utoipa::path(
    post,
    path = "/api/docs/{doc_id}/shapes",
    tag = "content",
    operation_id = "content_shape_add",
    request_body(content = Object, description = "The shape's fields as `docs/schemas.md` names them (`type` required), and optionally your `id` for it so that repeating the request adds it once"),
    params(("doc_id" = String, Path, description = "Document id")),
    responses((status = 201, description = "The shape as it reads now", body = Object), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
    security(("bearer" = []))
)]
async fn add(
    State(state): State<AppState>,
    caller: Caller,
    Path(doc): Path<String>,
    Body(body): Body<serde_json::Map<String, serde_json::Value>>,
) -> Result<(StatusCode, Json<Shape>), ApiError> {
    let (id, change): (_, ShapeChange) = with_id(body)?;
    let id = entry_id(id)?;
    if change.kind.is_none() {
        return Err(ApiError::invalid("invalid_shape", "a new shape has a type"));
    }
    change.check().map_err(|e| ApiError::invalid("invalid_shape", e))?;
    let (found, _) = writable(&state, &doc, &caller, DocKind::Whiteboard, Action::EditDocument).await?;
    write(&state, &found, &caller, change.changes(&id)).await?;
    Ok((StatusCode::CREATED, Json(find(&state, &doc, &caller, &id).await?)))
}

#[utoipa::path(
    patch,
    path = "/api/docs/{doc_id}/shapes/{shape_id}",
    tag = "content",
    operation_id = "content_shape_update",
    request_body(content = Object, description = "The fields to change (`docs/schemas.md`); `from: null` / `to: null` disconnect a connector end"),
    params(("doc_id" = String, Path, description = "Document id"), ("shape_id" = String, Path, description = "Shape id")),
    responses((status = 200, description = "The shape as it reads now", body = Object), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
    security(("bearer" = []))
)]
async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path((doc, shape_id)): Path<(String, String)>,
    Body(change): Body<ShapeChange>,
) -> Result<Json<Shape>, ApiError> {
    change.check().map_err(|e| ApiError::invalid("invalid_shape", e))?;
    let (found, now) = writable(&state, &doc, &caller, DocKind::Whiteboard, Action::EditDocument).await?;
    if !whiteboard_of(now)?.shapes.iter().any(|s| s.id == shape_id) {
        return Err(ApiError::Missing("shape"));
    }
    write(&state, &found, &caller, change.changes(&shape_id)).await?;
    Ok(Json(find(&state, &doc, &caller, &shape_id).await?))
}

#[utoipa::path(
    delete,
    path = "/api/docs/{doc_id}/shapes/{shape_id}",
    tag = "content",
    operation_id = "content_shape_delete",
    params(("doc_id" = String, Path, description = "Document id"), ("shape_id" = String, Path, description = "Shape id")),
    responses((status = 204, description = "Removed"), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
    security(("bearer" = []))
)]
async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path((doc, shape_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (found, now) = writable(&state, &doc, &caller, DocKind::Whiteboard, Action::EditDocument).await?;
    if !whiteboard_of(now)?.shapes.iter().any(|s| s.id == shape_id) {
        return Err(ApiError::Missing("shape"));
    }
    write(&state, &found, &caller, whiteboard::delete_shape(&shape_id)).await?;
    Ok(StatusCode::NO_CONTENT)
}
