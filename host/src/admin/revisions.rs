//! `/admin/v1/plugins/{name}/versions`, `/rollback` and `/promote`.

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;

use super::error::Result;
use super::find;
use super::view::{self, ErrorBody, PluginView, VersionsView};
use crate::state::AppState;

/// The revisions kept for a plugin (at most ten), oldest first.
#[utoipa::path(get, path = "/admin/v1/plugins/{name}/versions", tag = "versions",
    params(("name" = String, Path, description = "Plugin name")),
    responses((status = 200, body = VersionsView), (status = 404, body = ErrorBody)))]
pub(super) async fn list_versions(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<VersionsView>> {
    let slot = find(&state, &name)?;
    Ok(Json(view::versions(&slot)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(super) struct RollbackQuery {
    /// Revision number, manifest version or sha256 prefix (8+ hex digits).
    /// Default: the revision before the active one.
    to: Option<String>,
}

/// Make an earlier revision active. While a canary runs, a rollback without
/// `to` ends the canary and keeps the active version.
#[utoipa::path(post, path = "/admin/v1/plugins/{name}/rollback", tag = "versions",
    params(("name" = String, Path, description = "Plugin name"), RollbackQuery),
    responses((status = 200, body = PluginView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 500, description = "not_saved: the data directory could not save it; nothing changed", body = ErrorBody)))]
pub(super) async fn rollback(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<RollbackQuery>,
) -> Result<Json<PluginView>> {
    let (slot, rev) = state.control.rollback(&name, q.to.as_deref()).await?;
    tracing::info!(plugin = %name, revision = rev.id, version = %rev.version.manifest.version, "rolled back");
    Ok(Json(view::plugin(&slot)))
}

/// Make the running canary active for every connection.
#[utoipa::path(post, path = "/admin/v1/plugins/{name}/promote", tag = "versions",
    params(("name" = String, Path, description = "Plugin name")),
    responses((status = 200, body = PluginView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 500, description = "not_saved: the data directory could not save it; nothing changed", body = ErrorBody)))]
pub(super) async fn promote(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<PluginView>> {
    let (slot, rev) = state.control.promote(&name).await?;
    tracing::info!(plugin = %name, revision = rev.id, version = %rev.version.manifest.version, "canary promoted");
    Ok(Json(view::plugin(&slot)))
}
