//! One publication to a plugin's channel, on both transports. Plugins'
//! `publish` actions and `POST /api/v1/publish` both come through
//! [`publish`].
//!
//! The channel hub delivers it: to the SSE subscribers and to the Socket.IO
//! sockets that joined the channel (each emit carries the publication's id
//! as its last argument, the offset connection state recovery resumes
//! from). In cluster mode the publication goes through the plugin's Redis
//! Stream first, which assigns that id, and every node delivers it to its
//! own sockets and subscribers from the stream: one id, one order, on every
//! node, so a socket can resume on any of them.

use serde_json::Value;

use super::SocketRef;
use crate::channels::{ChannelError, EventId, Space};
use crate::ops::NsMetrics;

/// Where a publication goes: a plugin's channels and its namespace's counters.
pub struct Channels<'a> {
    pub space: &'a Space,
    pub stats: &'a NsMetrics,
}

/// Which Socket.IO sockets of the channel get it.
pub enum Audience<'a> {
    /// Every socket in the channel, on every node.
    Room,
    /// A socket's publish: the channel, with or without the sender.
    From {
        socket: &'a SocketRef,
        include_sender: bool,
    },
}

/// Publish `event` with `data` to `channel`. Refused (nothing sent) for a
/// bad name or a node shutting down. Returns the publication's id (the SSE
/// event id and the Socket.IO offset).
pub async fn publish(
    to: &Channels<'_>,
    audience: Audience<'_>,
    channel: &str,
    event: &str,
    data: &Value,
) -> Result<EventId, ChannelError> {
    let sender = match audience {
        Audience::From {
            socket,
            include_sender: false,
        } => Some(socket.id.to_string()),
        _ => None,
    };
    let id = to
        .space
        .publish(channel, event, data, sender.as_deref())
        .await?;
    to.stats.events_out.inc();
    Ok(id)
}
