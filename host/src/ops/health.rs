//! `/healthz` (the process is alive) and `/readyz` (it can serve: plugins are
//! mounted). Load balancers and Kubernetes probes use these.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::state::AppState;

pub async fn healthz() -> &'static str {
    "ok"
}

pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let plugins: Vec<String> = state
        .registry
        .list()
        .iter()
        .map(|s| s.name.clone())
        .collect();
    // In cluster mode a node that cannot reach Redis still serves its own
    // clients, but is not ready: it would miss cross-node traffic.
    let redis = state
        .upstream
        .as_ref()
        .map(|r| if r.healthy() { "up" } else { "down" });
    let ready = !plugins.is_empty() && redis != Some("down");
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({ "ready": ready, "plugins": plugins, "redis": redis.unwrap_or("off") })),
    )
}
