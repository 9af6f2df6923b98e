//! Who is in a channel: the sockets that joined it with [`Action::join`](crate::Action::join)
//! and have not left or disconnected, on every node of a cluster (members of a node that died
//! disappear once its heartbeat expires, 10 s by default).
//!
//! ```no_run
//! use portico_sdk::prelude::*;
//!
//! // Answer `who {room}` with the subjects in the room.
//! fn who(room: &str) -> Result<Actions, Rejection> {
//!     let members = presence::list(room)?;
//!     let subjects: Vec<_> = members.iter().filter_map(|m| m.subject.clone()).collect();
//!     Ok(vec![Action::ack(&json!({ "ok": true, "members": subjects }))])
//! }
//! # let _ = who;
//! ```
//!
//! Off `wasm32` the [`TestHost`](crate::testing::TestHost) keeps presence: the `join` and
//! `leave` actions its calls return, and its disconnects, update it as the host would.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Rejection;

/// One socket in a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Member {
    /// Socket id (usable with [`Action::send_to`](crate::Action::send_to) on its node).
    pub socket: String,
    /// The `sub` claim of the socket's token, if it had one.
    pub subject: Option<String>,
    /// The node the socket is connected to.
    pub node: String,
}

/// Why presence could not be read. Converts into a [`Rejection`] (`presence_unavailable`),
/// so `?` works in handlers.
///
/// ```
/// # use portico_sdk::prelude::*;
/// let r: Rejection = presence::PresenceError::Unavailable("redis down".into()).into();
/// assert_eq!(r.code(), "presence_unavailable");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PresenceError {
    /// The presence record cannot be reached right now (cluster mode, Redis away).
    Unavailable(String),
}

impl fmt::Display for PresenceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unavailable(m) => write!(f, "presence unavailable: {m}"),
        }
    }
}

impl std::error::Error for PresenceError {}

impl From<PresenceError> for Rejection {
    fn from(e: PresenceError) -> Self {
        Rejection::new("presence_unavailable", e.to_string())
    }
}

/// The members of `channel` (of this plugin), ordered by socket id.
///
/// ```
/// assert!(portico_sdk::presence::list("empty-room")?.is_empty());
/// # Ok::<(), portico_sdk::presence::PresenceError>(())
/// ```
pub fn list(channel: &str) -> Result<Vec<Member>, PresenceError> {
    crate::host::presence_list(channel)
}
