//! Plugin key-value storage. Each plugin gets a [`KvSpace`]: the store plus
//! its own key prefix, so no plugin can read another's keys, and its own
//! [`KvQuota`] (keys, bytes, default TTL), which both backends enforce
//! atomically with the write.

use std::collections::HashMap;
use std::fmt;
use std::future::ready;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;

/// Largest key a plugin may use.
pub const MAX_KEY_BYTES: usize = 1024;
/// Largest value a plugin may store.
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;
/// Default keys per plugin (`runtime.kv_max_keys`).
pub const DEFAULT_MAX_KEYS: usize = 100_000;
/// Default bytes per plugin, keys and values (`runtime.kv_max_bytes`).
pub const DEFAULT_MAX_BYTES: usize = 64 << 20;

/// A failed KV operation, as the plugin sees it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    #[error("kv store unavailable: {0}")]
    Unavailable(String),
    #[error("value is not an integer")]
    NotANumber,
    #[error("key or value too large")]
    TooLarge,
    /// The plugin's key count or byte budget is used up.
    #[error("store full: {0}")]
    Full(KvFull),
}

/// Which budget of a plugin a refused write would have gone over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvFull {
    /// At most this many keys.
    Keys(usize),
    /// At most this many bytes, keys and values together.
    Bytes(usize),
}

impl fmt::Display for KvFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Keys(n) => write!(f, "at most {n} keys per plugin"),
            Self::Bytes(n) => write!(f, "at most {n} bytes (keys and values) per plugin"),
        }
    }
}

/// What one plugin may keep in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvQuota {
    pub max_keys: usize,
    /// Bytes of keys and values together (the plugin's own keys, without the
    /// store's prefix).
    pub max_bytes: usize,
    /// TTL of a key written without one (`set` without a TTL, `incr`
    /// creating a key); `None`: such keys never expire.
    pub default_ttl: Option<Duration>,
}

impl Default for KvQuota {
    fn default() -> Self {
        Self {
            max_keys: DEFAULT_MAX_KEYS,
            max_bytes: DEFAULT_MAX_BYTES,
            default_ttl: None,
        }
    }
}

/// The quota of every plugin: a default and per-plugin overrides.
#[derive(Debug, Clone, Default)]
pub struct KvPolicy {
    pub default: KvQuota,
    pub plugins: HashMap<String, KvQuota>,
}

impl KvPolicy {
    pub fn quota(&self, plugin: &str) -> KvQuota {
        self.plugins.get(plugin).copied().unwrap_or(self.default)
    }
}

/// The stored size of an entry, as budgets count it.
pub fn entry_bytes(key: &str, value: &[u8]) -> usize {
    key.len() + value.len()
}

/// A key-value backend: every plugin's keys, by plugin name. Implemented in
/// memory here and over Redis by `cluster`; the store is picked once at
/// wiring and plugins only ever see their [`KvSpace`]. Writes enforce the
/// plugin's `quota` atomically (a write that would go over it changes
/// nothing and fails with [`KvError::Full`]).
pub trait KvBackend: Send + Sync {
    fn get<'a>(&'a self, plugin: &'a str, key: &'a str)
    -> BoxFuture<'a, KvResult<Option<Vec<u8>>>>;
    /// `ttl` is already the effective one (the quota's default applied).
    fn set<'a>(
        &'a self,
        plugin: &'a str,
        key: &'a str,
        value: Vec<u8>,
        ttl: Option<Duration>,
        quota: &'a KvQuota,
    ) -> BoxFuture<'a, KvResult<()>>;
    /// Whether the key existed.
    fn delete<'a>(&'a self, plugin: &'a str, key: &'a str) -> BoxFuture<'a, KvResult<bool>>;
    /// Add `by` to an integer value (missing counts as 0, and a key created
    /// so gets the quota's default TTL); returns the new value.
    fn incr<'a>(
        &'a self,
        plugin: &'a str,
        key: &'a str,
        by: i64,
        quota: &'a KvQuota,
    ) -> BoxFuture<'a, KvResult<i64>>;
}

