//! Administration from the command line, against the data directory and without a running
//! server: `weft user create` (an account, e.g. the first one on an invite-only server) and
//! `weft token issue` (an access token for scripts). Both validate as the REST API does and write
//! their audit entries like it.

use anyhow::Context;

use crate::auth::sessions::Sessions;
use crate::config::Config;
use crate::http::api::{email, now_ms, password_user};
use crate::storage::Storage;
use crate::storage::accounts::{AuditEntry, User};

/// Creates a password account, whatever the sign-up policy.
///
/// # Errors
/// When a value is invalid, the address has an account, or storage fails.
pub async fn create_user(
    config: &Config,
    raw_email: &str,
    name: Option<&str>,
    raw_password: &str,
) -> anyhow::Result<User> {
    let new =
        password_user(raw_email, name, raw_password, false).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let storage = Storage::open(&config.storage).await.context("opening storage")?;
    let audit = AuditEntry { action: "account.create_cli", ..AuditEntry::default() };
    let created = storage.create_user(new, audit, now_ms()).await;
    storage.close().await;
    Ok(created?)
}

/// An access token for the account with login `raw_email`, valid for the configured lifetime.
///
/// # Errors
/// When there is no such account or storage fails.
pub async fn issue_token(config: &Config, raw_email: &str) -> anyhow::Result<String> {
    let email = email(raw_email).map_err(|e| anyhow::anyhow!("{e}"))?;
    let storage = Storage::open(&config.storage).await.context("opening storage")?;
    let issued = async {
        let (user, _) = storage
            .user_by_email(&email)
            .await?
            .with_context(|| format!("no account has the address {email}"))?;
        let sessions = Sessions::open(&storage, &config.accounts, now_ms()).await?;
        let token = sessions.issue_access(&user.id, now_ms())?;
        let audit =
            AuditEntry { actor: Some(user.id.clone()), action: "session.token_cli", ..AuditEntry::default() };
        storage.audit(audit, now_ms()).await?;
        anyhow::Ok(token.token)
    }
    .await;
    storage.close().await;
    issued
}

/// `weft rebuild-derived`: forgets every piece of derived state (search rows and derivation
/// cursors) and derives every workspace document again from its log, with the server stopped
/// (it holds the data directory while it runs). Returns what the job queue ran.
///
/// # Errors
/// When the data directory is in use or storage fails.
pub async fn rebuild_derived(config: &Config) -> anyhow::Result<(usize, crate::derive::Drained)> {
    let _lock = crate::storage::lock_data_dir(&config.storage.data_dir)?;
    let storage = Storage::open(&config.storage).await.context("opening storage")?;
    let tracker = tokio_util::task::TaskTracker::new();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let metrics = crate::metrics::Metrics::default();
    let rooms = crate::rooms::Rooms::new(
        storage.clone(),
        config.rooms.clone(),
        metrics.clone(),
        tracker.clone(),
        shutdown.clone(),
    );
    let rebuilt = async {
        let documents = storage.reset_derived(now_ms()).await?;
        let drained =
            crate::derive::Deriver::new(storage.clone(), rooms, metrics, crate::events::Events::default())
                .drain()
                .await?;
        anyhow::Ok((documents, drained))
    }
    .await;
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
    storage.close().await;
    rebuilt
}
