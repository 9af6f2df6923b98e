//! One publication to a plugin's channel, on both transports: the SSE side
//! (ids, history, subscribers, the cluster's stream) and the Socket.IO room
//! (local sockets, other nodes through the adapter), with one set of error
//! and metrics rules. Plugins' `publish` actions and `POST /api/v1/publish`
//! both come through [`publish`].
//!
//! Every publication gets its [`Publication::id`] before the room emit: on
//! one node it is the SSE event id; in cluster mode, where Redis assigns the
//! SSE id, it is this node's id for the publication. It is the id a
//! Socket.IO recovery offset for the room emit would take.

use serde_json::Value;
use socketioxide::{BroadcastError, SocketError};

use super::{Io, SocketRef};
use crate::channels::{ChannelError, EventId, Space};
use crate::ops::NsMetrics;

/// Where a publication goes: a plugin's channels and its namespace's counters.
pub struct Channels<'a> {
    pub space: &'a Space,
    pub stats: &'a NsMetrics,
}

/// Which Socket.IO sockets of the room get it.
pub enum Audience<'a> {
    /// Every socket in room `channel` of namespace `mount`, on every node.
    Room { io: &'a Io, mount: &'a str },
    /// A socket's publish: the room, with or without the sender.
    From {
        socket: &'a SocketRef,
        include_sender: bool,
    },
}

/// A publication about to be delivered.
pub struct Publication<'a> {
    pub id: EventId,
    pub channel: &'a str,
    pub event: &'a str,
    pub data: &'a Value,
}

/// Publish `event` with `data` to `channel`. Refused (nothing sent) for a
/// bad name or, in cluster mode, a node shutting down. Socket.IO delivery is
/// best effort: a failed room emit is logged and counted, not returned.
/// Returns the SSE event id.
///
/// In cluster mode the room emit goes first (the adapter queues the
/// cross-node copy without waiting for Redis), then the stream append.
pub async fn publish(
    to: &Channels<'_>,
    audience: Audience<'_>,
    channel: &str,
    event: &str,
    data: &Value,
) -> Result<EventId, ChannelError> {
    if to.space.clustered() {
        to.space.check(channel, event)?;
        let p = Publication {
            id: to.space.mint(),
            channel,
            event,
            data,
        };
        emit_room(to.stats, audience, &p).await;
        return to.space.append(channel, event, data).await;
    }
    let id = to.space.publish_local(channel, event, data)?;
    let p = Publication {
        id,
        channel,
        event,
        data,
    };
    emit_room(to.stats, audience, &p).await;
    Ok(id)
}

/// The Socket.IO side: one `events_out` per publication that reached the
/// room; a socket whose buffer was full counts as `dropped`.
async fn emit_room(stats: &NsMetrics, audience: Audience<'_>, p: &Publication<'_>) {
    let room = p.channel.to_owned();
    let sent = match audience {
        Audience::Room { io, mount } => match io.of(mount) {
            Some(ns) => ns.to(room).emit(p.event, p.data).await,
            None => return,
        },
        Audience::From {
            socket,
            include_sender: true,
        } => socket.within(room).emit(p.event, p.data).await,
        Audience::From { socket, .. } => socket.to(room).emit(p.event, p.data).await,
    };
    match sent {
        Ok(()) => {
            stats.events_out.inc();
        }
        Err(e) => {
            if let BroadcastError::Socket(errors) = &e {
                let full = errors
                    .iter()
                    .filter(|e| matches!(e, SocketError::InternalChannelFull))
                    .count();
                stats.dropped.inc_by(full as u64);
            }
            tracing::warn!(
                channel = p.channel,
                event = p.event,
                "publish to Socket.IO failed: {e}"
            );
        }
    }
}