pub type KvResult<T> = Result<T, KvError>;

/// Writes of one plugin refused by a limit, by limit.
#[derive(Debug, Default)]
pub struct KvRefused {
    pub keys: AtomicU64,
    pub bytes: AtomicU64,
    /// Key or value over [`MAX_KEY_BYTES`] / [`MAX_VALUE_BYTES`].
    pub size: AtomicU64,
}

impl KvRefused {
    fn count(&self, e: &KvError) {
        let c = match e {
            KvError::Full(KvFull::Keys(_)) => &self.keys,
            KvError::Full(KvFull::Bytes(_)) => &self.bytes,
            KvError::TooLarge => &self.size,
            _ => return,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// `(limit, count)`: `keys`, `bytes`, `size`.
    pub fn counts(&self) -> [(&'static str, u64); 3] {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        [
            ("keys", l(&self.keys)),
            ("bytes", l(&self.bytes)),
            ("size", l(&self.size)),
        ]
    }
}

/// The node's KV store.
#[derive(Clone)]
pub struct KvStore {
    backend: Arc<dyn KvBackend>,
    policy: Arc<KvPolicy>,
    refused: Arc<Mutex<HashMap<String, Arc<KvRefused>>>>,
}

impl KvStore {
    /// In memory, for a single node, with the default quota but `max_keys_per_plugin`.
    pub fn memory(max_keys_per_plugin: usize) -> Self {
        Self::new(Arc::new(MemoryKv::default())).with_policy(KvPolicy {
            default: KvQuota {
                max_keys: max_keys_per_plugin,
                ..KvQuota::default()
            },
            plugins: HashMap::new(),
        })
    }

    /// Over `backend`, with the default quota.
    pub fn new(backend: Arc<dyn KvBackend>) -> Self {
        Self {
            backend,
            policy: Arc::default(),
            refused: Arc::default(),
        }
    }

    /// The in-memory backend (one node).
    pub fn memory_backend() -> Arc<dyn KvBackend> {
        Arc::new(MemoryKv::default())
    }

    /// Every plugin's quota from `policy`.
    pub fn with_policy(mut self, policy: KvPolicy) -> Self {
        self.policy = Arc::new(policy);
        self
    }

    /// The view of the store for one plugin.
    pub fn space(&self, plugin: &str) -> KvSpace {
        let refused = self
            .refused
            .lock()
            .unwrap()
            .entry(plugin.to_owned())
            .or_default()
            .clone();
        KvSpace {
            backend: self.backend.clone(),
            plugin: plugin.to_owned(),
            quota: self.policy.quota(plugin),
            refused,
        }
    }

    /// Refused writes of `plugin` (zeros if it never had a space).
    pub fn refused(&self, plugin: &str) -> Arc<KvRefused> {
        self.refused
            .lock()
            .unwrap()
            .get(plugin)
            .cloned()
            .unwrap_or_default()
    }
}

/// One plugin's keys.
#[derive(Clone)]
pub struct KvSpace {
    backend: Arc<dyn KvBackend>,
    plugin: String,
    quota: KvQuota,
    refused: Arc<KvRefused>,
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
        self.backend.get(&self.plugin, key).await
    }

    pub async fn set(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> Result<(), KvError> {
        let res = match check(key, Some(&value)) {
            Ok(()) => {
                let ttl = ttl.or(self.quota.default_ttl);
                self.backend
                    .set(&self.plugin, key, value, ttl, &self.quota)
                    .await
            }
            Err(e) => Err(e),
        };
        res.inspect_err(|e| self.refused.count(e))
    }

    pub async fn delete(&self, key: &str) -> Result<bool, KvError> {
        check(key, None)?;
        self.backend.delete(&self.plugin, key).await
    }

    pub async fn incr(&self, key: &str, by: i64) -> Result<i64, KvError> {
        let res = match check(key, None) {
            Ok(()) => self.backend.incr(&self.plugin, key, by, &self.quota).await,
            Err(e) => Err(e),
        };
        res.inspect_err(|e| self.refused.count(e))
    }

    /// The quota this space enforces.
    pub fn quota(&self) -> &KvQuota {
        &self.quota
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

/// One plugin's entries and the bytes they hold.
#[derive(Default)]
struct Space {
    entries: HashMap<String, Entry>,
    bytes: usize,
}

impl Space {
    fn remove(&mut self, key: &str) -> Option<Entry> {
        let e = self.entries.remove(key)?;
        self.bytes -= entry_bytes(key, &e.value);
        Some(e)
    }

    fn sweep(&mut self, now: Instant) {
        let mut freed = 0;
        self.entries.retain(|k, e| {
            let live = e.live(now);
            if !live {
                freed += entry_bytes(k, &e.value);
            }
            live
        });
        self.bytes -= freed;
    }

    /// Put `value` at `key` if the quota has room (expired entries are swept
    /// first when it has not).
    fn put(
        &mut self,
        key: &str,
        value: Vec<u8>,
        expires: Option<Instant>,
        quota: &KvQuota,
        now: Instant,
    ) -> KvResult<()> {
        let fits = |s: &Self| {
            let old = s.entries.get(key).map(|e| entry_bytes(key, &e.value));
            if old.is_none() && s.entries.len() >= quota.max_keys {
                return Err(KvFull::Keys(quota.max_keys));
            }
            if s.bytes - old.unwrap_or(0) + entry_bytes(key, &value) > quota.max_bytes {
                return Err(KvFull::Bytes(quota.max_bytes));
            }
            Ok(())
        };
        if fits(self).is_err() {
            self.sweep(now);
            fits(self).map_err(KvError::Full)?;
        }
        if let Some(old) = self.entries.get(key) {
            self.bytes -= entry_bytes(key, &old.value);
        }
        self.bytes += entry_bytes(key, &value);
        self.entries
            .insert(key.to_owned(), Entry { value, expires });
        Ok(())
    }
}

/// In-memory store for a single node. Expired entries are dropped when read,
/// and swept from a plugin's map whenever a write would go over its quota.
#[derive(Default)]
pub struct MemoryKv {
    plugins: Mutex<HashMap<String, Space>>,
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
        quota: &'a KvQuota,
    ) -> BoxFuture<'a, KvResult<()>> {
        Box::pin(ready(self.set_now(plugin, key, value, ttl, quota)))
    }
    fn delete<'a>(&'a self, plugin: &'a str, key: &'a str) -> BoxFuture<'a, KvResult<bool>> {
        Box::pin(ready(Ok(self.delete_now(plugin, key))))
    }
    fn incr<'a>(
        &'a self,
        plugin: &'a str,
        key: &'a str,
        by: i64,
        quota: &'a KvQuota,
    ) -> BoxFuture<'a, KvResult<i64>> {
        Box::pin(ready(self.incr_now(plugin, key, by, quota)))
    }
}

