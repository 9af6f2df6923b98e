//! The plugin's private key-value store (in memory on one node, Redis in a cluster; same
//! semantics). No plugin sees another's keys.
//!
//! ```no_run
//! use portico_sdk::kv;
//! use std::time::Duration;
//!
//! kv::set("greeting", "hello")?;
//! kv::set_with_ttl("session:abc", "alice", Duration::from_secs(60))?;
//! assert_eq!(kv::get_string("greeting")?.as_deref(), Some("hello"));
//! let visits = kv::incr("visits", 1)?;
//! kv::delete("greeting")?;
//! # let _ = visits;
//! # Ok::<(), kv::KvError>(())
//! ```

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Rejection;

/// Why a store operation failed. Converts into a [`Rejection`] (`kv_unavailable` or
/// `kv_error`), so `?` works in handlers.
///
/// ```
/// # use portico_sdk::prelude::*;
/// let r: Rejection = kv::KvError::Unavailable("redis down".into()).into();
/// assert_eq!(r.code(), "kv_unavailable");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KvError {
    /// The store cannot be reached right now.
    Unavailable(String),
    /// `incr` on a value that is not a decimal integer.
    NotANumber,
    /// Key or value over the host's size limit.
    TooLarge,
    /// The plugin's key count or byte budget is used up; the message says which.
    Full(String),
    /// A stored value is not what the caller expected (not UTF-8, not the JSON type asked for).
    Decode(String),
    /// Any other failure reported by the host.
    Other(String),
}

impl fmt::Display for KvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unavailable(m) => write!(f, "key-value store unavailable: {m}"),
            Self::NotANumber => f.write_str("stored value is not an integer"),
            Self::TooLarge => f.write_str("key or value too large"),
            Self::Full(m) => write!(f, "key-value store full: {m}"),
            Self::Decode(m) => write!(f, "stored value cannot be decoded: {m}"),
            Self::Other(m) => write!(f, "key-value store error: {m}"),
        }
    }
}

impl std::error::Error for KvError {}

impl From<KvError> for Rejection {
    fn from(e: KvError) -> Self {
        let code = match e {
            KvError::Unavailable(_) => "kv_unavailable",
            KvError::Full(_) => "kv_full",
            _ => "kv_error",
        };
        Rejection::new(code, e.to_string())
    }
}

/// The bytes stored at `key`, if any.
///
/// ```
/// assert_eq!(portico_sdk::kv::get("nothing")?, None);
/// # Ok::<(), portico_sdk::kv::KvError>(())
/// ```
pub fn get(key: &str) -> Result<Option<Vec<u8>>, KvError> {
    crate::host::kv_get(key)
}

/// The UTF-8 string stored at `key`, if any; [`KvError::Decode`] if it is not UTF-8.
///
/// ```
/// portico_sdk::kv::set("k", "v")?;
/// assert_eq!(portico_sdk::kv::get_string("k")?.as_deref(), Some("v"));
/// # Ok::<(), portico_sdk::kv::KvError>(())
/// ```
pub fn get_string(key: &str) -> Result<Option<String>, KvError> {
    get(key)?
        .map(|bytes| String::from_utf8(bytes).map_err(|e| KvError::Decode(e.to_string())))
        .transpose()
}

/// The JSON value stored at `key` deserialized as `T`, if any; [`KvError::Decode`] if it does
/// not fit.
///
/// ```
/// portico_sdk::kv::set_json("prefs", &vec!["dark"])?;
/// let prefs: Option<Vec<String>> = portico_sdk::kv::get_json("prefs")?;
/// assert_eq!(prefs, Some(vec!["dark".to_string()]));
/// # Ok::<(), portico_sdk::kv::KvError>(())
/// ```
pub fn get_json<T: DeserializeOwned>(key: &str) -> Result<Option<T>, KvError> {
    get(key)?
        .map(|bytes| serde_json::from_slice(&bytes).map_err(|e| KvError::Decode(e.to_string())))
        .transpose()
}

/// Stores `value` at `key` without expiry.
///
/// ```
/// portico_sdk::kv::set("k", b"\x00\x01")?;
/// # Ok::<(), portico_sdk::kv::KvError>(())
/// ```
pub fn set(key: &str, value: impl AsRef<[u8]>) -> Result<(), KvError> {
    crate::host::kv_set(key, value.as_ref(), None)
}

/// Stores `value` at `key`, expiring after `ttl` (rounded down to milliseconds, at least 1).
///
/// ```
/// use std::time::Duration;
/// portico_sdk::kv::set_with_ttl("otp", "123456", Duration::from_secs(30))?;
/// # Ok::<(), portico_sdk::kv::KvError>(())
/// ```
pub fn set_with_ttl(key: &str, value: impl AsRef<[u8]>, ttl: Duration) -> Result<(), KvError> {
    let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
    crate::host::kv_set(key, value.as_ref(), Some(ms))
}

/// Stores `value` serialized as JSON at `key` without expiry.
///
/// ```
/// portico_sdk::kv::set_json("user:1", &serde_json::json!({ "name": "Ann" }))?;
/// # Ok::<(), portico_sdk::kv::KvError>(())
/// ```
pub fn set_json<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<(), KvError> {
    let bytes = serde_json::to_vec(value).map_err(|e| KvError::Other(e.to_string()))?;
    set(key, bytes)
}

/// Deletes `key`; returns whether it existed.
///
/// ```
/// assert!(!portico_sdk::kv::delete("never-set")?);
/// # Ok::<(), portico_sdk::kv::KvError>(())
/// ```
pub fn delete(key: &str) -> Result<bool, KvError> {
    crate::host::kv_delete(key)
}

/// Adds `by` to the integer stored at `key` (missing counts as 0) and returns the result.
/// Values are stored as decimal text, so [`get_string`] reads them back.
///
/// ```
/// assert_eq!(portico_sdk::kv::incr("n", 2)?, 2);
/// assert_eq!(portico_sdk::kv::incr("n", -1)?, 1);
/// # Ok::<(), portico_sdk::kv::KvError>(())
/// ```
pub fn incr(key: &str, by: i64) -> Result<i64, KvError> {
    crate::host::kv_incr(key, by)
}
