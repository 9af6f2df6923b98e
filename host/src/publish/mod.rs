//! The server publish API: backends push events to a plugin's channels with
//! `POST /api/v1/publish`, authenticated by an API key (config `api.keys`,
//! `--api-key`) or a JWT whose role claim holds `api.publish_role`. The
//! publication itself goes through [`crate::gateway::publish`], like a
//! plugin's own.

mod credentials;
mod error;
mod handler;

use axum::Router;
use axum::routing::post;

pub use error::PublishError;

use crate::state::AppState;

/// The publish API routes.
pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/publish", post(handler::publish))
}
