//! The channel log capability: in cluster mode, publications go through a
//! shared, ordered log (Redis Streams in `cluster`) that assigns their ids
//! and carries them to every node. One node needs none.

use futures::future::BoxFuture;

use super::id::EventId;

/// Why the log did not take a publication.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LogError {
    /// Its outbox is full: the publication is refused, and the sender told.
    #[error("the channel log's outbox is full")]
    Overloaded,
    /// Unreachable: the publication stays on this node.
    #[error("channel log unavailable: {0}")]
    Unavailable(String),
}

/// What the log did so far (for `/metrics`).
#[derive(Debug, Clone, Copy, Default)]
pub struct LogStats {
    pub published: u64,
    /// Refused with [`LogError::Overloaded`].
    pub overloaded: u64,
    /// Times this node found the log had dropped entries it had not read
    /// yet (it fell further behind than the log's length).
    pub gaps: u64,
}

/// A shared log of a plugin's publications.
pub trait ChannelLog: Send + Sync {
    /// Append a publication; returns the id the log assigned. `except`: a
    /// socket id not to deliver it to (the sender, on `broadcast`).
    fn append<'a>(
        &'a self,
        plugin: &'a str,
        channel: &'a str,
        event: &'a str,
        data: &'a str,
        except: Option<&'a str>,
    ) -> BoxFuture<'a, Result<EventId, LogError>>;

    fn stats(&self) -> LogStats;
}
