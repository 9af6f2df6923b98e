//! The plugin-store capability of cluster mode: the cluster's plugin set
//! (one record per plugin, components by sha256, change notifications).
//! `cluster` implements it over Redis; the replicator only sees the trait.

use std::collections::BTreeMap;

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
    fn blob<'a>(&'a self, sha256: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>>>;
    /// Record `record` (the store assigns its generation) and tell the other
    /// nodes. With `only_if_absent`, a record already there is kept and
    /// `None` returned. Returns the generation.
    fn publish<'a>(
        &'a self,
        name: &'a str,
        record: PluginRecord,
        only_if_absent: bool,
    ) -> BoxFuture<'a, Result<Option<u64>>>;
    fn get<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<PluginRecord>>>;
    /// Every record, by name.
    fn all(&self) -> BoxFuture<'_, Result<BTreeMap<String, PluginRecord>>>;
    /// Change notifications as they arrive (JSON [`Changed`] payloads).
    fn changes(&self) -> BoxFuture<'_, Result<Notifications>>;
}
