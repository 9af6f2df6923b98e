//! Plugin key-value storage. Each plugin gets a [`KvSpace`]: the store plus
//! its own key prefix, so no plugin can read another's keys.

use std::collections::HashMap;
use std::future::ready;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;

/// Largest key a plugin may use.
pub const MAX_KEY_BYTES: usize = 1024;
/// Largest value a plugin may store.
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;

/// A failed KV operation, as the plugin sees it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    #[error("kv store unavailable: {0}")]
    Unavailable(String),
    #[error("value is not an integer")]
    NotANumber,
    #[error("key or value too large")]
    TooLarge,
    #[error("store full: at most {0} keys per plugin")]
    Full(usize),
}

/// A key-value backend: every plugin's keys, by plugin name. Implemented in
/// memory here and over Redis by `cluster`; the store is picked once at
/// wiring and plugins only ever see their [`KvSpace`].
pub trait KvBackend: Send + Sync {
    fn get<'a>(&'a self, plugin: &'a str, key: &'a str)
    -> BoxFuture<'a, KvResult<Option<Vec<u8>>>>;
    fn set<'a>(
        &'a self,
        plugin: &'a str,
        key: &'a str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, KvResult<()>>;
    /// Whether the key existed.
    fn delete<'a>(&'a self, plugin: &'a str, key: &'a str) -> BoxFuture<'a, KvResult<bool>>;
    /// Add `by` to an integer value (missing counts as 0); returns the new value.
    fn incr<'a>(&'a self, plugin: &'a str, key: &'a str, by: i64) -> BoxFuture<'a, KvResult<i64>>;
}

pub type KvResult<T> = Result<T, KvError>;

/// The node's KV store.
#[derive(Clone)]
pub struct KvStore(Arc<dyn KvBackend>);

impl KvStore {
    /// In memory, for a single node.
    pub fn memory(max_keys_per_plugin: usize) -> Self {
        Self::new(Arc::new(MemoryKv::new(max_keys_per_plugin)))
    }

    pub fn new(backend: Arc<dyn KvBackend>) -> Self {
        Self(backend)
    }

    /// The view of the store for one plugin.
    pub fn space(&self, plugin: &str) -> KvSpace {
        KvSpace {
            store: self.clone(),
            plugin: plugin.to_owned(),
        }
    }
}

/// One plugin's keys.
#[derive(Clone)]
pub struct KvSpace {
    store: KvStore,
    plugin: String,
}

fn check(key: &str, value: Option<&[u8]>) -> Result<(), KvError> {
    if key.len() > MAX_KEY_BYTES || value.is_some_and(|v| v.len() > MAX_VALUE_BYTES) {
        return Err(KvError::TooLarge);
    }
    Ok(())
}

impl KvSpace {
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        check(key, None)?;
        self.store.0.get(&self.plugin, key).await
    }

    pub async fn set(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> Result<(), KvError> {
        check(key, Some(&value))?;
        self.store.0.set(&self.plugin, key, value, ttl).await
    }

    pub async fn delete(&self, key: &str) -> Result<bool, KvError> {
        check(key, None)?;
        self.store.0.delete(&self.plugin, key).await
    }

    pub async fn incr(&self, key: &str, by: i64) -> Result<i64, KvError> {
        check(key, None)?;
        self.store.0.incr(&self.plugin, key, by).await
    }
}

struct Entry {
    value: Vec<u8>,
    expires: Option<Instant>,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|at| at > now)
    }
}

/// In-memory store for a single node. Expired entries are dropped when read,
/// and swept from a plugin's map whenever it reaches its key limit.
pub struct MemoryKv {
    max_keys: usize,
    plugins: Mutex<HashMap<String, HashMap<String, Entry>>>,
}

impl KvBackend for MemoryKv {
    fn get<'a>(
        &'a self,
        plugin: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, KvResult<Option<Vec<u8>>>> {
        Box::pin(ready(Ok(self.get_now(plugin, key))))
    }
    fn set<'a>(
        &'a self,
        plugin: &'a str,
        key: &'a str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, KvResult<()>> {
        Box::pin(ready(self.set_now(plugin, key, value, ttl)))
    }
    fn delete<'a>(&'a self, plugin: &'a str, key: &'a str) -> BoxFuture<'a, KvResult<bool>> {
        Box::pin(ready(Ok(self.delete_now(plugin, key))))
    }
    fn incr<'a>(&'a self, plugin: &'a str, key: &'a str, by: i64) -> BoxFuture<'a, KvResult<i64>> {
        Box::pin(ready(self.incr_now(plugin, key, by)))
    }
}

