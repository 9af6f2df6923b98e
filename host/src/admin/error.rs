//! Errors of the admin API and of the data directory.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::control::ControlError;
use crate::http_error::ApiError;
use crate::plugins::{LoadError, RegistryError};

/// An admin request failed. Each variant has a stable `code`; the body is
/// `{ "error": { "code", "message" } }` and never carries host internals.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
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
    /// The change could not be saved to the data directory; it was undone.
    #[error(
        "the change could not be saved to the data directory, so it was not made (see the node's log)"
    )]
    NotSaved,
    /// Something on this node failed; details are in its log.
    #[error("internal error: {0}")]
    Internal(String),
    /// A cluster-wide record cannot be read now (Redis away).
    #[error(transparent)]
    Presence(#[from] crate::presence::PresenceError),
}

impl From<ControlError> for AdminError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::NotFound(name) => Self::NotFound(name),
            ControlError::Load(e) => Self::Load(e),
            ControlError::Registry(e) => Self::Registry(e),
            ControlError::NotSaved(_) => Self::NotSaved,
        }
    }
}

impl AdminError {
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
                LoadError::Registry(e) => Self::registry_status(e),
                LoadError::WrongWorld(_) | LoadError::Describe(_) => {
                    StatusCode::UNPROCESSABLE_ENTITY
                }
                LoadError::CompileTimeout(_) => StatusCode::SERVICE_UNAVAILABLE,
                LoadError::Io { .. } | LoadError::Compiler(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
            Self::Registry(e) => Self::registry_status(e),
            Self::Internal(_) | Self::NotSaved => StatusCode::INTERNAL_SERVER_ERROR,
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
                LoadError::CompileTimeout(_) => "compile_timeout",
                LoadError::Registry(e) => Self::registry_code(e),
                LoadError::Io { .. } | LoadError::Compiler(_) => "internal",
            },
            Self::Registry(e) => Self::registry_code(e),
            Self::Internal(_) => "internal",
            Self::NotSaved => "not_saved",
            Self::Presence(_) => "presence_unavailable",
        }
    }

    fn registry_status(e: &RegistryError) -> StatusCode {
        match e {
            RegistryError::NoSuchRevision(_) => StatusCode::NOT_FOUND,
            _ => StatusCode::CONFLICT,
        }
    }

    fn registry_code(e: &RegistryError) -> &'static str {
        match e {
            RegistryError::NoPrevious => "no_previous_revision",
            RegistryError::NoSuchRevision(_) => "revision_not_found",
            RegistryError::NoCanary => "no_canary",
            RegistryError::CanaryNeedsActive(_) => "canary_needs_active",
            RegistryError::MountChange { .. } => "mount_change",
            RegistryError::MountTaken { .. } => "mount_taken",
        }
    }
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        match &e {
            AdminError::Internal(_)
            | AdminError::Load(LoadError::Io { .. } | LoadError::Compiler(_)) => {
                ApiError::internal(format!("admin request failed: {e}"))
            }
            other => ApiError::new(other.status(), other.code(), other.to_string()),
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
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

pub type Result<T, E = AdminError> = std::result::Result<T, E>;
