//! Accounts and sessions: sign-up, log-in, refresh (rotating, with reuse detection), log-out,
//! and the caller's profile (`/api/auth/*`, `/api/me`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use weft_sync_core::names;

use super::AuditPage;
use super::limits::AuthAttempt;
use super::{Body, Caller, Page, Params};
use crate::auth::sessions::{self, random_id};
use crate::auth::{AuthError, passwords};
pub(crate) use crate::clock::now_ms;
use crate::http::{ApiError, AppState};
use crate::storage::accounts::{
    AuditEntry, AuditScope, Availability, NewUser, ProfileChange, Rotation, User,
};

/// Longest avatar URL, in bytes.
const MAX_URL_BYTES: usize = 2048;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(signup))
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(me, update_me))
        .routes(routes!(my_audit))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SignUp {
    email: String,
    password: String,
    name: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct LogIn {
    email: String,
    password: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RefreshToken {
    refresh_token: String,
}

/// What sign-up, log-in and refresh answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Session {
    user: User,
    access_token: String,
    #[schema(value_type = String, example = "Bearer")]
    token_type: &'static str,
    expires_in: u64,
    refresh_token: String,
}

/// A normalised email address, or a 400 saying why not (`weft_sync_core::names::email`).
pub(crate) fn email(raw: &str) -> Result<String, ApiError> {
    names::email(raw).ok_or_else(|| ApiError::invalid("invalid_email", "not an email address"))
}

pub(crate) fn password(raw: &str) -> Result<String, ApiError> {
    if raw.chars().count() < passwords::MIN_CHARS {
        return Err(ApiError::invalid(
            "weak_password",
            format!("a password needs at least {} characters", passwords::MIN_CHARS),
        ));
    }
    if raw.len() > passwords::MAX_BYTES {
        return Err(ApiError::invalid(
            "invalid_password",
            format!("a password may have at most {} bytes", passwords::MAX_BYTES),
        ));
    }
    Ok(raw.to_owned())
}

pub(crate) fn display_name(raw: &str) -> Result<String, ApiError> {
    names::display_name(raw).ok_or_else(|| {
        ApiError::invalid(
            "invalid_name",
            format!("a name has 1 to {} characters and no control characters", names::MAX_NAME_CHARS),
        )
    })
}

fn avatar_url(raw: &str) -> Result<String, ApiError> {
    let parsed = url::Url::parse(raw).ok().filter(|u| matches!(u.scheme(), "http" | "https"));
    match parsed {
        Some(_) if raw.len() <= MAX_URL_BYTES => Ok(raw.to_owned()),
        _ => Err(ApiError::invalid(
            "invalid_avatar_url",
            "an avatar URL is an http(s) URL of at most 2048 bytes",
        )),
    }
}

/// Starts a session for `user` (asked for from `attempt`'s address): a new refresh-token family,
/// stored with its audit entry.
async fn start(
    state: &AppState,
    user: User,
    action: &'static str,
    attempt: AuthAttempt,
) -> Result<Session, ApiError> {
    let now = now_ms();
    let (refresh_token, stored) = state.sessions.new_refresh(None, now)?;
    let audit = AuditEntry {
        action,
        target: Some(stored.family.clone()),
        address: Some(attempt.address.to_string()),
        ..AuditEntry::default()
    };
    state.storage.start_session(&user.id, stored, audit, now).await?;
    let access = state.sessions.issue_access(&user.id, now)?;
    Ok(Session {
        user,
        access_token: access.token,
        token_type: "Bearer",
        expires_in: access.expires_in,
        refresh_token,
    })
}

/// A new password account from what a person typed, validated, with its password hashed. The
/// name defaults to the part of the address before `@`.
pub(crate) async fn password_user(
    raw_email: &str,
    name: Option<&str>,
    raw_password: &str,
    invited_only: bool,
) -> Result<NewUser, ApiError> {
    let email = email(raw_email)?;
    let password = password(raw_password)?;
    let name = match name {
        Some(name) => display_name(name)?,
        None => email.split('@').next().unwrap_or_default().to_owned(),
    };
    Ok(NewUser {
        id: random_id()?,
        email: Some(email),
        name,
        password_hash: Some(passwords::hash(password).await?),
        external: None,
        invited_only,
    })
}

#[utoipa::path(
    post,
    path = "/api/auth/signup",
    tag = "accounts",
    operation_id = "accounts_signup",
    request_body = SignUp,
    responses((status = 201, description = "Done", body = Session), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
)]
async fn signup(
    State(state): State<AppState>,
    attempt: AuthAttempt,
    Body(body): Body<SignUp>,
) -> Result<(StatusCode, Json<Session>), ApiError> {
    let invited_only = state.config.accounts.signup == crate::config::SignupPolicy::Invite;
    let new = password_user(&body.email, body.name.as_deref(), &body.password, invited_only).await?;
    let audit = AuditEntry {
        action: "account.signup",
        address: Some(attempt.address.to_string()),
        ..AuditEntry::default()
    };
    let user = state.storage.create_user(new, audit, now_ms()).await?;
    Ok((StatusCode::CREATED, Json(start(&state, user, "session.login", attempt).await?)))
}

