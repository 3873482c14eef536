//! The HTTP surface: the router, shared handler state, health endpoints, and one module per
//! WebSocket dialect.

pub(crate) mod api;
mod automerge;
pub(crate) mod error;
mod events;
mod hocuspocus;
mod socket;
mod yjs;

pub use api::limits::Limits;
pub use api::openapi;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use error::ApiError;

use crate::auth::policy::Policy;
use crate::auth::sessions::Sessions;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::rooms::Rooms;
use crate::storage::Storage;

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Live documents.
    pub rooms: Rooms,
    /// What derivation produces for people, for their `/ws/events` connections.
    pub events: crate::events::Events,
    /// The store.
    pub storage: Storage,
    /// The document access decision and the live-connection index.
    pub policy: Policy,
    /// Weft's own sessions (access and refresh tokens).
    pub sessions: Sessions,
    /// The counters `/metrics` serves.
    pub metrics: Metrics,
    /// Rate limits.
    pub limits: Arc<Limits>,
    /// Outgoing email, when SMTP is configured.
    pub mailer: Option<crate::mail::Mailer>,
    /// The running configuration.
    pub config: Arc<Config>,
    /// Cancelled when the server starts shutting down.
    pub shutdown: CancellationToken,
    /// Tracks connection tasks so shutdown can wait for them.
    pub tracker: TaskTracker,
}

/// The application's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/ws/yjs/{*doc_id}", get(yjs::upgrade))
        .route("/ws/hocuspocus", get(hocuspocus::upgrade))
        .route("/ws/automerge", get(automerge::upgrade))
        .route("/ws/events", get(events::upgrade))
        .merge(api::routes())
        .fallback(|| async { ApiError::NotFound })
        .with_state(state)
}

/// Liveness: the process answers HTTP.
async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// The counters, in the Prometheus text format.
async fn metrics(State(state): State<AppState>) -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        state.metrics.render(),
    )
}

/// Readiness: storage answers queries and the server is not shutting down.
async fn readyz(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    if state.shutdown.is_cancelled() {
        return Err(ApiError::NotReady("shutting down"));
    }
    if !state.storage.is_ready().await {
        return Err(ApiError::NotReady("storage unavailable"));
    }
    Ok(Json(serde_json::json!({ "status": "ready", "schema_version": crate::storage::schema_version() })))
}
