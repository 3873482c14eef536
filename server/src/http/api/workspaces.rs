//! Workspaces, members and invites (`/api/workspaces/*`, `/api/invites/{token}/accept`).
//!
//! Every route loads the caller's membership and asks [`super::authorize`] before it reads or
//! writes anything; a caller who is not a member gets the same 404 as for a workspace that does
//! not exist. Rules that depend on other rows (the last owner, an invite used once) are checked
//! by the store in the same transaction as the write.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use weft_sync_core::access::{self, Action, Decision, Role, Target};

use super::accounts::{display_name, email, now_ms};
use super::{AuditPage, Body, Caller, Page, Params, authorize};
use crate::auth::policy::Affected;
use crate::auth::sessions::{new_secret, random_id};
use crate::http::{ApiError, AppState};
use crate::mail::InviteMail;
use crate::storage::accounts::{AuditEntry, AuditScope};
use crate::storage::workspaces::{
    Acceptance, Invite, Member, MemberChange, Membership, NewInvite, Workspace, WorkspaceChange,
};

/// Longest slug, in bytes.
const MAX_SLUG_BYTES: usize = 48;
/// How long an invite stays valid unless the inviter says otherwise.
const DEFAULT_INVITE_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// The longest validity an inviter may ask for.
const MAX_INVITE_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(read, update, remove))
        .routes(routes!(members))
        .routes(routes!(change_role, remove_member))
        .routes(routes!(invite, invites))
        .routes(routes!(revoke))
        .routes(routes!(audit_log))
        .routes(routes!(accept))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewWorkspace {
    name: String,
    slug: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Change {
    name: Option<String>,
    slug: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RoleChange {
    role: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct InviteRequest {
    email: String,
    role: String,
    /// Validity in hours (default 168, at most 720).
    expires_in_hours: Option<u64>,
}

/// What creating an invite answers: the invite and how it reaches the invitee. Mailed
/// (`delivery: "email"`), the token stays out of the answer; otherwise (no SMTP configured, or
/// the email failed) the token, shown this once, and where to accept it go to the inviter.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct CreatedInvite {
    #[serde(flatten)]
    invite: Invite,
    #[schema(value_type = String, example = "link")]
    delivery: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    accept_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    email_error: Option<&'static str>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Workspaces {
    workspaces: Vec<Membership>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Members {
    members: Vec<Member>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Invites {
    invites: Vec<Invite>,
}

/// A slug as given, or a 400 saying what one looks like.
fn slug(raw: &str) -> Result<String, ApiError> {
    let valid = !raw.is_empty()
        && raw.len() <= MAX_SLUG_BYTES
        && raw.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !raw.starts_with('-')
        && !raw.ends_with('-');
    if valid {
        Ok(raw.to_owned())
    } else {
        Err(ApiError::invalid(
            "invalid_slug",
            format!("a slug has 1 to {MAX_SLUG_BYTES} lowercase letters, digits and inner hyphens"),
        ))
    }
}

/// A slug made from a name: ASCII letters and digits kept, every other run a hyphen.
fn slug_from(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.truncate(MAX_SLUG_BYTES - 7);
    let out = out.trim_end_matches('-');
    if out.is_empty() { "workspace".to_owned() } else { out.to_owned() }
}

fn role(raw: &str) -> Result<Role, ApiError> {
    Role::parse(raw).ok_or_else(|| {
        ApiError::invalid("invalid_role", "a role is owner, admin, editor, commenter or viewer")
    })
}

/// The caller's membership of `ws`, once they may take `action` on the workspace.
pub(super) async fn member(
    state: &AppState,
    ws: &str,
    caller: &Caller,
    action: Action,
) -> Result<Membership, ApiError> {
    let membership = state.storage.membership(ws, &caller.user_id).await?;
    authorize(membership.as_ref().map(|m| m.role), action, Target::WORKSPACE, "workspace")?;
    membership.ok_or(ApiError::Missing("workspace"))
}

fn assignable(actor: Role, current: Option<Role>, new: Option<Role>) -> Result<(), ApiError> {
    match access::may_assign(actor, current, new) {
        Decision::Allow => Ok(()),
        _ => Err(ApiError::Forbidden),
    }
}

#[utoipa::path(
    post,
    path = "/api/workspaces",
    tag = "workspaces",
    operation_id = "workspaces_create",
    request_body = NewWorkspace,
    responses((status = 201, description = "Done", body = Membership), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<NewWorkspace>,
) -> Result<(StatusCode, Json<Membership>), ApiError> {
    let name = display_name(&body.name)?;
    let given = body.slug.as_deref().map(slug).transpose()?;
    let id = random_id()?;
    let mut slug = given.clone().unwrap_or_else(|| slug_from(&name));
    for attempt in 0..2 {
        let workspace = Workspace {
            id: id.clone(),
            name: name.clone(),
            slug: slug.clone(),
            created_by: caller.user_id.clone(),
            created_at: now_ms(),
        };
        match state.storage.create_workspace(workspace, caller.audit("workspace.create")).await {
            Ok(created) => return Ok((StatusCode::CREATED, Json(created))),
            // A slug made from the name is the server's choice: make it unique instead of refusing.
            Err(crate::storage::StorageError::Taken("slug")) if given.is_none() && attempt == 0 => {
                let suffix: String = random_id()?
                    .chars()
                    .filter(char::is_ascii_alphanumeric)
                    .map(|c| c.to_ascii_lowercase())
                    .take(6)
                    .collect();
                slug = format!("{slug}-{suffix}");
            }
            Err(err) => return Err(err.into()),
        }
    }
    Err(ApiError::Taken("slug"))
}

#[utoipa::path(
    get,
    path = "/api/workspaces",
    tag = "workspaces",
    operation_id = "workspaces_list",
    responses((status = 200, description = "Done", body = Workspaces), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Workspaces>, ApiError> {
    Ok(Json(Workspaces { workspaces: state.storage.workspaces_of(&caller.user_id).await? }))
}

#[utoipa::path(
    get,
    path = "/api/workspaces/{ws}",
    tag = "workspaces",
    operation_id = "workspaces_read",
    params(("ws" = String, Path, description = "Workspace id")),
    responses((status = 200, description = "Done", body = Membership), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
) -> Result<Json<Membership>, ApiError> {
    Ok(Json(member(&state, &ws, &caller, Action::ReadWorkspace).await?))
}

#[utoipa::path(
    patch,
    path = "/api/workspaces/{ws}",
    tag = "workspaces",
    operation_id = "workspaces_update",
    request_body = Change,
    params(("ws" = String, Path, description = "Workspace id")),
    responses((status = 200, description = "Done", body = Membership), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
    Body(body): Body<Change>,
) -> Result<Json<Membership>, ApiError> {
    let mine = member(&state, &ws, &caller, Action::UpdateWorkspace).await?;
    let change = WorkspaceChange {
        name: body.name.as_deref().map(display_name).transpose()?,
        slug: body.slug.as_deref().map(slug).transpose()?,
    };
    let workspace = state
        .storage
        .update_workspace(&ws, change, caller.audit("workspace.update"), now_ms())
        .await?
        .ok_or(ApiError::Missing("workspace"))?;
    Ok(Json(Membership { workspace, role: mine.role }))
}

#[utoipa::path(
    delete,
    path = "/api/workspaces/{ws}",
    tag = "workspaces",
    operation_id = "workspaces_remove",
    params(("ws" = String, Path, description = "Workspace id")),
    responses((status = 204, description = "Done"), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
) -> Result<StatusCode, ApiError> {
    member(&state, &ws, &caller, Action::DeleteWorkspace).await?;
    if !state.storage.delete_workspace(&ws, caller.audit("workspace.delete"), now_ms()).await? {
        return Err(ApiError::Missing("workspace"));
    }
    state.policy.recheck(Affected::Workspace(ws)).await;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/api/workspaces/{ws}/members",
    tag = "workspaces",
    operation_id = "workspaces_members",
    params(("ws" = String, Path, description = "Workspace id")),
    responses((status = 200, description = "Done", body = Members), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
async fn members(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
) -> Result<Json<Members>, ApiError> {
    member(&state, &ws, &caller, Action::ListMembers).await?;
    Ok(Json(Members { members: state.storage.members(&ws).await? }))
}

/// The current role of member `user_id` of `ws` (404 `member` when they are not one).
async fn role_of(state: &AppState, ws: &str, user_id: &str) -> Result<Role, ApiError> {
    Ok(state.storage.membership(ws, user_id).await?.ok_or(ApiError::Missing("member"))?.role)
}

/// Applies a checked move of `user_id` to `new`, mapping the store's answer to the response.
async fn apply_change(
    state: &AppState,
    ws: &str,
    user_id: &str,
    (current, new): (Role, Option<Role>),
    audit: AuditEntry,
) -> Result<(), ApiError> {
    match state.storage.change_member(ws, user_id, current, new, audit, now_ms()).await? {
        MemberChange::Done(_) => {
            let affected = Affected::Member { workspace: ws.to_owned(), user: user_id.to_owned() };
            state.policy.recheck(affected).await;
            Ok(())
        }
        MemberChange::NotMember => Err(ApiError::Missing("member")),
        MemberChange::LastOwner => Err(ApiError::Conflict {
            code: "last_owner",
            message: "a workspace keeps at least one owner; make someone else owner first, or delete the workspace",
        }),
        MemberChange::Changed => Err(ApiError::Conflict {
            code: "changed",
            message: "the member's role changed meanwhile; read it again",
        }),
    }
}

#[utoipa::path(
    patch,
    path = "/api/workspaces/{ws}/members/{user_id}",
    tag = "workspaces",
    operation_id = "workspaces_change_role",
    request_body = RoleChange,
    params(("ws" = String, Path, description = "Workspace id"), ("user_id" = String, Path, description = "A member's user id (your own: leave)")),
    responses((status = 200, description = "Done", body = Member), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
async fn change_role(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, user_id)): Path<(String, String)>,
    Body(body): Body<RoleChange>,
) -> Result<Json<Member>, ApiError> {
    let mine = member(&state, &ws, &caller, Action::ChangeRole).await?;
    let new = role(&body.role)?;
    let current = role_of(&state, &ws, &user_id).await?;
    assignable(mine.role, Some(current), Some(new))?;
    apply_change(&state, &ws, &user_id, (current, Some(new)), caller.audit("member.role")).await?;
    let members = state.storage.members(&ws).await?;
    members.into_iter().find(|m| m.user_id == user_id).map(Json).ok_or(ApiError::Missing("member"))
}

#[utoipa::path(
    delete,
    path = "/api/workspaces/{ws}/members/{user_id}",
    tag = "workspaces",
    operation_id = "workspaces_remove_member",
    params(("ws" = String, Path, description = "Workspace id"), ("user_id" = String, Path, description = "A member's user id (your own: leave)")),
    responses((status = 204, description = "Done"), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
async fn remove_member(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, user_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let leaving = user_id == caller.user_id;
    let action = if leaving { Action::Leave } else { Action::RemoveMember };
    let mine = member(&state, &ws, &caller, action).await?;
    let current = role_of(&state, &ws, &user_id).await?;
    if !leaving {
        assignable(mine.role, Some(current), None)?;
    }
    let entry = caller.audit(if leaving { "member.leave" } else { "member.remove" });
    apply_change(&state, &ws, &user_id, (current, None), entry).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/api/workspaces/{ws}/invites",
    tag = "workspaces",
    operation_id = "workspaces_invite",
    request_body = InviteRequest,
    params(("ws" = String, Path, description = "Workspace id")),
    responses((status = 201, description = "Done", body = CreatedInvite), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
async fn invite(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
    Body(body): Body<InviteRequest>,
) -> Result<(StatusCode, Json<CreatedInvite>), ApiError> {
    let mine = member(&state, &ws, &caller, Action::Invite).await?;
    let email = email(&body.email)?;
    let role = role(&body.role)?;
    assignable(mine.role, None, Some(role))?;
    let ttl = match body.expires_in_hours {
        None => DEFAULT_INVITE_TTL,
        Some(hours @ 1..=720) => Duration::from_secs(hours * 3600),
        Some(_) => {
            return Err(ApiError::invalid(
                "invalid_expiry",
                format!("expires_in_hours is 1 to {}", MAX_INVITE_TTL.as_secs() / 3600),
            ));
        }
    };
    let (token, token_hash) = new_secret()?;
    let now = now_ms();
    let new = NewInvite {
        id: random_id()?,
        workspace: ws,
        email,
        role,
        token_hash,
        invited_by: caller.user_id.clone(),
        expires_at: now + ttl.as_millis() as i64,
    };
    let invite = state.storage.create_invite(new, caller.audit("invite.create"), now).await?;
    let mut email_error = None;
    if let Some(mailer) = &state.mailer {
        let inviter = state.storage.user(&caller.user_id).await?.map_or_else(String::new, |u| u.name);
        let mail = InviteMail {
            to: &invite.email,
            inviter: &inviter,
            workspace: &mine.workspace.name,
            role: invite.role.as_str(),
            token: &token,
            public_url: &state.config.public_url,
            valid_hours: ttl.as_secs() / 3600,
        };
        match mailer.send_invite(&mail).await {
            Ok(()) => {
                let created =
                    CreatedInvite { invite, delivery: "email", token: None, accept_path: None, email_error };
                return Ok((StatusCode::CREATED, Json(created)));
            }
            Err(err) => {
                tracing::warn!(error = %err, invite = %invite.id, "invite email failed; the link goes to the inviter");
                email_error = Some("the invite email could not be sent; share the token yourself");
            }
        }
    }
    let accept_path = Some(format!("/api/invites/{token}/accept"));
    let created = CreatedInvite { invite, delivery: "link", token: Some(token), accept_path, email_error };
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(
    get,
    path = "/api/workspaces/{ws}/invites",
    tag = "workspaces",
    operation_id = "workspaces_invites",
    params(("ws" = String, Path, description = "Workspace id")),
    responses((status = 200, description = "Done", body = Invites), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
async fn invites(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
) -> Result<Json<Invites>, ApiError> {
    member(&state, &ws, &caller, Action::ListInvites).await?;
    Ok(Json(Invites { invites: state.storage.invites(&ws, now_ms()).await? }))
}

#[utoipa::path(
    delete,
    path = "/api/workspaces/{ws}/invites/{id}",
    tag = "workspaces",
    operation_id = "workspaces_revoke",
    params(("ws" = String, Path, description = "Workspace id"), ("id" = String, Path, description = "Invite id")),
    responses((status = 204, description = "Done"), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    member(&state, &ws, &caller, Action::RevokeInvite).await?;
    if state.storage.revoke_invite(&ws, &id, caller.audit("invite.revoke"), now_ms()).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        // Another workspace's invite is as unknown here as one that never existed.
        Err(ApiError::Missing("pending invite"))
    }
}

#[utoipa::path(
    post,
    path = "/api/invites/{token}/accept",
    tag = "workspaces",
    operation_id = "workspaces_accept",
    params(("token" = String, Path, description = "The invite token")),
    responses((status = 200, description = "Done", body = Membership), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
async fn accept(
    State(state): State<AppState>,
    caller: Caller,
    Path(token): Path<String>,
) -> Result<Json<Membership>, ApiError> {
    let Some(token_hash) = crate::auth::sessions::secret_hash(&token) else {
        return Err(ApiError::Missing("invite"));
    };
    let user = state.storage.user(&caller.user_id).await?.ok_or(ApiError::Missing("user"))?;
    let accepted = state
        .storage
        .accept_invite(token_hash, &caller.user_id, user.email, caller.audit("invite.accept"), now_ms())
        .await?;
    match accepted {
        Acceptance::Joined(membership) => Ok(Json(membership)),
        Acceptance::Unknown => Err(ApiError::Missing("invite")),
        Acceptance::Gone(why) => Err(ApiError::Gone {
            code: if why == "revoked" { "invite_revoked" } else { "invite_expired" },
            message: if why == "revoked" {
                "this invite was revoked; ask for a new one"
            } else {
                "this invite has expired; ask for a new one"
            },
        }),
        Acceptance::Used => {
            Err(ApiError::Conflict { code: "invite_used", message: "this invite has been accepted already" })
        }
        Acceptance::OtherAddress => Err(ApiError::Denied {
            code: "invite_for_another_address",
            message: "this invite was sent to another email address; sign in with that one",
        }),
        Acceptance::AlreadyMember => Err(ApiError::Conflict {
            code: "already_member",
            message: "you are a member of this workspace already",
        }),
    }
}

#[utoipa::path(
    get,
    path = "/api/workspaces/{ws}/audit",
    tag = "workspaces",
    operation_id = "workspaces_audit_log",
    params(("ws" = String, Path, description = "Workspace id"), Page),
    responses((status = 200, description = "Done", body = AuditPage), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
async fn audit_log(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
    Params(page): Params<Page>,
) -> Result<Json<AuditPage>, ApiError> {
    member(&state, &ws, &caller, Action::ReadAudit).await?;
    Ok(Json(AuditPage::read(&state, AuditScope::Workspace(ws), &page).await?))
}
