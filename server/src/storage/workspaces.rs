//! Workspaces, their members and invites: the `workspaces`, `members` and `invites` tables.
//!
//! Every write is one writer job that also records its audit entry, and every rule that depends
//! on the rows being written (a workspace keeps an owner; an invite is accepted once) is checked
//! inside that job, so two concurrent requests cannot both pass it. Whether the caller may ask
//! at all is decided before, by `weft_sync_core::access`.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;
use weft_sync_core::access::Role;

use super::accounts::{AuditEntry, record};
use super::{Storage, StorageError, role, role_of, taken};

/// A workspace, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Workspace {
    /// Stable, opaque id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Unique, URL-friendly name.
    pub slug: String,
    /// Who created it.
    pub created_by: String,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
}

/// A workspace together with the caller's role in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Membership {
    /// The workspace.
    #[serde(flatten)]
    pub workspace: Workspace,
    /// The caller's role.
    #[schema(value_type = String, example = "editor")]
    pub role: Role,
}

/// A member, as the member list shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Member {
    /// Their user id.
    pub user_id: String,
    /// Display name.
    pub name: String,
    /// Login address, if they have one.
    pub email: Option<String>,
    /// Picture.
    pub avatar_url: Option<String>,
    /// Their role here.
    #[schema(value_type = String, example = "editor")]
    pub role: Role,
    /// Milliseconds since the Unix epoch.
    pub joined_at: i64,
}

/// An invite, as the inviter's list shows it (never its token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Invite {
    /// Stable id (for revoking).
    pub id: String,
    /// The workspace it admits to.
    pub workspace: String,
    /// The address it was sent to; only an account with this address may accept it.
    pub email: String,
    /// The role it grants.
    #[schema(value_type = String, example = "editor")]
    pub role: Role,
    /// Who sent it.
    pub invited_by: String,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    /// Milliseconds since the Unix epoch.
    pub expires_at: i64,
    /// `pending`, `accepted`, `revoked` or `expired` (at the time it was read).
    #[schema(value_type = String, example = "pending")]
    pub status: &'static str,
}

/// A new invite.
#[derive(Debug, Clone)]
pub struct NewInvite {
    /// Stable id.
    pub id: String,
    /// The workspace.
    pub workspace: String,
    /// The invited address, normalised.
    pub email: String,
    /// The role it grants.
    pub role: Role,
    /// SHA-256 of the token the invitee presents.
    pub token_hash: Vec<u8>,
    /// Who sends it.
    pub invited_by: String,
    /// Milliseconds since the Unix epoch.
    pub expires_at: i64,
}

/// A change to a workspace; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct WorkspaceChange {
    /// New name.
    pub name: Option<String>,
    /// New slug.
    pub slug: Option<String>,
}

/// What a role change or removal did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberChange {
    /// Done; carries the member's previous role.
    Done(Role),
    /// No such member.
    NotMember,
    /// It would leave the workspace without an owner.
    LastOwner,
    /// The member's role changed since the caller's check (a concurrent change): ask again.
    Changed,
}

/// What presenting an invite token did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acceptance {
    /// The caller is now a member with this role.
    Joined(Membership),
    /// No invite has this token.
    Unknown,
    /// The invite was revoked, or has expired.
    Gone(&'static str),
    /// The invite was accepted already.
    Used,
    /// The invite is for another address.
    OtherAddress,
    /// The caller is a member already.
    AlreadyMember,
}

const WORKSPACE_COLUMNS: &str = "w.id, w.name, w.slug, w.created_by, w.created_at";

fn workspace_row(row: &Row<'_>) -> rusqlite::Result<Workspace> {
    Ok(Workspace {
        id: row.get(0)?,
        name: row.get(1)?,
        slug: row.get(2)?,
        created_by: row.get(3)?,
        created_at: row.get(4)?,
    })
}

fn membership(conn: &Connection, workspace: &str, user_id: &str) -> Result<Option<Membership>, StorageError> {
    let sql = format!(
        "SELECT {WORKSPACE_COLUMNS}, m.role FROM workspaces w JOIN members m ON m.workspace = w.id
         WHERE w.id = ?1 AND m.user_id = ?2"
    );
    let found = conn
        .query_row(&sql, [workspace, user_id], |row| Ok((workspace_row(row)?, row.get::<_, String>(5)?)))
        .optional()?;
    found.map(|(workspace, raw)| Ok(Membership { workspace, role: role(&raw)? })).transpose()
}

fn owners(conn: &Connection, workspace: &str) -> Result<i64, StorageError> {
    Ok(conn.query_row(
        "SELECT count(*) FROM members WHERE workspace = ?1 AND role = 'owner'",
        [workspace],
        |row| row.get(0),
    )?)
}

