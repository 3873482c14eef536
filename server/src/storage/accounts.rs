//! People and their sessions: the `users`, `refresh_tokens`, `server_keys` and `audit` tables.
//!
//! Writes go through the writer thread ([`Storage::run`]), each a job whose effects (an account,
//! a token rotation, the audit entry saying so) commit together; reads use the pooled readers.
//! Secrets never reach this module in the clear: passwords arrive hashed (argon2id) and refresh
//! tokens as their SHA-256.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

use super::{Storage, StorageError};

/// Whether someone is around, as they set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Availability {
    /// Around.
    Available,
    /// Away for a while.
    Away,
    /// Around, but do not disturb.
    Busy,
    /// Appears offline.
    Offline,
}

impl Availability {
    fn as_str(self) -> &'static str {
        match self {
            Self::Available => "available",
            Self::Away => "away",
            Self::Busy => "busy",
            Self::Offline => "offline",
        }
    }

    fn parse(s: &str) -> Result<Self, StorageError> {
        Ok(match s {
            "available" => Self::Available,
            "away" => Self::Away,
            "busy" => Self::Busy,
            "offline" => Self::Offline,
            other => return Err(StorageError::Corrupt(format!("unknown availability {other:?}"))),
        })
    }
}

/// A person, as the API shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct User {
    /// Stable id; the author recorded on their updates.
    pub id: String,
    /// Login address (absent for people who only sign in through an external provider).
    pub email: Option<String>,
    /// Display name.
    pub name: String,
    /// Picture, an `http(s)` URL.
    pub avatar_url: Option<String>,
    /// Availability.
    pub status: Availability,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
}

/// A new account.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Stable id, chosen by the caller (random).
    pub id: String,
    /// Login address, already normalised.
    pub email: Option<String>,
    /// Display name.
    pub name: String,
    /// argon2id PHC string, for password accounts.
    pub password_hash: Option<String>,
    /// `(issuer, subject)` for an account an external identity provider vouches for.
    pub external: Option<(String, String)>,
    /// Refuse ([`StorageError::NotInvited`]) unless the address has a pending invite or no
    /// account exists yet; checked in the same transaction as the insert.
    pub invited_only: bool,
}

/// A profile change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ProfileChange {
    /// New display name.
    pub name: Option<String>,
    /// New picture (`Some(None)` removes it).
    pub avatar_url: Option<Option<String>>,
    /// New availability.
    pub status: Option<Availability>,
}

/// A refresh token to store: its id, family and hash; the secret half stays with the client.
#[derive(Debug, Clone)]
pub struct NewRefresh {
    /// Public id (the token's first half).
    pub id: String,
    /// Every token rotated from one log-in shares a family.
    pub family: String,
    /// SHA-256 of the secret half.
    pub hash: Vec<u8>,
    /// Milliseconds since the Unix epoch.
    pub expires_at: i64,
}

/// What presenting a refresh token did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The token was current: it is now used, and its successor is stored. Carries the user id.
    Rotated(String),
    /// The token had been used before: someone holds a copy. Its whole family is now revoked.
    Reused,
    /// No such token, a wrong secret, revoked, or expired.
    Refused,
}

/// One audit log entry.
#[derive(Debug, Clone, Default)]
pub struct AuditEntry {
    /// Who did it, when known.
    pub actor: Option<String>,
    /// What happened, a stable dotted name (`account.signup`, `session.reuse` …).
    pub action: &'static str,
    /// What it was done to.
    pub target: Option<String>,
    /// The client's address.
    pub address: Option<String>,
    /// Anything else worth keeping (never a secret).
    pub detail: Option<String>,
    /// The workspace it happened in, for entries its owners and admins may read.
    pub workspace: Option<String>,
}

/// Whose audit entries to read.
#[derive(Debug, Clone)]
pub enum AuditScope {
    /// Everything that happened in a workspace.
    Workspace(String),
    /// Everything a person did (their log-ins and failed log-ins among it).
    Actor(String),
}

