//! Timers: ask the host to call [`Plugin::on_timer`](crate::Plugin::on_timer) after a delay,
//! optionally about one connection (then the timer is cancelled when it ends, and the actions
//! returned apply to it). Timers survive a hot swap (the new version gets the call), are
//! bounded per plugin, and are node-local in cluster mode.
//!
//! ```no_run
//! use portico_sdk::prelude::*;
//! use std::time::Duration;
//! # fn f(conn: &Connection) -> Result<(), Rejection> {
//! let id = timers::after_for(conn, Duration::from_secs(30), "idle", &json!({ "warn": true }))?;
//! timers::cancel(id);
//! # Ok(()) }
//! ```

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Connection, Rejection};

/// A timer's id, as [`after`] returned it.
pub type TimerId = u64;

/// A fired timer, as [`Plugin::on_timer`](crate::Plugin::on_timer) receives it.
///
/// ```
/// # use portico_sdk::timers::Timer;
/// let t = Timer::new(7, "tick", &serde_json::json!({ "n": 1 }));
/// assert_eq!((t.id(), t.name()), (7, "tick"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    pub(crate) id: TimerId,
    pub(crate) name: String,
    pub(crate) data_json: String,
}

impl Timer {
    /// A timer event (for tests).
    ///
    /// ```
    /// # use portico_sdk::timers::Timer;
    /// let t = Timer::new(1, "t", &());
    /// assert_eq!(t.data_json(), "null");
    /// ```
    pub fn new<T: Serialize + ?Sized>(id: TimerId, name: &str, data: &T) -> Self {
        Self {
            id,
            name: name.to_owned(),
            data_json: crate::types::to_value(data).to_string(),
        }
    }

    /// The id [`after`] returned.
    ///
    /// ```
    /// # use portico_sdk::timers::Timer;
    /// assert_eq!(Timer::new(3, "t", &()).id(), 3);
    /// ```
    pub fn id(&self) -> TimerId {
        self.id
    }

    /// The name it was set with.
    ///
    /// ```
    /// # use portico_sdk::timers::Timer;
    /// assert_eq!(Timer::new(3, "t", &()).name(), "t");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The data it was set with, as JSON text.
    ///
    /// ```
    /// # use portico_sdk::timers::Timer;
    /// assert_eq!(Timer::new(3, "t", &1).data_json(), "1");
    /// ```
    pub fn data_json(&self) -> &str {
        &self.data_json
    }

    /// The data deserialized; `bad_request` if it does not fit.
    ///
    /// ```
    /// # use portico_sdk::timers::Timer;
    /// let n: u32 = Timer::new(3, "t", &5).data().unwrap();
    /// assert_eq!(n, 5);
    /// ```
    pub fn data<T: DeserializeOwned>(&self) -> Result<T, Rejection> {
        serde_json::from_str(&self.data_json)
            .map_err(|e| Rejection::bad_request(format!("timer `{}` data: {e}", self.name)))
    }
}

/// Why a timer could not be set. Converts into a [`Rejection`] (`timer_error`).
///
/// ```
/// # use portico_sdk::prelude::*;
/// let r: Rejection = timers::TimerError::TooMany(1000).into();
/// assert_eq!(r.code(), "timer_error");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimerError {
    /// The plugin already has this many timers pending.
    TooMany(u32),
    /// The connection is not connected to this node.
    Gone,
    /// A bad argument (delay over the maximum, name or data too long).
    Invalid(String),
    /// Any other failure reported by the host.
    Other(String),
}

impl fmt::Display for TimerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooMany(n) => write!(f, "at most {n} timers may be pending"),
            Self::Gone => f.write_str("the connection is gone"),
            Self::Invalid(m) => write!(f, "invalid timer: {m}"),
            Self::Other(m) => write!(f, "timer error: {m}"),
        }
    }
}

impl std::error::Error for TimerError {}

impl From<TimerError> for Rejection {
    fn from(e: TimerError) -> Self {
        Rejection::new("timer_error", e.to_string())
    }
}

fn millis(delay: Duration) -> u64 {
    u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)
}

/// Call `on_timer` after `delay` with `name` and `data`, about no connection (its actions
/// can publish and send to sockets, nothing that needs "the connection").
///
/// ```no_run
/// # use portico_sdk::prelude::*;
/// # use std::time::Duration;
/// let id = timers::after(Duration::from_secs(60), "digest", &json!({}))?;
/// # let _ = id;
/// # Ok::<(), timers::TimerError>(())
/// ```
pub fn after<T: Serialize + ?Sized>(
    delay: Duration,
    name: &str,
    data: &T,
) -> Result<TimerId, TimerError> {
    let data = crate::types::to_value(data).to_string();
    crate::host::timer_set(millis(delay), name, &data, None)
}

/// Like [`after`], about `conn`: cancelled if it ends first; the actions returned apply to it.
///
/// ```no_run
/// # use portico_sdk::prelude::*;
/// # use std::time::Duration;
/// # fn f(conn: &Connection) -> Result<(), timers::TimerError> {
/// timers::after_for(conn, Duration::from_secs(5), "remind", &"drink water")?;
/// # Ok(()) }
/// ```
pub fn after_for<T: Serialize + ?Sized>(
    conn: &Connection,
    delay: Duration,
    name: &str,
    data: &T,
) -> Result<TimerId, TimerError> {
    let data = crate::types::to_value(data).to_string();
    crate::host::timer_set(millis(delay), name, &data, Some(conn.id()))
}

/// Cancel a pending timer; whether it was pending.
///
/// ```no_run
/// assert!(!portico_sdk::timers::cancel(12345));
/// ```
pub fn cancel(id: TimerId) -> bool {
    crate::host::timer_cancel(id)
}