impl MemoryKv {
    fn new(max_keys: usize) -> Self {
        Self {
            max_keys,
            plugins: Mutex::default(),
        }
    }

    fn get_now(&self, plugin: &str, key: &str) -> Option<Vec<u8>> {
        let now = Instant::now();
        let mut plugins = self.plugins.lock().unwrap();
        let map = plugins.get_mut(plugin)?;
        match map.get(key) {
            Some(e) if e.live(now) => Some(e.value.clone()),
            Some(_) => {
                map.remove(key);
                None
            }
            None => None,
        }
    }

    fn set_now(
        &self,
        plugin: &str,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> Result<(), KvError> {
        let now = Instant::now();
        let mut plugins = self.plugins.lock().unwrap();
        let map = plugins.entry(plugin.to_owned()).or_default();
        if !map.contains_key(key) && map.len() >= self.max_keys {
            map.retain(|_, e| e.live(now));
            if map.len() >= self.max_keys {
                return Err(KvError::Full(self.max_keys));
            }
        }
        map.insert(
            key.to_owned(),
            Entry {
                value,
                expires: ttl.map(|t| now + t),
            },
        );
        Ok(())
    }

    fn delete_now(&self, plugin: &str, key: &str) -> bool {
        let now = Instant::now();
        let mut plugins = self.plugins.lock().unwrap();
        plugins
            .get_mut(plugin)
            .and_then(|m| m.remove(key))
            .is_some_and(|e| e.live(now))
    }

    fn incr_now(&self, plugin: &str, key: &str, by: i64) -> Result<i64, KvError> {
        let now = Instant::now();
        let mut plugins = self.plugins.lock().unwrap();
        let map = plugins.entry(plugin.to_owned()).or_default();
        let (current, expires) = match map.get(key) {
            Some(e) if e.live(now) => {
                let n = std::str::from_utf8(&e.value)
                    .ok()
                    .and_then(|s| s.trim().parse::<i64>().ok())
                    .ok_or(KvError::NotANumber)?;
                (n, e.expires)
            }
            _ => {
                if map.len() >= self.max_keys {
                    map.retain(|_, e| e.live(now));
                    if map.len() >= self.max_keys {
                        return Err(KvError::Full(self.max_keys));
                    }
                }
                (0, None)
            }
        };
        let next = current.checked_add(by).ok_or(KvError::NotANumber)?;
        map.insert(
            key.to_owned(),
            Entry {
                value: next.to_string().into_bytes(),
                expires,
            },
        );
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn plugins_do_not_see_each_others_keys() {
        let store = KvStore::memory(10);
        let (a, b) = (store.space("a"), store.space("b"));
        a.set("k", b"1".to_vec(), None).await.unwrap();
        assert_eq!(a.get("k").await.unwrap(), Some(b"1".to_vec()));
        assert_eq!(b.get("k").await.unwrap(), None);
        assert!(!b.delete("k").await.unwrap());
    }

    #[tokio::test]
    async fn ttl_expires_and_incr_counts() {
        let kv = KvStore::memory(10).space("p");
        kv.set("t", b"x".to_vec(), Some(Duration::from_millis(1)))
            .await
            .unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(kv.get("t").await.unwrap(), None);
        assert_eq!(kv.incr("n", 2).await.unwrap(), 2);
        assert_eq!(kv.incr("n", -5).await.unwrap(), -3);
        kv.set("s", b"abc".to_vec(), None).await.unwrap();
        assert_eq!(kv.incr("s", 1).await, Err(KvError::NotANumber));
    }

    #[tokio::test]
    async fn limits_hold() {
        let kv = KvStore::memory(2).space("p");
        kv.set("a", vec![], None).await.unwrap();
        kv.set("b", vec![], None).await.unwrap();
        assert_eq!(kv.set("c", vec![], None).await, Err(KvError::Full(2)));
        assert_eq!(
            kv.set("a", vec![0; MAX_VALUE_BYTES + 1], None).await,
            Err(KvError::TooLarge)
        );
    }
}
