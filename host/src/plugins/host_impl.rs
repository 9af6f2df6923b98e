//! The host side of the plugin world: the state each store carries and the
//! imports (`log`, `now-ms`, `kv`, `config`, `presence`) a plugin may call.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use wasmtime::ResourceLimiter;

use super::bindings::{config, host, kv, presence};
use super::kv::{KvError, KvSpace};

/// Data owned by one store (one plugin instance).
pub(super) struct HostState {
    pub(super) plugin: Arc<str>,
    pub(super) version: Arc<str>,
    pub(super) kv: KvSpace,
    pub(super) presence: Arc<crate::presence::Presence>,
    pub(super) config: Arc<HashMap<String, String>>,
    pub(super) limiter: MemoryCap,
    /// Epoch ticks spent by the current call, and the allowance.
    pub(super) ticks_used: u64,
    pub(super) tick_budget: u64,
}

/// Caps linear memory and remembers that the cap was hit, so a failure can be
/// reported as "memory limit" whatever the guest does next (it usually traps
/// while trying to report the failed allocation).
pub(super) struct MemoryCap {
    pub(super) max_bytes: usize,
    pub(super) hit: bool,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.hit = true;
            wasmtime::bail!("memory limit of {} bytes reached", self.max_bytes);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

impl host::Host for HostState {
    fn log(&mut self, level: host::Level, message: String) {
        let (plugin, version) = (&*self.plugin, &*self.version);
        // Cap what one line can put in the host log.
        let message = truncate(&message, 4096);
        match level {
            host::Level::Trace => tracing::trace!(plugin, version, "{message}"),
            host::Level::Debug => tracing::debug!(plugin, version, "{message}"),
            host::Level::Info => tracing::info!(plugin, version, "{message}"),
            host::Level::Warn => tracing::warn!(plugin, version, "{message}"),
            host::Level::Error => tracing::error!(plugin, version, "{message}"),
        }
    }

    fn now_ms(&mut self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl From<KvError> for kv::KvError {
    fn from(e: KvError) -> Self {
        match e {
            KvError::Unavailable(m) => Self::Unavailable(m),
            KvError::NotANumber => Self::NotANumber,
            KvError::TooLarge => Self::TooLarge,
            e @ KvError::Full(_) => Self::Other(e.to_string()),
        }
    }
}

impl kv::Host for HostState {
    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, kv::KvError> {
        Ok(self.kv.get(&key).await?)
    }

    async fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> Result<(), kv::KvError> {
        Ok(self
            .kv
            .set(&key, value, ttl_ms.map(Duration::from_millis))
            .await?)
    }

    async fn delete(&mut self, key: String) -> Result<bool, kv::KvError> {
        Ok(self.kv.delete(&key).await?)
    }

    async fn incr(&mut self, key: String, by: i64) -> Result<i64, kv::KvError> {
        Ok(self.kv.incr(&key, by).await?)
    }
}

impl config::Host for HostState {
    fn get(&mut self, key: String) -> Option<String> {
        self.config.get(&key).cloned()
    }
}

impl presence::Host for HostState {
    async fn list(
        &mut self,
        channel: String,
    ) -> Result<Vec<presence::Member>, presence::PresenceError> {
        match self.presence.list(&self.plugin, &channel).await {
            Ok(members) => Ok(members
                .into_iter()
                .map(|m| presence::Member {
                    socket: m.socket,
                    subject: m.subject,
                    node: m.node,
                })
                .collect()),
            Err(crate::presence::PresenceError::Unavailable(m)) => {
                Err(presence::PresenceError::Unavailable(m))
            }
        }
    }
}

impl super::bindings::wit::Host for HostState {}
