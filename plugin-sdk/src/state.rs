//! Per-connection state: small key/values the host keeps for one connection and removes
//! when it ends (and, with connection state recovery, carries across a recovered reconnect).
//! No cleanup code, no hand-built `nick:{id}` keys.
//!
//! ```
//! use portico_sdk::prelude::*;
//! # let host = portico_sdk::testing::TestHost::<Nop>::new();
//! # struct Nop;
//! # impl Plugin for Nop {
//! #     fn manifest() -> Manifest { Manifest::new("nop", "1") }
//! #     fn on_event(_: &Connection, _: &Event) -> Result<Actions, Rejection> { Ok(vec![]) }
//! # }
//! # let conn = host.user("alice");
//! # host.connect(&conn).unwrap();
//! state::set(&conn, "nick", "Al")?;
//! assert_eq!(state::get_string(&conn, "nick")?.as_deref(), Some("Al"));
//! assert!(state::delete(&conn, "nick")?);
//! # Ok::<(), state::StateError>(())
//! ```

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Connection, Rejection};

/// Why a connection-state operation failed. Converts into a [`Rejection`] (`state_error`).
///
/// ```
/// # use portico_sdk::prelude::*;
/// let r: Rejection = state::StateError::Gone.into();
/// assert_eq!(r.code(), "state_error");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StateError {
    /// The connection is not connected to this node (any more).
    Gone,
    /// Key or value over the host's size limit.
    TooLarge,
    /// The connection's key count or byte budget is used up.
    Full(String),
    /// A stored value is not what the caller expected.
    Decode(String),
    /// Any other failure reported by the host.
    Other(String),
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Gone => f.write_str("the connection is gone"),
            Self::TooLarge => f.write_str("connection state key or value too large"),
            Self::Full(m) => write!(f, "connection state full: {m}"),
            Self::Decode(m) => write!(f, "stored value cannot be decoded: {m}"),
            Self::Other(m) => write!(f, "connection state error: {m}"),
        }
    }
}

impl std::error::Error for StateError {}

impl From<StateError> for Rejection {
    fn from(e: StateError) -> Self {
        Rejection::new("state_error", e.to_string())
    }
}

/// The bytes stored for `conn` at `key`.
///
/// ```no_run
/// # use portico_sdk::prelude::*;
/// # fn f(conn: &Connection) -> Result<(), state::StateError> {
/// let raw = state::get(conn, "k")?;
/// # let _ = raw; Ok(()) }
/// ```
pub fn get(conn: &Connection, key: &str) -> Result<Option<Vec<u8>>, StateError> {
    crate::host::state_get(conn.id(), key)
}

/// The UTF-8 string stored for `conn` at `key`.
///
/// ```no_run
/// # use portico_sdk::prelude::*;
/// # fn f(conn: &Connection) -> Result<(), state::StateError> {
/// let nick = state::get_string(conn, "nick")?.unwrap_or_default();
/// # let _ = nick; Ok(()) }
/// ```
pub fn get_string(conn: &Connection, key: &str) -> Result<Option<String>, StateError> {
    get(conn, key)?
        .map(|b| String::from_utf8(b).map_err(|e| StateError::Decode(e.to_string())))
        .transpose()
}

/// The JSON value stored for `conn` at `key`, deserialized.
///
/// ```no_run
/// # use portico_sdk::prelude::*;
/// # fn f(conn: &Connection) -> Result<(), state::StateError> {
/// let rooms: Vec<String> = state::get_json(conn, "rooms")?.unwrap_or_default();
/// # let _ = rooms; Ok(()) }
/// ```
pub fn get_json<T: DeserializeOwned>(
    conn: &Connection,
    key: &str,
) -> Result<Option<T>, StateError> {
    get(conn, key)?
        .map(|b| serde_json::from_slice(&b).map_err(|e| StateError::Decode(e.to_string())))
        .transpose()
}

/// Stores `value` for `conn` at `key`.
///
/// ```no_run
/// # use portico_sdk::prelude::*;
/// # fn f(conn: &Connection) -> Result<(), state::StateError> {
/// state::set(conn, "nick", "Al")?;
/// # Ok(()) }
/// ```
pub fn set(conn: &Connection, key: &str, value: impl AsRef<[u8]>) -> Result<(), StateError> {
    crate::host::state_set(conn.id(), key, value.as_ref())
}

/// Stores `value` as JSON for `conn` at `key`.
///
/// ```no_run
/// # use portico_sdk::prelude::*;
/// # fn f(conn: &Connection) -> Result<(), state::StateError> {
/// state::set_json(conn, "rooms", &["a", "b"])?;
/// # Ok(()) }
/// ```
pub fn set_json<T: Serialize + ?Sized>(
    conn: &Connection,
    key: &str,
    value: &T,
) -> Result<(), StateError> {
    let bytes = serde_json::to_vec(value).map_err(|e| StateError::Other(e.to_string()))?;
    set(conn, key, bytes)
}

/// Deletes `key` of `conn`; whether it existed.
///
/// ```no_run
/// # use portico_sdk::prelude::*;
/// # fn f(conn: &Connection) -> Result<(), state::StateError> {
/// state::delete(conn, "nick")?;
/// # Ok(()) }
/// ```
pub fn delete(conn: &Connection, key: &str) -> Result<bool, StateError> {
    crate::host::state_delete(conn.id(), key)
}
