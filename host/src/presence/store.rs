//! The presence capability: where members are recorded. In memory here, over
//! Redis in `cluster`; picked once at wiring.

use std::time::Duration;

use futures::future::BoxFuture;

use super::{Member, PresenceError};

/// What a heartbeat found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beat {
    /// The node's record was there and is refreshed.
    Kept,
    /// The record was gone (first beat, or the store lost its data): set
    /// again, and this node's members must be recorded again.
    Renewed,
    /// The store did not answer.
    Failed,
}

/// Members of channels, by plugin and channel.
pub trait PresenceStore: Send + Sync {
    fn join<'a>(
        &'a self,
        plugin: &'a str,
        channel: &'a str,
        socket: &'a str,
        subject: Option<&'a str>,
    ) -> BoxFuture<'a, ()>;
    fn leave<'a>(&'a self, plugin: &'a str, channel: &'a str, socket: &'a str)
    -> BoxFuture<'a, ()>;
    /// Members of every node whose heartbeat is alive.
    fn list<'a>(
        &'a self,
        plugin: &'a str,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Member>, PresenceError>>;
    /// How often this node must beat; `None` for a store of one node.
    fn heartbeat_every(&self) -> Option<Duration> {
        None
    }
    /// Keep this node's record alive.
    fn heartbeat(&self) -> BoxFuture<'_, Beat> {
        Box::pin(std::future::ready(Beat::Kept))
    }
}
