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

use tracing::Instrument;

use super::{AckSender, Adapter, SocketRef};
use socketioxide::handler::Value;
use socketioxide::handler::{FromMessage, FromMessageParts};
use socketioxide::socket::Socket;

use super::actions::{self, Target};
use super::mount::Mount;
use super::throttle::{SocketThrottle, Verdict};
use super::wire;
use super::writable;
use crate::plugins::{Action, Connection, ConnectionGuard, PluginVersion, Rejection};

pub(super) enum Work {
    /// Actions returned by `on-connect`, applied before any event.
    Connected(Vec<Action>),
    Event {
        event: crate::plugins::Event,
        ack: Option<AckSender>,
    },
    /// A packet that could not be read: answered with an error ack.
    Malformed {
        reason: wire::EventError,
        ack: Option<AckSender>,
    },
    /// An event over the socket's rate limit, answered with `rate_limited`.
    Limited(AckSender),
    /// Tell the client why, then disconnect it. Queued, so acks queued
    /// before it are sent first.
    Kick(String),
    Disconnected(String),
    /// A timer the plugin set for this connection fired.
    Timer(crate::plugins::TimerEvent),
}

/// Queued events of one socket handed to its plugin in one call, at most.
const MAX_BATCH: usize = 32;

type Batch = Vec<(crate::plugins::Event, Option<AckSender>)>;

pub(super) struct Session {
    /// Shared with the plugin's connection records (`connections.info`).
    pub(super) conn: Arc<Connection>,
    pub(super) mount: Arc<Mount>,
    /// Counts the connection on its slot and remembers its canary assignment.
    guard: ConnectionGuard,
    queue: Mutex<VecDeque<Work>>,
    draining: AtomicBool,
    throttle: SocketThrottle,
    /// Set once a kick is queued: later events are dropped.
    kicked: AtomicBool,
    /// The private session id sent in the CONNECT reply (recovery on).
    pub(super) pid: std::sync::OnceLock<String>,
    /// Set while a restored socket is owed what it missed.
    pub(super) restoring: AtomicBool,
    /// When the socket is disconnected because its token expires.
    expiry: Mutex<Option<super::expiry::Deadline>>,
    /// Every log line about this socket (plugin logs included) carries its id
    /// and namespace.
    span: tracing::Span,
}

impl Session {
    pub(super) fn new(conn: Arc<Connection>, mount: Arc<Mount>, guard: ConnectionGuard) -> Self {
        let throttle = SocketThrottle::new(mount.limits);
        let span = tracing::info_span!("socket", id = %conn.id, namespace = %conn.namespace);
        Self {
            span,
            conn,
            mount,
            guard,
            // Room for the `Connected` work only: an idle socket keeps what it has, and
            // the default first allocation (4 slots, ~400 bytes) is paid by every socket.
            queue: Mutex::new(VecDeque::with_capacity(1)),
            draining: AtomicBool::new(false),
            throttle,
            kicked: AtomicBool::new(false),
            pid: std::sync::OnceLock::new(),
            restoring: AtomicBool::new(false),
            expiry: Mutex::new(None),
        }
    }

    /// Disconnect the socket with `token_expired` at `at` (seconds since the epoch).
    pub(super) fn expire_at(self: &Arc<Self>, at: u64, sid: socketioxide::socket::Sid) {
        let deadline = self.mount.expiries.add(at, self, sid);
        *self.expiry.lock().unwrap() = Some(deadline);
    }

    /// Its deadline came: nothing left to cancel.
    pub(super) fn expired(&self) {
        self.expiry.lock().unwrap().take();
    }

    /// The socket is gone: forget its deadline.
    pub(super) fn cancel_expiry(&self) {
        if let Some(deadline) = self.expiry.lock().unwrap().take() {
            self.mount.expiries.cancel(deadline);
        }
    }

    /// Queue a disconnect with `reason`, once.
    pub(super) fn kick(&self, reason: &str) {
        if !self.kicked.swap(true, Ordering::AcqRel) {
            self.push(Work::Kick(reason.to_owned()));
        }
    }

