//! The one access decision for documents — who is this, and what may they do to this document —
//! asked by every WebSocket dialect, and the index of live connections that lets a change of
//! membership, role or document reach the sockets it affects.
//!
//! Who a token names is [`Policy::user`]: Weft's own access tokens, the configured external
//! identity provider's (see [`super::providers`]) and the `--jwt-secret` issuer's, whose subjects
//! map to accounts created on first use. The REST routes ask it too (the `Caller` extractor).
//!
//! A **workspace document** (created through the API) is open only to a token whose
//! user is a member of its workspace (and on its list, when private); [`weft_sync_core::access`]
//! decides, and anything else is [`AuthError::Hidden`], whatever mode the server runs in. A member
//! whose role may not edit, or any member of an archived document, gets read-only access. A
//! **free document** (one a client merely names) is governed by `--anonymous` for connections
//! without a token, and by the `--jwt-secret` tokens ([`Auth`]) or, without a secret, by any
//! token naming an account.
//!
//! Which names are workspace documents is kept in memory (ids are added before their row is
//! written, so no join can take a new workspace document for a free one); everything else is
//! read from storage at each decision.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use weft_sync_core::access::{self, Action, Decision, Target};
use weft_sync_core::relay::Access;
use weft_sync_core::{CloseCode, DocId};

use super::providers::{ExternalIdentity, Provider};
use super::sessions::Sessions;
use super::{Auth, AuthError, Grant};
use crate::config::Anonymous;
use crate::rooms::PeerLink;
use crate::storage::accounts::{AuditEntry, NewUser};
use crate::storage::documents::DocumentAccess;
use crate::storage::{Storage, StorageError};

/// The document access decision and the live-connection index. Cheap to clone.
#[derive(Clone)]
pub struct Policy {
    inner: Arc<Inner>,
}

struct Inner {
    auth: Auth,
    sessions: Sessions,
    provider: Option<Provider>,
    anonymous: Anonymous,
    storage: Storage,
    /// The ids of every workspace document.
    workspace_docs: RwLock<HashSet<String>>,
    live: Mutex<HashMap<u64, Live>>,
    next_live: AtomicU64,
    /// Counts [`Policy::recheck`] calls: a decision made before one may predate the change.
    epoch: AtomicU64,
}

/// One live connection to a workspace document.
struct Live {
    user: String,
    workspace: String,
    doc: DocId,
    access: Access,
    link: PeerLink,
}

/// Which live connections a change may affect.
#[derive(Debug, Clone)]
pub enum Affected {
    /// One person's, in one workspace (their role changed, or they left or were removed).
    Member {
        /// The workspace.
        workspace: String,
        /// The person.
        user: String,
    },
    /// Everyone's in a workspace (it was deleted).
    Workspace(String),
    /// Everyone's on one document (it was archived, shared differently or deleted).
    Document(String),
}

/// Keeps a connection in the live index while it is held.
pub struct Tracked {
    policy: Arc<Inner>,
    id: u64,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.policy.live.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.id);
    }
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy").finish_non_exhaustive()
    }
}

impl Policy {
    /// Loads the ids of the workspace documents from `storage`.
    ///
    /// # Errors
    /// [`StorageError`] when storage fails.
    pub async fn new(
        auth: Auth,
        sessions: Sessions,
        provider: Option<Provider>,
        anonymous: Anonymous,
        storage: Storage,
    ) -> Result<Self, StorageError> {
        let ids = storage.workspace_document_ids().await?;
        Ok(Self {
            inner: Arc::new(Inner {
                auth,
                sessions,
                provider,
                anonymous,
                storage,
                workspace_docs: RwLock::new(ids.into_iter().collect()),
                live: Mutex::new(HashMap::new()),
                next_live: AtomicU64::new(1),
                epoch: AtomicU64::new(0),
            }),
        })
    }

    /// Whether every connection must present a token (no anonymous access to anything).
    pub fn requires_token(&self) -> bool {
        self.inner.anonymous == Anonymous::None
    }

    /// Registers `id` as a workspace document: call before its row is written.
    pub fn add_workspace_document(&self, id: &str) {
        self.inner.workspace_docs.write().unwrap_or_else(|p| p.into_inner()).insert(id.to_owned());
    }

    /// Forgets `id` again (its row was never written).
    pub fn forget_workspace_document(&self, id: &str) {
        self.inner.workspace_docs.write().unwrap_or_else(|p| p.into_inner()).remove(id);
    }

    fn is_workspace_document(&self, doc: &DocId) -> bool {
        self.inner.workspace_docs.read().unwrap_or_else(|p| p.into_inner()).contains(doc.as_str())
    }

