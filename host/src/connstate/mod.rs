//! Per-connection state: the connection records a plugin's calls refer to by
//! id, and small key/values the host keeps for each connection.
//!
//! A plugin's connections live in a [`ConnSpace`] shared by all its versions
//! (so a hot swap keeps them), keyed by socket id. The gateway registers a
//! connection at its handshake and ends it after `on-disconnect`; ending
//! returns what was kept ([`Saved`]), so a recovered reconnect under the same
//! socket id can get it back with [`ConnSpace::restore`].

mod error;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub use error::StateError;

use crate::plugins::Connection;

/// Bounds on one connection's state.
#[derive(Debug, Clone, Copy)]
pub struct StateLimits {
    pub max_key_bytes: usize,
    pub max_value_bytes: usize,
    pub max_keys: usize,
    /// Keys and values together.
    pub max_bytes: usize,
}

impl Default for StateLimits {
    fn default() -> Self {
        Self {
            max_key_bytes: 256,
            max_value_bytes: 64 << 10,
            max_keys: 64,
            max_bytes: 256 << 10,
        }
    }
}

/// Every plugin's connections on this node.
#[derive(Default)]
pub struct ConnStore {
    limits: StateLimits,
    plugins: Mutex<HashMap<String, ConnSpace>>,
}

impl ConnStore {
    pub fn new(limits: StateLimits) -> Self {
        Self {
            limits,
            plugins: Mutex::default(),
        }
    }

    /// The connections of `plugin` (the same space for every version of it).
    pub fn space(&self, plugin: &str) -> ConnSpace {
        let mut plugins = self.plugins.lock().unwrap();
        plugins
            .entry(plugin.to_owned())
            .or_insert_with(|| ConnSpace(Arc::new(Space::new(self.limits))))
            .clone()
    }

    /// Forget a removed plugin's connections.
    pub fn remove(&self, plugin: &str) {
        self.plugins.lock().unwrap().remove(plugin);
    }
}

/// What a connection had when it ended: its state, to restore on recovery.
#[derive(Debug, Default)]
pub struct Saved {
    values: HashMap<String, Vec<u8>>,
}

impl Saved {
    /// State carried from elsewhere (a session saved by another node).
    pub fn from_values(values: impl IntoIterator<Item = (String, Vec<u8>)>) -> Self {
        Self {
            values: values.into_iter().collect(),
        }
    }
}

struct Entry {
    conn: Arc<Connection>,
    values: HashMap<String, Vec<u8>>,
    bytes: usize,
}

struct Space {
    limits: StateLimits,
    conns: Mutex<HashMap<String, Entry>>,
    refused: AtomicU64,
}

impl Space {
    fn new(limits: StateLimits) -> Self {
        Self {
            limits,
            conns: Mutex::default(),
            refused: AtomicU64::new(0),
        }
    }
}

/// One plugin's connections on this node.
#[derive(Clone)]
pub struct ConnSpace(Arc<Space>);

impl ConnSpace {
    /// A connection was accepted (before `on-connect`).
    pub fn register(&self, conn: Arc<Connection>) {
        let entry = Entry {
            conn,
            values: HashMap::new(),
            bytes: 0,
        };
        let id = entry.conn.id.clone();
        self.0.conns.lock().unwrap().insert(id, entry);
    }

    /// The connection ended: drop it and return its state.
    pub fn end(&self, id: &str) -> Option<Saved> {
        let entry = self.0.conns.lock().unwrap().remove(id)?;
        Some(Saved {
            values: entry.values,
        })
    }

    /// A recovered reconnect: register `conn` with the state it had.
    pub fn restore(&self, conn: Arc<Connection>, saved: Saved) {
        let bytes = saved.values.iter().map(|(k, v)| k.len() + v.len()).sum();
        let id = conn.id.clone();
        let entry = Entry {
            conn,
            values: saved.values,
            bytes,
        };
        self.0.conns.lock().unwrap().insert(id, entry);
    }

