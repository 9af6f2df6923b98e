//! Serving a plugin on its namespace: the handshake (auth, then the plugin's
//! `on-connect`), and the handlers that feed the socket's queue.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::ConnectInfo;
use socketioxide::extract::TryData;
use socketioxide::handler::ConnectHandler;
use socketioxide::socket::DisconnectReason;

use super::session::{Enqueued, Session, Work};
use super::throttle::{ConnectionLimiter, EventLimits};
use super::{Io, SocketRef};
use crate::auth::{AuthError, AuthMode, Verified, Verifier};
use crate::plugins::{Connection, PluginSlot, Rejection, Transport};

/// A plugin mounted on a namespace.
pub struct Mount {
    pub(super) slot: Arc<PluginSlot>,
    pub(super) auth: AuthMode,
    pub(super) verifier: Arc<Verifier>,
    pub(super) io: Io,
    pub(super) limits: EventLimits,
    pub(super) connections: Arc<ConnectionLimiter>,
    /// The plugin's channels: publications also reach SSE subscribers.
    pub(super) channels: Arc<crate::channels::Space>,
    /// This namespace's counters (cached handles: one atomic add per event).
    pub(super) stats: crate::ops::NsMetrics,
    pub(super) metrics: Arc<crate::ops::Metrics>,
    pub(super) in_flight: crate::ops::InFlight,
    /// Who is in which channel (joins, leaves, disconnects).
    pub(super) presence: Arc<crate::presence::Presence>,
    pub(super) pending: Arc<crate::net::PendingSessions>,
}

/// Why a connection was refused. Socket.IO's `connect_error` carries only a
/// message, so it reads `"<code>: <message>"`; clients match the code prefix.
#[derive(Debug)]
pub struct Refusal(pub Rejection);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.0.code, self.0.message)
    }
}

impl From<AuthError> for Refusal {
    fn from(e: AuthError) -> Self {
        Self(Rejection::new(e.code(), e.to_string()))
    }
}

/// A namespace could not be set up (in cluster mode: its Redis subscriptions).
#[derive(Debug, thiserror::Error)]
#[error("cannot mount namespace {path}: {reason}")]
pub struct MountError {
    pub path: String,
    pub reason: String,
}

/// Register the namespace's handshake and handlers with socketioxide.
pub(super) async fn serve(mount: Mount) -> Result<(), MountError> {
    let path = mount.slot.mount.clone();
    let io = mount.io.clone();
    let mount = Arc::new(mount);
    super::timers::deliver(&mount);
    let middleware = move |socket: SocketRef, TryData(auth): TryData<serde_json::Value>| {
        let mount = mount.clone();
        async move { handshake(mount, socket, auth.unwrap_or_default()).await }
    };
    // Runs after the connect ack is sent: performs `on-connect`'s actions.
    let connected = async |socket: SocketRef| {
        if let Some(session) = socket.extensions.get::<Arc<Session>>() {
            session.drain(&socket).await;
        }
    };
    // With Redis, this subscribes the namespace to its cross-node channels.
    io.ns(path.clone(), connected.with(middleware))
        .await
        .map_err(|e| MountError {
            path,
            reason: e.to_string(),
        })
}

