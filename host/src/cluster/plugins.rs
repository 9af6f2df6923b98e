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

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use tokio::sync::mpsc;

use super::error::{ClusterError, Result};
use super::redis_conn::Redis;
use crate::admin::{
    Blob, Changed, Notifications, PluginRecord, PluginRecords, RecordBounds, RecordRefused,
    RecordSet, RecordsUnavailable,
};

/// Longest record accepted (a node writes well under 64 KiB).
const MAX_RECORD_BYTES: usize = 2 << 20;

const STATE: &str = "portico:plugins:state";
const GEN: &str = "portico:plugins:gen";
/// Change notifications.
pub const CHANGED: &str = "portico:plugins:changed";

fn blob_key(sha256: &str) -> String {
    format!("portico:plugin:blob:{sha256}")
}

/// The plugin records of the cluster, in Redis. Every record and component
/// read is checked against this node's [`RecordBounds`]; one that fails is
/// refused: logged (once per content), counted in `redis_refused`, and read
/// as absent (a component) or set aside (a record), never applied.
#[derive(Clone)]
pub struct RedisPluginStore {
    redis: Redis,
    bounds: RecordBounds,
    /// Refused records, by name: a hash of the raw record, so one is logged and counted once.
    refused: Arc<Mutex<HashMap<String, u64>>>,
}

/// A record as read from Redis: one to apply, or the name of one refused.
enum Read {
    Applicable(String, PluginRecord),
    Refused(String),
}

impl RedisPluginStore {
    pub fn new(redis: Redis, bounds: RecordBounds) -> Self {
        Self {
            redis,
            bounds,
            refused: Arc::default(),
        }
    }

    /// Parse and check the record of `name` as read from Redis.
    fn read(&self, name: &[u8], raw: &[u8]) -> Option<Read> {
        let Ok(name) = std::str::from_utf8(name) else {
            self.refuse_once(&String::from_utf8_lossy(name), raw, "its name is not UTF-8");
            return None;
        };
        let rec = if raw.len() > MAX_RECORD_BYTES {
            Err(RecordRefused(format!("over {MAX_RECORD_BYTES} bytes")))
        } else {
            serde_json::from_slice::<PluginRecord>(raw)
                .map_err(|e| RecordRefused(format!("unreadable: {e}")))
                .and_then(|r| self.bounds.check(name, &r).map(|()| r))
        };
        Some(match rec {
            Ok(r) => {
                self.refused.lock().unwrap().remove(name);
                Read::Applicable(name.to_owned(), r)
            }
            Err(why) => {
                self.refuse_once(name, raw, &why.0);
                Read::Refused(name.to_owned())
            }
        })
    }

    fn refuse_once(&self, name: &str, raw: &[u8], why: &str) {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        raw.hash(&mut h);
        let h = h.finish();
        if self.refused.lock().unwrap().insert(name.to_owned(), h) != Some(h) {
            self.redis.refuse("plugin_record");
            tracing::error!(plugin = %name.escape_debug(), "plugin record in redis refused, not applied: {why}");
        }
    }

    /// Store a component under its sha256 (once).
    async fn put_blob_now(&self, sha256: &str, wasm: &[u8]) -> Result<()> {
        self.redis
            .run::<redis::Value>(redis::cmd("SET").arg(blob_key(sha256)).arg(wasm).arg("NX"))
            .await
            .map(drop)
    }

