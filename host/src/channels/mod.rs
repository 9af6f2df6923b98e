//! Channels: one publication reaches a plugin's Socket.IO room and its SSE
//! subscribers alike ([`crate::gateway::publish`] does both). This module
//! keeps ids, bounded history, the SSE subscribers' queues and the
//! Socket.IO sockets that joined each channel (delivered here, with the id
//! as their offset, for connection state recovery); in cluster mode
//! publications go through a shared [`ChannelLog`].
//!
//! # Ids and resuming
//!
//! Every event gets an id `"<unix_ms>-<seq>"` (the Redis Streams format) from
//! its plugin's clock: strictly increasing across all of that plugin's
//! channels, and time-based so ids keep growing across restarts. A stream
//! delivers events in id order whatever channel they come from, so the last id
//! a client saw says "I have everything of my channels up to here": one
//! `Last-Event-ID` resumes every channel of a stream by sending, per channel,
//! the retained events after it, merged in id order. When a channel already
//! dropped an event after that id (history size or age), or the id predates
//! what this node knows (it restarted), the client gets a `resync` event
//! naming those channels instead of a silent gap.
//!
//! For a cluster: ids are already Redis Streams ids. Keeping one Redis Stream
//! per plugin (the channel as a field) preserves the single total order a
//! stream's one Last-Event-ID relies on; one stream per channel would need
//! merging by id before delivery to keep it.

mod caps;
mod encoded;
mod error;
mod history;
mod hub;
mod id;
mod log;
mod sockets;

pub use caps::{StreamCaps, StreamPermit, StreamRefused};
pub use error::ChannelError;
pub use history::{Entry, HistoryLimits};
pub use hub::{Delivery, Hub, HubSettings, Resync, Space, Subscription, now_ms};
pub use id::{BadId, EventId};
pub use log::{ChannelLog, LogError, LogStats};
pub use sockets::{Gap, Rooms, SinkError, SocketSink};
