//! Why a publish request was refused.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::auth::AuthError;
use crate::channels::ChannelError;
use crate::http_error::ApiError;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// No `Authorization: Bearer` header.
    #[error("send an API key or token as `Authorization: Bearer <key>`")]
    Missing,
    /// Neither an API key nor a token this API accepts.
    #[error("the API key is not valid")]
    BadKey,
    /// A token that failed verification.
    #[error(transparent)]
    Token(AuthError),
    /// A valid token without the publishing role.
    #[error("the token lacks the role {0:?}")]
    Forbidden(String),
    /// Channel or event name not acceptable.
    #[error(transparent)]
    Name(ChannelError),
    /// No plugin of that name is mounted.
    #[error("no plugin named {0:?}")]
    UnknownPlugin(String),
    /// The node is shutting down.
    #[error("the node is shutting down")]
    Closed,
    /// Too many publications wait for Redis: this one was not delivered.
    #[error("too many publications waiting for Redis: retry later")]
    Overloaded,
}

impl From<PublishError> for ApiError {
    fn from(e: PublishError) -> Self {
        let message = e.to_string();
        let (status, code) = match &e {
            PublishError::Missing => (StatusCode::UNAUTHORIZED, "token_missing"),
            PublishError::BadKey => (StatusCode::UNAUTHORIZED, "invalid_api_key"),
            PublishError::Token(a) => (StatusCode::UNAUTHORIZED, a.code()),
            PublishError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            PublishError::Name(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            PublishError::UnknownPlugin(_) => (StatusCode::NOT_FOUND, "unknown_plugin"),
            PublishError::Closed => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
            PublishError::Overloaded => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
        };
        ApiError::new(status, code, message)
    }
}

impl IntoResponse for PublishError {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}
