//! Per-socket state and the ordered work queue.
//!
//! socketioxide spawns a task per incoming event, so two events from one
//! client could reach the plugin out of order. Extractors, however, run
//! synchronously in the order packets arrive: the [`Enqueued`] extractor
//! pushes the event onto the socket's queue there, and whichever handler task
//! finds the queue idle drains it. No task lives while a socket is idle.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use socketioxide::adapter::LocalAdapter;
use socketioxide::extract::{AckSender, SocketRef};
use socketioxide::handler::Value;
use socketioxide::handler::{FromMessage, FromMessageParts};
use socketioxide::socket::Socket;

use super::actions::{self, Target};
use super::mount::Mount;
use super::wire;
use crate::plugins::{Action, Connection, Rejection};

pub(super) enum Work {
    /// Actions returned by `on-connect`, applied before any event.
    Connected(Vec<Action>),
    Event {
        event: crate::plugins::Event,
        ack: Option<AckSender>,
    },
    /// A packet that could not be read: answered with an error ack.
    Malformed {
        reason: String,
        ack: Option<AckSender>,
    },
    Disconnected(String),
}

pub(super) struct Session {
    pub(super) conn: Connection,
    pub(super) mount: Arc<Mount>,
    queue: Mutex<VecDeque<Work>>,
    draining: AtomicBool,
}

impl Session {
    pub(super) fn new(conn: Connection, mount: Arc<Mount>) -> Self {
        Self {
            conn,
            mount,
            queue: Mutex::default(),
            draining: AtomicBool::new(false),
        }
    }

    pub(super) fn push(&self, work: Work) {
        self.queue.lock().unwrap().push_back(work);
    }

    /// Process queued work in order, unless another task already is.
    pub(super) async fn drain(&self, socket: &SocketRef) {
        loop {
            if self.draining.swap(true, Ordering::Acquire) {
                return;
            }
            loop {
                let next = self.queue.lock().unwrap().pop_front();
                match next {
                    // Boxed: the plugin call's future is large, and socketioxide
                    // moves every event handler's future when it spawns it.
                    Some(work) => Box::pin(self.process(socket, work)).await,
                    None => break,
                }
            }
            self.draining.store(false, Ordering::Release);
            // Work pushed between the last pop and the release would otherwise wait.
            if self.queue.lock().unwrap().is_empty() {
                return;
            }
        }
    }

    async fn process(&self, socket: &SocketRef, work: Work) {
        let target = Target {
            socket,
            mount: &self.mount,
        };
        match work {
            Work::Connected(list) => actions::apply(&target, list, None).await,
            Work::Malformed { reason, ack } => {
                actions::reject(ack, &Rejection::new("bad_request", reason))
            }
            Work::Event { event, ack } => {
                let name = event.name.clone();
                let version = self.mount.slot.active();
                match version.on_event(&self.conn, event).await {
                    Ok(Ok(list)) => actions::apply(&target, list, ack).await,
                    Ok(Err(rejection)) => actions::reject(ack, &rejection),
                    Err(e) => {
                        tracing::debug!(socket = %self.conn.id, event = %name, "event failed: {e}");
                        actions::reject(ack, &e.to_rejection());
                    }
                }
            }
            Work::Disconnected(reason) => {
                let version = self.mount.slot.active();
                match version.on_disconnect(&self.conn, &reason).await {
                    Ok(list) => actions::apply(&target, list, None).await,
                    Err(e) => tracing::debug!(socket = %self.conn.id, "on-disconnect failed: {e}"),
                }
            }
        }
    }
}

/// Extractor that enqueues the incoming event in arrival order and hands the
/// handler the session to drain.
pub(super) struct Enqueued(pub(super) Arc<Session>);

#[derive(Debug, thiserror::Error)]
#[error("socket has no session")]
pub(super) struct NoSession;

impl FromMessage<LocalAdapter> for Enqueued {
    type Error = NoSession;

    fn from_message(
        s: Arc<Socket<LocalAdapter>>,
        mut v: Value,
        ack_id: Option<i64>,
    ) -> Result<Self, NoSession> {
        let session = s.extensions.get::<Arc<Session>>().ok_or(NoSession)?;
        let ack = AckSender::from_message_parts(&s, &mut v, &ack_id).ok();
        let wants_ack = ack_id.is_some();
        let work = match v {
            Value::Str(text, bins) => {
                let binary = bins
                    .map(|b| b.into_iter().map(|b| b.to_vec()).collect())
                    .unwrap_or_default();
                match wire::read_event(text.as_str(), binary, wants_ack) {
                    Ok(event) => Work::Event { event, ack },
                    Err(reason) => Work::Malformed { reason, ack },
                }
            }
            Value::Bytes(_) => Work::Malformed {
                reason: "unexpected binary packet".into(),
                ack,
            },
        };
        session.push(work);
        Ok(Enqueued(session))
    }
}
