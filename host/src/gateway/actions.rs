//! Performing what a plugin returned, in order.

use super::{AckSender, SocketRef};
use serde_json::json;
use socketioxide::socket::Sid;
use socketioxide::{SendError, SocketError};

use super::mount::Mount;
use super::publisher::{self, Audience, Channels};
use super::session::Session;
use super::wire::{self, AckArgs, Args};
use super::writable::send_when_writable;
use crate::channels::ChannelError;
use crate::plugins::{Action, Rejection};

/// Event sent to a client just before the server disconnects it, carrying the
/// reason (Socket.IO itself only tells the client "io server disconnect").
pub const DISCONNECT_EVENT: &str = "portico:disconnect";

/// The `reason` of a socket disconnected because its send buffer was full
/// (SSE streams cut off for the same cause end with the same reason).
pub const SLOW_CONSUMER: &str = "slow_consumer";

pub(super) struct Target<'a> {
    pub(super) socket: &'a SocketRef,
    pub(super) mount: &'a Mount,
    /// The subject of the socket's token, recorded in presence.
    pub(super) subject: Option<&'a str>,
}

pub(super) async fn apply(t: &Target<'_>, actions: Vec<Action>, mut ack: Option<AckSender>) {
    for action in actions {
        if let Err(e) = apply_one(t, action, &mut ack).await {
            tracing::warn!(plugin = %t.mount.slot.name, socket = %t.socket.id, "plugin action skipped: {e}");
        }
    }
}

