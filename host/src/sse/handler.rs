//! `GET /sse/<plugin>`: authenticate, let the plugin authorize each channel,
//! then stream.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::response::Response;

use super::error::SseError;
use super::request::{self, SseRequest};
use super::stream::{self, StreamSettings};
use crate::auth::{AuthError, AuthMode};
use crate::channels::ChannelError;
use crate::plugins::{Connection, Transport};
use crate::state::AppState;

static NEXT_STREAM: AtomicU64 = AtomicU64::new(1);

pub(super) async fn subscribe(
    State(state): State<AppState>,
    Path(plugin): Path<String>,
    req: Request,
) -> Result<Response, SseError> {
    let slot = state
        .registry
        .get(&plugin)
        .ok_or_else(|| SseError::UnknownPlugin(plugin.clone()))?;
    let SseRequest {
        channels,
        token,
        last_event_id,
        query,
    } = request::parse(req.headers(), req.uri().query())?;
    let limits = &state.config.sse;
    if channels.is_empty() {
        return Err(SseError::NoChannel);
    }
    if channels.len() > limits.max_channels {
        return Err(SseError::TooManyChannels(
            channels.len(),
            limits.max_channels,
        ));
    }
    let verified = match (state.config.auth_mode(&slot.name), token) {
        (AuthMode::None, _) | (AuthMode::Optional, None) => Ok(None),
        (AuthMode::Required, None) => Err(AuthError::Missing),
        (_, Some(token)) => state.verifier.verify(&token).map(Some),
    }
    .inspect_err(|e| state.metrics.auth_failure("sse", e.code()))?;
    let expires_at = verified.as_ref().and_then(|v| v.expires_at);
    let principal = verified.map(|v| v.principal);
    let conn = Connection {
        id: format!("sse-{}", NEXT_STREAM.fetch_add(1, Ordering::Relaxed)),
        namespace: slot.mount.clone(),
        transport: Transport::Sse,
        remote_addr: req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.to_string()),
        principal,
        query,
        auth_json: "{}".into(),
    };
    let version = slot.active();
    for channel in &channels {
        match version.on_subscribe(&conn, channel).await {
            Ok(Ok(())) => {}
            Ok(Err(rejection)) => {
                return Err(SseError::Refused {
                    channel: channel.clone(),
                    rejection,
                });
            }
            Err(e) => return Err(SseError::Plugin(e.to_rejection())),
        }
    }
    let sub = state
        .channels
        .space(&slot.name)
        .subscribe(&channels, last_event_id)
        .map_err(|e| match e {
            ChannelError::Closed => SseError::Closed,
            other => SseError::BadChannel(other),
        })?;
    tracing::debug!(plugin = %slot.name, stream = %conn.id, ?channels, "SSE stream opened");
    Ok(stream::respond(
        sub,
        &StreamSettings {
            retry: Duration::from_millis(limits.retry_ms),
            keep_alive: Duration::from_millis(limits.keep_alive_ms.max(1)),
            expires_at,
            unmounted: slot.unmounted(),
        },
    ))
}
