//! The demo page (`--demo`): a chat, a live feed and the plugin list, using
//! the official Socket.IO browser client and EventSource.
//!
//! Development only: `/demo/session` hands out tokens signed with the
//! configured secret to anyone who asks (with `role=editor` if asked, so the
//! feed accepts posts), and the admin token, so the page can list plugins.

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;

use crate::state::AppState;

const INDEX: &str = include_str!("assets/index.html");
const APP: &str = include_str!("assets/app.js");
/// The official Socket.IO browser client, v4.8.4 (MIT), vendored: the page
/// must work without internet access.
const SOCKET_IO: &str = include_str!("assets/socket.io.min.js");

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/",
            get(|| async { ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX) }),
        )
        .route(
            "/demo/app.js",
            get(|| async { ([(header::CONTENT_TYPE, "text/javascript")], APP) }),
        )
        .route(
            "/demo/socket.io.min.js",
            get(|| async { ([(header::CONTENT_TYPE, "text/javascript")], SOCKET_IO) }),
        )
        .route("/demo/session", get(session))
}

#[derive(Deserialize)]
struct SessionQuery {
    name: String,
    /// Only `editor` (the feed plugin's posting role) is minted.
    role: Option<String>,
}

async fn session(
    State(state): State<AppState>,
    Query(q): Query<SessionQuery>,
) -> impl IntoResponse {
    let name: String = q
        .name
        .chars()
        .filter(|c| c.is_alphanumeric() || "-_.".contains(*c))
        .take(32)
        .collect();
    let Some(secret) = state.config.auth.jwt_secret.as_deref() else {
        let msg = "the demo needs --jwt-secret to mint tokens";
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "error": { "code": "demo_unavailable", "message": msg } })),
        );
    };
    let claims: Vec<(String, String)> = match q.role.as_deref() {
        None => vec![],
        Some("editor") => vec![("role".into(), "editor".into())],
        Some(other) => {
            let msg = format!("the demo mints role `editor` only, not {other:?}");
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({ "error": { "code": "bad_request", "message": msg } })),
            );
        }
    };
    match crate::auth::mint(
        secret,
        if name.is_empty() { "guest" } else { &name },
        3600,
        &claims,
    ) {
        // This route exists in demo mode only: handing out the admin token
        // is what lets the page show the plugin list.
        Ok(token) => (
            StatusCode::OK,
            Json(json!({
                "name": name,
                "token": token,
                "admin_token": state.config.admin.token,
            })),
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "error": { "code": "internal", "message": e.to_string() } })),
        ),
    }
}
