//! The one shape of every HTTP error: `{"error": {"code", "message"}}`, the
//! same `code`/`message` pair Socket.IO clients get in `connect_error` and
//! error acks. Each module keeps its own error enum and converts it into
//! [`ApiError`]; what went wrong inside is logged by [`log_errors`], never
//! sent. [`JsonBody`] reads a JSON request body into the same errors.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::json;

/// An HTTP error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    /// What failed inside the node: logged by [`log_errors`], not sent.
    pub internal: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            internal: None,
        }
    }

    /// A 500 whose `detail` goes to the log only.
    pub fn internal(detail: impl Into<String>) -> Self {
        Self {
            internal: Some(detail.into()),
            ..Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error; see the node's log",
            )
        }
    }
}

/// The internal detail of an error response, for [`log_errors`].
#[derive(Clone)]
struct Internal(String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({ "error": { "code": self.code, "message": self.message } }));
        let mut response = if self.status == StatusCode::UNAUTHORIZED {
            (self.status, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response()
        } else {
            (self.status, body).into_response()
        };
        if let Some(detail) = self.internal {
            response.extensions_mut().insert(Internal(detail));
        }
        response
    }
}

/// Middleware: log the internal detail of every error response that has one.
pub async fn log_errors(request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    if let Some(Internal(detail)) = response.extensions().get() {
        tracing::error!(
            path,
            status = response.status().as_u16(),
            "request failed: {detail}"
        );
    }
    response
}

/// A JSON request body (any content type), refused with `400 bad_request`
/// and `malformed body: ...` when it does not parse as `T`.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let malformed = |e: String| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("malformed body: {e}"),
            )
        };
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|e| malformed(e.body_text()))?;
        serde_json::from_slice(&bytes)
            .map(Self)
            .map_err(|e| malformed(e.to_string()))
    }
}