/// A stored audit entry, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AuditRecord {
    /// Increasing id; the pagination cursor.
    pub id: i64,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
    /// Who did it, when known.
    pub actor: Option<String>,
    /// What happened.
    pub action: String,
    /// What it was done to.
    pub target: Option<String>,
    /// The client's address.
    pub address: Option<String>,
    /// Anything else recorded.
    pub detail: Option<String>,
    /// The workspace it happened in.
    pub workspace: Option<String>,
}

const USER_COLUMNS: &str = "id, email, name, avatar_url, status, created_at";

fn user_row(row: &Row<'_>) -> rusqlite::Result<(User, String)> {
    Ok((
        User {
            id: row.get(0)?,
            email: row.get(1)?,
            name: row.get(2)?,
            avatar_url: row.get(3)?,
            status: Availability::Available,
            created_at: row.get(5)?,
        },
        row.get(4)?,
    ))
}

fn with_status((mut user, status): (User, String)) -> Result<User, StorageError> {
    user.status = Availability::parse(&status)?;
    Ok(user)
}

pub(super) fn record(conn: &Connection, at: i64, entry: &AuditEntry) -> Result<(), StorageError> {
    conn.prepare_cached(
        "INSERT INTO audit (at, actor, action, target, address, detail, workspace)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        at,
        entry.actor,
        entry.action,
        entry.target,
        entry.address,
        entry.detail,
        entry.workspace
    ])?;
    Ok(())
}

fn user_by_id(conn: &Connection, id: &str) -> Result<Option<User>, StorageError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1");
    conn.query_row(&sql, [id], user_row).optional()?.map(with_status).transpose()
}

impl Storage {
    /// The server's secret named `name`, created from `generate` the first time it is asked for.
    ///
    /// # Errors
    /// [`StorageError`] when storage fails.
    pub async fn server_key(
        &self,
        name: &'static str,
        generate: Vec<u8>,
        now_ms: i64,
    ) -> Result<Vec<u8>, StorageError> {
        self.run(move |conn| {
            conn.execute(
                "INSERT OR IGNORE INTO server_keys (name, secret, created_at) VALUES (?1, ?2, ?3)",
                params![name, generate, now_ms],
            )?;
            Ok(conn.query_row("SELECT secret FROM server_keys WHERE name = ?1", [name], |row| row.get(0))?)
        })
        .await
    }

