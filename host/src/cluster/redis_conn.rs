//! One Redis connection per node, shared by every cluster feature: a
//! `ConnectionManager` (reconnects by itself, resubscribes pub/sub channels
//! after a reconnect) over RESP3, which pub/sub push messages need.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::mpsc;

use super::error::{ClusterError, Result};

/// How long one Redis command may take before it counts as failed. Bounds
/// every cross-node operation while Redis is away.
pub const COMMAND_TIMEOUT: Duration = Duration::from_millis(1500);

type Handlers = Arc<RwLock<HashMap<String, mpsc::Sender<(String, Vec<u8>)>>>>;

/// The node's Redis connection and the pub/sub routing table.
#[derive(Clone)]
pub struct Redis {
    pub(super) conn: ConnectionManager,
    handlers: Handlers,
    healthy: Arc<AtomicBool>,
    refused: Arc<std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>>,
}

/// `redis://host:port/` with RESP3 forced on (pub/sub over a multiplexed
/// connection needs push messages).
pub fn resp3_url(url: &str) -> Result<String> {
    if !url.starts_with("redis://") && !url.starts_with("rediss://") {
        return Err(ClusterError::Url(format!(
            "{url:?} must start with redis:// or rediss://"
        )));
    }
    Ok(match url {
        u if u.contains("protocol=") => u.to_owned(),
        u if u.contains('?') => format!("{u}&protocol=resp3"),
        u => format!(
            "{u}{}?protocol=resp3",
            if u[8..].contains('/') { "" } else { "/" }
        ),
    })
}

impl Redis {
    /// Connect, retrying with backoff for up to `wait` (Redis may start after us).
    pub async fn connect(url: &str, wait: Duration) -> Result<Self> {
        let client =
            redis::Client::open(resp3_url(url)?).map_err(|e| ClusterError::Url(e.to_string()))?;
        let handlers: Handlers = Arc::default();
        let routes = handlers.clone();
        let config = ConnectionManagerConfig::new()
            .set_automatic_resubscription()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            .set_max_delay(Duration::from_millis(500))
            .set_push_sender(move |msg: redis::PushInfo| {
                route(msg, &routes);
                Ok::<(), std::convert::Infallible>(())
            });
        let deadline = tokio::time::Instant::now() + wait;
        let mut delay = Duration::from_millis(100);
        let conn = loop {
            match ConnectionManager::new_with_config(client.clone(), config.clone()).await {
                Ok(conn) => break conn,
                Err(e) if tokio::time::Instant::now() + delay < deadline => {
                    tracing::warn!("redis not reachable yet ({e}); retrying in {delay:?}");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                Err(e) => return Err(e.into()),
            }
        };
        Ok(Self {
            conn,
            handlers,
            healthy: Arc::new(AtomicBool::new(true)),
            refused: Arc::default(),
        })
    }

    /// Run a command with the node-wide timeout; records whether Redis answered.
    pub async fn run<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T> {
        let mut conn = self.conn.clone();
        let res = match tokio::time::timeout(COMMAND_TIMEOUT, cmd.query_async::<T>(&mut conn)).await
        {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e))
                if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError) =>
            {
                // The server answered: it is up, the command was wrong.
                self.healthy.store(true, Ordering::Relaxed);
                return Err(e.into());
            }
            Ok(Err(e)) => Err(ClusterError::from(e)),
            Err(_) => Err(ClusterError::Timeout(COMMAND_TIMEOUT.as_millis() as u64)),
        };
        self.healthy.store(res.is_ok(), Ordering::Relaxed);
        res
    }

    /// Run a pipeline (one round trip) with the node-wide timeout.
    pub async fn run_pipe<T: redis::FromRedisValue>(&self, pipe: &redis::Pipeline) -> Result<T> {
        let mut conn = self.conn.clone();
        let res =
            match tokio::time::timeout(COMMAND_TIMEOUT, pipe.query_async::<T>(&mut conn)).await {
                Ok(r) => r.map_err(ClusterError::from),
                Err(_) => Err(ClusterError::Timeout(COMMAND_TIMEOUT.as_millis() as u64)),
            };
        self.healthy.store(res.is_ok(), Ordering::Relaxed);
        res
    }

    /// Whether the last command reached Redis.
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Count an entry read from Redis and refused (garbage, out of bounds),
    /// by kind: `plugin_record`, `plugin_blob`, `presence_entry`, ...
    pub fn refuse(&self, kind: &'static str) {
        *self.refused.lock().unwrap().entry(kind).or_default() += 1;
    }

    /// What [`Redis::refuse`] counted, by kind.
    pub fn refused(&self) -> Vec<(&'static str, u64)> {
        let r = self.refused.lock().unwrap();
        r.iter().map(|(k, n)| (*k, *n)).collect()
    }

    /// Route messages of `channel` to a new receiver.
    pub async fn subscribe(
        &self,
        channel: &str,
        buffer: usize,
    ) -> Result<mpsc::Receiver<(String, Vec<u8>)>> {
        let (tx, rx) = mpsc::channel(buffer);
        self.handlers
            .write()
            .unwrap()
            .insert(channel.to_owned(), tx);
        let mut conn = self.conn.clone();
        match tokio::time::timeout(COMMAND_TIMEOUT, conn.subscribe(channel)).await {
            Ok(Ok(())) => {}
            // Redis is away: keep the route and retry until the subscription holds;
            // once it does, the manager resubscribes it after every reconnect.
            _ => self.retry_subscribe(channel.to_owned()),
        }
        Ok(rx)
    }

    fn retry_subscribe(&self, channel: String) {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                if !this.handlers.read().unwrap().contains_key(&channel) {
                    return;
                }
                let mut conn = this.conn.clone();
                if let Ok(Ok(())) =
                    tokio::time::timeout(COMMAND_TIMEOUT, conn.subscribe(&channel)).await
                {
                    tracing::info!(channel, "redis subscription restored");
                    return;
                }
            }
        });
    }

    pub async fn unsubscribe(&self, channel: &str) -> Result<()> {
        self.handlers.write().unwrap().remove(channel);
        let mut conn = self.conn.clone();
        match tokio::time::timeout(COMMAND_TIMEOUT, conn.unsubscribe(channel)).await {
            Ok(r) => r.map_err(Into::into),
            Err(_) => Err(ClusterError::Timeout(COMMAND_TIMEOUT.as_millis() as u64)),
        }
    }
}

