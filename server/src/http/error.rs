//! HTTP errors: every failure a handler returns maps to a status code and the JSON body
//! `{ "error": { "code": "...", "message": "..." } }`. Internal details are logged, not sent.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use weft_sync_core::InvalidDocId;

use crate::auth::AuthError;
use crate::storage::StorageError;

/// The body of every error answer: `{ "error": { "code", "message" } }`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The `error` of an [`ErrorBody`].
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable reason (`not_found`, `invalid_title`, …; docs/api.md lists them).
    #[schema(example = "not_found")]
    pub code: String,
    /// What happened, for people.
    pub message: String,
}

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
    /// The request is malformed or a value is out of range: 400 with a specific code.
    #[error("{message}")]
    Invalid {
        /// Stable, machine-readable reason.
        code: &'static str,
        /// What to fix.
        message: String,
    },
    /// The body is larger than the route accepts.
    #[error("the request body is too large")]
    TooLarge,
    /// Credentials or a session token were refused: 401 with a specific code.
    #[error("{message}")]
    Unauthenticated {
        /// Stable, machine-readable reason.
        code: &'static str,
        /// What happened.
        message: &'static str,
    },
    /// Too many attempts from this client; try again after the duration (429 with `Retry-After`).
    #[error("too many attempts; try again in {} s", retry_after_secs(.0))]
    RateLimited(std::time::Duration),
    /// The caller may see the object but not do this: 403 `forbidden`.
    #[error("your role does not allow this")]
    Forbidden,
    /// Refused for a reason other than the caller's role: 403 with a specific code.
    #[error("{message}")]
    Denied {
        /// Stable, machine-readable reason.
        code: &'static str,
        /// What happened.
        message: &'static str,
    },
    /// No such object, or the caller may not know it exists: 404 `not_found`.
    #[error("no such {0}")]
    Missing(&'static str),
    /// The request contradicts the current state: 409 with a specific code.
    #[error("{message}")]
    Conflict {
        /// Stable, machine-readable reason.
        code: &'static str,
        /// What happened.
        message: &'static str,
    },
    /// A write the document's content cannot take as it is (a client wrote another layout where the
    /// write goes, or an anchor lies outside the text): 409 `layout_conflict`, nothing written.
    #[error("{0}")]
    LayoutConflict(String),
    /// The object existed and is no longer usable (a revoked or expired invite): 410.
    #[error("{message}")]
    Gone {
        /// Stable, machine-readable reason.
        code: &'static str,
        /// What happened.
        message: &'static str,
    },
    /// A unique value (an email address, a slug) is already taken.
    #[error("this {0} is already taken")]
    Taken(&'static str),
    /// Storage failed; the detail is logged, not sent.
    #[error("storage failed")]
    Storage(StorageError),
    /// Something else failed inside the server; the detail is logged, not sent.
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl From<StorageError> for ApiError {
    fn from(err: StorageError) -> Self {
        match err {
            StorageError::Taken(what) => Self::Taken(what),
            StorageError::NotInvited => Self::Denied {
                code: "signup_by_invite_only",
                message: "sign-up on this server is by invite only; ask a workspace admin for an invite",
            },
            StorageError::NotAMember(user) => Self::Invalid {
                code: "not_a_member",
                message: format!("{user} is not a member of the workspace"),
            },
            other => Self::Storage(other),
        }
    }
}

impl ApiError {
    /// A 400 with `code` and `message`.
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid { code, message: message.into() }
    }

    /// The error for a JSON body axum could not read.
    pub fn from_json_rejection(rejection: axum::extract::rejection::JsonRejection) -> Self {
        use axum::extract::rejection::JsonRejection;
        match rejection {
            JsonRejection::MissingJsonContentType(_) => {
                Self::invalid("invalid_content_type", "send the body as application/json")
            }
            JsonRejection::BytesRejection(_) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Self::TooLarge
            }
            other => Self::invalid("invalid_body", other.body_text()),
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::InvalidDocId(_) => StatusCode::BAD_REQUEST,
            Self::UpgradeRequired => StatusCode::UPGRADE_REQUIRED,
            Self::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Auth(AuthError::NotForDocument) => StatusCode::FORBIDDEN,
            Self::Auth(AuthError::Hidden) => StatusCode::NOT_FOUND,
            Self::Auth(AuthError::Unavailable) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Auth(_) | Self::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
            Self::Invalid { .. } => StatusCode::BAD_REQUEST,
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Taken(_) | Self::Conflict { .. } | Self::LayoutConflict(_) => StatusCode::CONFLICT,
            Self::Forbidden | Self::Denied { .. } => StatusCode::FORBIDDEN,
            Self::Missing(_) => StatusCode::NOT_FOUND,
            Self::Gone { .. } => StatusCode::GONE,
            Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Storage(StorageError::Closed) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Storage(_) | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::NotFound | Self::Missing(_) => "not_found",
            Self::Forbidden => "forbidden",
            Self::InvalidDocId(_) => "invalid_doc_id",
            Self::UpgradeRequired => "upgrade_required",
            Self::NotReady(_) => "not_ready",
            Self::Auth(AuthError::NotForDocument) => "forbidden",
            Self::Auth(AuthError::Hidden) => "not_found",
            Self::Auth(AuthError::Unavailable) => "not_ready",
            Self::Auth(_) => "unauthorized",
            Self::Invalid { code, .. }
            | Self::Unauthenticated { code, .. }
            | Self::Conflict { code, .. }
            | Self::Denied { code, .. }
            | Self::Gone { code, .. } => code,
            Self::TooLarge => "too_large",
            Self::LayoutConflict(_) => "layout_conflict",
            Self::Taken(_) => "taken",
            Self::RateLimited(_) => "rate_limited",
            Self::Storage(StorageError::Closed) => "not_ready",
            Self::Storage(_) | Self::Internal(_) => "internal",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            Self::Storage(err) => tracing::error!(error = %err, "request failed in storage"),
            Self::Internal(err) => tracing::error!(error = %err, "request failed"),
            _ => {}
        }
        let body =
            ErrorBody { error: ErrorDetail { code: self.code().to_owned(), message: self.to_string() } };
        let mut response = (self.status(), Json(body)).into_response();
        if let Self::RateLimited(wait) = &self {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, retry_after_secs(wait).into());
        }
        response
    }
}

/// Whole seconds to wait, rounded up (`Retry-After` takes seconds; never 0 for a refusal).
fn retry_after_secs(wait: &std::time::Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}