fn invite_status(expires_at: i64, revoked: bool, accepted: bool, now_ms: i64) -> &'static str {
    if accepted {
        "accepted"
    } else if revoked {
        "revoked"
    } else if expires_at <= now_ms {
        "expired"
    } else {
        "pending"
    }
}

impl Storage {
    /// Creates a workspace with `owner` as its first owner.
    ///
    /// # Errors
    /// [`StorageError::Taken`] when the slug is in use.
    pub async fn create_workspace(
        &self,
        workspace: Workspace,
        audit: AuditEntry,
    ) -> Result<Membership, StorageError> {
        self.run(move |conn| {
            conn.execute(
                "INSERT INTO workspaces (id, name, slug, created_by, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    workspace.id,
                    workspace.name,
                    workspace.slug,
                    workspace.created_by,
                    workspace.created_at
                ],
            )
            .map_err(|e| taken(e, "slug"))?;
            conn.execute(
                "INSERT INTO members (workspace, user_id, role, joined_at) VALUES (?1, ?2, 'owner', ?3)",
                params![workspace.id, workspace.created_by, workspace.created_at],
            )?;
            record(
                conn,
                workspace.created_at,
                &AuditEntry {
                    target: Some(workspace.id.clone()),
                    workspace: Some(workspace.id.clone()),
                    ..audit
                },
            )?;
            Ok(Membership { workspace, role: Role::Owner })
        })
        .await
    }

    /// The workspaces `user_id` is a member of, with their role in each, oldest first.
    ///
    /// # Errors
    /// [`StorageError`] when storage fails.
    pub async fn workspaces_of(&self, user_id: &str) -> Result<Vec<Membership>, StorageError> {
        let user_id = user_id.to_owned();
        let rows = self
            .read(move |conn| {
                let sql = format!(
                    "SELECT {WORKSPACE_COLUMNS}, m.role FROM workspaces w JOIN members m ON m.workspace = w.id
                     WHERE m.user_id = ?1 ORDER BY w.created_at, w.id"
                );
                let mut stmt = conn.prepare(&sql)?;
                let rows =
                    stmt.query_map([user_id], |row| Ok((workspace_row(row)?, row.get::<_, String>(5)?)))?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?;
        rows.into_iter().map(|(workspace, raw)| Ok(Membership { workspace, role: role(&raw)? })).collect()
    }

    /// Workspace `workspace` with `user_id`'s role in it; `None` when either does not exist or
    /// they are not a member (the caller cannot tell which, by design).
    ///
    /// # Errors
    /// [`StorageError`] when storage fails.
    pub async fn membership(
        &self,
        workspace: &str,
        user_id: &str,
    ) -> Result<Option<Membership>, StorageError> {
        let (workspace, user_id) = (workspace.to_owned(), user_id.to_owned());
        self.read(move |conn| Ok(membership(conn, &workspace, &user_id))).await?
    }

    /// Renames a workspace or changes its slug; returns it after the change.
    ///
    /// # Errors
    /// [`StorageError::Taken`] when the slug is in use.
    pub async fn update_workspace(
        &self,
        id: &str,
        change: WorkspaceChange,
        audit: AuditEntry,
        now_ms: i64,
    ) -> Result<Option<Workspace>, StorageError> {
        let id = id.to_owned();
        self.run(move |conn| {
            if let Some(name) = &change.name {
                conn.execute("UPDATE workspaces SET name = ?2 WHERE id = ?1", params![id, name])?;
            }
            if let Some(slug) = &change.slug {
                conn.execute("UPDATE workspaces SET slug = ?2 WHERE id = ?1", params![id, slug])
                    .map_err(|e| taken(e, "slug"))?;
            }
            record(
                conn,
                now_ms,
                &AuditEntry { target: Some(id.clone()), workspace: Some(id.clone()), ..audit },
            )?;
            let sql = format!("SELECT {WORKSPACE_COLUMNS} FROM workspaces w WHERE w.id = ?1");
            Ok(conn.query_row(&sql, [&id], workspace_row).optional()?)
        })
        .await
    }

    /// Deletes a workspace with its members and invites. Returns whether it existed.
    ///
    /// # Errors
    /// [`StorageError`] when storage fails.
    pub async fn delete_workspace(
        &self,
        id: &str,
        audit: AuditEntry,
        now_ms: i64,
    ) -> Result<bool, StorageError> {
        let id = id.to_owned();
        self.run(move |conn| {
            let deleted = conn.execute("DELETE FROM workspaces WHERE id = ?1", [&id])? > 0;
            if deleted {
                super::documents::delete_all_in(conn, &id, now_ms)?;
                record(
                    conn,
                    now_ms,
                    &AuditEntry { target: Some(id.clone()), workspace: Some(id.clone()), ..audit },
                )?;
            }
            Ok(deleted)
        })
        .await
    }

    /// The members of `workspace`, owners first, then by name.
    ///
    /// # Errors
    /// [`StorageError`] when storage fails.
    pub async fn members(&self, workspace: &str) -> Result<Vec<Member>, StorageError> {
        let workspace = workspace.to_owned();
        let rows = self
            .read(move |conn| {
                let mut stmt = conn.prepare(
                    "SELECT m.user_id, u.name, u.email, u.avatar_url, m.role, m.joined_at
                     FROM members m JOIN users u ON u.id = m.user_id WHERE m.workspace = ?1
                     ORDER BY CASE m.role WHEN 'owner' THEN 0 WHEN 'admin' THEN 1 WHEN 'editor' THEN 2
                              WHEN 'commenter' THEN 3 ELSE 4 END, u.name, m.user_id",
                )?;
                let rows = stmt.query_map([workspace], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, Option<String>>(2)?,
                        row.get::<_, Option<String>>(3)?,
                        row.get::<_, String>(4)?,
                        row.get::<_, i64>(5)?,
                    ))
                })?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?;
        rows.into_iter()
            .map(|(user_id, name, email, avatar_url, raw, joined_at)| {
                Ok(Member { user_id, name, email, avatar_url, role: role(&raw)?, joined_at })
            })
            .collect()
    }

    /// Moves member `user_id` of `workspace` from `expected` (the role the caller's permission
    /// check saw) to `new` (`None`: removes them). Refused when it would leave no owner.
    ///
    /// # Errors
    /// [`StorageError`] when storage fails.
    pub async fn change_member(
        &self,
        workspace: &str,
        user_id: &str,
        expected: Role,
        new: Option<Role>,
        audit: AuditEntry,
        now_ms: i64,
    ) -> Result<MemberChange, StorageError> {
        let (workspace, user_id) = (workspace.to_owned(), user_id.to_owned());
        self.run(move |conn| {
            let Some(current) = role_of(conn, &workspace, &user_id)? else {
                return Ok(MemberChange::NotMember);
            };
            if current != expected {
                return Ok(MemberChange::Changed);
            }
            if current == Role::Owner && new != Some(Role::Owner) && owners(conn, &workspace)? <= 1 {
                return Ok(MemberChange::LastOwner);
            }
            match new {
                Some(role) => conn.execute(
                    "UPDATE members SET role = ?3 WHERE workspace = ?1 AND user_id = ?2",
                    params![workspace, user_id, role.as_str()],
                )?,
                None => conn.execute(
                    "DELETE FROM members WHERE workspace = ?1 AND user_id = ?2",
                    params![workspace, user_id],
                )?,
            };
            let detail = format!("{} -> {}", current.as_str(), new.map_or("none", Role::as_str));
            record(
                conn,
                now_ms,
                &AuditEntry {
                    target: Some(user_id.clone()),
                    detail: Some(detail),
                    workspace: Some(workspace.clone()),
                    ..audit
                },
            )?;
            Ok(MemberChange::Done(current))
        })
        .await
    }

    /// Stores an invite.
    ///
    /// # Errors
    /// [`StorageError`] when storage fails.
    pub async fn create_invite(
        &self,
        invite: NewInvite,
        audit: AuditEntry,
        now_ms: i64,
    ) -> Result<Invite, StorageError> {
        self.run(move |conn| {
            conn.execute(
                "INSERT INTO invites (id, workspace, email, role, token_hash, invited_by, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    invite.id,
                    invite.workspace,
                    invite.email,
                    invite.role.as_str(),
                    invite.token_hash,
                    invite.invited_by,
                    now_ms,
                    invite.expires_at
                ],
            )?;
            let detail = format!("{} as {}", invite.email, invite.role.as_str());
            record(
                conn,
                now_ms,
                &AuditEntry {
                    target: Some(invite.id.clone()),
                    detail: Some(detail),
                    workspace: Some(invite.workspace.clone()),
                    ..audit
                },
            )?;
            Ok(Invite {
                id: invite.id,
                workspace: invite.workspace,
                email: invite.email,
                role: invite.role,
                invited_by: invite.invited_by,
                created_at: now_ms,
                expires_at: invite.expires_at,
                status: "pending",
            })
        })
        .await
    }

    /// The invites of `workspace`, newest first, with their status at `now_ms`.
    ///
    /// # Errors
    /// [`StorageError`] when storage fails.
    pub async fn invites(&self, workspace: &str, now_ms: i64) -> Result<Vec<Invite>, StorageError> {
        let workspace = workspace.to_owned();
        let rows = self
            .read(move |conn| {
                let mut stmt = conn.prepare(
                    "SELECT id, workspace, email, role, invited_by, created_at, expires_at,
                            revoked_at IS NOT NULL, accepted_at IS NOT NULL
                     FROM invites WHERE workspace = ?1 ORDER BY created_at DESC, id",
                )?;
                let rows = stmt.query_map([workspace], |row| {
                    Ok((
                        (row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get::<_, String>(2)?),
                        row.get::<_, String>(3)?,
                        (row.get::<_, String>(4)?, row.get::<_, i64>(5)?, row.get::<_, i64>(6)?),
                        (row.get::<_, bool>(7)?, row.get::<_, bool>(8)?),
                    ))
                })?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?;
        rows.into_iter()
            .map(
                |((id, workspace, email), raw, (invited_by, created_at, expires_at), (revoked, accepted))| {
                    Ok(Invite {
                        id,
                        workspace,
                        email,
                        role: role(&raw)?,
                        invited_by,
                        created_at,
                        expires_at,
                        status: invite_status(expires_at, revoked, accepted, now_ms),
                    })
                },
            )
            .collect()
    }

    /// Revokes invite `id` of `workspace`. Returns whether a pending or expired invite of that
    /// workspace had the id (an accepted one stays as it was).
    ///
    /// # Errors
    /// [`StorageError`] when storage fails.
    pub async fn revoke_invite(
        &self,
        workspace: &str,
        id: &str,
        audit: AuditEntry,
        now_ms: i64,
    ) -> Result<bool, StorageError> {
        let (workspace, id) = (workspace.to_owned(), id.to_owned());
        self.run(move |conn| {
            let revoked = conn.execute(
                "UPDATE invites SET revoked_at = ?3
                 WHERE workspace = ?1 AND id = ?2 AND revoked_at IS NULL AND accepted_at IS NULL",
                params![workspace, id, now_ms],
            )? > 0;
            if revoked {
                record(
                    conn,
                    now_ms,
                    &AuditEntry { target: Some(id.clone()), workspace: Some(workspace.clone()), ..audit },
                )?;
            }
            Ok(revoked)
        })
        .await
    }

    /// `user_id` (whose login address is `email`) presents the invite whose token hashes to
    /// `token_hash`.
    ///
    /// # Errors
    /// [`StorageError`] when storage fails.
    pub async fn accept_invite(
        &self,
        token_hash: Vec<u8>,
        user_id: &str,
        email: Option<String>,
        audit: AuditEntry,
        now_ms: i64,
    ) -> Result<Acceptance, StorageError> {
        let user_id = user_id.to_owned();
        self.run(move |conn| {
            let found = conn
                .query_row(
                    "SELECT id, workspace, email, role, expires_at, revoked_at IS NOT NULL, accepted_at IS NOT NULL
                     FROM invites WHERE token_hash = ?1",
                    [&token_hash],
                    |row| {
                        Ok((
                            row.get::<_, String>(0)?,
                            row.get::<_, String>(1)?,
                            row.get::<_, String>(2)?,
                            row.get::<_, String>(3)?,
                            row.get::<_, i64>(4)?,
                            row.get::<_, bool>(5)?,
                            row.get::<_, bool>(6)?,
                        ))
                    },
                )
                .optional()?;
            let Some((id, workspace, invited, raw, expires_at, revoked, accepted)) = found else {
                return Ok(Acceptance::Unknown);
            };
            match invite_status(expires_at, revoked, accepted, now_ms) {
                "accepted" => return Ok(Acceptance::Used),
                "revoked" => return Ok(Acceptance::Gone("revoked")),
                "expired" => return Ok(Acceptance::Gone("expired")),
                _ => {}
            }
            if !email.is_some_and(|email| email.eq_ignore_ascii_case(&invited)) {
                return Ok(Acceptance::OtherAddress);
            }
            if role_of(conn, &workspace, &user_id)?.is_some() {
                return Ok(Acceptance::AlreadyMember);
            }
            let role = role(&raw)?;
            conn.execute(
                "INSERT INTO members (workspace, user_id, role, joined_at) VALUES (?1, ?2, ?3, ?4)",
                params![workspace, user_id, role.as_str(), now_ms],
            )?;
            conn.execute(
                "UPDATE invites SET accepted_at = ?2, accepted_by = ?3 WHERE id = ?1",
                params![id, now_ms, user_id],
            )?;
            record(
                conn,
                now_ms,
                &AuditEntry {
                    target: Some(id.clone()),
                    detail: Some(format!("as {}", role.as_str())),
                    workspace: Some(workspace.clone()),
                    ..audit
                },
            )?;
            let joined = membership(conn, &workspace, &user_id)?
                .ok_or_else(|| StorageError::Corrupt("a new member vanished".into()))?;
            Ok(Acceptance::Joined(joined))
        })
        .await
    }
}
