//! The REST API under `/api`: one module per resource, one error type ([`ApiError`]), and the
//! two extractors every route uses — [`Body`] (a JSON body whose every rejection is a 4xx JSON
//! error) and [`Caller`] (the person an access token names).

mod accounts;
mod content;
mod docs;
pub mod limits;
mod notifications;
mod search;
mod versions;
mod workspaces;

pub(crate) use accounts::{email, now_ms, password_user};

use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;

use weft_sync_core::access::{self, Action, Decision, Role, Target};

use super::{ApiError, AppState};
use crate::auth::AuthError;
use crate::storage::accounts::{AuditRecord, AuditScope};

/// Largest JSON body an API route reads.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// Every `/api` route, and `GET /api/openapi.json`: the OpenAPI document of them all, generated
/// from the same handlers (their `#[utoipa::path]`), so the two cannot drift apart.
pub fn routes() -> Router<AppState> {
    let (router, api) = router_and_document();
    let api = std::sync::Arc::new(api);
    router
        .route(
            "/api/openapi.json",
            axum::routing::get(move || async move { axum::Json(api.as_ref().clone()) }),
        )
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// The OpenAPI 3.1 document of the REST API (`docs/openapi.json` is a copy, checked by a test).
pub fn openapi() -> utoipa::openapi::OpenApi {
    router_and_document().1
}

fn router_and_document() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(accounts::routes())
        .merge(workspaces::routes())
        .merge(docs::routes())
        .merge(content::routes())
        .merge(versions::routes())
        .merge(search::routes())
        .merge(notifications::routes())
        .split_for_parts()
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Weft",
        description = "The REST API of the Weft relay: accounts, workspaces, members, invites and documents. Errors are `{\"error\": {\"code\", \"message\"}}`; see docs/api.md."
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "accounts", description = "Sign-up, log-in, sessions and the caller's profile"),
        (name = "workspaces", description = "Workspaces, members, invites and the audit log"),
        (name = "documents", description = "The documents, channels, boards and whiteboards of a workspace"),
        (name = "content", description = "A document's content, read through its kind's projection"),
        (name = "history", description = "Versions, diffs, blame and restore"),
        (name = "search", description = "Full-text search over what the caller may read"),
        (name = "notifications", description = "The caller's notifications: list, unread count, mark read")
    )
)]
struct ApiDoc;

/// Declares the bearer scheme every authenticated route names.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let scheme = HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build();
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// A JSON request body; malformed, oversized or mistyped bodies get a 400 (413 when too large)
/// with the JSON error body, never axum's plain-text rejection.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(ApiError::from_json_rejection(rejection)),
        }
    }
}

/// Query parameters; malformed or mistyped ones get a 400 with the JSON error body.
#[derive(Debug)]
pub struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(ApiError::invalid("invalid_query", rejection.body_text())),
        }
    }
}

/// A page request: `?before=<cursor>&limit=<1..=100>` (default 50).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// Only entries older than this cursor (the `next` of the previous page).
    pub before: Option<i64>,
    /// How many entries at most.
    pub limit: Option<u32>,
}

impl Page {
    /// Longest page.
    pub const MAX: u32 = 100;

    /// The page size asked for, or a 400.
    ///
    /// # Errors
    /// [`ApiError::Invalid`] when `limit` is 0 or above [`Page::MAX`].
    pub fn limit(&self) -> Result<u32, ApiError> {
        match self.limit.unwrap_or(50) {
            limit @ 1..=Self::MAX => Ok(limit),
            _ => Err(ApiError::invalid("invalid_limit", format!("limit is 1 to {}", Self::MAX))),
        }
    }
}

/// A page of audit entries, newest first; `next` is the `before` of the following page.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    entries: Vec<AuditRecord>,
    next: Option<i64>,
}

impl AuditPage {
    /// Reads the page `page` asks for of `scope`'s entries.
    ///
    /// # Errors
    /// [`ApiError`] for a bad `limit`, or when storage fails.
    pub async fn read(state: &AppState, scope: AuditScope, page: &Page) -> Result<Self, ApiError> {
        let limit = page.limit()?;
        let entries = state.storage.audit_page(scope, page.before, limit).await?;
        let next = (entries.len() == limit as usize).then(|| entries.last().map(|e| e.id)).flatten();
        Ok(Self { entries, next })
    }
}

/// The person an `Authorization: Bearer` access token names.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Their user id.
    pub user_id: String,
    /// The client's address (for the audit log).
    pub address: Option<std::net::IpAddr>,
}

impl Caller {
    /// An audit entry of `action` by this caller, from their address.
    pub fn audit(&self, action: &'static str) -> crate::storage::accounts::AuditEntry {
        crate::storage::accounts::AuditEntry {
            actor: Some(self.user_id.clone()),
            action,
            address: self.address.map(|a| a.to_string()),
            ..Default::default()
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .ok_or(ApiError::Auth(AuthError::Missing))?;
        let user_id = state.policy.user(token).await?;
        state.limits.check_request(&user_id).map_err(ApiError::RateLimited)?;
        let address = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|info| info.0.ip());
        Ok(Self { user_id, address })
    }
}

/// The one permission check every route makes: may a member with `role` (`None`: not a member)
/// take `action` on `target`? A refusal is 403, or 404 naming `what` when the caller may not
/// know the object exists.
///
/// # Errors
/// [`ApiError::Forbidden`] or [`ApiError::Missing`].
pub fn authorize(
    role: Option<Role>,
    action: Action,
    target: Target,
    what: &'static str,
) -> Result<(), ApiError> {
    match access::decide(role, action, target) {
        Decision::Allow => Ok(()),
        Decision::Forbidden => Err(ApiError::Forbidden),
        Decision::Hidden => Err(ApiError::Missing(what)),
    }
}
