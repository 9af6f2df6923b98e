//! The plugin-store capability of cluster mode: the cluster's plugin set
//! (one record per plugin, components by sha256, change notifications).
//! `cluster` implements it over Redis; the replicator only sees the trait.

use std::collections::{BTreeMap, BTreeSet};

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// What every node should serve for one plugin name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginRecord {
    /// Order of the change; assigned by the store.
    pub generation: u64,
    /// The node that made the change.
    pub node: String,
    /// Unique per change (node, time, sequence): generations start again at
    /// 1 when the store loses its data, this does not repeat.
    pub change: String,
    /// The plugin was removed: every node unmounts it.
    pub removed: bool,
    pub mount: String,
    pub sha256: String,
    pub config: BTreeMap<String, String>,
    pub limits: RecordLimits,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordLimits {
    pub call_timeout_ms: u64,
    pub memory_bytes: usize,
    pub isolation: crate::plugins::Isolation,
    pub max_warm: usize,
}

/// What a record read from the store may ask of this node: the bounds the
/// admin API puts on an upload. A record outside them is refused (logged and
/// counted), never applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordBounds {
    pub max_call_timeout_ms: u64,
    pub max_memory_bytes: usize,
    /// `runtime.max_instances`: more warm instances could never exist.
    pub max_warm: usize,
    /// `runtime.max_plugin_bytes`, the upload cap: larger components are refused.
    pub max_plugin_bytes: usize,
}

/// Why a plugin record read from the shared store is not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RecordRefused(pub String);

/// Node, change id and config of a record: far above what a node writes.
const MAX_ID_BYTES: usize = 256;
const MAX_CONFIG_ENTRIES: usize = 1024;
const MAX_CONFIG_BYTES: usize = 1 << 20;

impl RecordBounds {
    /// The bounds of this node's admin API.
    pub fn of(config: &crate::config::Config) -> Self {
        Self {
            max_call_timeout_ms: super::upload::MAX_CALL_TIMEOUT_MS,
            max_memory_bytes: super::upload::max_memory_mb(config) << 20,
            max_warm: config.runtime.max_instances as usize,
            max_plugin_bytes: config.runtime.max_plugin_bytes,
        }
    }

    /// Why `rec`, the record of `name`, cannot be applied, if it cannot.
    pub fn check(&self, name: &str, rec: &PluginRecord) -> Result<(), RecordRefused> {
        super::upload::check_name(name).map_err(|e| RecordRefused(e.to_string()))?;
        if rec.node.len() > MAX_ID_BYTES || rec.change.len() > MAX_ID_BYTES {
            return Err(RecordRefused(format!(
                "node or change id over {MAX_ID_BYTES} bytes"
            )));
        }
        if rec.removed {
            return Ok(());
        }
        super::upload::check_mount(&rec.mount).map_err(|e| RecordRefused(e.to_string()))?;
        if rec.sha256.len() != 64
            || !rec
                .sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(RecordRefused(
                "sha256 is not 64 lowercase hex digits".into(),
            ));
        }
        let l = &rec.limits;
        if !(1..=self.max_call_timeout_ms).contains(&l.call_timeout_ms) {
            return Err(RecordRefused(format!(
                "call_timeout_ms {} is not 1-{}",
                l.call_timeout_ms, self.max_call_timeout_ms
            )));
        }
        if !(1..=self.max_memory_bytes).contains(&l.memory_bytes) {
            return Err(RecordRefused(format!(
                "memory limit {} bytes is not 1-{} (the engine's largest memory)",
                l.memory_bytes, self.max_memory_bytes
            )));
        }
        if l.max_warm > self.max_warm {
            return Err(RecordRefused(format!(
                "max_warm {} is over runtime.max_instances ({})",
                l.max_warm, self.max_warm
            )));
        }
        let bytes: usize = rec.config.iter().map(|(k, v)| k.len() + v.len()).sum();
        if rec.config.len() > MAX_CONFIG_ENTRIES || bytes > MAX_CONFIG_BYTES {
            return Err(RecordRefused(format!(
                "config over {MAX_CONFIG_ENTRIES} entries or {MAX_CONFIG_BYTES} bytes"
            )));
        }
        Ok(())
    }
}

/// Every record of the store: the ones this node may apply, and the names
/// whose record it refused (unreadable, or outside [`RecordBounds`]).
#[derive(Debug, Clone, Default)]
pub struct RecordSet {
    pub records: BTreeMap<String, PluginRecord>,
    pub refused: BTreeSet<String>,
}

/// A component read from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blob {
    Found(Vec<u8>),
    Missing,
    /// Over the upload cap, or not hashing to its name: not loaded.
    Refused(String),
}

/// A change notification.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Changed {
    pub node: String,
    pub name: String,
    pub generation: u64,
}

/// The store did not answer (Redis away): retried later.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct RecordsUnavailable(pub String);

pub type Result<T, E = RecordsUnavailable> = std::result::Result<T, E>;

/// Change notifications: `(channel, JSON payload)`.
pub type Notifications = mpsc::Receiver<(String, Vec<u8>)>;

/// The cluster's plugin records.
pub trait PluginRecords: Send + Sync {
    /// Store a component under its sha256 (once).
    fn put_blob<'a>(&'a self, sha256: &'a str, wasm: &'a [u8]) -> BoxFuture<'a, Result<()>>;
    /// The component stored under `sha256`, checked against the upload cap and its hash.
    fn blob<'a>(&'a self, sha256: &'a str) -> BoxFuture<'a, Result<Blob>>;
    /// Record `record` (the store assigns its generation) and tell the other
    /// nodes. With `only_if_absent`, a record already there is kept and
    /// `None` returned. Returns the generation.
    fn publish<'a>(
        &'a self,
        name: &'a str,
        record: PluginRecord,
        only_if_absent: bool,
    ) -> BoxFuture<'a, Result<Option<u64>>>;
    /// The record of `name`; a refused record reads as none.
    fn get<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<PluginRecord>>>;
    /// Every record, by name.
    fn all(&self) -> BoxFuture<'_, Result<RecordSet>>;
    /// Change notifications as they arrive (JSON [`Changed`] payloads).
    fn changes(&self) -> BoxFuture<'_, Result<Notifications>>;
}
