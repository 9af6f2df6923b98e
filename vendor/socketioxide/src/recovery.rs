//! Connection state recovery hook (Portico patch, see `vendor/README.md`).
//!
//! socket.io clients that support connection state recovery (v4.6+) send the
//! private session id (`pid`) and the last offset they received in their
//! CONNECT payload. This hook lets the application look that session up and
//! give the new socket the id of the socket it replaces, before the socket is
//! created; [`Socket::set_pid`](crate::socket::Socket::set_pid) puts a `pid` in
//! the CONNECT reply. What a session holds (rooms, missed packets) stays the
//! application's business.

use std::{future::Future, pin::Pin, sync::Arc};

use socketioxide_core::{Sid, Value};

/// What a connecting socket sent: its namespace, its CONNECT payload, its
/// handshake request.
#[derive(Debug)]
pub struct RestoreRequest<'a> {
    /// The namespace path the socket connects to.
    pub ns: &'a str,
    /// The CONNECT packet's payload, as sent.
    pub auth: Option<&'a Value>,
    /// The engine.io handshake request.
    pub req: &'a http::request::Parts,
}

type RestoreFn =
    dyn Fn(RestoreRequest<'_>) -> Pin<Box<dyn Future<Output = Option<Sid>> + Send>> + Send + Sync;

/// Decides which id a connecting socket gets: `Some(sid)` restores a previous
/// socket's id (ignored if a socket with that id is still connected), `None`
/// gives it a fresh one (its engine.io id, as without the hook).
#[derive(Clone)]
pub struct RestoreHook(pub(crate) Arc<RestoreFn>);

impl RestoreHook {
    /// Wrap a function returning a boxed future.
    pub fn new<F>(f: F) -> Self
    where
        F: Fn(RestoreRequest<'_>) -> Pin<Box<dyn Future<Output = Option<Sid>> + Send>>
            + Send
            + Sync
            + 'static,
    {
        Self(Arc::new(f))
    }
}

impl std::fmt::Debug for RestoreHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RestoreHook")
    }
}
