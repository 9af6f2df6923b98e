//! A socket as a channel subscriber: channel events are emitted to it with
//! their id appended as the last argument (the offset the official client
//! keeps for recovery).

use std::sync::{Arc, Weak};

use serde_json::value::RawValue;
use socketioxide::{SendError, SocketError};

use super::super::SocketRef;
use super::super::session::Session;
use crate::channels::{Entry, SinkError, SocketSink};

pub(in crate::gateway) struct Sink {
    socket: SocketRef,
    session: Weak<Session>,
    /// Append offsets (recovery on).
    offsets: bool,
}

impl Sink {
    pub(in crate::gateway) fn new(
        socket: SocketRef,
        session: &Arc<Session>,
        offsets: bool,
    ) -> Self {
        Self {
            socket,
            session: Arc::downgrade(session),
            offsets,
        }
    }
}

impl SocketSink for Sink {
    fn deliver(&self, entry: &Entry) -> Result<(), SinkError> {
        // Published data was checked to be JSON; if not, there is nothing to send.
        let Ok(data) = serde_json::from_str::<&RawValue>(&entry.data) else {
            return Ok(());
        };
        let sent = if self.offsets {
            self.socket
                .emit(&entry.event, &(data, entry.id.to_string()))
        } else {
            self.socket.emit(&entry.event, data)
        };
        match sent {
            Ok(()) => Ok(()),
            Err(SendError::Socket(SocketError::InternalChannelFull)) => Err(SinkError::Full),
            Err(SendError::Socket(SocketError::Closed)) => Err(SinkError::Closed),
            Err(e) => {
                tracing::debug!(socket = %self.socket.id, "channel event not sent: {e}");
                Ok(())
            }
        }
    }

    fn slow_consumer(&self) {
        if let Some(session) = self.session.upgrade() {
            session.slow_consumer(self.socket.clone());
        }
    }
}
