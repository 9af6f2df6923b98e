//! Performing what a plugin returned, in order.

use super::{AckSender, SocketRef};
use serde_json::json;
use socketioxide::socket::Sid;
use socketioxide::{SendError, SocketError};

use super::mount::Mount;
use super::publisher::{self, Audience, Channels};
use super::wire::{self, Args};
use crate::plugins::{Action, Rejection};

/// Event sent to a client just before the server disconnects it, carrying the
/// reason (Socket.IO itself only tells the client "io server disconnect").
pub const DISCONNECT_EVENT: &str = "portico:disconnect";

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

async fn apply_one(
    t: &Target<'_>,
    action: Action,
    ack: &mut Option<AckSender>,
) -> Result<(), String> {
    let socket = t.socket;
    match action {
        Action::Emit { event, payload } => {
            let sent = socket.emit(&event, &Args::new(payload)?);
            counted(t.mount, sent, true).map_err(|e| format!("emit {event}: {e}"))?;
        }
        Action::Ack(payload) => {
            let args = Args::new(payload)?;
            // Only the first ack counts; a client asked for exactly one.
            if let Some(ack) = ack.take() {
                counted(t.mount, ack.send(&args), false).map_err(|e| format!("ack: {e}"))?;
                t.mount.stats.acks_ok.inc();
            }
        }
        Action::Publish {
            channel,
            event,
            data_json,
            include_sender,
        } => {
            let data = wire::single(&data_json)?;
            let to = Channels {
                space: &t.mount.channels,
                stats: &t.mount.stats,
            };
            let audience = Audience::From {
                socket,
                include_sender,
            };
            publisher::publish(&to, audience, &channel, &event, &data)
                .await
                .map_err(|e| e.to_string())?;
        }
        Action::SendTo {
            socket: id,
            event,
            payload,
        } => {
            let args = Args::new(payload)?;
            let sid: Sid = id
                .parse()
                .map_err(|_| format!("send-to: {id:?} is not a socket id"))?;
            let target = t
                .mount
                .io
                .of(&t.mount.slot.mount)
                .and_then(|ns| ns.get_socket(sid));
            match target {
                Some(s) => counted(t.mount, s.emit(&event, &args), true)
                    .map_err(|e| format!("send-to {id}: {e}"))?,
                None => tracing::debug!(socket = %id, "send-to: no such socket here"),
            }
        }
        Action::Join(channel) => {
            socket.join(channel.clone());
            let id = socket.id.to_string();
            let plugin = &t.mount.slot.name;
            t.mount
                .presence
                .join(plugin, &channel, &id, t.subject)
                .await;
        }
        Action::Leave(channel) => {
            socket.leave(channel.clone());
            let id = socket.id.to_string();
            let plugin = &t.mount.slot.name;
            t.mount.presence.leave(plugin, &channel, &id).await;
        }
        Action::Disconnect(reason) => {
            let _ = socket.emit(DISCONNECT_EVENT, &json!({ "reason": reason }));
            // Closing does not flush what is queued for the client (acks, the
            // reason above): give the writer a moment first.
            let grace = t.mount.limits.disconnect_grace;
            if !grace.is_zero() {
                tokio::time::sleep(grace).await;
            }
            socket
                .clone()
                .disconnect()
                .map_err(|e| format!("disconnect: {e}"))?;
        }
    }
    Ok(())
}

/// Answer an event with the error ack `{ok:false, code, message}`, if one was asked for.
pub(super) fn reject(mount: &Mount, ack: Option<AckSender>, r: &Rejection) {
    if let Some(ack) = ack {
        let sent = ack.send(&json!({ "ok": false, "code": r.code, "message": r.message }));
        if counted(mount, sent, false).is_ok() {
            mount.stats.acks_error.inc();
        }
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