    /// The component, if it is within the upload cap and hashes to its name.
    async fn blob_now(&self, sha256: &str) -> Result<Blob> {
        let key = blob_key(sha256);
        let len: redis::Value = self
            .redis
            .run(redis::cmd("STRLEN").arg(&key))
            .await
            .or_else(wrong_type)?;
        let len = match len {
            redis::Value::Int(n) => n as u64,
            _ => u64::MAX,
        };
        let refuse = |why: String| {
            self.redis.refuse("plugin_blob");
            Ok(Blob::Refused(why))
        };
        if len == 0 {
            return Ok(Blob::Missing);
        }
        if len > self.bounds.max_plugin_bytes as u64 {
            return refuse(format!(
                "its component in redis is over runtime.max_plugin_bytes ({len} > {})",
                self.bounds.max_plugin_bytes
            ));
        }
        let wasm: Option<Vec<u8>> = self.redis.run(redis::cmd("GET").arg(&key)).await?;
        match wasm {
            None => Ok(Blob::Missing),
            Some(w) if crate::plugins::sha256_hex(&w) != sha256 => {
                refuse("its component in redis has another sha256".into())
            }
            Some(w) => Ok(Blob::Found(w)),
        }
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
        record.generation = match self.redis.run(redis::cmd("INCR").arg(GEN)).await {
            Err(ClusterError::Redis(m))
                if m.contains("not an integer") || m.contains("WRONGTYPE") =>
            {
                // Garbage in the counter: start it again (a Redis that lost its
                // data does too; records are told apart by `change`).
                tracing::error!(
                    "plugin generation counter in redis is not a number; restarting it"
                );
                self.redis.refuse("plugin_generation");
                self.redis
                    .run::<redis::Value>(redis::cmd("DEL").arg(GEN))
                    .await?;
                self.redis.run(redis::cmd("INCR").arg(GEN)).await?
            }
            r => r?,
        };
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
        let raw: Option<Vec<u8>> = self
            .redis
            .run(redis::cmd("HGET").arg(STATE).arg(name))
            .await
            .or_else(|e| wrong_type(e).map(|_| None))?;
        Ok(raw.and_then(|raw| match self.read(name.as_bytes(), &raw)? {
            Read::Applicable(_, r) => Some(r),
            Read::Refused(_) => None,
        }))
    }

    /// Every record, by name, and the names of refused ones.
    async fn all_now(&self) -> Result<RecordSet> {
        let map: BTreeMap<Vec<u8>, Vec<u8>> = self
            .redis
            .run(redis::cmd("HGETALL").arg(STATE))
            .await
            .or_else(|e| wrong_type(e).map(|_| BTreeMap::new()))?;
        let mut set = RecordSet::default();
        for (name, raw) in map {
            match self.read(&name, &raw) {
                Some(Read::Applicable(name, rec)) => {
                    set.records.insert(name, rec);
                }
                Some(Read::Refused(name)) => {
                    set.refused.insert(name);
                }
                None => {}
            }
        }
        Ok(set)
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
    fn blob<'a>(&'a self, sha256: &'a str) -> BoxFuture<'a, Records<Blob>> {
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
    fn all(&self) -> BoxFuture<'_, Records<RecordSet>> {
        Box::pin(async move { self.all_now().await.map_err(unavailable) })
    }
    fn changes(&self) -> BoxFuture<'_, Records<Notifications>> {
        Box::pin(async move { self.changes_now().await.map_err(unavailable) })
    }
}

type Records<T> = std::result::Result<T, RecordsUnavailable>;

