//! What every part of the node shares, handed to each route as axum state.

use std::sync::Arc;

use crate::admin::Admin;
use crate::auth::Verifier;
use crate::channels::Hub;
use crate::config::Config;
use crate::control::PluginControl;
use crate::gateway::{Gateway, Io};
use crate::ops::{self, Upstream};
use crate::plugins::Registry;

/// What every part of the node shares. Each responsibility (gateway, SSE,
/// admin, ...) gets its routes from [`router`] with this state.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub registry: Arc<Registry>,
    pub verifier: Arc<Verifier>,
    pub io: Io,
    /// The shared backend in cluster mode (Redis), for readiness.
    pub upstream: Option<Arc<dyn Upstream>>,
    pub gateway: Arc<Gateway>,
    /// Channels' ids, history and SSE subscribers.
    pub channels: Arc<Hub>,
    pub admin: Arc<Admin>,
    /// The only way the plugin set changes.
    pub control: Arc<PluginControl>,
    /// Prometheus metrics (`/metrics`).
    pub metrics: Arc<ops::Metrics>,
}