/// Why one action was skipped (the others still run).
#[derive(Debug, thiserror::Error)]
pub(super) enum ActionError {
    /// The plugin returned a payload that is not valid Socket.IO arguments.
    #[error("{0}")]
    Payload(#[from] wire::PayloadError),
    /// A packet to one socket was refused (its buffer is full: counted as dropped).
    #[error("{what}: {source}")]
    Send { what: String, source: SendError },
    /// The channel publication was refused.
    #[error("publish {event} to {channel}: {source}")]
    Publish {
        event: String,
        channel: String,
        source: ChannelError,
    },
    /// `send-to` named something that is not a socket id.
    #[error("send-to: {0:?} is not a socket id")]
    BadSocketId(String),
    #[error("disconnect: {0}")]
    Disconnect(#[from] SocketError),
    /// A call about no connection (a timer of its own) returned an action that needs one.
    #[error("{0} needs a connection; this call has none")]
    NeedsConnection(String),
}

async fn apply_one(
    t: &Target<'_>,
    action: Action,
    ack: &mut Option<AckSender>,
) -> Result<(), ActionError> {
    let socket = t.socket;
    let send = |what: String| move |source| ActionError::Send { what, source };
    match action {
        Action::Emit { event, payload } => {
            let args = Args::new(&payload)?;
            let sent = send_when_writable(socket, &t.mount.stats.send_waits, || {
                socket.emit(&event, &args)
            })
            .await;
            answered(t, sent, true).map_err(send(format!("emit {event}")))?;
        }
        Action::Ack(payload) => match AckArgs::new(payload)? {
            AckArgs::AsIs(data) => send_ack(t, ack, |a| a.send_encoded(data.clone())).await?,
            AckArgs::WithBinary(payload) => {
                let args = Args::new(&payload)?;
                send_ack(t, ack, |a| a.send(&args)).await?
            }
        },
        Action::Publish {
            channel,
            event,
            data_json,
            include_sender,
        } => publish(t, channel, event, &data_json, include_sender, ack).await?,
        Action::SendTo {
            socket: id,
            event,
            payload,
        } => send_to(t.mount, &id, &event, payload)?,
        Action::Join(channel) => {
            socket.join(channel.clone());
            let id = socket.id.to_string();
            t.mount.channels.join(&id, &channel);
            remember_rooms(t).await;
            let plugin = &t.mount.slot.name;
            t.mount
                .presence
                .join(plugin, &channel, &id, t.subject)
                .await;
        }
        Action::Leave(channel) => {
            socket.leave(channel.clone());
            let id = socket.id.to_string();
            t.mount.channels.leave(&id, &channel);
            remember_rooms(t).await;
            let plugin = &t.mount.slot.name;
            t.mount.presence.leave(plugin, &channel, &id).await;
        }
        Action::Disconnect(reason) => disconnect(t, &reason).await?,
    }
    Ok(())
}

/// Send the ack with `send`. Only the first ack counts: a client asked for exactly one.
async fn send_ack(
    t: &Target<'_>,
    ack: &mut Option<AckSender>,
    send: impl Fn(AckSender) -> Result<(), SendError>,
) -> Result<(), ActionError> {
    if let Some(ack) = ack.take() {
        let sent =
            send_when_writable(t.socket, &t.mount.stats.send_waits, || send(ack.clone())).await;
        answered(t, sent, false).map_err(|source| ActionError::Send {
            what: "ack".into(),
            source,
        })?;
        t.mount.stats.acks_ok.inc();
    }
    Ok(())
}

async fn publish(
    t: &Target<'_>,
    channel: String,
    event: String,
    data_json: &str,
    include_sender: bool,
    ack: &mut Option<AckSender>,
) -> Result<(), ActionError> {
    let data = wire::single(data_json)?;
    let to = Channels {
        space: &t.mount.channels,
        stats: &t.mount.stats,
    };
    let audience = Audience::From {
        socket: t.socket,
        include_sender,
    };
    match publisher::publish(&to, audience, &channel, &event, &data).await {
        Ok(_) => Ok(()),
        Err(source) => {
            if let ChannelError::Overloaded = source {
                // Nothing was delivered: the sender's ack says so (and any
                // ack action after this one finds it answered).
                let why = Rejection::new("overloaded", source.to_string());
                reject(t, ack.take(), &why).await;
                t.mount.stats.overloaded.inc();
            }
            Err(ActionError::Publish {
                event,
                channel,
                source,
            })
        }
    }
}

/// Perform what a call about no connection returned (a timer of its own):
/// publications and direct messages; actions that need "the connection" are skipped.
pub(super) async fn apply_detached(mount: &Mount, actions: Vec<Action>) {
    for action in actions {
        let done = match action {
            Action::Publish {
                channel,
                event,
                data_json,
                ..
            } => publish_detached(mount, channel, event, &data_json).await,
            Action::SendTo {
                socket,
                event,
                payload,
            } => send_to(mount, &socket, &event, payload),
            other => Err(ActionError::NeedsConnection(format!("{other:?}"))),
        };
        if let Err(e) = done {
            tracing::warn!(plugin = %mount.slot.name, "plugin action skipped: {e}");
        }
    }
}

async fn publish_detached(
    mount: &Mount,
    channel: String,
    event: String,
    data_json: &str,
) -> Result<(), ActionError> {
    let data = wire::single(data_json)?;
    let to = Channels {
        space: &mount.channels,
        stats: &mount.stats,
    };
    let audience = Audience::Room;
    match publisher::publish(&to, audience, &channel, &event, &data).await {
        Ok(_) => Ok(()),
        Err(source) => Err(ActionError::Publish {
            event,
            channel,
            source,
        }),
    }
}

fn send_to(
    mount: &Mount,
    id: &str,
    event: &str,
    payload: crate::plugins::Payload,
) -> Result<(), ActionError> {
    let args = Args::new(&payload)?;
    let Ok(sid) = id.parse::<Sid>() else {
        return Err(ActionError::BadSocketId(id.to_owned()));
    };
    let target = mount
        .io
        .of(&mount.slot.mount)
        .and_then(|ns| ns.get_socket(sid));
    match target {
        // Another socket's buffer: waiting for its reader would hold up this
        // socket's queue, so a full one makes it a slow consumer instead.
        Some(s) => {
            let sent = counted(mount, s.emit(event, &args), true);
            if let Err(SendError::Socket(SocketError::InternalChannelFull)) = sent {
                slow_consumer(&s);
            }
            sent.map_err(|source| ActionError::Send {
                what: format!("send-to {id}"),
                source,
            })
        }
        None => {
            tracing::debug!(socket = %id, "send-to: no such socket here");
            Ok(())
        }
    }
}

async fn disconnect(t: &Target<'_>, reason: &str) -> Result<(), ActionError> {
    let _ = t
        .socket
        .emit(DISCONNECT_EVENT, &json!({ "reason": reason }));
    // Closing does not flush what is queued for the client (acks, the
    // reason above): give the writer a moment first.
    let grace = t.mount.limits.disconnect_grace;
    if !grace.is_zero() {
        tokio::time::sleep(grace).await;
    }
    t.socket.clone().disconnect()?;
    Ok(())
}

/// Keep the socket's recoverable session up to date with its channels.
async fn remember_rooms(t: &Target<'_>) {
    if let Some(pid) = t.socket.pid() {
        let rooms = t.mount.channels.rooms(&t.socket.id.to_string());
        let ns = &t.mount.slot.mount;
        t.mount
            .recovery
            .connected(ns, pid, t.socket.id, t.subject, &rooms)
            .await;
    }
}

/// Answer an event with the error ack `{ok:false, code, message}`, if one
/// was asked for, in the socket's order (waiting for room in its buffer).
pub(super) async fn reject(t: &Target<'_>, ack: Option<AckSender>, r: &Rejection) {
    if let Some(ack) = ack {
        let body = rejection(r);
        let sent = send_when_writable(t.socket, &t.mount.stats.send_waits, || {
            ack.clone().send(&body)
        })
        .await;
        if answered(t, sent, false).is_ok() {
            t.mount.stats.acks_error.inc();
        }
    }
}

/// The same, answered at once (from the packet reader, which cannot wait):
/// a full buffer makes the socket a slow consumer.
pub(super) fn reject_now(mount: &Mount, socket: &SocketRef, ack: Option<AckSender>, r: &Rejection) {
    if let Some(ack) = ack {
        let sent = counted(mount, ack.send(&rejection(r)), false);
        match sent {
            Ok(()) => {
                mount.stats.acks_error.inc();
            }
            Err(SendError::Socket(SocketError::InternalChannelFull)) => slow_consumer(socket),
            Err(_) => {}
        }
    }
}

fn rejection(r: &Rejection) -> serde_json::Value {
    json!({ "ok": false, "code": r.code, "message": r.message })
}

/// Count an answer to the target socket's own event; one that found no room
/// in [`PATIENCE`](super::writable::PATIENCE) makes the socket a slow consumer.
fn answered(t: &Target<'_>, sent: Result<(), SendError>, event: bool) -> Result<(), SendError> {
    let sent = counted(t.mount, sent, event);
    if let Err(SendError::Socket(SocketError::InternalChannelFull)) = sent {
        slow_consumer(t.socket);
    }
    sent
}

/// Disconnect `socket` with reason `slow_consumer` (once; see [`Session::slow_consumer`]).
fn slow_consumer(socket: &SocketRef) {
    if let Some(session) = socket.extensions.get::<std::sync::Arc<Session>>() {
        session.slow_consumer(socket.clone());
    }
}

/// Count a packet sent to one socket: out (when `event`), or dropped because
/// the socket's buffer was full (a slow consumer).
fn counted(mount: &Mount, sent: Result<(), SendError>, event: bool) -> Result<(), SendError> {
    match &sent {
        Ok(()) if event => mount.stats.events_out.inc(),
        Err(SendError::Socket(SocketError::InternalChannelFull)) => mount.stats.dropped.inc(),
        _ => 0,
    };
    sent
}
