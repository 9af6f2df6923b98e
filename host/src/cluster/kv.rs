//! Plugin KV in Redis: same semantics as the in-memory store (per-plugin
//! prefix, TTLs, integer `incr`), shared by every node.

use std::time::Duration;

use super::error::ClusterError;
use super::redis_conn::Redis;
use crate::plugins::KvError;

pub struct RedisKv {
    redis: Redis,
}

fn key(plugin: &str, key: &str) -> String {
    format!("portico:kv:{plugin}:{key}")
}

fn unavailable(e: ClusterError) -> KvError {
    match e {
        ClusterError::Redis(m) if m.contains("not an integer") || m.contains("out of range") => {
            KvError::NotANumber
        }
        e => KvError::Unavailable(e.to_string()),
    }
}

impl RedisKv {
    pub fn new(redis: Redis) -> Self {
        Self { redis }
    }

    pub async fn get(&self, plugin: &str, k: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.redis
            .run(redis::cmd("GET").arg(key(plugin, k)))
            .await
            .map_err(unavailable)
    }

    pub async fn set(
        &self,
        plugin: &str,
        k: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> Result<(), KvError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key(plugin, k)).arg(value);
        if let Some(ttl) = ttl {
            cmd.arg("PX").arg(ttl.as_millis().max(1) as u64);
        }
        self.redis.run::<()>(&cmd).await.map_err(unavailable)
    }

    pub async fn delete(&self, plugin: &str, k: &str) -> Result<bool, KvError> {
        let n: i64 = self
            .redis
            .run(redis::cmd("DEL").arg(key(plugin, k)))
            .await
            .map_err(unavailable)?;
        Ok(n > 0)
    }

    pub async fn incr(&self, plugin: &str, k: &str, by: i64) -> Result<i64, KvError> {
        self.redis
            .run(redis::cmd("INCRBY").arg(key(plugin, k)).arg(by))
            .await
            .map_err(unavailable)
    }
}
