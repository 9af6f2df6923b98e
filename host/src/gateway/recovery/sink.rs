//! A socket as a channel subscriber: channel events are emitted to it with
//! their id appended as the last argument (the offset the official client
//! keeps for recovery).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use serde_json::value::RawValue;
use socketioxide::SocketError;
use socketioxide::socket::EncodedPacket;

use super::super::SocketRef;
use super::super::session::Session;
use crate::channels::{Entry, SinkError, SocketSink};

/// A namespace's channel events as packets, each encoded once: the first
/// socket a publication goes to encodes it and the entry keeps the packet
/// for every other socket, live, catching up or restored, in whatever order
/// the hub visits them. Encoding per socket cost more than sending (fan-out
/// to 1,000 sockets ran at a quarter of a room broadcast's rate), and a
/// cache of only the last packet missed whenever sockets caught up one
/// after another, each through hundreds of entries.
pub(in crate::gateway) struct Encoder {
    /// Append offsets (recovery on).
    offsets: bool,
    /// Tells this encoder's packets from another namespace's.
    key: u64,
}

impl Encoder {
    pub(in crate::gateway) fn new(offsets: bool) -> Arc<Self> {
        static KEYS: AtomicU64 = AtomicU64::new(0);
        Arc::new(Self {
            offsets,
            key: KEYS.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// `entry` as a packet of `socket`'s namespace; `None` if it cannot be
    /// encoded (published data is checked to be JSON, so it always can).
    fn packet(&self, socket: &SocketRef, entry: &Entry) -> Option<EncodedPacket> {
        entry.encoded.get_or_make(self.key, || {
            let data = serde_json::from_str::<&RawValue>(&entry.data).ok()?;
            let encoded = if self.offsets {
                socket.encode_event(&entry.event, &(data, entry.id.to_string()))
            } else {
                socket.encode_event(&entry.event, data)
            };
            encoded
                .inspect_err(
                    |e| tracing::debug!(socket = %socket.id, "channel event not encoded: {e}"),
                )
                .ok()
        })
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
