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

use futures::future::BoxFuture;
use tokio::sync::mpsc;

use super::error::{ClusterError, Result};
use super::redis_conn::Redis;
use crate::admin::{Changed, Notifications, PluginRecord, PluginRecords, RecordsUnavailable};

const STATE: &str = "portico:plugins:state";
const GEN: &str = "portico:plugins:gen";
/// Change notifications.
pub const CHANGED: &str = "portico:plugins:changed";

fn blob_key(sha256: &str) -> String {
    format!("portico:plugin:blob:{sha256}")
}

/// The plugin records of the cluster, in Redis.
#[derive(Clone)]
pub struct RedisPluginStore {
    redis: Redis,
}

impl RedisPluginStore {
    pub fn new(redis: Redis) -> Self {
        Self { redis }
    }

    /// Store a component under its sha256 (once).
    async fn put_blob_now(&self, sha256: &str, wasm: &[u8]) -> Result<()> {
        self.redis
            .run::<redis::Value>(redis::cmd("SET").arg(blob_key(sha256)).arg(wasm).arg("NX"))
            .await
            .map(drop)
    }

    async fn blob_now(&self, sha256: &str) -> Result<Option<Vec<u8>>> {
        self.redis
            .run(redis::cmd("GET").arg(blob_key(sha256)))
            .await
    }

    /// Record `record` (its `generation` is assigned here) and tell the other
    /// nodes. With `only_if_absent`, a record already there is kept and
    /// `None` returned. Returns the generation.
    async fn publish_now(
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

    async fn get_now(&self, name: &str) -> Result<Option<PluginRecord>> {
        let json: Option<String> = self
            .redis
            .run(redis::cmd("HGET").arg(STATE).arg(name))
            .await?;
        Ok(json.and_then(|j| parse(name, &j)))
    }

    /// Every record, by name.
    async fn all_now(&self) -> Result<BTreeMap<String, PluginRecord>> {
        let map: BTreeMap<String, String> =
            self.redis.run(redis::cmd("HGETALL").arg(STATE)).await?;
        Ok(map
            .into_iter()
            .filter_map(|(name, json)| parse(&name, &json).map(|r| (name, r)))
            .collect())
    }

    /// Change notifications, as they arrive.
    async fn changes_now(&self) -> Result<mpsc::Receiver<(String, Vec<u8>)>> {
        self.redis.subscribe(CHANGED, 256).await
    }
}

fn unavailable(e: ClusterError) -> RecordsUnavailable {
    RecordsUnavailable(e.to_string())
}

impl PluginRecords for RedisPluginStore {
    fn put_blob<'a>(&'a self, sha256: &'a str, wasm: &'a [u8]) -> BoxFuture<'a, Records<()>> {
        Box::pin(async move { self.put_blob_now(sha256, wasm).await.map_err(unavailable) })
    }
    fn blob<'a>(&'a self, sha256: &'a str) -> BoxFuture<'a, Records<Option<Vec<u8>>>> {
        Box::pin(async move { self.blob_now(sha256).await.map_err(unavailable) })
    }
    fn publish<'a>(
        &'a self,
        name: &'a str,
        record: PluginRecord,
        only_if_absent: bool,
    ) -> BoxFuture<'a, Records<Option<u64>>> {
        Box::pin(async move {
            self.publish_now(name, record, only_if_absent)
                .await
                .map_err(unavailable)
        })
    }
    fn get<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Records<Option<PluginRecord>>> {
        Box::pin(async move { self.get_now(name).await.map_err(unavailable) })
    }
    fn all(&self) -> BoxFuture<'_, Records<BTreeMap<String, PluginRecord>>> {
        Box::pin(async move { self.all_now().await.map_err(unavailable) })
    }
    fn changes(&self) -> BoxFuture<'_, Records<Notifications>> {
        Box::pin(async move { self.changes_now().await.map_err(unavailable) })
    }
}

type Records<T> = std::result::Result<T, RecordsUnavailable>;

fn parse(name: &str, json: &str) -> Option<PluginRecord> {
    match serde_json::from_str(json) {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(plugin = name, "unreadable plugin record in redis: {e}");
            None
        }
    }
}