impl MemoryKv {
    fn get_now(&self, plugin: &str, key: &str) -> Option<Vec<u8>> {
        let now = Instant::now();
        let mut plugins = self.plugins.lock().unwrap();
        let space = plugins.get_mut(plugin)?;
        match space.entries.get(key) {
            Some(e) if e.live(now) => Some(e.value.clone()),
            Some(_) => {
                space.remove(key);
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
        quota: &KvQuota,
    ) -> Result<(), KvError> {
        let now = Instant::now();
        let mut plugins = self.plugins.lock().unwrap();
        let space = plugins.entry(plugin.to_owned()).or_default();
        space.put(key, value, ttl.map(|t| now + t), quota, now)
    }

    fn delete_now(&self, plugin: &str, key: &str) -> bool {
        let now = Instant::now();
        let mut plugins = self.plugins.lock().unwrap();
        plugins
            .get_mut(plugin)
            .and_then(|s| s.remove(key))
            .is_some_and(|e| e.live(now))
    }

    fn incr_now(&self, plugin: &str, key: &str, by: i64, quota: &KvQuota) -> KvResult<i64> {
        let now = Instant::now();
        let mut plugins = self.plugins.lock().unwrap();
        let space = plugins.entry(plugin.to_owned()).or_default();
        let (current, expires) = match space.entries.get(key) {
            Some(e) if e.live(now) => {
                let n = std::str::from_utf8(&e.value)
                    .ok()
                    .and_then(|s| s.trim().parse::<i64>().ok())
                    .ok_or(KvError::NotANumber)?;
                (n, e.expires)
            }
            _ => {
                space.remove(key);
                (0, quota.default_ttl.map(|t| now + t))
            }
        };
        let next = current.checked_add(by).ok_or(KvError::NotANumber)?;
        space.put(key, next.to_string().into_bytes(), expires, quota, now)?;
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
        assert_eq!(
            kv.set("c", vec![], None).await,
            Err(KvError::Full(KvFull::Keys(2)))
        );
        assert_eq!(kv.incr("c", 1).await, Err(KvError::Full(KvFull::Keys(2))));
        assert_eq!(
            kv.set("a", vec![0; MAX_VALUE_BYTES + 1], None).await,
            Err(KvError::TooLarge)
        );
        let counts = kv.refused.counts();
        assert_eq!(counts, [("keys", 2), ("bytes", 0), ("size", 1)]);
    }

    fn store(quota: KvQuota) -> KvStore {
        KvStore::new(KvStore::memory_backend()).with_policy(KvPolicy {
            default: KvQuota::default(),
            plugins: [("p".to_owned(), quota)].into(),
        })
    }

    #[tokio::test]
    async fn byte_budget_counts_keys_and_values_and_frees_on_delete_and_expiry() {
        let s = store(KvQuota {
            max_keys: 100,
            max_bytes: 10,
            default_ttl: None,
        });
        let kv = s.space("p");
        kv.set("ab", b"cdef".to_vec(), None).await.unwrap(); // 6 bytes
        assert_eq!(
            kv.set("gh", b"ijk".to_vec(), None).await, // 5 more: 11
            Err(KvError::Full(KvFull::Bytes(10)))
        );
        // Replacing a value counts the difference only.
        kv.set("ab", b"cdefghij".to_vec(), None).await.unwrap(); // 10
        assert!(kv.delete("ab").await.unwrap());
        kv.set("gh", b"ijk".to_vec(), Some(Duration::from_millis(1)))
            .await
            .unwrap();
        std::thread::sleep(Duration::from_millis(5));
        // The expired entry is swept when the budget is short.
        kv.set("xy", b"12345678".to_vec(), None).await.unwrap();
        assert_eq!(kv.incr("n", 1).await, Err(KvError::Full(KvFull::Bytes(10))));
        assert_eq!(s.refused("p").counts()[1], ("bytes", 2));
        // Another plugin has the default quota.
        s.space("q").set("gh", vec![0; 100], None).await.unwrap();
    }

    #[tokio::test]
    async fn default_ttl_applies_to_keys_written_without_one() {
        let kv = store(KvQuota {
            default_ttl: Some(Duration::from_millis(1)),
            ..KvQuota::default()
        })
        .space("p");
        kv.set("a", b"1".to_vec(), None).await.unwrap();
        kv.incr("n", 1).await.unwrap();
        kv.set("kept", b"1".to_vec(), Some(Duration::from_secs(60)))
            .await
            .unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(kv.get("a").await.unwrap(), None);
        assert_eq!(kv.get("n").await.unwrap(), None);
        assert_eq!(kv.get("kept").await.unwrap(), Some(b"1".to_vec()));
    }
}
