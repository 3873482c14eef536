//! The Weft relay as a library: [`run`] serves the HTTP and WebSocket API on a bound listener until
//! a shutdown token is cancelled. `main.rs` and the end-to-end tests both call it.

pub mod admin;
pub mod auth;
pub mod clock;
pub mod config;
pub mod derive;
pub mod events;
pub mod http;
pub mod mail;
pub mod metrics;
pub mod rooms;
pub mod storage;

use std::sync::Arc;

use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::Config;

use crate::http::AppState;
use crate::rooms::Rooms;
use crate::storage::Storage;

/// Serves on `listener` until `shutdown` is cancelled, then shuts down in order: stop accepting,
/// close every WebSocket with 1001, let rooms finish their appends, wait up to the grace period, and
/// flush and close storage.
///
/// # Errors
/// When storage cannot be opened or the listener fails.
pub async fn run(config: Config, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    let _lock = storage::lock_data_dir(&config.storage.data_dir)?;
    let storage = Storage::open(&config.storage).await?;
    let tracker = TaskTracker::new();
    let metrics = metrics::Metrics::default();
    let rooms =
        Rooms::new(storage.clone(), config.rooms.clone(), metrics.clone(), tracker.clone(), shutdown.clone());
    let events = events::Events::default();
    derive::Deriver::new(storage.clone(), rooms.clone(), metrics.clone(), events.clone())
        .spawn(&tracker, shutdown.clone());
    let grace = config.shutdown_grace;
    let auth = auth::Auth::new(config.jwt_secret.as_deref());
    let now_ms = clock::now_ms();
    let sessions = auth::sessions::Sessions::open(&storage, &config.accounts, now_ms).await?;
    if storage.user_count().await? == 0 {
        tracing::info!(
            "no accounts yet: sign up with POST /api/auth/signup (docs/api.md), or run \
             `weft user create --email you@example.com` and type a password"
        );
    }
    let provider = config.identity_provider.as_ref().map(auth::providers::Provider::new).transpose()?;
    let policy =
        auth::policy::Policy::new(auth, sessions.clone(), provider, config.anonymous, storage.clone())
            .await?;
    let state = AppState {
        rooms,
        events,
        storage: storage.clone(),
        policy,
        sessions,
        metrics,
        limits: Arc::new(http::Limits::new(
            config.accounts.auth_attempts_per_minute,
            config.accounts.login_attempts_per_account_per_hour,
            config.accounts.api_requests_per_minute,
            config.accounts.ws_connects_per_address_per_minute,
        )),
        mailer: config.mail.as_ref().map(mail::Mailer::new).transpose()?,
        config: Arc::new(config),
        shutdown: shutdown.clone(),
        tracker,
    };
    let app = http::router(state.clone());
    // Small frames must not wait for Nagle's algorithm.
    let listener = listener.tap_io(|tcp| {
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(error = %err, "could not set TCP_NODELAY");
        }
    });
    let served = axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await;
    shutdown.cancel();
    state.tracker.close();
    if tokio::time::timeout(grace, state.tracker.wait()).await.is_err() {
        tracing::warn!(tasks = state.tracker.len(), "shutdown grace period over; tasks still running");
    }
    storage.close().await;
    served?;
    Ok(())
}
