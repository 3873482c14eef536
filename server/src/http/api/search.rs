//! Search (`GET /api/workspaces/{ws}/search`): ranked full-text results over what derivation
//! indexed (`storage::search`), only from documents the caller may read, with highlighted
//! snippets, filters and cursor paging. The query language is `weft_sync_core::search::Query`'s;
//! a query it refuses is a 400 saying why.

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use weft_sync_core::access::Action;
use weft_sync_core::search::{ItemKind, Query};

use super::workspaces::member;
use super::{Caller, Page, Params};
use crate::http::{ApiError, AppState};
use crate::storage::search::{Cursor, Hit, SearchRequest};

/// Results per page when the caller does not say.
const DEFAULT_LIMIT: u32 = 20;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(search))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct SearchQuery {
    /// What to search for: words (all must match), `"a phrase"`, `prefix*`, `-excluded`,
    /// `a OR b`. Case and accents are ignored.
    q: String,
    /// Only results of this kind: `document`, `comment`, `message`, `task` or `shape`.
    kind: Option<String>,
    /// Only messages of this channel (its id).
    channel: Option<String>,
    /// Only what this user wrote (their user id).
    author: Option<String>,
    /// Only what was written at or after this time (milliseconds since the Unix epoch).
    from: Option<i64>,
    /// Only what was written before this time (milliseconds since the Unix epoch).
    to: Option<i64>,
    /// Include archived documents and tasks (default: left out).
    archived: Option<bool>,
    /// The page after this cursor (the `next` of the previous page).
    after: Option<String>,
    /// How many results at most, 1 to 100 (default 20).
    limit: Option<u32>,
}

/// A page of results, best first; `next` is the `after` of the following page.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Results {
    results: Vec<Hit>,
    next: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/workspaces/{ws}/search",
    tag = "search",
    operation_id = "search",
    params(("ws" = String, Path, description = "Workspace id"), SearchQuery),
    responses((status = 200, description = "Done", body = Results), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
async fn search(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
    Params(params): Params<SearchQuery>,
) -> Result<Json<Results>, ApiError> {
    member(&state, &ws, &caller, Action::ReadWorkspace).await?;
    let query = Query::parse(&params.q).map_err(|e| ApiError::invalid("invalid_search", e.to_string()))?;
    let kind = params
        .kind
        .as_deref()
        .map(|raw| {
            ItemKind::parse(raw).ok_or_else(|| {
                ApiError::invalid(
                    "invalid_kind",
                    "a result kind is document, comment, message, task or shape",
                )
            })
        })
        .transpose()?;
    if let (Some(from), Some(to)) = (params.from, params.to)
        && from >= to
    {
        return Err(ApiError::invalid("invalid_range", "from must be before to"));
    }
    let after = params
        .after
        .as_deref()
        .map(|raw| {
            Cursor::decode(raw)
                .ok_or_else(|| ApiError::invalid("invalid_cursor", "after is not a cursor this search gave"))
        })
        .transpose()?;
    let limit = Page { before: None, limit: Some(params.limit.unwrap_or(DEFAULT_LIMIT)) }.limit()?;
    let request = SearchRequest {
        query,
        kind,
        channel: params.channel,
        author: params.author,
        from: params.from,
        to: params.to,
        archived: params.archived.unwrap_or(false),
        after,
        limit,
    };
    let (results, next) = state.storage.search(&ws, &caller.user_id, request).await?;
    Ok(Json(Results { results, next: next.map(Cursor::encode) }))
}