    /// The socket's send buffer stayed full (it fell too far behind its
    /// channels, or an answer found no room in time). Tell the client `slow_consumer` as soon as the buffer has room (it may
    /// never), then close the transport: the client reconnects by itself and
    /// recovers what it missed.
    pub(super) fn slow_consumer(self: &Arc<Self>, socket: SocketRef) {
        if self.kicked.swap(true, Ordering::AcqRel) {
            return;
        }
        let grace = self.mount.limits.disconnect_grace;
        let waits = self.mount.stats.send_waits.clone();
        tokio::spawn(async move {
            let reason = serde_json::json!({ "reason": actions::SLOW_CONSUMER });
            let emit = || socket.emit(actions::DISCONNECT_EVENT, &reason);
            let _ = writable::send_when_writable(&socket, &waits, emit).await;
            if !grace.is_zero() {
                tokio::time::sleep(grace).await;
            }
            socket.close_transport().await;
        });
    }

    /// Log what the throttle refused, when it refused anything.
    pub(super) fn report_throttle(&self) {
        let rejected = self.throttle.rejected.load(Ordering::Relaxed);
        if rejected > 0 {
            let dropped = self.throttle.dropped.load(Ordering::Relaxed);
            tracing::info!(plugin = %self.mount.slot.name, socket = %self.conn.id, rejected, dropped, "socket was rate limited");
        }
    }

    /// The version this connection's calls go to now (sticky canary assignment).
    pub(super) fn version(&self) -> Arc<PluginVersion> {
        self.mount.slot.version_for(self.guard.on_canary())
    }

    pub(super) fn push(&self, work: Work) {
        self.queue.lock().unwrap().push_back(work);
    }

    /// Process queued work in order, unless another task already is.
    pub(super) async fn drain(&self, socket: &SocketRef) {
        let _busy = self.mount.in_flight.enter();
        self.drain_queue(socket, false)
            .instrument(self.span.clone())
            .await
    }

    /// The same for a client event: first let the packets read with it be
    /// queued too (the socket's reader goes on parsing while this waits one
    /// turn), so a client with several events in flight has them handled in
    /// one plugin call.
    pub(super) async fn drain_events(&self, socket: &SocketRef) {
        let _busy = self.mount.in_flight.enter();
        self.drain_queue(socket, true)
            .instrument(self.span.clone())
            .await
    }

    async fn drain_queue(&self, socket: &SocketRef, gather: bool) {
        if self.draining.swap(true, Ordering::Acquire) {
            return;
        }
        if gather {
            tokio::task::yield_now().await;
        }
        loop {
            loop {
                let next = self.queue.lock().unwrap().pop_front();
                // Boxed: the plugin call's future is large, and socketioxide
                // moves every event handler's future when it spawns it.
                match next {
                    Some(work) => Box::pin(self.process(socket, work)).await,
                    None => break,
                }
            }
            self.draining.store(false, Ordering::Release);
            // Work pushed between the last pop and the release would otherwise wait.
            if self.queue.lock().unwrap().is_empty() || self.draining.swap(true, Ordering::Acquire)
            {
                return;
            }
        }
    }

    fn target<'a>(&'a self, socket: &'a SocketRef) -> Target<'a> {
        Target {
            socket,
            mount: &self.mount,
            subject: self
                .conn
                .principal
                .as_ref()
                .and_then(|p| p.subject.as_deref()),
        }
    }

    /// `batch` plus the events queued right behind it, up to [`MAX_BATCH`]:
    /// a client with several events in flight has them handled in one plugin
    /// call (`on-events`), which costs little more than one.
    fn more_events(&self, version: &PluginVersion, mut batch: Batch) -> Batch {
        if !version.takes_event_lists() {
            return batch;
        }
        let mut queue = self.queue.lock().unwrap();
        while batch.len() < MAX_BATCH {
            match queue.pop_front() {
                Some(Work::Event { event, ack }) => batch.push((event, ack)),
                Some(other) => {
                    queue.push_front(other);
                    break;
                }
                None => break,
            }
        }
        batch
    }

