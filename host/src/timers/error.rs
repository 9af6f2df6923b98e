//! Errors of plugin timers.

/// A timer could not be set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimerError {
    /// The plugin already has this many timers pending.
    #[error("at most {0} timers may be pending per plugin")]
    TooMany(u32),
    /// The connection the timer is about is not connected to this node.
    #[error("no such connection on this node")]
    Gone,
    /// A bad argument.
    #[error("{0}")]
    Invalid(String),
}
