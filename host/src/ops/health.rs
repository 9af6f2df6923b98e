//! `/healthz` (the process is alive) and `/readyz` (it can serve: plugins are
//! mounted). Load balancers and Kubernetes probes use these.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::server::AppState;

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
    let ready = !plugins.is_empty();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({ "ready": ready, "plugins": plugins })))
}
