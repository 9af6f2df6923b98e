//! Socket.IO connection state recovery, as the official client (v4.6+)
//! expects it.
//!
//! - Every socket gets a private session id (`pid`) in its CONNECT reply, and
//!   every channel event it receives carries the event's id as its last
//!   argument (the offset the client keeps).
//! - A socket's session (id, token subject, channels and how far it got in
//!   each) is saved while it is connected (when it connects and when its
//!   channels change), marked live: a node killed with SIGKILL never sees
//!   its sockets go, and another node restores them once the dead node's
//!   heartbeat has expired. When a socket goes away for a reason the client
//!   recovers from (transport closed or failed, ping timeout, server shutting
//!   down, `slow_consumer`), its session is saved as disconnected, for the
//!   recovery window.
//! - A client reconnecting within the window sends `{pid, offset}`; the
//!   [`RestoreHook`] claims the session before socketioxide creates the
//!   socket, so the socket gets its old id back. The handshake still
//!   verifies the token (same subject required); the socket then rejoins its
//!   channels and gets every event it missed, in order, before new ones.
//! - A client that cannot be restored (window over, history trimmed, offset
//!   unknown) gets a fresh session: `socket.recovered === false`.
//!
//! Plugins do not see a recovered connection as new: `on-connect` is not
//! called for it, and `on-disconnect` of a recoverable disconnect is deferred
//! until the window ends without a recovery.

mod error;
mod sink;
mod store;

pub use error::RecoveryError;
pub(super) use sink::{Encoder, Sink};
pub use store::{MemorySessions, SavedSession, SessionStore};

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use socketioxide::handler::Value;
use socketioxide::recovery::{RestoreHook, RestoreRequest};
use socketioxide::socket::{DisconnectReason, Sid};

use crate::channels::{EventId, Hub, Rooms, now_ms};

/// How long a saved session outlives the window, so the node that saved it
/// still finds it when its window timer fires.
const GRACE: Duration = Duration::from_secs(30);
/// A claimed session the handshake never picked up is forgotten after this.
const CLAIM_TTL: Duration = Duration::from_secs(30);
/// How long a live session's record is kept without a refresh; every node
/// refreshes its live records twice per period.
const LIVE_TTL: Duration = Duration::from_secs(600);
/// A live record in this node's memory: replaced at the disconnect, so this
/// only bounds what a socket that never disconnects cleanly leaves behind.
const LOCAL_LIVE_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long a restore waits for this node to hold the channels' history.
const READY_WAIT: Duration = Duration::from_secs(3);

/// A session claimed by the hook, waiting for its socket's handshake.
pub struct Claimed {
    pub pid: String,
    pub subject: Option<String>,
    pub rooms: Rooms,
    /// The client's offset (`None`: it had received no channel event yet).
    pub offset: Option<EventId>,
    /// The plugin's connection state saved at the disconnect.
    pub state: Vec<(String, Vec<u8>)>,
    at: Instant,
}

pub struct Recovery {
    window: Duration,
    /// How long a restore waits for a live session's node to notice the
    /// disconnect (the client often reconnects first) or to count as dead.
    settle: Duration,
    node: String,
    /// This node's live sessions (refreshed in the store).
    live: Mutex<HashMap<String, SavedSession>>,
    store: Arc<dyn SessionStore>,
    hub: Arc<Hub>,
    /// Namespace path -> plugin name (whose channels the sockets use).
    plugins: RwLock<HashMap<String, String>>,
    claimed: Mutex<HashMap<Sid, Claimed>>,
}

impl Recovery {
    /// `window` zero disables recovery (no pid, no offsets).
    pub fn new(
        window: Duration,
        settle: Duration,
        node: String,
        store: Arc<dyn SessionStore>,
        hub: Arc<Hub>,
    ) -> Arc<Self> {
        Arc::new(Self {
            window,
            settle,
            node,
            live: Mutex::default(),
            store,
            hub,
            plugins: RwLock::default(),
            claimed: Mutex::default(),
        })
    }

    pub fn enabled(&self) -> bool {
        !self.window.is_zero()
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    /// Sockets of namespace `ns` use the channels of `plugin`.
    pub fn register(&self, ns: &str, plugin: &str) {
        self.plugins
            .write()
            .unwrap()
            .insert(ns.to_owned(), plugin.to_owned());
    }

    /// The hook socketioxide calls before it creates a connecting socket.
    pub fn hook(self: &Arc<Self>) -> RestoreHook {
        let this = self.clone();
        RestoreHook::new(move |req: RestoreRequest<'_>| {
            let this = this.clone();
            let ns = req.ns.to_owned();
            let asked = req.auth.and_then(read_resume);
            Box::pin(async move { this.claim(&ns, asked?).await })
        })
    }

