//! The channel log capability: in cluster mode, publications go through a
//! shared, ordered log (Redis Streams in `cluster`) that assigns their ids
//! and carries them to every node. One node needs none.

use futures::future::BoxFuture;

use super::id::EventId;

/// The log did not take a publication (it then stays on this node).
#[derive(Debug, Clone, thiserror::Error)]
#[error("channel log unavailable: {0}")]
pub struct LogUnavailable(pub String);

/// A shared log of a plugin's publications.
pub trait ChannelLog: Send + Sync {
    /// Append a publication; returns the id the log assigned.
    fn append<'a>(
        &'a self,
        plugin: &'a str,
        channel: &'a str,
        event: &'a str,
        data: &'a str,
    ) -> BoxFuture<'a, Result<EventId, LogUnavailable>>;
}