    /// Decides what the bearer of `token` may do to `doc`.
    ///
    /// # Errors
    /// [`AuthError`]: no or an invalid token where one is needed, a token that does not cover a
    /// free document, or [`AuthError::Hidden`] for a workspace document the bearer may not see.
    pub async fn document(&self, token: Option<&str>, doc: &DocId) -> Result<Grant, AuthError> {
        if !self.is_workspace_document(doc) {
            return self.free_document(token.filter(|t| !t.is_empty()), doc).await;
        }
        let token = token.filter(|t| !t.is_empty()).ok_or(AuthError::Missing)?;
        let user = self.user(token).await?;
        let epoch = self.inner.epoch.load(Ordering::Acquire);
        let (access, workspace) = self.member_access(&user, doc).await?;
        Ok(Grant { access, user_id: Some(user), workspace: Some(workspace), epoch })
    }

    /// A free document: with `--jwt-secret`, that secret's tokens decide (their `scope` and
    /// `docs` claims); without, a token naming an account writes, attributed to it. A connection
    /// without a token (or, where anonymous access is allowed, with one that names nobody) gets
    /// what `--anonymous` allows.
    async fn free_document(&self, token: Option<&str>, doc: &DocId) -> Result<Grant, AuthError> {
        let anonymous = match self.inner.anonymous {
            Anonymous::None => None,
            Anonymous::Read => Some(Access::ReadOnly),
            Anonymous::Write => Some(Access::ReadWrite),
        };
        let grant = |access, user_id| Grant { access, user_id, workspace: None, epoch: 0 };
        let Some(token) = token else { return anonymous.map(|a| grant(a, None)).ok_or(AuthError::Missing) };
        let named = if self.inner.auth.is_enforced() {
            self.inner.auth.verify(Some(token), doc)
        } else {
            self.user(token).await.map(|user| grant(Access::ReadWrite, Some(user)))
        };
        match (named, anonymous) {
            (Ok(grant), _) => Ok(grant),
            (Err(AuthError::Unavailable), _) => Err(AuthError::Unavailable),
            (Err(AuthError::Invalid(_)), Some(access)) => Ok(grant(access, None)),
            (Err(err), _) => Err(err),
        }
    }

    /// The Weft account `token` names: one of Weft's own access tokens, or a token of the
    /// configured identity provider or of the `--jwt-secret` issuer, whose subject maps to an
    /// account (created on first use).
    ///
    /// # Errors
    /// [`AuthError::Invalid`] when no issuer vouches for the token (the reason is the provider's
    /// when one is configured); [`AuthError::Unavailable`] when storage fails.
    pub async fn user(&self, token: &str) -> Result<String, AuthError> {
        let own = match self.inner.sessions.verify_access(token) {
            Ok(user) => return Ok(user),
            Err(err) => err,
        };
        let external = match &self.inner.provider {
            Some(provider) => provider.verify(token),
            None => Err(own),
        };
        let identity = match (external, self.inner.auth.subject(token)) {
            (Ok(identity), _) => identity,
            (Err(_), Ok(subject)) => ExternalIdentity {
                issuer: super::JWT_SECRET_ISSUER.to_owned(),
                subject,
                email: None,
                name: None,
            },
            (Err(err), Err(_)) => return Err(err),
        };
        self.account_for(identity).await
    }

    /// The account of an external identity, created the first time it is seen.
    async fn account_for(&self, identity: ExternalIdentity) -> Result<String, AuthError> {
        let storage = &self.inner.storage;
        let unavailable = |err: StorageError| {
            tracing::error!(error = %err, "mapping an external identity failed in storage");
            AuthError::Unavailable
        };
        if let Some(user) =
            storage.user_by_identity(&identity.issuer, &identity.subject).await.map_err(unavailable)?
        {
            return Ok(user.id);
        }
        let email = identity.email.as_deref().and_then(weft_sync_core::names::email);
        let name = identity
            .name
            .as_deref()
            .and_then(weft_sync_core::names::display_name)
            .or_else(|| email.as_deref().and_then(|e| e.split('@').next()).map(str::to_owned))
            .unwrap_or_else(|| identity.subject.chars().take(64).collect());
        let id = super::sessions::random_id().map_err(|_| AuthError::Unavailable)?;
        // The address is the provider's word only: an account that already has it keeps it.
        for email in [email, None] {
            let new = NewUser {
                id: id.clone(),
                email: email.clone(),
                name: name.clone(),
                password_hash: None,
                external: Some((identity.issuer.clone(), identity.subject.clone())),
                invited_only: false,
            };
            let audit = AuditEntry {
                action: "account.external",
                detail: Some(format!("issuer {}", identity.issuer)),
                ..AuditEntry::default()
            };
            match storage.create_user(new, audit, crate::clock::now_ms()).await {
                Ok(user) => return Ok(user.id),
                Err(StorageError::Taken("email")) if email.is_some() => continue,
                // Created meanwhile by a concurrent first use.
                Err(StorageError::Taken(_)) => break,
                Err(err) => return Err(unavailable(err)),
            }
        }
        match storage.user_by_identity(&identity.issuer, &identity.subject).await.map_err(unavailable)? {
            Some(user) => Ok(user.id),
            None => Err(AuthError::Unavailable),
        }
    }

