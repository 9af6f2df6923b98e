//! The cluster's plugin set in Redis: one record per plugin (its active
//! component, config, limits and mount, or that it was removed), components
//! stored once by sha256, a generation counter that orders changes, and a
//! pub/sub channel that tells the other nodes to look.
//!
//! ```text
//! portico:plugin:blob:<sha256>  component bytes
//! portico:plugins:state         hash: name -> PluginRecord (JSON)
//! portico:plugins:gen           counter; each change takes the next value
//! portico:plugins:changed       pub/sub: {"node", "name", "generation"}
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::error::Result;
use super::redis_conn::Redis;

const STATE: &str = "portico:plugins:state";
const GEN: &str = "portico:plugins:gen";
/// Change notifications.
pub const CHANGED: &str = "portico:plugins:changed";

fn blob_key(sha256: &str) -> String {
    format!("portico:plugin:blob:{sha256}")
}

/// What every node should serve for one plugin name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginRecord {
    /// Order of the change; a node applies a record newer than what it applied last.
    pub generation: u64,
    /// The node that made the change.
    pub node: String,
    /// Unique per change (node, time, sequence): generations start again at
    /// 1 when Redis loses its data, this does not repeat.
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

/// The plugin records of the cluster.
#[derive(Clone)]
pub struct PluginStore {
    redis: Redis,
}

impl PluginStore {
    pub fn new(redis: Redis) -> Self {
        Self { redis }
    }

    /// Store a component under its sha256 (once).
    pub async fn put_blob(&self, sha256: &str, wasm: &[u8]) -> Result<()> {
        self.redis
            .run::<redis::Value>(redis::cmd("SET").arg(blob_key(sha256)).arg(wasm).arg("NX"))
            .await
            .map(drop)
    }

    pub async fn blob(&self, sha256: &str) -> Result<Option<Vec<u8>>> {
        self.redis
            .run(redis::cmd("GET").arg(blob_key(sha256)))
            .await
    }

    /// Record `record` (its `generation` is assigned here) and tell the other
    /// nodes. With `only_if_absent`, a record already there is kept and
    /// `None` returned. Returns the generation.
    pub async fn publish(
        &self,
        name: &str,
        mut record: PluginRecord,
        only_if_absent: bool,
    ) -> Result<Option<u64>> {
        record.generation = self.redis.run(redis::cmd("INCR").arg(GEN)).await?;
        let json = serde_json::to_string(&record).expect("records serialize");
        let set = if only_if_absent { "HSETNX" } else { "HSET" };
        let added: i64 = self
            .redis
            .run(redis::cmd(set).arg(STATE).arg(name).arg(json))
            .await?;
        if only_if_absent && added == 0 {
            return Ok(None);
        }
        let note = Changed {
            node: record.node.clone(),
            name: name.to_owned(),
            generation: record.generation,
        };
        let note = serde_json::to_string(&note).expect("notes serialize");
        // Lost notifications are caught up by the periodic reconcile.
        if let Err(e) = self
            .redis
            .run::<redis::Value>(redis::cmd("PUBLISH").arg(CHANGED).arg(note))
            .await
        {
            tracing::debug!("plugin change notification lost: {e}");
        }
        Ok(Some(record.generation))
    }

    pub async fn get(&self, name: &str) -> Result<Option<PluginRecord>> {
        let json: Option<String> = self
            .redis
            .run(redis::cmd("HGET").arg(STATE).arg(name))
            .await?;
        Ok(json.and_then(|j| parse(name, &j)))
    }

    /// Every record, by name.
    pub async fn all(&self) -> Result<BTreeMap<String, PluginRecord>> {
        let map: BTreeMap<String, String> =
            self.redis.run(redis::cmd("HGETALL").arg(STATE)).await?;
        Ok(map
            .into_iter()
            .filter_map(|(name, json)| parse(&name, &json).map(|r| (name, r)))
            .collect())
    }

    /// Change notifications, as they arrive.
    pub async fn changes(&self) -> Result<mpsc::Receiver<(String, Vec<u8>)>> {
        self.redis.subscribe(CHANGED, 256).await
    }
}

fn parse(name: &str, json: &str) -> Option<PluginRecord> {
    match serde_json::from_str(json) {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(plugin = name, "unreadable plugin record in redis: {e}");
            None
        }
    }
}
