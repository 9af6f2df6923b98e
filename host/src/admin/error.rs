//! Errors of the admin API and of the data directory.

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::control::ControlError;
use crate::plugins::{LoadError, RegistryError};

/// An admin request failed. Each variant has a stable `code`; the body is
/// `{ "error": { "code", "message" } }` and never carries host internals.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No admin token is configured.
    #[error(
        "the admin API is disabled: start portico with --admin-token (PORTICO_ADMIN_TOKEN) or set [admin] token"
    )]
    Disabled,
    /// No `Authorization: Bearer` header.
    #[error("admin token missing: send Authorization: Bearer <token>")]
    MissingToken,
    /// A token that is not the admin token.
    #[error("admin token rejected")]
    WrongToken,
    /// No plugin by that name.
    #[error("no plugin named {0:?}")]
    NotFound(String),
    /// No admin route at that path.
    #[error("no such admin route; see /admin/v1/openapi.json")]
    NoRoute,
    /// A malformed plugin name, query parameter or header.
    #[error("{0}")]
    BadRequest(String),
    /// The body is not declared as wasm.
    #[error("content type {0:?} is not accepted: send the component as application/wasm")]
    UnsupportedMediaType(String),
    /// The upload is over `runtime.max_plugin_bytes`.
    #[error("the upload is over the limit of {limit} bytes (runtime.max_plugin_bytes)")]
    TooLarge { limit: usize },
    /// The upload was refused by validation.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The registry cannot do that (no earlier revision, no canary, ...).
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// Something on this node failed; details are in its log.
    #[error("internal error: {0}")]
    Internal(String),
    /// A cluster-wide record cannot be read now (Redis away).
    #[error(transparent)]
    Presence(#[from] crate::presence::PresenceError),
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::NotFound(name) => Self::NotFound(name),
            ControlError::Load(e) => Self::Load(e),
            ControlError::Registry(e) => Self::Registry(e),
        }
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Disabled | Self::NotFound(_) | Self::NoRoute => StatusCode::NOT_FOUND,
            Self::MissingToken => StatusCode::UNAUTHORIZED,
            Self::WrongToken => StatusCode::FORBIDDEN,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Load(e) => match e {
                LoadError::NotAComponent(_) => StatusCode::BAD_REQUEST,
                LoadError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                LoadError::Conflict(_) => StatusCode::CONFLICT,
                LoadError::WrongWorld(_) | LoadError::Describe(_) => {
                    StatusCode::UNPROCESSABLE_ENTITY
                }
                LoadError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            },
            Self::Registry(e) => match e {
                RegistryError::NoSuchRevision(_) => StatusCode::NOT_FOUND,
                _ => StatusCode::CONFLICT,
            },
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Presence(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::Disabled => "admin_disabled",
            Self::MissingToken => "admin_token_missing",
            Self::WrongToken => "admin_token_invalid",
            Self::NotFound(_) => "plugin_not_found",
            Self::NoRoute => "not_found",
            Self::BadRequest(_) => "bad_request",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::TooLarge { .. } => "plugin_too_large",
            Self::Load(e) => match e {
                LoadError::NotAComponent(_) => "not_a_component",
                LoadError::WrongWorld(_) => "wrong_world",
                LoadError::Describe(_) => "describe_failed",
                LoadError::TooLarge { .. } => "plugin_too_large",
                LoadError::Conflict(_) => "mount_taken",
                LoadError::Io { .. } => "internal",
            },
            Self::Registry(e) => match e {
                RegistryError::NoPrevious => "no_previous_revision",
                RegistryError::NoSuchRevision(_) => "revision_not_found",
                RegistryError::NoCanary => "no_canary",
                RegistryError::CanaryNeedsActive(_) => "canary_needs_active",
                RegistryError::MountChange { .. } => "mount_change",
                RegistryError::MountTaken { .. } => "mount_taken",
            },
            Self::Internal(_) => "internal",
            Self::Presence(_) => "presence_unavailable",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            Self::Internal(_) | Self::Load(LoadError::Io { .. }) => {
                tracing::error!("admin request failed: {self}");
                "internal error; see the node's log".to_owned()
            }
            other => other.to_string(),
        };
        let body = Json(json!({ "error": { "code": self.code(), "message": message } }));
        if status == StatusCode::UNAUTHORIZED {
            return (status, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response();
        }
        (status, body).into_response()
    }
}

/// The data directory cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// `state.json` is not valid.
    #[error("{path} is not a valid state file: {source}")]
    Corrupt {
        path: String,
        source: serde_json::Error,
    },
    /// A blob does not hash to its name.
    #[error("blob {0} does not match its sha256")]
    BadBlob(String),
}

pub type Result<T, E = ApiError> = std::result::Result<T, E>;
