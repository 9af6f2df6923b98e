//! Where disconnected sessions wait to be restored: in this node's memory
//! (one node), or in a shared store (`cluster` keeps them in Redis: any node
//! can restore them, even after the node that saved them died). Each record lives a little longer than the
//! recovery window, so the node that saved it can still find it when the
//! window ends and run the plugin's deferred `on-disconnect`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::error::Result;

/// What a disconnected socket needs to be restored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedSession {
    /// The socket id it gets back.
    pub sid: String,
    /// The token subject it had: a restoring client must present the same.
    pub subject: Option<String>,
    /// Channels it was in, each with the id (`ms-seq`) it had everything up to.
    pub rooms: Vec<(String, String)>,
    /// When it was saved (ms since the epoch): the disconnect, for a
    /// session that is not live.
    pub saved_at_ms: u64,
    /// The node serving it.
    pub node: String,
    /// Still connected when saved (kept so that a client whose node was
    /// killed can be restored elsewhere: the node never saw the disconnect).
    pub live: bool,
    /// The plugin's connection state at the disconnect (key, base64 value),
    /// so a session restored on another node gets it back. A live record
    /// has none: a node killed with SIGKILL takes its sockets' state along.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub state: Vec<(String, String)>,
}

/// A session store (memory or Redis, picked at wiring).
pub trait SessionStore: Send + Sync {
    /// Keep `session` under `key` for `ttl`.
    fn save<'a>(
        &'a self,
        key: &'a str,
        session: &'a SavedSession,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<()>>;
    /// Read without claiming.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<SavedSession>>>;
    /// Read and delete in one step.
    fn take<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<SavedSession>>>;
    /// Claim: replace with `with` (kept `ttl`) and return what was there, in
    /// one step, so one caller gets it; a node that dies while restoring
    /// leaves a live record another node can restore.
    fn swap<'a>(
        &'a self,
        key: &'a str,
        with: &'a SavedSession,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<SavedSession>>>;
    /// Whether `node` still heartbeats (always, for one node in memory).
    fn alive<'a>(&'a self, node: &'a str) -> BoxFuture<'a, bool>;
    /// Whether records outlive this process (other nodes read them): live
    /// records must then be refreshed before their TTL runs out.
    fn shared(&self) -> bool {
        true
    }
}

/// One node's sessions.
#[derive(Default)]
pub struct MemorySessions {
    map: Mutex<HashMap<String, (Instant, SavedSession)>>,
}

impl MemorySessions {
    fn live(&self, key: &str, remove: bool) -> Option<SavedSession> {
        let mut map = self.map.lock().unwrap();
        let now = Instant::now();
        map.retain(|_, (until, _)| *until > now);
        if remove {
            map.remove(key).map(|(_, s)| s)
        } else {
            map.get(key).map(|(_, s)| s.clone())
        }
    }
}

impl SessionStore for MemorySessions {
    fn shared(&self) -> bool {
        false
    }

    fn save<'a>(
        &'a self,
        key: &'a str,
        session: &'a SavedSession,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<()>> {
        let until = Instant::now() + ttl;
        self.map
            .lock()
            .unwrap()
            .insert(key.to_owned(), (until, session.clone()));
        Box::pin(async { Ok(()) })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<SavedSession>>> {
        let found = self.live(key, false);
        Box::pin(async move { Ok(found) })
    }

    fn take<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<SavedSession>>> {
        let found = self.live(key, true);
        Box::pin(async move { Ok(found) })
    }

    fn alive<'a>(&'a self, _node: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(async { true })
    }

    fn swap<'a>(
        &'a self,
        key: &'a str,
        with: &'a SavedSession,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<SavedSession>>> {
        let old = self.live(key, true);
        let until = Instant::now() + ttl;
        self.map
            .lock()
            .unwrap()
            .insert(key.to_owned(), (until, with.clone()));
        Box::pin(async move { Ok(old) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_session_is_claimed_once_and_expires() {
        let store = MemorySessions::default();
        let s = SavedSession {
            sid: "abc".into(),
            subject: Some("alice".into()),
            rooms: vec![("r".into(), "1-0".into())],
            saved_at_ms: 1,
            node: "n".into(),
            live: false,
            state: vec![],
        };
        store.save("k", &s, Duration::from_secs(60)).await.unwrap();
        assert_eq!(store.get("k").await.unwrap().as_ref(), Some(&s));
        assert_eq!(store.take("k").await.unwrap(), Some(s.clone()));
        assert_eq!(store.take("k").await.unwrap(), None);
        store.save("k", &s, Duration::ZERO).await.unwrap();
        assert_eq!(store.get("k").await.unwrap(), None);
    }
}
