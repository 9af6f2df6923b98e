//! A socket as a channel subscriber: channel events are emitted to it with
//! their id appended as the last argument (the offset the official client
//! keeps for recovery).

use std::sync::{Arc, Mutex, Weak};

use serde_json::value::RawValue;
use socketioxide::SocketError;
use socketioxide::socket::EncodedPacket;

use super::super::SocketRef;
use super::super::session::Session;
use crate::channels::{Entry, EventId, SinkError, SocketSink};

/// A namespace's channel events as packets, each encoded once: the hub hands
/// a publication to all its sockets in a row, so the last packet is kept
/// for the next socket. Encoding it per socket cost more than sending it
/// (fan-out to 1,000 sockets ran at a quarter of a room broadcast's rate).
pub(in crate::gateway) struct Encoder {
    /// Append offsets (recovery on).
    offsets: bool,
    /// The hub calls sinks under its lock, so this one is never contended.
    last: Mutex<Option<(EventId, EncodedPacket)>>,
}

impl Encoder {
    pub(in crate::gateway) fn new(offsets: bool) -> Arc<Self> {
        Arc::new(Self {
            offsets,
            last: Mutex::new(None),
        })
    }

    /// `entry` as a packet of `socket`'s namespace; `None` if it cannot be
    /// encoded (published data is checked to be JSON, so it always can).
    fn packet(&self, socket: &SocketRef, entry: &Entry) -> Option<EncodedPacket> {
        let mut last = self.last.lock().unwrap();
        if let Some((id, packet)) = &*last
            && *id == entry.id
        {
            return Some(packet.clone());
        }
        let data = serde_json::from_str::<&RawValue>(&entry.data).ok()?;
        let encoded = if self.offsets {
            socket.encode_event(&entry.event, &(data, entry.id.to_string()))
        } else {
            socket.encode_event(&entry.event, data)
        };
        match encoded {
            Ok(packet) => {
                *last = Some((entry.id, packet.clone()));
                Some(packet)
            }
            Err(e) => {
                tracing::debug!(socket = %socket.id, "channel event not encoded: {e}");
                None
            }
        }
    }
}

pub(in crate::gateway) struct Sink {
    socket: SocketRef,
    session: Weak<Session>,
    encoder: Arc<Encoder>,
}

impl Sink {
    pub(in crate::gateway) fn new(socket: SocketRef, session: &Arc<Session>) -> Self {
        Self {
            socket,
            encoder: session.mount.encoder.clone(),
            session: Arc::downgrade(session),
        }
    }
}

impl SocketSink for Sink {
    fn deliver(&self, entry: &Entry) -> Result<(), SinkError> {
        let Some(packet) = self.encoder.packet(&self.socket, entry) else {
            return Ok(());
        };
        match self.socket.emit_encoded(&packet) {
            Ok(()) => Ok(()),
            Err(SocketError::InternalChannelFull) => Err(SinkError::Full),
            Err(SocketError::Closed) => Err(SinkError::Closed),
        }
    }

    fn slow_consumer(&self) {
        if let Some(session) = self.session.upgrade() {
            session.slow_consumer(self.socket.clone());
        }
    }
}
