//! Logging to the host log, tagged by the host with the plugin's name and version.
//!
//! ```no_run
//! use portico_sdk::log;
//! log::info("room created");
//! log::warn(&format!("slow client {}", "sock-1"));
//! ```
//!
//! In native tests lines are captured by [`TestHost`](crate::testing::TestHost) (and printed to
//! stderr, which `cargo test` shows for failing tests).

/// Log levels, lowest first.
///
/// ```
/// use portico_sdk::log::{self, Level};
/// log::log(Level::Info, "hello");
/// assert!(Level::Error > Level::Info);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Very detailed tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected but handled.
    Warn,
    /// Something failed.
    Error,
}

/// Writes `message` at `level`.
///
/// ```
/// use portico_sdk::log::{self, Level};
/// log::log(Level::Debug, "details");
/// ```
pub fn log(level: Level, message: &str) {
    crate::host::log(level, message);
}

/// Writes `message` at trace level.
///
/// ```
/// portico_sdk::log::trace("entering join");
/// ```
pub fn trace(message: &str) {
    log(Level::Trace, message);
}

/// Writes `message` at debug level.
///
/// ```
/// portico_sdk::log::debug("state loaded");
/// ```
pub fn debug(message: &str) {
    log(Level::Debug, message);
}

/// Writes `message` at info level.
///
/// ```
/// portico_sdk::log::info("user joined");
/// ```
pub fn info(message: &str) {
    log(Level::Info, message);
}

/// Writes `message` at warn level.
///
/// ```
/// portico_sdk::log::warn("kv slow");
/// ```
pub fn warn(message: &str) {
    log(Level::Warn, message);
}

/// Writes `message` at error level.
///
/// ```
/// portico_sdk::log::error("kv unavailable");
/// ```
pub fn error(message: &str) {
    log(Level::Error, message);
}