    async fn claim(&self, ns: &str, (pid, offset): (String, Option<String>)) -> Option<Sid> {
        if !self.enabled() {
            return None;
        }
        let plugin = self.plugins.read().unwrap().get(ns).cloned()?;
        let key = store_key(ns, &pid);
        let saved = self.settled(&key).await?;
        let offset = match offset {
            // Not one of ours (a direct emit whose last argument was a string):
            // what the client has is unknown, so it is not restored.
            Some(o) => Some(o.parse::<EventId>().ok()?),
            None => None,
        };
        let rooms = parse_rooms(&saved.rooms)?;
        if !saved.live
            && now_ms().saturating_sub(saved.saved_at_ms) > self.window.as_millis() as u64
        {
            return None;
        }
        // Left in place when history cannot serve it: the saving node's
        // window timer then runs the plugin's `on-disconnect`.
        let space = self.hub.space(&plugin);
        space.wait_ready(READY_WAIT).await;
        space.can_restore(&rooms, offset).ok()?;
        let sid: Sid = saved.sid.parse().ok()?;
        // Claimed as live on this node: if it dies mid-handshake, another
        // node restores the session once this one's heartbeat is gone.
        let mine = self.record(sid, saved.subject.as_deref(), &rooms, true);
        let before = self.store.swap(&key, &mine, LIVE_TTL).await.ok()??;
        if !self.restorable(&before).await {
            // Someone else claimed it meanwhile: give it back.
            let _ = self.store.save(&key, &before, LIVE_TTL).await;
            return None;
        }
        let mut claimed = self.claimed.lock().unwrap();
        claimed.retain(|_, c| c.at.elapsed() < CLAIM_TTL);
        claimed.insert(
            sid,
            Claimed {
                pid,
                subject: saved.subject,
                rooms,
                offset,
                state: decode_state(&before.state),
                at: Instant::now(),
            },
        );
        Some(sid)
    }

    /// Disconnected, or live on a node that is dead.
    async fn restorable(&self, saved: &SavedSession) -> bool {
        !saved.live || (saved.node != self.node && !self.store.alive(&saved.node).await)
    }

    /// The session under `key` once it is restorable: disconnected, or live
    /// on a node that is dead. A live one on a node that is up is waited for
    /// (that node has not seen the disconnect yet), up to `settle`.
    async fn settled(&self, key: &str) -> Option<SavedSession> {
        let deadline = Instant::now() + self.settle;
        loop {
            let saved = self.store.get(key).await.ok()??;
            if self.restorable(&saved).await {
                return Some(saved);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The session the hook claimed for socket `sid`, if any.
    pub fn take_claimed(&self, sid: Sid) -> Option<Claimed> {
        self.claimed.lock().unwrap().remove(&sid)
    }

    fn record(&self, sid: Sid, subject: Option<&str>, rooms: &Rooms, live: bool) -> SavedSession {
        SavedSession {
            sid: sid.to_string(),
            subject: subject.map(str::to_owned),
            rooms: rooms
                .iter()
                .map(|(c, id)| (c.clone(), id.to_string()))
                .collect(),
            saved_at_ms: now_ms(),
            node: self.node.clone(),
            live,
            state: Vec::new(),
        }
    }

    /// Record a connected socket's session (on connect and when its
    /// channels change), so it survives this node's death.
    pub async fn connected(
        &self,
        ns: &str,
        pid: &str,
        sid: Sid,
        subject: Option<&str>,
        rooms: &Rooms,
    ) {
        if !self.enabled() {
            return;
        }
        let key = store_key(ns, pid);
        let saved = self.record(sid, subject, rooms, true);
        // In this node's memory a record needs no refresh (and no second
        // copy for the refresher): it is kept as long as the socket is.
        let ttl = if self.store.shared() {
            self.live.lock().unwrap().insert(key.clone(), saved.clone());
            LIVE_TTL
        } else {
            LOCAL_LIVE_TTL
        };
        if let Err(e) = self.store.save(&key, &saved, ttl).await {
            tracing::debug!(socket = %sid, "live session not saved: {e}");
        }
    }

    /// Save a disconnected socket's session; `false` if it cannot be
    /// restored (recovery off, or the store failed).
    pub async fn disconnected(
        &self,
        ns: &str,
        pid: &str,
        sid: Sid,
        subject: Option<&str>,
        rooms: &Rooms,
        state: &[(String, Vec<u8>)],
    ) -> bool {
        if !self.enabled() {
            return false;
        }
        let key = store_key(ns, pid);
        self.live.lock().unwrap().remove(&key);
        let mut saved = self.record(sid, subject, rooms, false);
        saved.state = encode_state(state);
        match self.store.save(&key, &saved, self.window + GRACE).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(socket = %sid, "session not saved, it cannot be recovered: {e}");
                false
            }
        }
    }

    /// The socket is gone for good: drop its session.
    pub async fn forget(&self, ns: &str, pid: &str) {
        let key = store_key(ns, pid);
        self.live.lock().unwrap().remove(&key);
        if self.enabled() {
            let _ = self.store.take(&key).await;
        }
    }

    /// Keep this node's live sessions in the store while the node lives.
    pub fn spawn_refresher(self: &Arc<Self>) {
        let this = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(LIVE_TTL / 2);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(this) = this.upgrade() else { return };
                let live: Vec<_> = this.live.lock().unwrap().clone().into_iter().collect();
                for (key, saved) in live {
                    // Gone meanwhile: its disconnected record must stay.
                    if this.live.lock().unwrap().contains_key(&key) {
                        let _ = this.store.save(&key, &saved, LIVE_TTL).await;
                    }
                }
            }
        });
    }

    /// Once the window is over: `true` if the session was not recovered
    /// (it is removed now), so its disconnect is final.
    pub async fn expire(&self, ns: &str, pid: &str) -> bool {
        let key = store_key(ns, pid);
        match self.store.get(&key).await {
            // Restored (a live record again), or gone.
            Ok(Some(saved)) if saved.live => false,
            Ok(None) => false,
            Ok(Some(_)) => {
                let _ = self.store.take(&key).await;
                true
            }
            // A store error counts as final: the plugin hears of the
            // disconnect rather than never.
            Err(_) => true,
        }
    }
}

