//! Plugin KV in Redis: same semantics as the in-memory store (per-plugin
//! prefix, TTLs, integer `incr`, the plugin's key and byte budget), shared by
//! every node.
//!
//! ```text
//! portico:kv:<plugin>:<key>        the value (PX when it has a TTL)
//! portico:kvmeta:<plugin>:sizes    hash: key -> bytes it holds (key + value)
//! portico:kvmeta:<plugin>:expiry   sorted set: key -> when it expires (ms, Redis clock)
//! portico:kvmeta:<plugin>:bytes    the sum of `sizes`
//! ```
//!
//! Every write is one Lua script, so the budget holds however many nodes
//! write at once: it first forgets keys whose TTL has passed (their values
//! are already gone), then checks the budget, then writes. Usage is read
//! defensively: a garbled counter is recomputed from `sizes`, a garbled size
//! counts as 0, so garbage in Redis can refuse a write but never panics.

use std::time::Duration;

use super::error::ClusterError;
use super::redis_conn::Redis;
use futures::future::BoxFuture;

use crate::plugins::{KvBackend, KvError, KvFull, KvQuota, KvResult};

pub struct RedisKv {
    redis: Redis,
    set: Lua,
    incr: Lua,
    delete: Lua,
}

fn key(plugin: &str, key: &str) -> String {
    format!("portico:kv:{plugin}:{key}")
}

/// The value key and the three bookkeeping keys of `plugin`, in script order.
fn keys(plugin: &str, k: &str) -> [String; 4] {
    [
        key(plugin, k),
        format!("portico:kvmeta:{plugin}:sizes"),
        format!("portico:kvmeta:{plugin}:expiry"),
        format!("portico:kvmeta:{plugin}:bytes"),
    ]
}

/// First in every script: bookkeeping keys of the wrong type (garbage) are
/// dropped, so they are rebuilt instead of failing every write.
const HEAL: &str = r#"
local dropped = false
for i, t in ipairs({'hash', 'zset', 'string'}) do
  local found = redis.call('TYPE', KEYS[i + 1]).ok
  if found ~= t and found ~= 'none' then
    redis.call('DEL', KEYS[i + 1])
    dropped = true
  end
end
if dropped then redis.call('DEL', KEYS[4]) end
"#;

/// Shared by every script: KEYS = value, sizes, expiry, bytes.
const PRELUDE: &str = r#"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- Bytes in use; a missing or garbled counter is recomputed from the sizes.
local function used()
  local raw = redis.call('GET', KEYS[4])
  if raw and #raw < 16 and string.match(raw, '^%d+$') then return tonumber(raw) end
  local b = 0
  for _, v in ipairs(redis.call('HVALS', KEYS[2])) do
    b = b + math.max(tonumber(v) or 0, 0)
  end
  redis.call('SET', KEYS[4], string.format('%d', b))
  return b
end
local function forget(f, size)
  redis.call('HDEL', KEYS[2], f)
  redis.call('ZREM', KEYS[3], f)
  if size > 0 then redis.call('DECRBY', KEYS[4], size) end
end
-- Forget keys whose TTL has passed (Redis dropped their values already).
local function sweep(now)
  local freed = 0
  local gone = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', '(' .. string.format('%d', now), 'LIMIT', 0, 1000)
  for _, f in ipairs(gone) do
    local size = math.max(tonumber(redis.call('HGET', KEYS[2], f)) or 0, 0)
    forget(f, size)
    freed = freed + size
  end
  return freed
end
-- The size recorded for this key if its value is still there; a size whose
-- value is gone (deleted behind our back) is forgotten.
local function recorded(f)
  local size = tonumber(redis.call('HGET', KEYS[2], f))
  if size == nil then
    if redis.call('HEXISTS', KEYS[2], f) == 1 then forget(f, 0) end
    return nil
  end
  size = math.max(size, 0)
  if redis.call('EXISTS', KEYS[1]) == 0 then
    forget(f, size)
    return nil, size
  end
  return size
end
-- Before a write of key f: the time, the bytes in use (expired keys swept,
-- a stale size of f not counted) and f's recorded size (nil: a new key).
local function before_write(f)
  local now = now_ms()
  local bytes = used() - sweep(now)
  local old, stale = recorded(f)
  return now, bytes - (stale or 0), old
end
-- A new key past the key budget (ARGV[4]).
local function keys_full(old)
  return old == nil and redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[4])
