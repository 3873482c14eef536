//! The caller's notifications (`/api/me/notifications`): list them newest first (all, or the
//! unread), count the unread, mark some or all read; what they want to be notified of
//! (`/api/me/notification-preferences`) and which documents they muted (`/api/docs/{id}/mute`). Derivation creates them
//! (`docs/derivation.md`); `/ws/events` delivers them live. Another person's notification, or
//! one about a document the caller may no longer read, does not exist for the caller.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::accounts::now_ms;
use super::{Body, Caller, Page, Params};
use crate::http::{ApiError, AppState};
use crate::storage::notifications::{Notification, Preferences};
use weft_sync_core::notify::Reason;

/// Most ids one request may mark read.
const MAX_IDS: usize = 1000;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(unread))
        .routes(routes!(mark_read))
        .routes(routes!(preferences, set_preferences))
        .routes(routes!(mute, unmute))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only unread ones.
    unread: Option<bool>,
    /// Only notifications older than this cursor (the `next` of the previous page).
    before: Option<i64>,
    /// How many at most, 1 to 100 (default 50).
    limit: Option<u32>,
}

/// A page of notifications, newest first; `next` is the `before` of the following page.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Notifications {
    notifications: Vec<Notification>,
    next: Option<i64>,
    /// How many are unread in all.
    unread: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Unread {
    unread: u64,
}

/// Which to mark read: `ids`, or `all`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct MarkRead {
    ids: Option<Vec<i64>>,
    #[serde(default)]
    all: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Marked {
    /// How many were unread and are read now.
    marked: usize,
    /// How many are still unread.
    unread: u64,
}

#[utoipa::path(
    get,
    path = "/api/me/notifications",
    tag = "notifications",
    operation_id = "notifications_list",
    params(ListQuery),
    responses((status = 200, description = "Done", body = Notifications), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Params(query): Params<ListQuery>,
) -> Result<Json<Notifications>, ApiError> {
    let limit = Page { before: query.before, limit: query.limit }.limit()?;
    let (notifications, next) = state
        .storage
        .notifications(&caller.user_id, query.unread.unwrap_or(false), query.before, limit)
        .await?;
    let unread = state.storage.unread_notifications(&caller.user_id).await?;
    Ok(Json(Notifications { notifications, next, unread }))
}

#[utoipa::path(
    get,
    path = "/api/me/notifications/unread",
    tag = "notifications",
    operation_id = "notifications_unread",
    responses((status = 200, description = "Done", body = Unread), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
async fn unread(State(state): State<AppState>, caller: Caller) -> Result<Json<Unread>, ApiError> {
    Ok(Json(Unread { unread: state.storage.unread_notifications(&caller.user_id).await? }))
}

#[utoipa::path(
    post,
    path = "/api/me/notifications/read",
    tag = "notifications",
    operation_id = "notifications_mark_read",
    request_body = MarkRead,
    responses((status = 200, description = "Done", body = Marked), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
async fn mark_read(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<MarkRead>,
) -> Result<Json<Marked>, ApiError> {
    let ids = match (body.ids, body.all) {
        (Some(ids), false) if !ids.is_empty() && ids.len() <= MAX_IDS => Some(ids),
        (None, true) => None,
        _ => {
            return Err(ApiError::invalid(
                "invalid_request",
                format!("send either ids (1 to {MAX_IDS} notification ids) or all: true"),
            ));
        }
    };
    let marked = match state.storage.mark_notifications_read(&caller.user_id, ids, now_ms()).await? {
        Ok(marked) => marked,
        Err(_unknown) => return Err(ApiError::Missing("notification")),
    };
    let unread = state.storage.unread_notifications(&caller.user_id).await?;
    Ok(Json(Marked { marked, unread }))
}

/// Reasons to turn on (`true`) or off; the ones left out stay as they are.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PreferencesChange {
    mention: Option<bool>,
    reply: Option<bool>,
    assigned: Option<bool>,
}

#[utoipa::path(
    get,
    path = "/api/me/notification-preferences",
    tag = "notifications",
    operation_id = "notifications_preferences",
    responses((status = 200, description = "Done", body = Preferences), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
async fn preferences(State(state): State<AppState>, caller: Caller) -> Result<Json<Preferences>, ApiError> {
    Ok(Json(state.storage.notification_preferences(&caller.user_id).await?))
}

#[utoipa::path(
    patch,
    path = "/api/me/notification-preferences",
    tag = "notifications",
    operation_id = "notifications_preferences_update",
    request_body = PreferencesChange,
    responses((status = 200, description = "The preferences now", body = Preferences), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
async fn set_preferences(
    State(state): State<AppState>,
    caller: Caller,
    Body(change): Body<PreferencesChange>,
) -> Result<Json<Preferences>, ApiError> {
    let changes: Vec<(Reason, bool)> = [
        (Reason::Mention, change.mention),
        (Reason::Reply, change.reply),
        (Reason::Assigned, change.assigned),
    ]
    .into_iter()
    .filter_map(|(reason, on)| on.map(|on| (reason, on)))
    .collect();
    state.storage.set_notification_preferences(&caller.user_id, changes).await?;
    Ok(Json(state.storage.notification_preferences(&caller.user_id).await?))
}

#[utoipa::path(
    put,
    path = "/api/docs/{doc_id}/mute",
    tag = "notifications",
    operation_id = "notifications_mute",
    params(("doc_id" = String, Path, description = "Document id")),
    responses((status = 204, description = "Muted: from now on only mentions there notify"), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
async fn mute(
    State(state): State<AppState>,
    caller: Caller,
    Path(doc): Path<String>,
) -> Result<StatusCode, ApiError> {
    super::docs::document(&state, &doc, &caller, &[]).await?;
    state.storage.mute_document(&caller.user_id, &doc, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    delete,
    path = "/api/docs/{doc_id}/mute",
    tag = "notifications",
    operation_id = "notifications_unmute",
    params(("doc_id" = String, Path, description = "Document id")),
    responses((status = 204, description = "Not muted"), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
async fn unmute(
    State(state): State<AppState>,
    caller: Caller,
    Path(doc): Path<String>,
) -> Result<StatusCode, ApiError> {
    super::docs::document(&state, &doc, &caller, &[]).await?;
    state.storage.mute_document(&caller.user_id, &doc, false).await?;
    Ok(StatusCode::NO_CONTENT)
}