    /// Creates an account and records `audit` with it.
    ///
    /// # Errors
    /// [`StorageError::Taken`] when the email address (or the external identity) has an account.
    pub async fn create_user(
        &self,
        new: NewUser,
        audit: AuditEntry,
        now_ms: i64,
    ) -> Result<User, StorageError> {
        self.run(move |conn| {
            if new.invited_only {
                let allowed: bool = conn.query_row(
                    "SELECT NOT EXISTS (SELECT 1 FROM users)
                         OR EXISTS (SELECT 1 FROM invites WHERE email = ?1 AND revoked_at IS NULL
                                    AND accepted_at IS NULL AND expires_at > ?2)",
                    params![new.email, now_ms],
                    |row| row.get(0),
                )?;
                if !allowed {
                    return Err(StorageError::NotInvited);
                }
            }
            let (issuer, subject) = new.external.clone().unzip();
            let inserted = conn.execute(
                "INSERT INTO users (id, email, name, password_hash, issuer, subject, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![new.id, new.email, new.name, new.password_hash, issuer, subject, now_ms],
            );
            match inserted {
                Err(rusqlite::Error::SqliteFailure(err, _))
                    if err.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    return Err(StorageError::Taken(if new.email.is_some() { "email" } else { "identity" }));
                }
                other => other?,
            };
            record(conn, now_ms, &AuditEntry { actor: Some(new.id.clone()), ..audit })?;
            user_by_id(conn, &new.id)?.ok_or_else(|| StorageError::Corrupt("new user vanished".into()))
        })
        .await
    }

    /// The account an external identity provider's `(issuer, subject)` maps to, if any.
    ///
    /// # Errors
    /// [`StorageError`] when storage fails.
    pub async fn user_by_identity(&self, issuer: &str, subject: &str) -> Result<Option<User>, StorageError> {
        let (issuer, subject) = (issuer.to_owned(), subject.to_owned());
        self.read(move |conn| {
            let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE issuer = ?1 AND subject = ?2");
            conn.query_row(&sql, [issuer, subject], user_row).optional()
        })
        .await?
        .map(with_status)
        .transpose()
    }

    /// How many accounts exist.
    ///
    /// # Errors
    /// [`StorageError`] when storage fails.
    pub async fn user_count(&self) -> Result<i64, StorageError> {
        self.read(|conn| conn.query_row("SELECT count(*) FROM users", [], |row| row.get(0))).await
    }

    /// The account with login `email`, and its password hash.
    ///
    /// # Errors
    /// [`StorageError`] when storage fails.
    pub async fn user_by_email(&self, email: &str) -> Result<Option<(User, Option<String>)>, StorageError> {
        let email = email.to_owned();
        let found = self
            .read(move |conn| {
                let sql = format!("SELECT {USER_COLUMNS}, password_hash FROM users WHERE email = ?1");
                conn.query_row(&sql, [email], |row| Ok((user_row(row)?, row.get::<_, Option<String>>(6)?)))
                    .optional()
            })
            .await?;
        found.map(|(user, hash)| Ok((with_status(user)?, hash))).transpose()
    }

    /// The account `id`.
    ///
    /// # Errors
    /// [`StorageError`] when storage fails.
    pub async fn user(&self, id: &str) -> Result<Option<User>, StorageError> {
        let id = id.to_owned();
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1");
        self.read(move |conn| conn.query_row(&sql, [id], user_row).optional())
            .await?
            .map(with_status)
            .transpose()
    }

    /// Applies `change` to `id`'s profile; returns the profile after it (`None`: no such user).
    ///
    /// # Errors
    /// [`StorageError`] when storage fails.
    pub async fn update_profile(
        &self,
        id: &str,
        change: ProfileChange,
    ) -> Result<Option<User>, StorageError> {
        let id = id.to_owned();
        self.run(move |conn| {
            if let Some(name) = &change.name {
                conn.execute("UPDATE users SET name = ?2 WHERE id = ?1", params![id, name])?;
            }
            if let Some(avatar_url) = &change.avatar_url {
                conn.execute("UPDATE users SET avatar_url = ?2 WHERE id = ?1", params![id, avatar_url])?;
            }
            if let Some(status) = change.status {
                conn.execute("UPDATE users SET status = ?2 WHERE id = ?1", params![id, status.as_str()])?;
            }
            user_by_id(conn, &id)
        })
        .await
    }

    /// Stores a new session's first refresh token for `user_id`, with `audit`.
    ///
    /// # Errors
    /// [`StorageError`] when storage fails.
    pub async fn start_session(
        &self,
        user_id: &str,
        token: NewRefresh,
        audit: AuditEntry,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        let user_id = user_id.to_owned();
        self.run(move |conn| {
            insert_refresh(conn, &user_id, &token, now_ms)?;
            record(conn, now_ms, &AuditEntry { actor: Some(user_id.clone()), ..audit })
        })
        .await
    }

    /// Presents refresh token `id` with secret hash `hash`: rotates it to `next` when it is
    /// current; revokes its family when it was used before (and audits that).
    ///
    /// # Errors
    /// [`StorageError`] when storage fails.
    pub async fn rotate_refresh(
        &self,
        id: &str,
        hash: Vec<u8>,
        next: NewRefresh,
        address: Option<String>,
        now_ms: i64,
    ) -> Result<Rotation, StorageError> {
        let id = id.to_owned();
        self.run(move |conn| {
            let Some(found) = find_refresh(conn, &id, &hash)? else { return Ok(Rotation::Refused) };
            if found.used_at.is_some() {
                revoke_family(conn, &found.family, now_ms)?;
                let audit = AuditEntry {
                    actor: Some(found.user_id.clone()),
                    action: "session.reuse",
                    target: Some(found.family.clone()),
                    address,
                    detail: Some("a used refresh token was presented again; its family is revoked".into()),
                    workspace: None,
                };
                record(conn, now_ms, &audit)?;
                return Ok(Rotation::Reused);
            }
            if found.revoked_at.is_some() || found.expires_at <= now_ms {
                return Ok(Rotation::Refused);
            }
            conn.execute("UPDATE refresh_tokens SET used_at = ?2 WHERE id = ?1", params![id, now_ms])?;
            insert_refresh(conn, &found.user_id, &NewRefresh { family: found.family, ..next }, now_ms)?;
            Ok(Rotation::Rotated(found.user_id))
        })
        .await
    }

    /// Ends the session refresh token `id` belongs to (its whole family); returns the user id, or
    /// `None` when the token is unknown or its secret wrong.
    ///
    /// # Errors
    /// [`StorageError`] when storage fails.
    pub async fn end_session(
        &self,
        id: &str,
        hash: Vec<u8>,
        address: Option<String>,
        now_ms: i64,
    ) -> Result<Option<String>, StorageError> {
        let id = id.to_owned();
        self.run(move |conn| {
            let Some(found) = find_refresh(conn, &id, &hash)? else { return Ok(None) };
            revoke_family(conn, &found.family, now_ms)?;
            let audit = AuditEntry {
                actor: Some(found.user_id.clone()),
                action: "session.logout",
                target: Some(found.family),
                address,
                detail: None,
                workspace: None,
            };
            record(conn, now_ms, &audit)?;
            Ok(Some(found.user_id))
        })
        .await
    }

    /// Appends one entry to the audit log.
    ///
    /// # Errors
    /// [`StorageError`] when storage fails.
    pub async fn audit(&self, entry: AuditEntry, now_ms: i64) -> Result<(), StorageError> {
        self.run(move |conn| record(conn, now_ms, &entry)).await
    }

    /// A page of audit entries in `scope`, newest first: at most `limit`, all older than entry
    /// `before` when given.
    ///
    /// # Errors
    /// [`StorageError`] when storage fails.
    pub async fn audit_page(
        &self,
        scope: AuditScope,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StorageError> {
        self.read(move |conn| {
            let (column, key) = match scope {
                AuditScope::Workspace(id) => ("workspace", id),
                AuditScope::Actor(id) => ("actor", id),
            };
            let sql = format!(
                "SELECT id, at, actor, action, target, address, detail, workspace FROM audit
                 WHERE {column} = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3"
            );
            let mut stmt = conn.prepare(&sql)?;
            stmt.query_map(params![key, before.unwrap_or(i64::MAX), limit], |row| {
                Ok(AuditRecord {
                    id: row.get(0)?,
                    at: row.get(1)?,
                    actor: row.get(2)?,
                    action: row.get(3)?,
                    target: row.get(4)?,
                    address: row.get(5)?,
                    detail: row.get(6)?,
                    workspace: row.get(7)?,
                })
            })?
            .collect()
        })
        .await
    }
}

