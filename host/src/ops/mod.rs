//! Operating a node: health probes, metrics, the AsyncAPI document and
//! graceful shutdown. [`Upstream`] is the health of a backend the node
//! depends on (Redis in cluster mode).

mod asyncapi;
mod health;
mod metrics;
mod shutdown;

pub use metrics::{Metrics, NsMetrics, Sources};
pub use shutdown::InFlight;

/// A backend the node depends on (Redis in cluster mode), reported by
/// `/readyz` and the `redis_up` metric. `cluster` implements it.
pub trait Upstream: Send + Sync {
    /// Whether the last command succeeded.
    fn healthy(&self) -> bool;

    /// Entries read from the backend and refused (garbage, out of bounds), by kind.
    fn refused(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
}

use axum::Router;
use axum::routing::get;

use crate::state::AppState;

/// `/healthz`, `/readyz`, `/metrics`, `/asyncapi.json`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::handler))
        .route("/asyncapi.json", get(asyncapi::document))
}
