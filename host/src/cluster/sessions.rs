//! Connection state recovery's session store over Redis: one key per
//! session with a TTL, so any node can restore a session, even after the
//! node that saved it died.

use std::time::Duration;

use futures::future::BoxFuture;

use super::redis_conn::Redis;
use crate::gateway::{RecoveryError, SavedSession, SessionStore};

type Result<T> = std::result::Result<T, RecoveryError>;

fn store(e: super::ClusterError) -> RecoveryError {
    RecoveryError::Store(e.to_string())
}

/// Sessions as Redis keys `portico:session:<key>` with a TTL.
pub struct RedisSessions {
    redis: Redis,
}

impl RedisSessions {
    pub fn new(redis: Redis) -> Self {
        Self { redis }
    }
}

impl RedisSessions {
    /// `GET` or `GETDEL` one session.
    async fn read(&self, command: &str, key: &str) -> Result<Option<SavedSession>> {
        let raw: Option<String> = self
            .redis
            .run(redis::cmd(command).arg(redis_key(key)))
            .await
            .map_err(store)?;
        decode(raw)
    }
}

fn redis_key(key: &str) -> String {
    format!("portico:session:{key}")
}

fn decode(raw: Option<String>) -> Result<Option<SavedSession>> {
    raw.map(|json| serde_json::from_str(&json).map_err(|e| RecoveryError::Corrupt(e.to_string())))
        .transpose()
}

impl SessionStore for RedisSessions {
    fn save<'a>(
        &'a self,
        key: &'a str,
        session: &'a SavedSession,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let json = serde_json::to_string(session)
                .map_err(|e| RecoveryError::Corrupt(e.to_string()))?;
            let mut cmd = redis::cmd("SET");
            cmd.arg(redis_key(key))
                .arg(json)
                .arg("PX")
                .arg(ttl.as_millis() as u64);
            self.redis.run::<()>(&cmd).await.map_err(store)?;
            Ok(())
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<SavedSession>>> {
        Box::pin(self.read("GET", key))
    }

    fn take<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<SavedSession>>> {
        Box::pin(self.read("GETDEL", key))
    }

    fn swap<'a>(
        &'a self,
        key: &'a str,
        with: &'a SavedSession,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<SavedSession>>> {
        Box::pin(async move {
            let json =
                serde_json::to_string(with).map_err(|e| RecoveryError::Corrupt(e.to_string()))?;
            let mut cmd = redis::cmd("SET");
            cmd.arg(redis_key(key))
                .arg(json)
                .arg("PX")
                .arg(ttl.as_millis() as u64)
                .arg("GET");
            let raw: Option<String> = self.redis.run(&cmd).await.map_err(store)?;
            decode(raw)
        })
    }

    /// The node's presence heartbeat key (see `cluster::presence`); a Redis
    /// error counts as alive, so nothing is restored twice.
    fn alive<'a>(&'a self, node: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            let cmd = redis::cmd("EXISTS")
                .arg(format!("portico:node:{node}"))
                .to_owned();
            self.redis.run::<u64>(&cmd).await.map_or(true, |n| n > 0)
        })
    }
}