end
-- Record f's new size, and the change in bytes in use.
local function record_size(f, size, old)
  redis.call('HSET', KEYS[2], f, size)
  redis.call('INCRBY', KEYS[4], size - (old or 0))
end
"#;

/// ARGV = key, value, ttl ms (0: none), max keys, max bytes.
/// Returns 0, or -1 (keys full) / -2 (bytes full) having changed nothing.
const SET: &str = r#"
local f, value, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local now, bytes, old = before_write(f)
local size = #f + #value
if keys_full(old) then return -1 end
if bytes - (old or 0) + size > tonumber(ARGV[5]) then return -2 end
if ttl > 0 then
  redis.call('SET', KEYS[1], value, 'PX', ttl)
  redis.call('ZADD', KEYS[3], now + ttl + 1, f)
else
  redis.call('SET', KEYS[1], value)
  redis.call('ZREM', KEYS[3], f)
end
record_size(f, size, old)
return 0
"#;

/// ARGV = key, by, default ttl ms for a new key (0: none), max keys, max bytes.
/// Returns the new value as a string, or -1 / -2 as `SET`.
const INCR: &str = r#"
local f, by, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local now, bytes, old = before_write(f)
local before = redis.call('GET', KEYS[1])
if keys_full(old) then return -1 end
if before == false and bytes + #f + #by > tonumber(ARGV[5]) then return -2 end
redis.call('INCRBY', KEYS[1], by)
local size = #f + redis.call('STRLEN', KEYS[1])
if bytes - (old or 0) + size > tonumber(ARGV[5]) then
  if before == false then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], before, 'KEEPTTL') end
  return -2
end
if before == false and ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('ZADD', KEYS[3], now + ttl + 1, f)
end
record_size(f, size, old)
return redis.call('GET', KEYS[1])
"#;

/// ARGV = key. Returns how many values were deleted (0 or 1).
const DELETE: &str = r#"
local bytes = used() - sweep(now_ms())
local n = redis.call('DEL', KEYS[1])
local size = tonumber(redis.call('HGET', KEYS[2], ARGV[1]))
if size ~= nil or redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then
  forget(ARGV[1], math.max(size or 0, 0))
end
return n
"#;

/// A script and, once Redis told it, its sha1.
struct Lua {
    src: String,
    sha: std::sync::Mutex<Option<String>>,
}

impl Lua {
    fn new(body: &str) -> Self {
        Self {
            src: format!("{HEAL}{PRELUDE}{body}"),
            sha: std::sync::Mutex::new(None),
        }
    }
}

fn unavailable(e: ClusterError) -> KvError {
    match e {
        ClusterError::Redis(m) if m.contains("not an integer") || m.contains("out of range") => {
            KvError::NotANumber
        }
        e => KvError::Unavailable(e.to_string()),
    }
}

/// -1 / -2 from a script: which budget is used up.
fn full(code: i64, quota: &KvQuota) -> KvError {
    if code == -1 {
        KvError::Full(KvFull::Keys(quota.max_keys))
    } else {
        KvError::Full(KvFull::Bytes(quota.max_bytes))
    }
}

fn ms(ttl: Option<Duration>) -> u64 {
    ttl.map_or(0, |t| (t.as_millis() as u64).max(1))
}

impl RedisKv {
    pub fn new(redis: Redis) -> Self {
        Self {
            redis,
            set: Lua::new(SET),
            incr: Lua::new(INCR),
            delete: Lua::new(DELETE),
        }
    }