struct FoundRefresh {
    family: String,
    user_id: String,
    expires_at: i64,
    used_at: Option<i64>,
    revoked_at: Option<i64>,
}

fn find_refresh(conn: &Connection, id: &str, hash: &[u8]) -> Result<Option<FoundRefresh>, StorageError> {
    let found = conn
        .query_row(
            "SELECT family, user_id, hash, expires_at, used_at, revoked_at FROM refresh_tokens WHERE id = ?1",
            [id],
            |row| {
                Ok((
                    FoundRefresh {
                        family: row.get(0)?,
                        user_id: row.get(1)?,
                        expires_at: row.get(3)?,
                        used_at: row.get(4)?,
                        revoked_at: row.get(5)?,
                    },
                    row.get::<_, Vec<u8>>(2)?,
                ))
            },
        )
        .optional()?;
    // The stored value is a hash of a 256-bit random secret: comparing it reveals nothing useful.
    Ok(found.filter(|(_, stored)| stored == hash).map(|(found, _)| found))
}

fn insert_refresh(
    conn: &Connection,
    user_id: &str,
    token: &NewRefresh,
    now_ms: i64,
) -> Result<(), StorageError> {
    conn.prepare_cached(
        "INSERT INTO refresh_tokens (id, family, user_id, hash, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![token.id, token.family, user_id, token.hash, now_ms, token.expires_at])?;
    Ok(())
}

fn revoke_family(conn: &Connection, family: &str, now_ms: i64) -> Result<(), StorageError> {
    conn.execute(
        "UPDATE refresh_tokens SET revoked_at = ?2 WHERE family = ?1 AND revoked_at IS NULL",
        params![family, now_ms],
    )?;
    Ok(())
}
