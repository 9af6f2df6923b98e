//! Why a publication or subscription was refused.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// Channel names are 1-256 bytes without control characters.
    #[error("channel name {0:?} must be 1-256 bytes without control characters")]
    BadChannel(String),
    /// Event names are 1-128 bytes without control characters.
    #[error("event name {0:?} must be 1-128 bytes without control characters")]
    BadEvent(String),
    /// The node is shutting down.
    #[error("the node is shutting down")]
    Closed,
    /// Too many publications are waiting for the cluster's stream: this one
    /// was refused (not delivered anywhere).
    #[error("too many publications waiting for Redis: retry later")]
    Overloaded,
}

pub type Result<T, E = ChannelError> = std::result::Result<T, E>;
