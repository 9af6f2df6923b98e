//! The admin API, `/admin/v1`: hot-load, roll back, canary and remove
//! plugins while clients stay connected; the data directory that makes the
//! plugin set survive restarts; and the `portico plugin ...` CLI client.
//!
//! Every route needs `Authorization: Bearer <admin token>`; without a
//! configured token the API is disabled (404 `admin_disabled`).

mod auth;
mod canary;
pub mod client;
mod error;
mod openapi;
mod plugins;
mod presence;
pub mod replicate;
mod revisions;
pub mod scaffold;
mod store;
mod upload;
mod view;

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

pub use error::{ApiError, StoreError};
pub use openapi::document as openapi_document;
pub use store::{DataDir, Restored};

use crate::config::Config;
use crate::plugins::CanaryPolicy;
use crate::server::AppState;

/// The admin side of a node.
pub struct Admin {
    token: Option<auth::AdminToken>,
    store: Option<Arc<DataDir>>,
    /// Serializes changes and their saves; holds the names removed through
    /// the API (kept so a `--plugins` copy does not come back at restart).
    lock: tokio::sync::Mutex<BTreeSet<String>>,
    policy: CanaryPolicy,
    check_every: Duration,
    /// Shares plugin changes with the other nodes (cluster mode).
    replicator: OnceLock<Arc<replicate::Replicator>>,
}

impl Admin {
    /// Open the data directory (if configured).
    pub fn new(config: &Config) -> Result<Self, StoreError> {
        let store = match &config.data_dir {
            Some(dir) => Some(Arc::new(DataDir::open(dir)?)),
            None => None,
        };
        Ok(Self {
            token: config
                .admin
                .token
                .as_deref()
                .filter(|t| !t.is_empty())
                .map(auth::AdminToken::new),
            store,
            lock: tokio::sync::Mutex::default(),
            policy: config.canary.policy(),
            check_every: Duration::from_millis(config.canary.check_interval_ms.max(10)),
            replicator: OnceLock::new(),
        })
    }

    pub fn enabled(&self) -> bool {
        self.token.is_some()
    }

    pub fn data_dir(&self) -> Option<&DataDir> {
        self.store.as_deref()
    }

    /// Names removed through the API (and not uploaded since).
    pub fn removed_names(&self) -> BTreeSet<String> {
        self.lock.try_lock().map(|r| r.clone()).unwrap_or_default()
    }

    pub fn replicator(&self) -> Option<&Arc<replicate::Replicator>> {
        self.replicator.get()
    }

    /// Cluster mode: load the cluster's plugin set into `registry` (it wins
    /// over `--plugins` and the data directory for the names it has), then
    /// share this node's admin changes. At start, before serving.
    pub async fn join_cluster(
        &self,
        redis: &crate::cluster::Redis,
        node: String,
        registry: &crate::plugins::Registry,
    ) -> Result<(), crate::cluster::ClusterError> {
        let store = crate::cluster::PluginStore::new(redis.clone());
        let r = replicate::Replicator::new(store, node).await?;
        let (removed, installed) = r.load(registry).await;
        if let Ok(mut names) = self.lock.try_lock() {
            names.extend(removed.iter().cloned());
            names.retain(|n| !installed.contains(n));
        }
        tracing::info!(installed = ?installed, removed = ?removed, "loaded the cluster's plugin set");
        let _ = self.replicator.set(Arc::new(r));
        Ok(())
    }

    /// Remember the names removed before the last restart.
    pub fn set_removed(&self, removed: BTreeSet<String>) {
        *self.lock.try_lock().expect("set at start, before serving") = removed;
    }
}

/// The mounted plugin `name`, or a 404.
fn find(state: &AppState, name: &str) -> error::Result<Arc<crate::plugins::PluginSlot>> {
    state
        .registry
        .get(name)
        .ok_or_else(|| error::ApiError::NotFound(name.to_owned()))
}

/// Save the registry to the data directory, if there is one. A failed save
/// is logged; the change itself has happened and keeps serving.
async fn persist(state: &AppState, removed: &BTreeSet<String>) {
    let Some(store) = state.admin.store.clone() else {
        return;
    };
    let snapshot = store::Snapshot::of(&state.registry, removed.clone());
    match tokio::task::spawn_blocking(move || store.save(&snapshot)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!("could not save the plugin set: {e}"),
        Err(e) => tracing::error!("could not save the plugin set: {e}"),
    }
}

/// The admin routes, token-checked, with the upload size limit.
pub fn router(state: AppState) -> Router {
    let limit = state.config.runtime.max_plugin_bytes;
    let api = Router::new()
        .route("/plugins", get(plugins::list_plugins))
        .route(
            "/plugins/{name}",
            get(plugins::get_plugin)
                .put(plugins::put_plugin)
                .delete(plugins::delete_plugin),
        )
        .route("/plugins/{name}/versions", get(revisions::list_versions))
        .route("/plugins/{name}/rollback", post(revisions::rollback))
        .route("/plugins/{name}/promote", post(revisions::promote))
        .route(
            "/plugins/{name}/presence/{channel}",
            get(presence::channel_presence),
        )
        .fallback(async || ApiError::NoRoute)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        // A little over the plugin limit, so the handler can name the limit.
        .layer(DefaultBodyLimit::max(limit.saturating_add(1)));
    let doc = openapi::document();
    Router::new()
        .route(
            "/admin/v1/openapi.json",
            get(async move || axum::Json(doc.clone())),
        )
        .nest("/admin/v1", api)
        .with_state(state)
}