    /// Events of this socket in one call, then each answer in order: its
    /// actions, then its ack. A failed call fails every event of it.
    async fn process_events(&self, socket: &SocketRef, version: &PluginVersion, batch: Batch) {
        let target = self.target(socket);
        let (events, acks): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        match version.on_events(&self.conn, events).await {
            Ok(answers) => {
                for (answer, ack) in answers.into_iter().zip(acks) {
                    match answer {
                        Ok(list) => actions::apply(&target, list, ack).await,
                        Err(rejection) => actions::reject(&target, ack, &rejection).await,
                    }
                }
            }
            // The runtime has logged the failure with plugin, version and kind.
            Err(e) => {
                let rejection = e.to_rejection();
                for ack in acks {
                    actions::reject(&target, ack, &rejection).await;
                }
            }
        }
    }

    async fn process(&self, socket: &SocketRef, work: Work) {
        let target = self.target(socket);
        match work {
            Work::Connected(list) => actions::apply(&target, list, None).await,
            Work::Malformed { reason, ack } => {
                let why = Rejection::new("bad_request", reason.to_string());
                actions::reject(&target, ack, &why).await
            }
            Work::Limited(ack) => {
                let why = Rejection::new(
                    "rate_limited",
                    "too many events: slow down (this event was not delivered)",
                );
                actions::reject(&target, Some(ack), &why).await
            }
            Work::Kick(reason) => {
                actions::apply(&target, vec![Action::Disconnect(reason)], None).await
            }
            Work::Event { event, ack } => {
                let version = self.version();
                let batch = self.more_events(&version, vec![(event, ack)]);
                self.process_events(socket, &version, batch).await
            }
            Work::Timer(timer) => match self.version().on_timer(&timer).await {
                Ok(Some(list)) => actions::apply(&target, list, None).await,
                Ok(None) => {}
                Err(e) => tracing::debug!(socket = %self.conn.id, "on-timer failed: {e}"),
            },
            Work::Disconnected(reason) => {
                let version = self.version();
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

impl FromMessage<Adapter> for Enqueued {
    type Error = NoSession;

    fn from_message(
        s: Arc<Socket<Adapter>>,
        mut v: Value,
        ack_id: Option<i64>,
    ) -> Result<Self, NoSession> {
        let session = s.extensions.get::<Arc<Session>>().ok_or(NoSession)?;
        // Checked here, in arrival order and before anything is queued, so a
        // flood costs a bucket check per packet and never reaches the plugin.
        if session.kicked.load(Ordering::Acquire) {
            return Ok(Enqueued(session));
        }
        match session.throttle.check() {
            Verdict::Allow => {
                session.mount.stats.events_in.inc();
            }
            verdict => {
                session.mount.stats.rate_limited.inc();
                match AckSender::from_message_parts(&s, &mut v, &ack_id) {
                    Ok(ack) if ack_id.is_some() => session.push(Work::Limited(ack)),
                    _ => {
                        session.throttle.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if verdict == Verdict::Flood {
                    session.kick("rate_limited");
                }
                return Ok(Enqueued(session));
            }
        }
        let ack = AckSender::from_message_parts(&s, &mut v, &ack_id).ok();
        if session.queue.lock().unwrap().len() >= session.mount.limits.max_queued {
            // Answered now, not queued: the backlog stays bounded however
            // slow the plugin is.
            session.mount.metrics.limit("socket_queue").inc();
            let why = Rejection::new(
                "overloaded",
                "too many events waiting for the plugin: slow down (this event was not delivered)",
            );
            actions::reject_now(&session.mount, &SocketRef::from(s.clone()), ack, &why);
            return Ok(Enqueued(session));
        }
        let wants_ack = ack_id.is_some();
        // socketioxide hands every event over unread (`on_fallback_unread`):
        // this is the one parse of the packet, and where a malformed one is refused.
        let read = match v {
            Value::Str(text, bins) => {
                let binary = bins
                    .map(|b| b.into_iter().map(|b| b.to_vec()).collect())
                    .unwrap_or_default();
                wire::read_event(text, binary, wants_ack)
            }
            Value::Bytes(_) => Err(wire::EventError::Binary),
        };
        let work = match read {
            Ok(event) => Work::Event { event, ack },
            Err(reason) => {
                session.mount.metrics.limit("malformed_event").inc();
                Work::Malformed { reason, ack }
            }
        };
        session.push(work);
        Ok(Enqueued(session))
    }
}
