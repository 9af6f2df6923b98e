//! Sending to a socket whose send buffer may be full, without dropping.
//!
//! A socket's answers (acks, the plugin's emits, error acks) leave in order
//! from its session's queue, so the queue can simply wait for the client to
//! read: later answers of the same socket wait behind it, other sockets are
//! not involved, and the socket's own backlog stays bounded by
//! `max_queued_events`. A client that reads nothing for [`PATIENCE`] is gone
//! as far as the gateway is concerned: it is a slow consumer.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use socketioxide::{SendError, SocketError};

use super::SocketRef;

/// How long a packet waits for room in its socket's send buffer.
pub(super) const PATIENCE: Duration = Duration::from_secs(10);

/// `send` until it is not refused for a full buffer, waiting for room in
/// between, for [`PATIENCE`] at most (then the refusal is returned). A
/// packet that had to wait is counted in `waits`.
pub(super) async fn send_when_writable(
    socket: &SocketRef,
    waits: &Counter,
    mut send: impl FnMut() -> Result<(), SendError>,
) -> Result<(), SendError> {
    // The common case, a buffer with room, reads no clock.
    match send() {
        Err(SendError::Socket(SocketError::InternalChannelFull)) => waits.inc(),
        sent => return sent,
    };
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        // Room, then another try (another sender may have taken it).
        match tokio::time::timeout_at(deadline, socket.writable()).await {
            Ok(true) => {}
            Ok(false) => return Err(SendError::Socket(SocketError::Closed)),
            Err(_) => return Err(SendError::Socket(SocketError::InternalChannelFull)),
        }
        match send() {
            Err(SendError::Socket(SocketError::InternalChannelFull)) => {}
            sent => return sent,
        }
    }
}