fn encode_state(state: &[(String, Vec<u8>)]) -> Vec<(String, String)> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    state
        .iter()
        .map(|(k, v)| (k.clone(), b64.encode(v)))
        .collect()
}

/// A value that is not base64 is dropped (the record came from Redis).
fn decode_state(state: &[(String, String)]) -> Vec<(String, Vec<u8>)> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    state
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), b64.decode(v).ok()?)))
        .collect()
}

/// A fresh private session id: 128 random bits.
pub fn new_pid() -> String {
    let mut bytes = [0u8; 16];
    let provider = rustls::crypto::ring::default_provider();
    if provider.secure_random.fill(&mut bytes).is_err() {
        // No randomness: a pid nobody can guess cannot be made, so make one
        // nobody will find (recovery then simply fails).
        return format!("x{}", Sid::new());
    }
    hex::encode(bytes)
}

/// Disconnect reasons a client recovers from (socket.io's list, plus
/// Portico's own `slow_consumer`, which closes the transport).
pub fn recoverable(reason: DisconnectReason) -> bool {
    matches!(
        reason,
        DisconnectReason::TransportClose
            | DisconnectReason::TransportError
            | DisconnectReason::HeartbeatTimeout
            | DisconnectReason::ClosingServer
            | DisconnectReason::MultipleHttpPollingError
    )
}

fn store_key(ns: &str, pid: &str) -> String {
    format!("{ns}:{pid}")
}

/// `{pid, offset}` from a CONNECT payload; `offset` is `None` unless a string.
fn read_resume(auth: &Value) -> Option<(String, Option<String>)> {
    let Value::Str(text, _) = auth else {
        return None;
    };
    #[derive(serde::Deserialize)]
    struct Resume {
        pid: Option<serde_json::Value>,
        offset: Option<serde_json::Value>,
    }
    let r: Resume = serde_json::from_str(text.as_str()).ok()?;
    let pid = match r.pid? {
        serde_json::Value::String(p) if !p.is_empty() && p.len() <= 64 => p,
        _ => return None,
    };
    let offset = match r.offset {
        Some(serde_json::Value::String(o)) => Some(o),
        _ => None,
    };
    Some((pid, offset))
}

fn parse_rooms(rooms: &[(String, String)]) -> Option<Rooms> {
    rooms
        .iter()
        .map(|(c, id)| Some((c.clone(), id.parse().ok()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(json: &str) -> Value {
        Value::Str(json.to_owned().into(), None)
    }

    #[test]
    fn the_resume_payload_needs_a_pid_and_keeps_only_string_offsets() {
        assert_eq!(
            read_resume(&auth(r#"{"pid":"p1","offset":"5-0","token":"t"}"#)),
            Some(("p1".into(), Some("5-0".into())))
        );
        // The client sends no offset before its first channel event.
        assert_eq!(
            read_resume(&auth(r#"{"pid":"p1"}"#)),
            Some(("p1".into(), None))
        );
        assert_eq!(read_resume(&auth(r#"{"token":"t"}"#)), None);
        assert_eq!(read_resume(&auth(r#"{"pid":3}"#)), None);
        assert_eq!(read_resume(&auth("not json")), None);
    }

    #[test]
    fn pids_are_unguessable_and_distinct() {
        let (a, b) = (new_pid(), new_pid());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }
}