    /// What `user` may do to workspace document `doc`, and its workspace.
    async fn member_access(&self, user: &str, doc: &DocId) -> Result<(Access, String), AuthError> {
        let found = self.inner.storage.document_access(doc.as_str(), user).await.map_err(|err| {
            tracing::error!(doc = %doc, error = %err, "access decision failed in storage");
            AuthError::Unavailable
        })?;
        let Some(DocumentAccess { document, role }) = found else { return Err(AuthError::Hidden) };
        if document.deleted {
            return Err(AuthError::Hidden);
        }
        let target = Target {
            private: document.private,
            listed: document.lists(user),
            creator: document.created_by == user,
        };
        if access::decide(role, Action::ReadDocument, target) != Decision::Allow {
            return Err(AuthError::Hidden);
        }
        let writes =
            !document.archived && access::decide(role, Action::EditDocument, target) == Decision::Allow;
        Ok((if writes { Access::ReadWrite } else { Access::ReadOnly }, document.workspace))
    }

    /// Keeps the connection `link` (joined to `doc` under `grant`) in the live index while the
    /// returned guard is held, so that [`Policy::recheck`] can reach it. Free documents' grants
    /// are not tracked (`None`). A change stored after `grant` was decided and before this call
    /// could not reach the connection, so it is checked again at once.
    pub fn track(&self, grant: &Grant, doc: &DocId, link: &PeerLink) -> Option<Tracked> {
        let (Some(user), Some(workspace)) = (&grant.user_id, &grant.workspace) else { return None };
        let id = self.inner.next_live.fetch_add(1, Ordering::Relaxed);
        let live = Live {
            user: user.clone(),
            workspace: workspace.clone(),
            doc: doc.clone(),
            access: grant.access,
            link: link.clone(),
        };
        self.inner.live.lock().unwrap_or_else(|p| p.into_inner()).insert(id, live);
        if self.inner.epoch.load(Ordering::Acquire) != grant.epoch {
            let (policy, affected) =
                (self.clone(), Affected::Member { workspace: workspace.clone(), user: user.clone() });
            tokio::spawn(async move { policy.recheck(affected).await });
        }
        Some(Tracked { policy: self.inner.clone(), id })
    }

    /// Decides again for every live connection `affected` names, after the change was stored, and
    /// closes each whose access is gone (4403 `access revoked`: clients stop) or changed (4503:
    /// clients reconnect and are served with the new access). Returns how many it closed.
    pub async fn recheck(&self, affected: Affected) -> usize {
        self.inner.epoch.fetch_add(1, Ordering::AcqRel);
        // A channel's segments are decided as the channel: a change to it reaches their connections.
        let segments = match &affected {
            Affected::Document(doc) => self.inner.storage.segments_of(doc).await.unwrap_or_else(|err| {
                tracing::error!(doc = %doc, error = %err, "segments could not be listed for a recheck");
                Vec::new()
            }),
            _ => Vec::new(),
        };
        let candidates: Vec<(u64, String, DocId, Access, PeerLink)> = {
            let live = self.inner.live.lock().unwrap_or_else(|p| p.into_inner());
            live.iter()
                .filter(|(_, l)| match &affected {
                    Affected::Member { workspace, user } => l.workspace == *workspace && l.user == *user,
                    Affected::Workspace(workspace) => l.workspace == *workspace,
                    Affected::Document(doc) => {
                        l.doc.as_str() == doc || segments.iter().any(|s| s == l.doc.as_str())
                    }
                })
                .map(|(id, l)| (*id, l.user.clone(), l.doc.clone(), l.access, l.link.clone()))
                .collect()
        };
        let mut closed = 0;
        for (id, user, doc, access, link) in candidates {
            let (code, detail) = match self.member_access(&user, &doc).await {
                Ok((now, _)) if now == access => continue,
                Ok(_) => (CloseCode::AccessChanged, "your role or the document changed"),
                // Not knowing is not a reason to keep a possibly revoked member connected.
                Err(AuthError::Unavailable) => (CloseCode::InternalError, "access could not be checked"),
                Err(_) => (CloseCode::Forbidden, "access revoked"),
            };
            tracing::info!(doc = %doc, user = %user, detail, "closing a live connection after an access change");
            link.revoke(code, detail);
            self.inner.live.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
            closed += 1;
        }
        closed
    }
}