#[utoipa::path(
    post,
    path = "/api/auth/login",
    tag = "accounts",
    operation_id = "accounts_login",
    request_body = LogIn,
    responses((status = 200, description = "Done", body = Session), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
)]
async fn login(
    State(state): State<AppState>,
    attempt: AuthAttempt,
    Body(body): Body<LogIn>,
) -> Result<Json<Session>, ApiError> {
    let refused =
        || ApiError::Unauthenticated { code: "invalid_credentials", message: "wrong email or password" };
    let email = email(&body.email).map_err(|_| refused())?;
    state.limits.check_login(&email).map_err(ApiError::RateLimited)?;
    let found = state.storage.user_by_email(&email).await?;
    let (user, hash) = found.map_or((None, None), |(user, hash)| (Some(user), hash));
    if !passwords::verify(body.password, hash).await {
        let audit = AuditEntry {
            actor: user.map(|u| u.id),
            action: "session.login_failed",
            target: Some(email),
            address: Some(attempt.address.to_string()),
            ..AuditEntry::default()
        };
        state.storage.audit(audit, now_ms()).await?;
        return Err(refused());
    }
    let user = user.ok_or_else(refused)?;
    Ok(Json(start(&state, user, "session.login", attempt).await?))
}

#[utoipa::path(
    post,
    path = "/api/auth/refresh",
    tag = "accounts",
    operation_id = "accounts_refresh",
    request_body = RefreshToken,
    responses((status = 200, description = "Done", body = Session), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
)]
async fn refresh(
    State(state): State<AppState>,
    _attempt: AuthAttempt,
    Body(body): Body<RefreshToken>,
) -> Result<Json<Session>, ApiError> {
    let refused = || ApiError::Unauthenticated {
        code: "invalid_refresh_token",
        message: "the refresh token is unknown, expired, revoked or already used",
    };
    let (id, hash) = sessions::parse_refresh(&body.refresh_token).ok_or_else(refused)?;
    let now = now_ms();
    let (refresh_token, next) = state.sessions.new_refresh(None, now)?;
    let user_id = match state.storage.rotate_refresh(&id, hash, next, None, now).await? {
        Rotation::Rotated(user_id) => user_id,
        Rotation::Reused => {
            return Err(ApiError::Unauthenticated {
                code: "refresh_token_reused",
                message: "this refresh token was used before; every session token from it is revoked — log in again",
            });
        }
        Rotation::Refused => return Err(refused()),
    };
    let user = state.storage.user(&user_id).await?.ok_or_else(refused)?;
    let access = state.sessions.issue_access(&user.id, now)?;
    Ok(Json(Session {
        user,
        access_token: access.token,
        token_type: "Bearer",
        expires_in: access.expires_in,
        refresh_token,
    }))
}

#[utoipa::path(
    post,
    path = "/api/auth/logout",
    tag = "accounts",
    operation_id = "accounts_logout",
    request_body = RefreshToken,
    responses((status = 204, description = "Done"), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
)]
async fn logout(
    State(state): State<AppState>,
    _attempt: AuthAttempt,
    Body(body): Body<RefreshToken>,
) -> Result<StatusCode, ApiError> {
    let refused =
        || ApiError::Unauthenticated { code: "invalid_refresh_token", message: "unknown refresh token" };
    let (id, hash) = sessions::parse_refresh(&body.refresh_token).ok_or_else(refused)?;
    state.storage.end_session(&id, hash, None, now_ms()).await?.ok_or_else(refused)?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/api/me",
    tag = "accounts",
    operation_id = "accounts_me",
    responses((status = 200, description = "Done", body = User), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
async fn me(State(state): State<AppState>, caller: Caller) -> Result<Json<User>, ApiError> {
    state
        .storage
        .user(&caller.user_id)
        .await?
        .map(Json)
        .ok_or(ApiError::Auth(AuthError::Invalid("the token names an account that does not exist".into())))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ProfilePatch {
    name: Option<String>,
    /// `null` removes the picture; absent leaves it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    avatar_url: Option<Option<String>>,
    status: Option<Availability>,
}

/// Tells a JSON `null` (`Some(None)`) from an absent field (`None`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[utoipa::path(
    patch,
    path = "/api/me",
    tag = "accounts",
    operation_id = "accounts_update_me",
    request_body = ProfilePatch,
    responses((status = 200, description = "Done", body = User), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
async fn update_me(
    State(state): State<AppState>,
    caller: Caller,
    Body(patch): Body<ProfilePatch>,
) -> Result<Json<User>, ApiError> {
    let change = ProfileChange {
        name: patch.name.as_deref().map(display_name).transpose()?,
        avatar_url: patch.avatar_url.map(|url| url.as_deref().map(avatar_url).transpose()).transpose()?,
        status: patch.status,
    };
    let user = state.storage.update_profile(&caller.user_id, change).await?;
    user.map(Json)
        .ok_or(ApiError::Auth(AuthError::Invalid("the token names an account that does not exist".into())))
}

/// The caller's own audit trail: their sign-up, log-ins, failed log-ins and what they did.
#[utoipa::path(
    get,
    path = "/api/me/audit",
    tag = "accounts",
    operation_id = "accounts_my_audit",
    params(Page),
    responses((status = 200, description = "Done", body = AuditPage), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
async fn my_audit(
    State(state): State<AppState>,
    caller: Caller,
    Params(page): Params<Page>,
) -> Result<Json<AuditPage>, ApiError> {
    Ok(Json(AuditPage::read(&state, AuditScope::Actor(caller.user_id), &page).await?))
}
