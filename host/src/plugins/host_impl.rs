//! The host side of the plugin world: the state each store carries and the
//! imports both contract versions have (`log`, `now-ms`, `kv`, `config`,
//! `presence`). The imports only 0.2.0 has are in `host_v2.rs`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use wasmtime::ResourceLimiter;

use super::bindings::{
    config, config_v1, host, host_v1, kv, kv_v1, presence, presence_v1, types_v1, wit2,
};
use super::kv::{KvError, KvSpace};

/// Data owned by one store (one plugin instance).
pub(super) struct HostState {
    pub(super) plugin: Arc<str>,
    pub(super) version: Arc<str>,
    pub(super) kv: KvSpace,
    pub(super) presence: Arc<crate::presence::Presence>,
    pub(super) config: Arc<HashMap<String, String>>,
    /// The plugin's connections and their state (shared by its versions).
    pub(super) conns: crate::connstate::ConnSpace,
    /// The plugin's timers (shared by its versions).
    pub(super) timers: crate::timers::TimerSpace,
    /// Outbound HTTP to the plugin's allowed origins.
    pub(super) outbound: Arc<crate::outbound::Outbound>,
    /// When the current call started (its wall time is recorded when it ends).
    pub(super) started: std::time::Instant,
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

impl HostState {
    fn log_line(&self, level: tracing::Level, message: &str) {
        let (plugin, version) = (&*self.plugin, &*self.version);
        // Cap what one line can put in the host log.
        let message = truncate(message, 4096);
        match level {
            tracing::Level::TRACE => tracing::trace!(plugin, version, "{message}"),
            tracing::Level::DEBUG => tracing::debug!(plugin, version, "{message}"),
            tracing::Level::INFO => tracing::info!(plugin, version, "{message}"),
            tracing::Level::WARN => tracing::warn!(plugin, version, "{message}"),
            tracing::Level::ERROR => tracing::error!(plugin, version, "{message}"),
        }
    }

    async fn members(&self, channel: &str) -> Result<Vec<crate::presence::Member>, String> {
        match self.presence.list(&self.plugin, channel).await {
            Ok(members) => Ok(members),
            Err(crate::presence::PresenceError::Unavailable(m)) => Err(m),
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The imports both contract versions share, written once for each version's
/// generated modules (their types differ only by module path).
macro_rules! shared_imports {
    ($host:ident, $kv:ident, $config:ident, $presence:ident, $full:expr) => {
        impl $host::Host for HostState {
            fn log(&mut self, level: $host::Level, message: String) {
                let level = match level {
                    $host::Level::Trace => tracing::Level::TRACE,
                    $host::Level::Debug => tracing::Level::DEBUG,
                    $host::Level::Info => tracing::Level::INFO,
                    $host::Level::Warn => tracing::Level::WARN,
                    $host::Level::Error => tracing::Level::ERROR,
                };
                self.log_line(level, &message);
            }

            fn now_ms(&mut self) -> u64 {
                now_ms()
            }
        }

        impl From<KvError> for $kv::KvError {
            fn from(e: KvError) -> Self {
                match e {
                    KvError::Unavailable(m) => Self::Unavailable(m),
                    KvError::NotANumber => Self::NotANumber,
                    KvError::TooLarge => Self::TooLarge,
                    e @ KvError::Full(_) => $full(e.to_string()),
                }
            }
        }

        impl $kv::Host for HostState {
            async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, $kv::KvError> {
                Ok(self.kv.get(&key).await?)
            }

            async fn set(
                &mut self,
                key: String,
                value: Vec<u8>,
                ttl_ms: Option<u64>,
            ) -> Result<(), $kv::KvError> {
                let ttl = ttl_ms.map(Duration::from_millis);
                Ok(self.kv.set(&key, value, ttl).await?)
            }

            async fn delete(&mut self, key: String) -> Result<bool, $kv::KvError> {
                Ok(self.kv.delete(&key).await?)
            }

            async fn incr(&mut self, key: String, by: i64) -> Result<i64, $kv::KvError> {
                Ok(self.kv.incr(&key, by).await?)
            }
        }

        impl $config::Host for HostState {
            fn get(&mut self, key: String) -> Option<String> {
                self.config.get(&key).cloned()
            }
        }

        impl $presence::Host for HostState {
            async fn list(
                &mut self,
                channel: String,
            ) -> Result<Vec<$presence::Member>, $presence::PresenceError> {
                let members = self
                    .members(&channel)
                    .await
                    .map_err($presence::PresenceError::Unavailable)?;
                Ok(members
                    .into_iter()
                    .map(|m| $presence::Member {
                        socket: m.socket,
                        subject: m.subject,
                        node: m.node,
                    })
                    .collect())
            }
        }
    };
}

shared_imports!(
    host_v1,
    kv_v1,
    config_v1,
    presence_v1,
    kv_v1::KvError::Other
);
shared_imports!(host, kv, config, presence, kv::KvError::Full);

impl types_v1::Host for HostState {}
impl wit2::Host for HostState {}

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
