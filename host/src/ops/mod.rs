//! Operating a node: health probes, metrics, the AsyncAPI document and
//! graceful shutdown.

mod asyncapi;
mod health;
mod metrics;
mod shutdown;

pub use metrics::{Metrics, NsMetrics, Sources};
pub use shutdown::InFlight;

use axum::Router;
use axum::routing::get;

use crate::server::AppState;

/// `/healthz`, `/readyz`, `/metrics`, `/asyncapi.json`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::handler))
        .route("/asyncapi.json", get(asyncapi::document))
}