    /// Run `script` by its sha1, loading it when Redis does not know it
    /// (first use, or after a restart).
    async fn eval(&self, script: &Lua, keys: &[String], args: &[&[u8]]) -> KvResult<redis::Value> {
        let evalsha = |sha: &str| {
            let mut cmd = redis::cmd("EVALSHA");
            cmd.arg(sha).arg(keys.len());
            for k in keys {
                cmd.arg(k);
            }
            for a in args {
                cmd.arg(*a);
            }
            cmd
        };
        let known = script.sha.lock().unwrap().clone();
        if let Some(sha) = known {
            match self.redis.run(&evalsha(&sha)).await {
                Err(ClusterError::Redis(m)) if m.to_ascii_lowercase().contains("noscript") => {}
                r => return r.map_err(unavailable),
            }
        }
        let sha: String = self
            .redis
            .run(redis::cmd("SCRIPT").arg("LOAD").arg(&script.src))
            .await
            .map_err(unavailable)?;
        *script.sha.lock().unwrap() = Some(sha.clone());
        self.redis.run(&evalsha(&sha)).await.map_err(unavailable)
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
        quota: &'a KvQuota,
    ) -> BoxFuture<'a, KvResult<()>> {
        Box::pin(async move {
            let (ttl, max_keys, max_bytes) = (
                ms(ttl).to_string(),
                quota.max_keys.to_string(),
                quota.max_bytes.to_string(),
            );
            let args: [&[u8]; 5] = [
                k.as_bytes(),
                &value,
                ttl.as_bytes(),
                max_keys.as_bytes(),
                max_bytes.as_bytes(),
            ];
            match self.eval(&self.set, &keys(plugin, k), &args).await? {
                redis::Value::Int(0) => Ok(()),
                redis::Value::Int(code) => Err(full(code, quota)),
                other => Err(KvError::Unavailable(format!(
                    "unexpected answer from redis: {other:?}"
                ))),
            }
        })
    }

    fn delete<'a>(&'a self, plugin: &'a str, k: &'a str) -> BoxFuture<'a, KvResult<bool>> {
        Box::pin(async move {
            match self
                .eval(&self.delete, &keys(plugin, k), &[k.as_bytes()])
                .await?
            {
                redis::Value::Int(n) => Ok(n > 0),
                other => Err(KvError::Unavailable(format!(
                    "unexpected answer from redis: {other:?}"
                ))),
            }
        })
    }

    fn incr<'a>(
        &'a self,
        plugin: &'a str,
        k: &'a str,
        by: i64,
        quota: &'a KvQuota,
    ) -> BoxFuture<'a, KvResult<i64>> {
        Box::pin(async move {
            let (by, ttl, max_keys, max_bytes) = (
                by.to_string(),
                ms(quota.default_ttl).to_string(),
                quota.max_keys.to_string(),
                quota.max_bytes.to_string(),
            );
            let args: [&[u8]; 5] = [
                k.as_bytes(),
                by.as_bytes(),
                ttl.as_bytes(),
                max_keys.as_bytes(),
                max_bytes.as_bytes(),
            ];
            match self.eval(&self.incr, &keys(plugin, k), &args).await? {
                redis::Value::Int(code) => Err(full(code, quota)),
                redis::Value::BulkString(b) => std::str::from_utf8(&b)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or(KvError::NotANumber),
                other => Err(KvError::Unavailable(format!(
                    "unexpected answer from redis: {other:?}"
                ))),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::test_redis::TestRedis;
    use crate::plugins::{KvPolicy, KvStore};
    use std::sync::Arc;

    fn quota(max_keys: usize, max_bytes: usize) -> KvQuota {
        KvQuota {
            max_keys,
            max_bytes,
            default_ttl: None,
        }
    }

    fn store(redis: Redis, q: KvQuota) -> KvStore {
        KvStore::new(Arc::new(RedisKv::new(redis))).with_policy(KvPolicy {
            default: q,
            plugins: Default::default(),
        })
    }

    async fn raw<T: redis::FromRedisValue>(r: &Redis, args: &[&str]) -> T {
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        r.run(&cmd).await.expect("redis answers")
    }

    /// Keys and bytes recorded for plugin `p`, and the bytes its values really hold.
    async fn usage(r: &Redis, p: &str) -> (usize, usize, usize) {
        let sizes: std::collections::HashMap<String, usize> =
            raw(r, &["HGETALL", &format!("portico:kvmeta:{p}:sizes")]).await;
        let bytes: usize = raw(r, &["GET", &format!("portico:kvmeta:{p}:bytes")]).await;
        let mut real = 0;
        for k in sizes.keys() {
            let n: usize = raw(r, &["STRLEN", &key(p, k)]).await;
            real += k.len() + n;
        }
        (sizes.len(), bytes, real)
    }

    #[tokio::test]
    async fn key_and_byte_budgets_hold_and_free_on_delete_and_expiry() {
        let server = TestRedis::start();
        let r = server.connect().await;
        let kv = store(r.clone(), quota(3, 20)).space("p");
        kv.set("a", b"1234".to_vec(), None).await.unwrap(); // 5
        kv.set("b", b"1234".to_vec(), None).await.unwrap(); // 10
        assert_eq!(kv.incr("n", 7).await.unwrap(), 7); // 12
        assert_eq!(
            kv.set("c", vec![], None).await,
            Err(KvError::Full(KvFull::Keys(3)))
        );
        assert_eq!(kv.incr("c", 1).await, Err(KvError::Full(KvFull::Keys(3))));
        // Replacing counts the difference: 12 - 5 + 11 = 18.
        kv.set("a", b"1234567890".to_vec(), None).await.unwrap();
        assert_eq!(
            kv.set("b", b"123456".to_vec(), None).await, // 18 - 5 + 7 = 20: fits
            Ok(())
        );
        assert_eq!(
            kv.set("b", b"1234567".to_vec(), None).await, // 21
            Err(KvError::Full(KvFull::Bytes(20)))
        );
        // incr that would add a digit past the budget changes nothing.
        assert_eq!(kv.incr("n", 3).await, Err(KvError::Full(KvFull::Bytes(20))));
        assert_eq!(kv.get("n").await.unwrap(), Some(b"7".to_vec()));
        assert_eq!(usage(&r, "p").await, (3, 20, 20));

        assert!(kv.delete("a").await.unwrap());
        assert!(!kv.delete("a").await.unwrap());
        assert_eq!(usage(&r, "p").await, (2, 9, 9));
        // A key with a TTL counts until it expires, then frees its room.
        kv.set("t", b"1234567890".to_vec(), Some(Duration::from_millis(50)))
            .await
            .unwrap();
        assert_eq!(
            kv.set("u", vec![], None).await,
            Err(KvError::Full(KvFull::Keys(3)))
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while kv.get("t").await.unwrap().is_some() {
            assert!(tokio::time::Instant::now() < deadline, "TTL never expired");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        kv.set("u", b"1234567890".to_vec(), None).await.unwrap();
        assert_eq!(usage(&r, "p").await, (3, 20, 20));
    }

    #[tokio::test]
    async fn two_nodes_writing_at_once_never_go_over_the_budget() {
        let server = TestRedis::start();
        let (r1, r2) = (server.connect().await, server.connect().await);
        let q = quota(50, 1_000_000);
        let nodes = [store(r1.clone(), q), store(r2, q)];
        let mut tasks = Vec::new();
        for t in 0..8 {
            let kv = nodes[t % 2].space("p");
            tasks.push(tokio::spawn(async move {
                let mut ok = 0;
                for i in 0..40 {
                    match kv.set(&format!("k{t}-{i}"), vec![b'x'; 10], None).await {
                        Ok(()) => ok += 1,
                        Err(KvError::Full(KvFull::Keys(50))) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
                ok
            }));
        }
        let mut ok = 0;
        for t in tasks {
            ok += t.await.unwrap();
        }
        assert_eq!(ok, 50);
        let (keys, bytes, real) = usage(&r1, "p").await;
        assert_eq!((keys, bytes), (50, real));

        // Same for bytes: 100 writers of 100 bytes into a 5,000-byte budget.
        let q = quota(1000, 5_000);
        let nodes = [store(r1.clone(), q), store(server.connect().await, q)];
        let mut tasks = Vec::new();
        for t in 0..100 {
            let kv = nodes[t % 2].space("b");
            tasks.push(tokio::spawn(async move {
                kv.set(&format!("{t:04}"), vec![b'x'; 96], None)
                    .await
                    .is_ok()
            }));
        }
        let mut ok = 0;
        for t in tasks {
            ok += usize::from(t.await.unwrap());
        }
        assert_eq!(ok, 50);
        assert_eq!(usage(&r1, "b").await, (50, 5_000, 5_000));
    }

    #[tokio::test]
    async fn a_default_ttl_makes_keys_written_without_one_expire() {
        let server = TestRedis::start();
        let r = server.connect().await;
        let q = KvQuota {
            default_ttl: Some(Duration::from_secs(30)),
            ..quota(10, 1000)
        };
        let kv = store(r.clone(), q).space("p");
        kv.set("conn:1", b"x".to_vec(), None).await.unwrap();
        kv.incr("hits", 1).await.unwrap();
        kv.set("short", b"x".to_vec(), Some(Duration::from_secs(5)))
            .await
            .unwrap();
        for (k, max) in [("conn:1", 30_000), ("hits", 30_000), ("short", 5_000)] {
            let pttl: i64 = raw(&r, &["PTTL", &key("p", k)]).await;
            assert!(pttl > 0 && pttl <= max, "{k}: {pttl}");
        }
        // incr keeps the TTL of an existing key.
        kv.incr("hits", 1).await.unwrap();
        let pttl: i64 = raw(&r, &["PTTL", &key("p", "hits")]).await;
        assert!(pttl > 0);
    }

    #[tokio::test]
    async fn garbage_in_redis_is_refused_or_repaired_without_a_panic() {
        let server = TestRedis::start();
        let r = server.connect().await;
        let kv = store(r.clone(), quota(10, 1000)).space("p");
        kv.set("a", b"12".to_vec(), None).await.unwrap();
        // A garbled usage counter is recomputed from the sizes.
        let _: () = raw(&r, &["SET", "portico:kvmeta:p:bytes", "1e9"]).await;
        kv.set("b", b"12".to_vec(), None).await.unwrap();
        assert_eq!(usage(&r, "p").await, (2, 6, 6));
        // Bookkeeping of the wrong type is dropped and rebuilt.
        let _: () = raw(&r, &["DEL", "portico:kvmeta:p:sizes"]).await;
        let _: () = raw(&r, &["SET", "portico:kvmeta:p:sizes", "garbage"]).await;
        let _: () = raw(&r, &["HSET", "portico:kvmeta:p:expiry", "x", "y"]).await;
        kv.set("c", b"12".to_vec(), None).await.unwrap();
        assert_eq!(usage(&r, "p").await, (1, 3, 3));
        // A garbled size counts as 0; a value deleted behind our back frees its room.
        let _: () = raw(&r, &["HSET", "portico:kvmeta:p:sizes", "c", "-5x"]).await;
        let _: () = raw(&r, &["HSET", "portico:kvmeta:p:sizes", "gone", "100"]).await;
        kv.set("gone", b"1".to_vec(), None).await.unwrap();
        kv.delete("c").await.unwrap();
        // Values of the wrong type: an error for the plugin, not a panic.
        let _: () = raw(&r, &["HSET", &key("p", "h"), "f", "v"]).await;
        assert!(matches!(kv.get("h").await, Err(KvError::Unavailable(_))));
        assert!(kv.incr("h", 1).await.is_err());
        kv.set("s", b"text".to_vec(), None).await.unwrap();
        assert_eq!(kv.incr("s", 1).await, Err(KvError::NotANumber));
        let _: () = raw(&r, &["SET", &key("p", "big"), "99999999999999999999999"]).await;
        assert_eq!(kv.incr("big", 1).await, Err(KvError::NotANumber));
        // The scripts are loaded again after Redis forgot them.
        let _: () = raw(&r, &["SCRIPT", "FLUSH"]).await;
        kv.set("after", vec![], None).await.unwrap();
    }
}