async fn handshake(
    mount: Arc<Mount>,
    socket: SocketRef,
    mut auth: serde_json::Value,
) -> Result<(), Refusal> {
    let parts = socket.req_parts();
    let remote = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    if let Some(addr) = remote {
        mount.pending.settle(addr.ip());
    }
    if let Some(addr) = remote
        && !mount.connections.allow(addr.ip())
    {
        return Err(Refusal(Rejection::new(
            "rate_limited",
            "too many new connections from your address: retry later",
        )));
    }
    let token = take_token(&socket, &mut auth);
    let verified = match (mount.auth, token) {
        (AuthMode::None, _) | (AuthMode::Optional, None) => Ok(None),
        (AuthMode::Required, None) => Err(AuthError::Missing),
        (_, Some(token)) => mount.verifier.verify(&token).map(Some),
    }
    .inspect_err(|e| mount.metrics.auth_failure("socketio", e.code()))?;
    let expires_at = verified.as_ref().and_then(|v| v.expires_at);
    let principal = verified.map(|Verified { principal, .. }| principal);
    let conn = Connection {
        id: socket.id.to_string(),
        namespace: mount.slot.mount.clone(),
        transport: match socket.transport_type() {
            socketioxide::TransportType::Websocket => Transport::WebSocket,
            socketioxide::TransportType::Polling => Transport::Polling,
        },
        remote_addr: remote.map(|a| a.to_string()),
        principal,
        query: parts
            .uri
            .query()
            .map(|q| {
                form_urlencoded(q)
                    .filter(|(k, _)| k != "token" && k != "EIO" && k != "transport" && k != "sid")
                    .collect()
            })
            .unwrap_or_default(),
        auth_json: if auth.is_object() {
            auth.to_string()
        } else {
            "{}".into()
        },
    };

    if mount.slot.is_unmounted() {
        return Err(Refusal(Rejection::new(
            super::PLUGIN_REMOVED,
            "this plugin was removed",
        )));
    }
    let guard = mount.slot.connect();
    let version = mount.slot.version_for(guard.on_canary());
    let conn = Arc::new(conn);
    let actions = on_connect(&version, &conn).await?;
    let session = Arc::new(Session::new(conn, mount.clone(), guard));
    session.push(Work::Connected(actions));
    if let Some(exp) = expires_at {
        let leeway = mount.verifier.leeway_secs();
        session.set_expiry(expire_at(&session, &socket, exp.saturating_add(leeway)));
    }
    socket.extensions.insert(session);
    // Handlers are registered here, before the connect ack goes out, so no
    // event sent right after connecting can miss them.
    socket.on_fallback(async |socket: SocketRef, Enqueued(session): Enqueued| {
        session.drain(&socket).await
    });
    socket.on_disconnect(async |socket: SocketRef, reason: DisconnectReason| {
        if let Some(session) = socket.extensions.get::<Arc<Session>>() {
            session.cancel_expiry();
            session.report_throttle();
            session.push(Work::Disconnected(reason.to_string()));
            session.drain(&socket).await;
            let mount = &session.mount;
            ended(&mount.slot.active(), &session.conn.id);
            mount
                .presence
                .disconnected(&mount.slot.name, &session.conn.id)
                .await;
        }
    });
    Ok(())
}

/// Register the connection with the plugin (before `on-connect`, which may
/// already set state or timers), then ask it; a refused one is ended at once.
async fn on_connect(
    version: &crate::plugins::PluginVersion,
    conn: &Arc<Connection>,
) -> Result<Vec<crate::plugins::Action>, Refusal> {
    version.connections().register(conn.clone());
    let refusal = match version.on_connect(conn).await {
        Ok(Ok(actions)) => return Ok(actions),
        Ok(Err(rejection)) => rejection,
        Err(e) => e.to_rejection(),
    };
    ended(version, &conn.id);
    Err(Refusal(refusal))
}

/// A connection is over for the plugin: its state and its timers go.
fn ended(version: &crate::plugins::PluginVersion, id: &str) {
    version.connections().end(id);
    version.timers().cancel_for(id);
}

/// A timer that disconnects the socket with reason `token_expired` at `at`
/// (seconds since the epoch). It holds no reference to the socket or session,
/// and `on_disconnect` aborts it, so nothing outlives a closed socket.
fn expire_at(session: &Arc<Session>, socket: &SocketRef, at: u64) -> tokio::task::AbortHandle {
    let weak = Arc::downgrade(session);
    let io = session.mount.io.clone();
    let ns = session.mount.slot.mount.clone();
    let sid = socket.id;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let wait = Duration::from_secs(at).saturating_sub(now);
    tokio::spawn(async move {
        tokio::time::sleep(wait).await;
        let (Some(session), Some(socket)) =
            (weak.upgrade(), io.of(&ns).and_then(|ns| ns.get_socket(sid)))
        else {
            return;
        };
        // Disarm first: the disconnect below must not abort this task mid-drain.
        session.expiry.lock().unwrap().take();
        session.kick("token_expired");
        session.drain(&socket).await;
    })
    .abort_handle()
}

/// The token from, in order: the handshake `auth.token`, an `Authorization:
/// Bearer` header, a `token` query parameter. It is removed from what the
/// plugin sees.
fn take_token(socket: &SocketRef, auth: &mut serde_json::Value) -> Option<String> {
    if let Some(serde_json::Value::String(t)) = auth.as_object_mut().and_then(|a| a.remove("token"))
    {
        return Some(t);
    }
    let parts = socket.req_parts();
    if let Some(t) = crate::auth::bearer(&parts.headers) {
        return Some(t.to_owned());
    }
    parts.uri.query().and_then(|q| {
        form_urlencoded(q)
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v)
    })
}

fn form_urlencoded(q: &str) -> impl Iterator<Item = (String, String)> + '_ {
    url::form_urlencoded::parse(q.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned()))
}
