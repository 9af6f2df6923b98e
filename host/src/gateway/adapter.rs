//! The Socket.IO adapter of every node and its driver capability: without a
//! cluster every call is a no-op, so the adapter delivers locally; with one,
//! broadcasts also reach the other nodes through a [`CrossNode`] driver
//! (`cluster` implements it over Redis pub/sub). Picked once at wiring.

use std::sync::Arc;

use futures::future::BoxFuture;
use socketioxide_redis::drivers::{ChanItem, Driver, MessageStream};
use tokio::sync::mpsc;

/// The cross-node transport failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cross-node transport: {0}")]
pub struct CrossNodeError(pub String);

/// What the cross-node path did so far (for `/metrics`).
#[derive(Debug, Clone, Copy, Default)]
pub struct CrossNodeStats {
    pub published: u64,
    /// Lost: outbox full or the transport unreachable.
    pub dropped: u64,
}

/// Carries adapter messages between nodes.
pub trait CrossNode: Send + Sync + 'static {
    /// Send to the other nodes; must not wait for the transport.
    fn publish(&self, chan: String, val: Vec<u8>) -> BoxFuture<'_, Result<(), CrossNodeError>>;
    fn subscribe(
        &self,
        chan: String,
        size: usize,
    ) -> BoxFuture<'_, Result<mpsc::Receiver<ChanItem>, CrossNodeError>>;
    fn unsubscribe(&self, chan: String) -> BoxFuture<'_, Result<(), CrossNodeError>>;
    /// Nodes serving `chan` (at least 1: this one).
    fn num_serv<'a>(&'a self, chan: &'a str) -> BoxFuture<'a, u16>;
    fn stats(&self) -> CrossNodeStats;
}

/// The driver the adapter is built with.
#[derive(Clone)]
pub enum AdapterDriver {
    /// One node: nothing leaves it.
    Local,
    Remote(Arc<dyn CrossNode>),
}

impl AdapterDriver {
    /// What the cross-node path did, when there is one.
    pub fn stats(&self) -> Option<CrossNodeStats> {
        match self {
            Self::Local => None,
            Self::Remote(r) => Some(r.stats()),
        }
    }
}

impl Driver for AdapterDriver {
    type Error = CrossNodeError;

    async fn publish(&self, chan: String, val: Vec<u8>) -> Result<(), Self::Error> {
        match self {
            Self::Local => Ok(()),
            Self::Remote(r) => r.publish(chan, val).await,
        }
    }

    async fn subscribe(
        &self,
        chan: String,
        size: usize,
    ) -> Result<MessageStream<ChanItem>, Self::Error> {
        match self {
            Self::Local => Ok(MessageStream::new_empty()),
            Self::Remote(r) => Ok(MessageStream::new(r.subscribe(chan, size).await?)),
        }
    }

    async fn unsubscribe(&self, chan: String) -> Result<(), Self::Error> {
        match self {
            Self::Local => Ok(()),
            Self::Remote(r) => r.unsubscribe(chan).await,
        }
    }

    async fn num_serv(&self, chan: &str) -> Result<u16, Self::Error> {
        match self {
            Self::Local => Ok(1),
            Self::Remote(r) => Ok(r.num_serv(chan).await),
        }
    }
}

/// The Socket.IO adapter of every node.
pub type Adapter =
    socketioxide_redis::CustomRedisAdapter<socketioxide::adapter::Emitter, AdapterDriver>;
