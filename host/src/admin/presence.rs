//! `/admin/v1/plugins/{name}/presence/{channel}`: who is in a channel, on
//! every node.

use axum::Json;
use axum::extract::{Path, State};

use super::error::{AdminError, Result};
use super::view::ErrorBody;
use crate::presence::Member;
use crate::state::AppState;

/// The members of a channel.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct PresenceView {
    pub plugin: String,
    pub channel: String,
    /// Ordered by socket id; members of a dead node are gone once its heartbeat expired.
    pub members: Vec<Member>,
}

/// Sockets in a channel of a plugin (joined with the `join` action, not left
/// or disconnected), across every node of the cluster.
#[utoipa::path(get, path = "/admin/v1/plugins/{name}/presence/{channel}", tag = "presence",
    params(
        ("name" = String, Path, description = "Plugin name"),
        ("channel" = String, Path, description = "Channel (Socket.IO room) name"),
    ),
    responses(
        (status = 200, body = PresenceView),
        (status = 404, body = ErrorBody),
        (status = 503, description = "Redis is away (cluster mode)", body = ErrorBody),
    ))]
pub(super) async fn channel_presence(
    State(state): State<AppState>,
    Path((name, channel)): Path<(String, String)>,
) -> Result<Json<PresenceView>> {
    if state.registry.get(&name).is_none() {
        return Err(AdminError::NotFound(name));
    }
    let members = state.registry.presence().list(&name, &channel).await?;
    Ok(Json(PresenceView {
        plugin: name,
        channel,
        members,
    }))
}
