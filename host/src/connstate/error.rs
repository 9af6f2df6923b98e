//! Errors of per-connection state.

/// A connection-state operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// No such connection of this plugin on this node.
    #[error("no such connection on this node")]
    Gone,
    /// Key or value over the size limit.
    #[error("key over {max_key} bytes or value over {max_value} bytes")]
    TooLarge { max_key: usize, max_value: usize },
    /// The connection's key count or byte budget is used up.
    #[error("connection state full: {0}")]
    Full(String),
}
