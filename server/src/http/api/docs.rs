//! Workspace documents (`/api/workspaces/{ws}/docs`, `/api/docs/{doc_id}`): create, list, read,
//! rename, archive, share and delete the documents, channels, boards and whiteboards of a
//! workspace. Their content is synced over the WebSocket dialects, which open a document by its id.
//!
//! Every route asks [`super::authorize`] with the document's facts; a document the caller may not
//! see is a 404 like one that does not exist. A change that can take access away (archive, a new
//! member list, delete) is followed by [`crate::auth::policy::Policy::recheck`], which closes the
//! live connections it affects.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use weft_sync_core::DocKind;
use weft_sync_core::access::{Action, Role, Target};
use weft_sync_core::automerge::DocumentId;

use super::accounts::now_ms;
use super::workspaces::member;
use super::{Body, Caller, Page, Params, authorize};
use crate::auth::policy::Affected;
use crate::http::{ApiError, AppState};
use crate::storage::Crdt;
use crate::storage::documents::{Document, DocumentAccess, DocumentChange, DocumentFilter, NewDocument};

/// Longest title, in characters.
const MAX_TITLE_CHARS: usize = 200;
/// Longest member list of a private document or direct-message channel.
const MAX_MEMBERS: usize = 256;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create, list)).routes(routes!(read, update, remove))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewDoc {
    kind: String,
    crdt: String,
    title: String,
    #[serde(default)]
    private: bool,
    /// A direct-message channel between the creator and `members` (implies private).
    #[serde(default)]
    dm: bool,
    #[serde(default)]
    members: Vec<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Change {
    title: Option<String>,
    archived: Option<bool>,
    members: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only this kind: `document`, `channel`, `board` or `whiteboard`.
    kind: Option<String>,
    /// The archived ones (default: the others).
    archived: Option<bool>,
    /// Only documents older than this cursor (the `next` of the previous page).
    before: Option<i64>,
    /// How many at most, 1 to 100 (default 50).
    limit: Option<u32>,
}

/// A page of documents, newest first; `next` is the `before` of the following page.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Documents {
    documents: Vec<Document>,
    next: Option<i64>,
}

fn kind(raw: &str) -> Result<DocKind, ApiError> {
    DocKind::parse(raw)
        .ok_or_else(|| ApiError::invalid("invalid_kind", "a kind is document, channel, board or whiteboard"))
}

fn crdt(raw: &str) -> Result<Crdt, ApiError> {
    match raw {
        "yjs" => Ok(Crdt::Yjs),
        "automerge" => Ok(Crdt::Automerge),
        _ => Err(ApiError::invalid("invalid_crdt", "a crdt is yjs or automerge")),
    }
}

fn title(raw: &str) -> Result<String, ApiError> {
    let title = raw.trim();
    if title.is_empty() || title.chars().count() > MAX_TITLE_CHARS || title.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "invalid_title",
            format!("a title has 1 to {MAX_TITLE_CHARS} characters and no control characters"),
        ));
    }
    Ok(title.to_owned())
}

fn members(list: Vec<String>) -> Result<Vec<String>, ApiError> {
    if list.len() > MAX_MEMBERS || list.iter().any(|m| m.is_empty() || m.len() > 64) {
        return Err(ApiError::invalid(
            "invalid_members",
            format!("members is a list of at most {MAX_MEMBERS} user ids"),
        ));
    }
    Ok(list)
}

/// A new document id: 16 random bytes as an automerge-repo document id (base58check), which
/// every dialect accepts as a document name.
pub(super) fn new_id() -> Result<String, ApiError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no random bytes: {e}"))?;
    Ok(DocumentId::from_binary(&bytes).as_str().to_owned())
}

/// Document `id` and the caller's role, once they may take every one of `actions` on it.
pub(super) async fn document(
    state: &AppState,
    id: &str,
    caller: &Caller,
    actions: &[Action],
) -> Result<(Document, Role), ApiError> {
    let found = state.storage.document_access(id, &caller.user_id).await?;
    let Some(DocumentAccess { document, role }) = found.filter(|found| !found.document.deleted) else {
        return Err(ApiError::Missing("document"));
    };
    let target = Target {
        private: document.private,
        listed: document.lists(&caller.user_id),
        creator: document.created_by == caller.user_id,
    };
    // Seeing it comes first: a caller who may not must not learn that it exists.
    authorize(role, Action::ReadDocument, target, "document")?;
    for action in actions {
        authorize(role, *action, target, "document")?;
    }
    let role = role.ok_or(ApiError::Missing("document"))?;
    Ok((document, role))
}