/// A key of the wrong type (garbage where a record or component belongs)
/// reads as nothing there; other errors stay errors.
fn wrong_type(e: ClusterError) -> Result<redis::Value> {
    match e {
        ClusterError::Redis(m) if m.contains("WRONGTYPE") => {
            tracing::error!("plugin records in redis: a key of the wrong type ({m}); ignored");
            Ok(redis::Value::Nil)
        }
        e => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::RecordLimits;
    use crate::cluster::test_redis::TestRedis;

    fn bounds() -> RecordBounds {
        RecordBounds {
            max_call_timeout_ms: 60_000,
            max_memory_bytes: 32 << 20,
            max_warm: 1000,
            max_plugin_bytes: 1000,
        }
    }

    fn record(sha256: &str) -> PluginRecord {
        PluginRecord {
            generation: 1,
            node: "n1".into(),
            change: "n1:1:0".into(),
            removed: false,
            mount: "/echo".into(),
            sha256: sha256.into(),
            config: Default::default(),
            limits: RecordLimits {
                call_timeout_ms: 100,
                memory_bytes: 16 << 20,
                isolation: crate::plugins::Isolation::Pooled,
                max_warm: 4,
            },
        }
    }

    async fn hset(r: &Redis, name: &[u8], value: &[u8]) {
        let _: redis::Value = r
            .run(redis::cmd("HSET").arg(STATE).arg(name).arg(value))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn records_out_of_bounds_or_unreadable_are_refused_once_and_never_returned() {
        let server = TestRedis::start();
        let r = server.connect().await;
        let store = RedisPluginStore::new(r.clone(), bounds());
        let sha = crate::plugins::sha256_hex(b"wasm");
        let good = serde_json::to_string(&record(&sha)).unwrap();
        hset(&r, b"echo", good.as_bytes()).await;
        hset(&r, b"junk", b"{not json").await;
        hset(&r, b"\xff\xfe", good.as_bytes()).await;
        let mut rec = record(&sha);
        rec.limits.call_timeout_ms = 10_000_000;
        hset(&r, b"slow", serde_json::to_string(&rec).unwrap().as_bytes()).await;
        let mut rec = record(&sha);
        rec.limits.memory_bytes = 1 << 40;
        hset(&r, b"huge", serde_json::to_string(&rec).unwrap().as_bytes()).await;
        let mut rec = record(&sha);
        rec.mount = "chat".into();
        hset(
            &r,
            b"mount",
            serde_json::to_string(&rec).unwrap().as_bytes(),
        )
        .await;
        let rec = record("../../etc");
        hset(&r, b"sha", serde_json::to_string(&rec).unwrap().as_bytes()).await;
        hset(&r, b"Bad Name", good.as_bytes()).await;

        let set = store.all_now().await.unwrap();
        assert_eq!(set.records.keys().collect::<Vec<_>>(), ["echo"]);
        assert_eq!(
            set.refused.iter().map(String::as_str).collect::<Vec<_>>(),
            ["Bad Name", "huge", "junk", "mount", "sha", "slow"]
        );
        assert_eq!(r.refused(), [("plugin_record", 7)]);
        // Read again (the reconcile does, every 5 s): counted once.
        store.all_now().await.unwrap();
        assert!(store.get_now("slow").await.unwrap().is_none());
        assert_eq!(store.get_now("echo").await.unwrap(), Some(record(&sha)));
        assert_eq!(r.refused(), [("plugin_record", 7)]);
        // A changed record is judged again.
        hset(&r, b"slow", good.as_bytes()).await;
        assert!(store.get_now("slow").await.unwrap().is_some());

        // The whole hash of the wrong type: no records, no panic.
        let _: redis::Value = r.run(redis::cmd("DEL").arg(STATE)).await.unwrap();
        let _: redis::Value = r.run(redis::cmd("SET").arg(STATE).arg("x")).await.unwrap();
        assert!(store.all_now().await.unwrap().records.is_empty());
        assert!(store.get_now("echo").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn components_over_the_cap_or_with_another_hash_are_refused() {
        let server = TestRedis::start();
        let r = server.connect().await;
        let store = RedisPluginStore::new(r.clone(), bounds());
        let wasm = b"small".to_vec();
        let sha = crate::plugins::sha256_hex(&wasm);
        store.put_blob_now(&sha, &wasm).await.unwrap();
        assert_eq!(store.blob_now(&sha).await.unwrap(), Blob::Found(wasm));
        let big = vec![0u8; 1001];
        let big_sha = crate::plugins::sha256_hex(&big);
        store.put_blob_now(&big_sha, &big).await.unwrap();
        assert!(
            matches!(store.blob_now(&big_sha).await.unwrap(), Blob::Refused(m) if m.contains("max_plugin_bytes"))
        );
        let other = crate::plugins::sha256_hex(b"other");
        store.put_blob_now(&other, b"not other").await.unwrap();
        assert!(
            matches!(store.blob_now(&other).await.unwrap(), Blob::Refused(m) if m.contains("sha256"))
        );
        assert_eq!(
            store.blob_now(&"0".repeat(64)).await.unwrap(),
            Blob::Missing
        );
        assert_eq!(r.refused(), [("plugin_blob", 2)]);
    }

    #[tokio::test]
    async fn a_garbled_generation_counter_starts_again() {
        let server = TestRedis::start();
        let r = server.connect().await;
        let store = RedisPluginStore::new(r.clone(), bounds());
        let _: redis::Value = r
            .run(redis::cmd("SET").arg(GEN).arg("garbage"))
            .await
            .unwrap();
        let rec = record(&crate::plugins::sha256_hex(b"wasm"));
        assert_eq!(
            store.publish_now("echo", rec, false).await.unwrap(),
            Some(1)
        );
        assert_eq!(r.refused(), [("plugin_generation", 1)]);
    }
}
