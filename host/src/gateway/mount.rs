//! Serving a plugin on its namespace: the handshake (auth, then the plugin's
//! `on-connect`), and the handlers that feed the socket's queue.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ConnectInfo;
use socketioxide::extract::TryData;
use socketioxide::handler::ConnectHandler;
use socketioxide::socket::DisconnectReason;

use super::recovery::{self, Claimed, Encoder, Recovery, Sink};
use super::session::{Enqueued, Session, Work};
use super::throttle::{ConnectionLimiter, EventLimits};
use super::{Io, SocketRef};
use crate::auth::{AuthError, AuthMode, Verified, Verifier};
use crate::connstate::Saved;
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
    /// Connection state recovery (sessions, deferred disconnects).
    pub(super) recovery: Arc<Recovery>,
    /// When each socket's token expires.
    pub(super) expiries: Arc<super::expiry::Expiries>,
    /// Channel events as packets of this namespace, encoded once for all its sockets.
    pub(super) encoder: Arc<Encoder>,
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
    // Runs after the connect ack is sent: a restored socket gets what it
    // missed first, then `on-connect`'s actions are performed.
    let connected = async |socket: SocketRef| {
        if let Some(session) = socket.extensions.get::<Arc<Session>>() {
            if session
                .restoring
                .swap(false, std::sync::atomic::Ordering::AcqRel)
            {
                session.mount.channels.replay(&session.conn.id).await;
            }
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
    let conn = connection(&mount, &socket, remote, principal, &auth);
    if mount.slot.is_unmounted() {
        return Err(Refusal(Rejection::new(
            super::PLUGIN_REMOVED,
            "this plugin was removed",
        )));
    }
    let claimed = mount.recovery.take_claimed(socket.id);
    let subject = conn.principal.as_ref().and_then(|p| p.subject.clone());
    if claimed.as_ref().is_some_and(|c| c.subject != subject) {
        return Err(Refusal(Rejection::new(
            "recovery_denied",
            "this session belongs to another subject",
        )));
    }
    let guard = mount.slot.connect();
    let session = Arc::new(Session::new(Arc::new(conn), mount.clone(), guard));
    let restored = match claimed {
        Some(c) => restore(&session, &socket, c).await,
        None => false,
    };
    if !restored {
        start_fresh(&session, &socket).await?;
    }
    if mount.recovery.enabled()
        && let Some(pid) = session.pid.get()
    {
        socket.set_pid(pid.clone());
        let rooms = mount.channels.rooms(&session.conn.id);
        let ns = &mount.slot.mount;
        let subject = subject.as_deref();
        mount
            .recovery
            .connected(ns, pid, socket.id, subject, &rooms)
            .await;
    }
    if let Some(exp) = expires_at {
        let leeway = mount.verifier.leeway_secs();
        session.expire_at(exp.saturating_add(leeway), socket.id);
    }
    socket.extensions.insert(session);
    register_handlers(&socket);
    Ok(())
}

/// A new session: the plugin's `on-connect` decides, and its actions are
/// queued; the socket gets a fresh pid.
async fn start_fresh(session: &Arc<Session>, socket: &SocketRef) -> Result<(), Refusal> {
    let actions = on_connect(&session.version(), &session.conn).await?;
    session.push(Work::Connected(actions));
    let mount = &session.mount;
    let sink = Arc::new(Sink::new(socket.clone(), session));
    mount.channels.attach(&session.conn.id, sink);
    let _ = session.pid.set(recovery::new_pid());
    Ok(())
}

/// Put a socket back where its claimed session left off: its channels, and
/// what it missed queued for [`Space::replay`](crate::channels::Space::replay).
/// `false` if history no longer serves it (it trimmed since the claim): the
/// socket then starts afresh.
async fn restore(session: &Arc<Session>, socket: &SocketRef, claimed: Claimed) -> bool {
    let mount = &session.mount;
    let sink = Arc::new(Sink::new(socket.clone(), session));
    let id = &session.conn.id;
    if let Err(gap) = mount
        .channels
        .restore(id, sink, &claimed.rooms, claimed.offset)
    {
        tracing::info!(socket = %id, "session not restored: {gap}");
        return false;
    }
    let subject = session
        .conn
        .principal
        .as_ref()
        .and_then(|p| p.subject.as_deref());
    for (room, _) in &claimed.rooms {
        socket.join(room.clone());
        mount
            .presence
            .join(&mount.slot.name, room, id, subject)
            .await;
    }
    // The plugin's state of this connection carries over: still here when
    // the session left from this node, else saved with the session.
    let version = session.version();
    let connections = version.connections();
    let saved = connections
        .end(id)
        .unwrap_or_else(|| Saved::from_values(claimed.state));
    connections.restore(session.conn.clone(), saved);
    let _ = session.pid.set(claimed.pid);
    session
        .restoring
        .store(true, std::sync::atomic::Ordering::Release);
    mount.stats.recovered.inc();
    true
}

fn connection(
    mount: &Mount,
    socket: &SocketRef,
    remote: Option<SocketAddr>,
    principal: Option<crate::plugins::Principal>,
    auth: &serde_json::Value,
) -> Connection {
    let parts = socket.req_parts();
    // What the client sends to resume is not the plugin's business.
    let mut extras = auth.clone();
    if let Some(map) = extras.as_object_mut() {
        map.remove("pid");
        map.remove("offset");
    }
    Connection {
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
        auth_json: if extras.is_object() {
            extras.to_string()
        } else {
            "{}".into()
        },
    }
}

/// Registered in the handshake, before the connect ack goes out, so no
/// event sent right after connecting can miss them.
fn register_handlers(socket: &SocketRef) {
    // Unread: `Enqueued` parses each packet itself, once.
    socket.on_fallback_unread(async |socket: SocketRef, Enqueued(session): Enqueued| {
        session.drain_events(&socket).await
    });
    socket.on_disconnect(async |socket: SocketRef, reason: DisconnectReason| {
        let Some(session) = socket.extensions.get::<Arc<Session>>() else {
            return;
        };
        session.cancel_expiry();
        session.report_throttle();
        let mount = session.mount.clone();
        let rooms = mount.channels.detach(&session.conn.id).unwrap_or_default();
        let subject = session
            .conn
            .principal
            .as_ref()
            .and_then(|p| p.subject.as_deref());
        let ns = &mount.slot.mount;
        let pid = session.pid.get().map(String::as_str).unwrap_or_default();
        let state = session.version().connections().snapshot(&session.conn.id);
        let saved = recovery::recoverable(reason)
            && mount
                .recovery
                .disconnected(ns, pid, socket.id, subject, &rooms, &state)
                .await;
        if !saved {
            mount.recovery.forget(ns, pid).await;
            return finish(&session, &socket, reason).await;
        }
        // The plugin hears of it only if the client does not come back in time.
        tokio::spawn(async move {
            tokio::time::sleep(mount.recovery.window()).await;
            let pid = session.pid.get().map(String::as_str).unwrap_or_default();
            if mount.recovery.expire(&mount.slot.mount, pid).await {
                finish(&session, &socket, reason).await;
            } else if mount
                .io
                .of(&mount.slot.mount)
                .and_then(|ns| ns.get_socket(socket.id))
                .is_none()
            {
                // Recovered on another node: the plugin's state of it here goes.
                ended(&mount.slot.active(), &session.conn.id);
            }
        });
    });
}

/// The disconnect is final: the plugin's `on-disconnect`, then its
/// connection state and timers go, then presence.
async fn finish(session: &Arc<Session>, socket: &SocketRef, reason: DisconnectReason) {
    session.push(Work::Disconnected(reason.to_string()));
    session.drain(socket).await;
    let mount = &session.mount;
    ended(&mount.slot.active(), &session.conn.id);
    mount
        .presence
        .disconnected(&mount.slot.name, &session.conn.id)
        .await;
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
