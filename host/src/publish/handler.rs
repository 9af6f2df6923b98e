//! `POST /api/v1/publish {plugin, channel, event, data}`: one publication to
//! the plugin's Socket.IO room `channel` and its SSE channel `channel`.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use super::credentials;
use super::error::PublishError;
use crate::auth::Bearer;
use crate::channels::ChannelError;
use crate::gateway;
use crate::http_error::{ApiError, JsonBody};
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Publication {
    plugin: String,
    channel: String,
    event: String,
    #[serde(default)]
    data: Value,
}

pub(super) async fn publish(
    State(state): State<AppState>,
    Bearer(credential): Bearer,
    body: Result<JsonBody<Publication>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    let api = &state.config.api;
    credentials::authorize(api, &state.verifier, credential.as_deref())?;
    // The credential is checked before the body is judged.
    let JsonBody(p) = body?;
    let slot = state
        .registry
        .get(&p.plugin)
        .ok_or_else(|| PublishError::UnknownPlugin(p.plugin.clone()))?;
    let space = state.channels.space(&slot.name);
    let to = gateway::Channels {
        space: &space,
        stats: &state.metrics.namespace(&slot.mount),
    };
    let id = gateway::publish(&to, gateway::Audience::Room, &p.channel, &p.event, &p.data)
        .await
        .map_err(|e| match e {
            ChannelError::Closed => PublishError::Closed,
            ChannelError::Overloaded => PublishError::Overloaded,
            other => PublishError::Name(other),
        })?;
    Ok(Json(json!({ "ok": true, "id": id.to_string() })))
}
