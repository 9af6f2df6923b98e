//! The admin API, `/admin/v1`: hot-load, roll back, canary and remove
//! plugins while clients stay connected; the data directory that makes the
//! plugin set survive restarts; the replicator that shares the plugin set
//! across nodes (over the [`PluginRecords`] capability); and the
//! `portico plugin ...` CLI client. Handlers, the data directory and the
//! replicator change nothing themselves: they call, or react to,
//! [`crate::control::PluginControl`].
//!
//! Every route needs `Authorization: Bearer <admin token>`; without a
//! configured token the API is disabled (404 `admin_disabled`).

mod auth;
pub mod client;
mod error;
mod openapi;
mod plugins;
mod presence;
mod records;
pub mod replicate;
mod revisions;
pub mod scaffold;
mod store;
mod upload;
mod view;

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use futures::future::BoxFuture;

pub use error::{AdminError, StoreError};
pub use openapi::document as openapi_document;
pub use records::{
    Blob, Changed, Notifications, PluginRecord, PluginRecords, RecordBounds, RecordLimits,
    RecordRefused, RecordSet, RecordsUnavailable,
};
pub use store::{DataDir, Restored};

use crate::config::Config;
use crate::control::{ChangeEvent, ChangeSink, Origin, PluginControl, PluginSet, SinkError};
use crate::state::AppState;

/// The admin side of a node.
pub struct Admin {
    token: Option<crate::auth::Secret>,
    store: Option<Arc<DataDir>>,
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
                .map(crate::auth::Secret::new),
            store,
            replicator: OnceLock::new(),
        })
    }

    pub fn enabled(&self) -> bool {
        self.token.is_some()
    }

    pub fn data_dir(&self) -> Option<&Arc<DataDir>> {
        self.store.as_ref()
    }

    pub fn replicator(&self) -> Option<&Arc<replicate::Replicator>> {
        self.replicator.get()
    }

    /// Save every later change of `control` to the data directory (if any).
    pub fn persist_changes(&self, control: &PluginControl) {
        if let Some(store) = &self.store {
            control.add_sink(Arc::new(Persist(store.clone())));
        }
    }

    /// Cluster mode: load the cluster's plugin set through `control` (it
    /// wins over `--plugins` and the data directory for the names it has),
    /// then share this node's changes. At start, before serving.
    pub async fn join_cluster(
        &self,
        store: Arc<dyn PluginRecords>,
        node: String,
        control: &PluginControl,
    ) -> Result<(), RecordsUnavailable> {
        let r = Arc::new(replicate::Replicator::new(store, node).await?);
        let (removed, installed) = r.load(control).await;
        tracing::info!(installed = ?installed, removed = ?removed, "loaded the cluster's plugin set");
        control.add_sink(r.clone());
        let _ = self.replicator.set(r);
        Ok(())
    }
}

/// The mounted plugin `name`, or a 404.
fn find(state: &AppState, name: &str) -> error::Result<Arc<crate::plugins::PluginSlot>> {
    state
        .registry
        .get(name)
        .ok_or_else(|| error::AdminError::NotFound(name.to_owned()))
}

/// Saves the plugin set to the data directory after every change made while
/// serving. A local change (admin API) that cannot be saved fails and is
/// undone (the API answers `500 not_saved`, the previous set keeps serving);
/// a change applied from the cluster is logged and kept (the cluster's set
/// is the one to serve).
struct Persist(Arc<DataDir>);

impl ChangeSink for Persist {
    fn on_change<'a>(
        &'a self,
        event: &'a ChangeEvent,
        set: PluginSet<'a>,
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            if event.origin == Origin::Startup {
                return Ok(());
            }
            let store = self.0.clone();
            let snapshot = store::Snapshot::of(set.registry, set.removed.clone());
            let error = match tokio::task::spawn_blocking(move || store.save(&snapshot)).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => e.to_string(),
                Err(e) => e.to_string(),
            };
            tracing::error!(
                plugin = event.change.name(),
                "could not save the plugin set: {error}"
            );
            match event.origin {
                Origin::Local => Err(SinkError(error)),
                _ => Ok(()),
            }
        })
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
        .fallback(async || AdminError::NoRoute)
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
