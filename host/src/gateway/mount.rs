//! Serving a plugin on its namespace: the handshake (auth, then the plugin's
//! `on-connect`), and the handlers that feed the socket's queue.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ConnectInfo;
use socketioxide::extract::TryData;

use super::{Io, SocketRef};
use socketioxide::handler::ConnectHandler;
use socketioxide::socket::DisconnectReason;

use super::session::{Enqueued, Session, Work};
use crate::auth::{AuthError, AuthMode, Verifier};
use crate::plugins::{Connection, PluginSlot, Rejection, Transport};

/// A plugin mounted on a namespace.
pub struct Mount {
    pub(super) slot: Arc<PluginSlot>,
    pub(super) auth: AuthMode,
    pub(super) verifier: Arc<Verifier>,
    pub(super) io: Io,
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

/// Serve `slot` on its namespace.
pub async fn mount(io: &Io, slot: Arc<PluginSlot>, auth: AuthMode, verifier: Arc<Verifier>) -> Result<(), MountError> {
    let path = slot.mount.clone();
    let mount = Arc::new(Mount {
        slot,
        auth,
        verifier,
        io: io.clone(),
    });
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
    // With Redis, the namespace subscribes to its cross-node channels here.
    io.ns(path.clone(), connected.with(middleware)).await.map_err(|e| MountError { path, reason: e.to_string() })
}

async fn handshake(
    mount: Arc<Mount>,
    socket: SocketRef,
    mut auth: serde_json::Value,
) -> Result<(), Refusal> {
    let token = take_token(&socket, &mut auth);
    let principal = match (mount.auth, token) {
        (AuthMode::None, _) | (AuthMode::Optional, None) => None,
        (AuthMode::Required, None) => return Err(AuthError::Missing.into()),
        (_, Some(token)) => Some(mount.verifier.verify(&token)?.principal),
    };
    let parts = socket.req_parts();
    let conn = Connection {
        id: socket.id.to_string(),
        namespace: mount.slot.mount.clone(),
        transport: match socket.transport_type() {
            socketioxide::TransportType::Websocket => Transport::WebSocket,
            socketioxide::TransportType::Polling => Transport::Polling,
        },
        remote_addr: parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.to_string()),
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

    let version = mount.slot.active();
    let actions = match version.on_connect(&conn).await {
        Ok(Ok(actions)) => actions,
        Ok(Err(rejection)) => return Err(Refusal(rejection)),
        Err(e) => return Err(Refusal(e.to_rejection())),
    };
    let session = Arc::new(Session::new(conn, mount.clone()));
    session.push(Work::Connected(actions));
    socket.extensions.insert(session);
    // Handlers are registered here, before the connect ack goes out, so no
    // event sent right after connecting can miss them.
    socket.on_fallback(async |socket: SocketRef, Enqueued(session): Enqueued| {
        session.drain(&socket).await
    });
    socket.on_disconnect(async |socket: SocketRef, reason: DisconnectReason| {
        if let Some(session) = socket.extensions.get::<Arc<Session>>() {
            session.push(Work::Disconnected(reason.to_string()));
            session.drain(&socket).await;
        }
    });
    Ok(())
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
    if let Some(t) = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
    {
        return Some(t.trim().to_owned());
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
