//! Socket.IO sockets as channel subscribers.
//!
//! A socket that joins a channel is registered in its plugin's [`Space`]
//! beside the SSE subscribers, so one publication reaches both transports in
//! the same id order, and the id travels with it as the packet's offset
//! (connection state recovery). The gateway supplies the [`SocketSink`]; this
//! module only decides what each socket gets.
//!
//! [`Space`]: super::Space

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::history::Entry;
use super::id::EventId;

/// Why a socket could not take a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkError {
    /// Its send buffer is full: a slow consumer.
    Full,
    /// It is gone.
    Closed,
}

/// Where a socket's channel events go (implemented by the gateway).
pub trait SocketSink: Send + Sync {
    /// Queue one event for the client, with its id as the offset.
    fn deliver(&self, entry: &Entry) -> Result<(), SinkError>;
    /// The socket was dropped from every channel because its buffer was
    /// full: disconnect it with reason `slow_consumer`.
    fn slow_consumer(&self);
}

/// A socket registered in a space.
pub(super) struct SocketSub {
    pub(super) sink: Arc<dyn SocketSink>,
    /// Joined channels, each with the id after which its events are due
    /// (the space's position when it joined, or the offset it resumed from).
    pub(super) channels: HashMap<Arc<str>, EventId>,
    /// While the socket catches up (restored, or its buffer was full): the
    /// events still to send, in order (backlog first, then live ones that
    /// arrived meanwhile).
    pub(super) replay: Option<Catchup>,
    /// Dropped as a slow consumer, or its transport closed: gets nothing
    /// more, but its channels are kept for the session it will be restored
    /// from.
    pub(super) stalled: bool,
}

/// What became of an event offered to a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Offer {
    /// Sent, or queued behind what it is still owed.
    Taken,
    /// Its buffer was full: queued, and the socket now catches up.
    Lagging,
    /// Its buffer was full and its queue too: a slow consumer.
    Slow,
    /// Its transport is gone.
    Closed,
}

impl SocketSub {
    /// The id after which the socket is due `channel`'s events; `None` if it
    /// gets none (it is not in the channel, or it was dropped).
    pub(super) fn due_after(&self, channel: &str) -> Option<EventId> {
        if self.stalled {
            return None;
        }
        self.channels.get(channel).copied()
    }

    /// Send `entry`, or queue it behind what the socket is still owed, so it
    /// gets its events in order whatever its buffer does.
    pub(super) fn offer(&mut self, entry: &Arc<Entry>, lag_bytes: usize) -> Offer {
        if let Some(queue) = &mut self.replay {
            return if queue.push(entry) {
                Offer::Taken
            } else {
                Offer::Slow
            };
        }
        match self.sink.deliver(entry) {
            Ok(()) => Offer::Taken,
            Err(SinkError::Full) => {
                let mut queue = Catchup::new(Vec::new(), lag_bytes);
                if queue.push(entry) {
                    self.replay = Some(queue);
                    Offer::Lagging
                } else {
                    Offer::Slow
                }
            }
            Err(SinkError::Closed) => Offer::Closed,
        }
    }
}

/// The rooms a socket was in, each with the id it had everything up to.
pub type Rooms = Vec<(String, EventId)>;

/// A restored socket cannot be served from history (it was trimmed, or it
/// predates what this node knows).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("history no longer holds what the socket missed in {0:?}")]
pub struct Gap(pub String);

/// Past this many queued events, a catching-up socket counts as a slow consumer.
pub(super) const REPLAY_LIMIT: usize = 20_000;

/// What a socket is owed while it catches up, bounded in bytes.
pub(super) struct Catchup {
    queue: VecDeque<Arc<Entry>>,
    bytes: usize,
    /// Bytes it may hold: its backlog from history, plus the lag allowed.
    allowance: usize,
}

impl Catchup {
    pub(super) fn new(backlog: Vec<Arc<Entry>>, lag_bytes: usize) -> Self {
        let bytes = backlog.iter().map(|e| e.weight()).sum();
        Self {
            queue: backlog.into(),
            bytes,
            allowance: lag_bytes.saturating_add(bytes),
        }
    }

    /// Queue `entry` behind the rest; `false` if it does not fit (the socket
    /// is a slow consumer).
    pub(super) fn push(&mut self, entry: &Arc<Entry>) -> bool {
        let bytes = self.bytes + entry.weight();
        if bytes > self.allowance || self.queue.len() >= REPLAY_LIMIT {
            return false;
        }
        self.bytes = bytes;
        self.queue.push_back(entry.clone());
        true
    }

    pub(super) fn front(&self) -> Option<&Arc<Entry>> {
        self.queue.front()
    }

    pub(super) fn pop(&mut self) {
        if let Some(e) = self.queue.pop_front() {
            self.bytes -= e.weight();
        }
    }
}

/// Where a catching-up socket stands after a round of sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Progress {
    /// Everything was sent (or the socket is gone): it is live again.
    Done,
    /// Its buffer filled up again: more later.
    Pending,
}
