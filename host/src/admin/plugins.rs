//! `/admin/v1/plugins` and `/admin/v1/plugins/{name}`: list, upload
//! (replace or mount), remove.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};

use super::error::{AdminError, Result};
use super::view::{self, ErrorBody, PluginList, PluginView, Removed};
use super::{find, upload};
use crate::control::{Deployed, Origin};
use crate::plugins::Installed;
use crate::state::AppState;

/// Every mounted plugin with its active version and live counters.
#[utoipa::path(get, path = "/admin/v1/plugins", tag = "plugins",
    responses((status = 200, body = PluginList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn list_plugins(State(state): State<AppState>) -> Json<PluginList> {
    let plugins = state
        .registry
        .list()
        .iter()
        .map(|s| view::plugin(s))
        .collect();
    Json(PluginList { plugins })
}

/// One plugin.
#[utoipa::path(get, path = "/admin/v1/plugins/{name}", tag = "plugins",
    params(("name" = String, Path, description = "Plugin name")),
    responses((status = 200, body = PluginView), (status = 404, body = ErrorBody)))]
pub(super) async fn get_plugin(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<PluginView>> {
    let slot = find(&state, &name)?;
    Ok(Json(view::plugin(&slot)))
}

/// Upload a component: replaces the running version of `name` atomically
/// (connected clients stay connected; calls in flight finish on the old
/// version), or mounts a new namespace. Validated before anything changes.
#[utoipa::path(put, path = "/admin/v1/plugins/{name}", tag = "plugins",
    request_body(content = Vec<u8>, content_type = "application/wasm", description = "The plugin component (built for wasm32-wasip2)"),
    params(
        ("name" = String, Path, description = "Plugin name (a-z, 0-9, '-', '_'); the namespace is /<name> unless `mount` says otherwise"),
        ("config.KEY" = Option<String>, Query, description = "Per-plugin config value KEY (repeatable), read by the plugin with config::get; overrides the config file"),
        ("canary" = Option<u8>, Query, description = "Serve this percentage (1-100) of new connections with the new version, sticky per connection, until promoted or rolled back"),
        ("mount" = Option<String>, Query, description = "Namespace of a new plugin, e.g. /chat2"),
        ("call_timeout_ms" = Option<u64>, Query, description = "CPU deadline of one call"),
        ("memory_limit_mb" = Option<usize>, Query, description = "Linear memory cap of one instance"),
        ("isolation" = Option<String>, Query, description = "pooled (default) or fresh"),
        ("max_warm_instances" = Option<usize>, Query, description = "Idle instances kept warm"),
    ),
    responses(
        (status = 200, description = "Replaced (or canary started)", body = PluginView),
        (status = 201, description = "Mounted a new plugin", body = PluginView),
        (status = 400, description = "Not a component, or a bad parameter", body = ErrorBody),
        (status = 409, description = "Mount conflict, or canary without an active version", body = ErrorBody),
        (status = 413, description = "Over runtime.max_plugin_bytes", body = ErrorBody),
        (status = 415, description = "Not sent as application/wasm", body = ErrorBody),
        (status = 422, description = "Wrong world, or describe() failed", body = ErrorBody),
        (status = 500, description = "not_saved: the data directory could not save it; nothing changed", body = ErrorBody),
        (status = 503, description = "compile_timeout: compiling took over runtime.compile_timeout_ms", body = ErrorBody),
    ))]
pub(super) async fn put_plugin(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<PluginView>)> {
    upload::check_name(&name)?;
    upload::check_content_type(&headers)?;
    let limit = state.config.runtime.max_plugin_bytes;
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => AdminError::TooLarge { limit },
        _ => AdminError::BadRequest(format!("cannot read the upload: {e}")),
    })?;
    if body.len() > limit {
        return Err(AdminError::TooLarge { limit });
    }
    let upload = upload::parse(&name, query.as_deref(), &state.config)?;
    let Deployed {
        installed,
        revision: rev,
    } = state
        .control
        .deploy(
            &name,
            body.to_vec().into(),
            &upload.settings,
            upload.rollout,
            Origin::Local,
        )
        .await?;
    let slot = installed.slot().clone();
    let v = &rev.version;
    tracing::info!(plugin = %name, revision = rev.id, version = %v.manifest.version, sha256 = %&v.sha256[..12], bytes = v.size, rollout = ?upload.rollout, "uploaded");
    let status = match installed {
        Installed::New(_) => StatusCode::CREATED,
        Installed::Replaced(_) => StatusCode::OK,
    };
    Ok((status, Json(view::plugin(&slot))))
}

/// Unmount a plugin: connected sockets get `portico:disconnect
/// {reason: "plugin_removed"}` and are disconnected; SSE streams end.
#[utoipa::path(delete, path = "/admin/v1/plugins/{name}", tag = "plugins",
    params(("name" = String, Path, description = "Plugin name")),
    responses((status = 200, body = Removed), (status = 404, body = ErrorBody), (status = 500, description = "not_saved: the data directory could not save it; nothing changed", body = ErrorBody)))]
pub(super) async fn delete_plugin(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Removed>> {
    let (slot, disconnected) = state.control.remove(&name).await?;
    tracing::info!(plugin = %name, namespace = %slot.mount, disconnected, "removed");
    Ok(Json(Removed {
        name,
        mount: slot.mount.clone(),
        disconnected,
    }))
}
