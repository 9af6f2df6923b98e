//! Plugin KV in Redis: same semantics as the in-memory store (per-plugin
//! prefix, TTLs, integer `incr`), shared by every node.

use std::time::Duration;

use super::error::ClusterError;
use super::redis_conn::Redis;
use futures::future::BoxFuture;

use crate::plugins::{KvBackend, KvError, KvResult};

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
}

impl KvBackend for RedisKv {
    fn get<'a>(&'a self, plugin: &'a str, k: &'a str) -> BoxFuture<'a, KvResult<Option<Vec<u8>>>> {
        Box::pin(async move {
            self.redis
                .run(redis::cmd("GET").arg(key(plugin, k)))
                .await
                .map_err(unavailable)
        })
    }

    fn set<'a>(
        &'a self,
        plugin: &'a str,
        k: &'a str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, KvResult<()>> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key(plugin, k)).arg(value);
        if let Some(ttl) = ttl {
            cmd.arg("PX").arg(ttl.as_millis().max(1) as u64);
        }
        Box::pin(async move { self.redis.run::<()>(&cmd).await.map_err(unavailable) })
    }

    fn delete<'a>(&'a self, plugin: &'a str, k: &'a str) -> BoxFuture<'a, KvResult<bool>> {
        Box::pin(async move {
            let n: i64 = self
                .redis
                .run(redis::cmd("DEL").arg(key(plugin, k)))
                .await
                .map_err(unavailable)?;
            Ok(n > 0)
        })
    }

    fn incr<'a>(&'a self, plugin: &'a str, k: &'a str, by: i64) -> BoxFuture<'a, KvResult<i64>> {
        Box::pin(async move {
            self.redis
                .run(redis::cmd("INCRBY").arg(key(plugin, k)).arg(by))
                .await
                .map_err(unavailable)
        })
    }
}
