//! The admin token check: `Authorization: Bearer <token>`, compared in
//! constant time. No token configured means the API is disabled.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::error::AdminError;
use crate::auth::bearer;
use crate::state::AppState;

/// Middleware in front of every admin route.
pub async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, AdminError> {
    let Some(token) = state.admin.token.as_ref() else {
        return Err(AdminError::Disabled);
    };
    let given = bearer(request.headers()).ok_or(AdminError::MissingToken)?;
    if !token.matches(given) {
        return Err(AdminError::WrongToken);
    }
    Ok(next.run(request).await)
}
