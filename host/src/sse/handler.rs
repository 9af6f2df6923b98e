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
use crate::channels::{ChannelError, StreamPermit, StreamRefused};
use crate::plugins::{Connection, PluginVersion, Principal, Transport};
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
    let (principal, expires_at) = authenticate(&state, &slot.name, token)?;
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let subject = principal.as_ref().and_then(|p| p.subject.as_deref());
    let permit = admit(&state, peer, subject)?;
    let conn = Connection {
        id: format!("sse-{}", NEXT_STREAM.fetch_add(1, Ordering::Relaxed)),
        namespace: slot.mount.clone(),
        transport: Transport::Sse,
        remote_addr: peer.map(|p| p.to_string()),
        principal,
        query,
        auth_json: "{}".into(),
    };
    authorize(&slot.active(), &conn, &channels).await?;
    let space = state.channels.space(&slot.name);
    if last_event_id.is_some() {
        // A node that just started loads the cluster's history first.
        space.wait_ready(std::time::Duration::from_secs(3)).await;
    }
    let sub = space
        .subscribe(&channels, last_event_id)
        .map_err(|e| match e {
            ChannelError::Closed => SseError::Closed,
            other => SseError::BadChannel(other),
        })?;
    tracing::debug!(plugin = %slot.name, stream = %conn.id, ?channels, "SSE stream opened");
    Ok(stream::respond(
        sub,
        StreamSettings {
            retry: Duration::from_millis(limits.retry_ms),
            keep_alive: Duration::from_millis(limits.keep_alive_ms.max(1)),
            expires_at,
            unmounted: slot.unmounted(),
            permit,
        },
    ))
}

/// The token checked as the plugin's auth mode asks; with when the stream
/// must end (`exp` plus the same leeway the Socket.IO expiry disconnect
/// allows: a token inside it gets a stream, not a 200 and an immediate close).
fn authenticate(
    state: &AppState,
    plugin: &str,
    token: Option<String>,
) -> Result<(Option<Principal>, Option<u64>), SseError> {
    let verified = match (state.config.auth_mode(plugin), token) {
        (AuthMode::None, _) | (AuthMode::Optional, None) => Ok(None),
        (AuthMode::Required, None) => Err(AuthError::Missing),
        (_, Some(token)) => state.verifier.verify(&token).map(Some),
    }
    .inspect_err(|e| state.metrics.auth_failure("sse", e.code()))?;
    let leeway = state.verifier.leeway_secs();
    let expires_at = verified
        .as_ref()
        .and_then(|v| v.expires_at)
        .map(|exp| exp.saturating_add(leeway));
    Ok((verified.map(|v| v.principal), expires_at))
}

/// A slot under the per-address and per-subject stream caps, or the refusal (counted).
fn admit(
    state: &AppState,
    peer: Option<SocketAddr>,
    subject: Option<&str>,
) -> Result<StreamPermit, SseError> {
    state
        .channels
        .stream_caps()
        .admit(peer.map(|p| p.ip()), subject)
        .map_err(|why| {
            let (limit, whose) = match why {
                StreamRefused::PerIp => ("sse_streams_per_ip", "from your address"),
                StreamRefused::PerSubject => ("sse_streams_per_subject", "for your subject"),
            };
            state.metrics.limit(limit).inc();
            SseError::TooManyStreams(whose)
        })
}

/// The plugin's `on-subscribe` for each channel; the first refusal ends it.
async fn authorize(
    version: &PluginVersion,
    conn: &Connection,
    channels: &[String],
) -> Result<(), SseError> {
    for channel in channels {
        match version.on_subscribe(conn, channel).await {
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
    Ok(())
}
