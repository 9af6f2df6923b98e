//! `POST /api/v1/publish {plugin, channel, event, data}`: one publication to
//! the plugin's Socket.IO room `channel` and its SSE channel `channel`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};

use super::credentials;
use super::error::PublishError;
use crate::channels::ChannelError;
use crate::gateway;
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Publication {
    plugin: String,
    channel: String,
    event: String,
    #[serde(default)]
    data: Value,
}

pub(super) async fn publish(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, PublishError> {
    credentials::authorize(&state.config.api, &state.verifier, &headers)?;
    let p: Publication =
        serde_json::from_slice(&body).map_err(|e| PublishError::Body(e.to_string()))?;
    let slot = state
        .registry
        .get(&p.plugin)
        .ok_or_else(|| PublishError::UnknownPlugin(p.plugin.clone()))?;
    let space = state.channels.space(&slot.name);
    let to = gateway::Channels {
        space: &space,
        stats: &state.metrics.namespace(&slot.mount),
    };
    let audience = gateway::Audience::Room {
        io: &state.io,
        mount: &slot.mount,
    };
    let id = gateway::publish(&to, audience, &p.channel, &p.event, &p.data)
        .await
        .map_err(|e| match e {
            ChannelError::Closed => PublishError::Closed,
            other => PublishError::Name(other),
        })?;
    Ok(Json(json!({ "ok": true, "id": id.to_string() })))
}