#[utoipa::path(
    post,
    path = "/api/workspaces/{ws}/docs",
    tag = "documents",
    operation_id = "documents_create",
    request_body = NewDoc,
    params(("ws" = String, Path, description = "Workspace id")),
    responses((status = 201, description = "Done", body = Document), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
    Body(body): Body<NewDoc>,
) -> Result<(StatusCode, Json<Document>), ApiError> {
    member(&state, &ws, &caller, Action::CreateDocument).await?;
    let kind = kind(&body.kind)?;
    if body.dm && (kind != DocKind::Channel || body.members.is_empty()) {
        return Err(ApiError::invalid(
            "invalid_dm",
            "a direct-message conversation is a channel with at least one other member",
        ));
    }
    let new = NewDocument {
        id: new_id()?,
        workspace: ws,
        kind,
        crdt: crdt(&body.crdt)?,
        title: title(&body.title)?,
        private: body.private || body.dm,
        dm: body.dm,
        created_by: caller.user_id.clone(),
        created_at: now_ms(),
        members: members(body.members)?,
    };
    let id = new.id.clone();
    // Known as a workspace document before its row exists: no join may take it for a free one.
    state.policy.add_workspace_document(&id);
    match state.storage.create_document(new, caller.audit("document.create")).await {
        Ok(document) => Ok((StatusCode::CREATED, Json(document))),
        Err(err) => {
            state.policy.forget_workspace_document(&id);
            Err(err.into())
        }
    }
}

#[utoipa::path(
    get,
    path = "/api/workspaces/{ws}/docs",
    tag = "documents",
    operation_id = "documents_list",
    params(("ws" = String, Path, description = "Workspace id"), ListQuery),
    responses((status = 200, description = "Done", body = Documents), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
    Params(query): Params<ListQuery>,
) -> Result<Json<Documents>, ApiError> {
    member(&state, &ws, &caller, Action::ReadWorkspace).await?;
    let limit = Page { before: query.before, limit: query.limit }.limit()?;
    let filter = DocumentFilter {
        kind: query.kind.as_deref().map(kind).transpose()?,
        archived: query.archived.unwrap_or(false),
    };
    let (documents, next) =
        state.storage.documents_in(&ws, &caller.user_id, filter, query.before, limit).await?;
    Ok(Json(Documents { documents, next }))
}

#[utoipa::path(
    get,
    path = "/api/docs/{doc_id}",
    tag = "documents",
    operation_id = "documents_read",
    params(("doc_id" = String, Path, description = "Document id")),
    responses((status = 200, description = "Done", body = Document), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Document>, ApiError> {
    Ok(Json(document(&state, &id, &caller, &[]).await?.0))
}

#[utoipa::path(
    patch,
    path = "/api/docs/{doc_id}",
    tag = "documents",
    operation_id = "documents_update",
    request_body = Change,
    params(("doc_id" = String, Path, description = "Document id")),
    responses((status = 200, description = "Done", body = Document), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<Change>,
) -> Result<Json<Document>, ApiError> {
    let mut actions = Vec::new();
    if body.title.is_some() || body.archived.is_some() {
        actions.push(Action::ManageDocument);
    }
    if body.members.is_some() {
        actions.push(Action::ShareDocument);
    }
    let (found, _) = document(&state, &id, &caller, &actions).await?;
    if body.members.is_some() && !found.private {
        return Err(ApiError::invalid("not_private", "only a private document has a member list"));
    }
    let change = DocumentChange {
        title: body.title.as_deref().map(title).transpose()?,
        archived: body.archived,
        members: body.members.map(members).transpose()?,
    };
    let action = match (&change.members, change.archived) {
        (Some(_), _) => "document.share",
        (None, Some(true)) => "document.archive",
        (None, Some(false)) => "document.unarchive",
        (None, None) => "document.update",
    };
    let updated = state
        .storage
        .update_document(&id, change, caller.audit(action), now_ms())
        .await?
        .ok_or(ApiError::Missing("document"))?;
    state.policy.recheck(Affected::Document(id)).await;
    Ok(Json(updated))
}

#[utoipa::path(
    delete,
    path = "/api/docs/{doc_id}",
    tag = "documents",
    operation_id = "documents_remove",
    params(("doc_id" = String, Path, description = "Document id")),
    responses((status = 204, description = "Done"), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    document(&state, &id, &caller, &[Action::DeleteDocument]).await?;
    if !state.storage.delete_document(&id, caller.audit("document.delete"), now_ms()).await? {
        return Err(ApiError::Missing("document"));
    }
    state.policy.recheck(Affected::Document(id)).await;
    Ok(StatusCode::NO_CONTENT)
}
