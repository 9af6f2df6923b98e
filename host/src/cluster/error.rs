//! Errors of cluster mode.

#[derive(Debug, Clone, thiserror::Error)]
pub enum ClusterError {
    /// Redis could not be reached (or answered with an error).
    #[error("redis: {0}")]
    Redis(String),
    /// Redis did not answer in time.
    #[error("redis did not answer within {0} ms")]
    Timeout(u64),
    /// The outbox to Redis is full: the message was not accepted.
    #[error("too many messages waiting for Redis: retry later")]
    Overloaded,
    /// The configured URL is not usable.
    #[error("invalid redis url: {0}")]
    Url(String),
}

impl From<redis::RedisError> for ClusterError {
    fn from(e: redis::RedisError) -> Self {
        Self::Redis(e.to_string())
    }
}

pub type Result<T, E = ClusterError> = std::result::Result<T, E>;
