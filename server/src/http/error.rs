//! HTTP errors: every failure a handler returns maps to a status code and the JSON body
//! `{ "error": { "code": "...", "message": "..." } }`. Internal details are logged, not sent.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use weft_sync_core::InvalidDocId;

use crate::auth::AuthError;

/// An error a handler returns.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No route matches.
    #[error("no such endpoint")]
    NotFound,
    /// The document name in the path is not valid.
    #[error("invalid document name: {0}")]
    InvalidDocId(#[from] InvalidDocId),
    /// A WebSocket endpoint was requested without a WebSocket upgrade.
    #[error("this endpoint speaks WebSocket; send an upgrade request")]
    UpgradeRequired,
    /// The server cannot serve requests right now.
    #[error("not ready: {0}")]
    NotReady(&'static str),
    /// The request's token is missing or invalid, or does not cover the document.
    #[error(transparent)]
    Auth(#[from] AuthError),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::InvalidDocId(_) => StatusCode::BAD_REQUEST,
            Self::UpgradeRequired => StatusCode::UPGRADE_REQUIRED,
            Self::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Auth(AuthError::NotForDocument) => StatusCode::FORBIDDEN,
            Self::Auth(_) => StatusCode::UNAUTHORIZED,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::InvalidDocId(_) => "invalid_doc_id",
            Self::UpgradeRequired => "upgrade_required",
            Self::NotReady(_) => "not_ready",
            Self::Auth(AuthError::NotForDocument) => "forbidden",
            Self::Auth(_) => "unauthorized",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": { "code": self.code(), "message": self.to_string() } });
        (self.status(), Json(body)).into_response()
    }
}