fn route(msg: redis::PushInfo, handlers: &Handlers) {
    if !matches!(msg.kind, redis::PushKind::Message) || msg.data.len() < 2 {
        return;
    }
    let mut data = msg.data.into_iter();
    let (Some(chan), Some(payload)) = (data.next(), data.next()) else {
        return;
    };
    let (Ok(chan), Ok(payload)) = (
        redis::from_redis_value::<String>(chan),
        redis::from_redis_value::<Vec<u8>>(payload),
    ) else {
        return;
    };
    if let Some(tx) = handlers.read().unwrap().get(&chan)
        && tx.try_send((chan.clone(), payload)).is_err()
    {
        tracing::warn!(
            channel = chan,
            "cross-node message dropped: the local consumer is behind"
        );
    }
}

impl crate::ops::Upstream for Redis {
    fn healthy(&self) -> bool {
        Redis::healthy(self)
    }

    fn refused(&self) -> Vec<(&'static str, u64)> {
        Redis::refused(self)
    }
}

#[cfg(test)]
mod tests {
    use super::resp3_url;

    #[test]
    fn urls_get_resp3() {
        assert_eq!(
            resp3_url("redis://127.0.0.1:7000").unwrap(),
            "redis://127.0.0.1:7000/?protocol=resp3"
        );
        assert_eq!(
            resp3_url("redis://h:1/2").unwrap(),
            "redis://h:1/2?protocol=resp3"
        );
        assert_eq!(
            resp3_url("redis://h:1/?db=1").unwrap(),
            "redis://h:1/?db=1&protocol=resp3"
        );
        assert!(resp3_url("http://h").is_err());
    }
}