    /// A copy of a connection's state (saved with a recoverable session).
    pub fn snapshot(&self, id: &str) -> Vec<(String, Vec<u8>)> {
        let conns = self.0.conns.lock().unwrap();
        conns.get(id).map_or_else(Vec::new, |e| {
            e.values
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
    }

    /// The record of a connected connection.
    pub fn info(&self, id: &str) -> Option<Arc<Connection>> {
        self.0.conns.lock().unwrap().get(id).map(|e| e.conn.clone())
    }

    pub fn contains(&self, id: &str) -> bool {
        self.0.conns.lock().unwrap().contains_key(id)
    }

    /// Connections registered now.
    pub fn len(&self) -> usize {
        self.0.conns.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes refused by a limit so far.
    pub fn refused(&self) -> u64 {
        self.0.refused.load(Ordering::Relaxed)
    }

    pub fn get(&self, id: &str, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        let conns = self.0.conns.lock().unwrap();
        let entry = conns.get(id).ok_or(StateError::Gone)?;
        Ok(entry.values.get(key).cloned())
    }

    pub fn set(&self, id: &str, key: &str, value: Vec<u8>) -> Result<(), StateError> {
        let result = self.set_inner(id, key, value);
        if matches!(
            result,
            Err(StateError::TooLarge { .. } | StateError::Full(_))
        ) {
            self.0.refused.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    fn set_inner(&self, id: &str, key: &str, value: Vec<u8>) -> Result<(), StateError> {
        let l = self.0.limits;
        let mut conns = self.0.conns.lock().unwrap();
        let entry = conns.get_mut(id).ok_or(StateError::Gone)?;
        if key.len() > l.max_key_bytes || value.len() > l.max_value_bytes {
            return Err(StateError::TooLarge {
                max_key: l.max_key_bytes,
                max_value: l.max_value_bytes,
            });
        }
        let old = entry.values.get(key).map(|v| key.len() + v.len());
        if old.is_none() && entry.values.len() >= l.max_keys {
            return Err(StateError::Full(format!("at most {} keys", l.max_keys)));
        }
        let bytes = entry.bytes - old.unwrap_or(0) + key.len() + value.len();
        if bytes > l.max_bytes {
            return Err(StateError::Full(format!("at most {} bytes", l.max_bytes)));
        }
        entry.bytes = bytes;
        entry.values.insert(key.to_owned(), value);
        Ok(())
    }

    pub fn delete(&self, id: &str, key: &str) -> Result<bool, StateError> {
        let mut conns = self.0.conns.lock().unwrap();
        let entry = conns.get_mut(id).ok_or(StateError::Gone)?;
        match entry.values.remove(key) {
            Some(v) => {
                entry.bytes -= key.len() + v.len();
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::Transport;

    fn conn(id: &str) -> Arc<Connection> {
        Arc::new(Connection {
            id: id.into(),
            namespace: "/t".into(),
            transport: Transport::WebSocket,
            remote_addr: None,
            principal: None,
            query: vec![],
            auth_json: "{}".into(),
        })
    }

    #[test]
    fn state_lives_with_the_connection_and_can_be_restored() {
        let space = ConnStore::default().space("p");
        space.register(conn("a"));
        space.set("a", "nick", b"Al".to_vec()).unwrap();
        assert_eq!(space.get("a", "nick").unwrap(), Some(b"Al".to_vec()));
        assert_eq!(space.get("b", "nick"), Err(StateError::Gone));
        let saved = space.end("a").unwrap();
        assert_eq!(space.get("a", "nick"), Err(StateError::Gone));
        assert!(space.info("a").is_none());
        space.restore(conn("a"), saved);
        assert_eq!(space.get("a", "nick").unwrap(), Some(b"Al".to_vec()));
    }

    #[test]
    fn budgets_hold_and_are_counted() {
        let limits = StateLimits {
            max_key_bytes: 4,
            max_value_bytes: 8,
            max_keys: 2,
            max_bytes: 14,
        };
        let space = ConnStore::new(limits).space("p");
        space.register(conn("a"));
        assert!(matches!(
            space.set("a", "long-key", vec![]),
            Err(StateError::TooLarge { .. })
        ));
        space.set("a", "k1", vec![0; 8]).unwrap();
        assert!(matches!(
            space.set("a", "k2", vec![0; 8]),
            Err(StateError::Full(_))
        ));
        space.set("a", "k2", vec![0; 2]).unwrap();
        assert!(matches!(
            space.set("a", "k3", vec![]),
            Err(StateError::Full(_))
        ));
        // Overwriting counts the new size, not both.
        space.set("a", "k1", vec![0; 6]).unwrap();
        assert!(space.delete("a", "k1").unwrap());
        space.set("a", "k3", vec![0; 8]).unwrap();
        assert_eq!(space.refused(), 3);
    }
}
