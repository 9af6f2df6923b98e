//! Operating a node: health probes and the AsyncAPI document.

mod asyncapi;
mod health;

use axum::Router;
use axum::routing::get;

use crate::server::AppState;

/// `/healthz`, `/readyz`, `/asyncapi.json`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/asyncapi.json", get(asyncapi::document))
}
