//! The socketioxide-redis driver. The stock one keeps a single connection
//! and never recovers from a Redis restart; this one rides the node's
//! [`Redis`] connection manager, and never lets Redis delay local delivery:
//! publishes go through a bounded outbox drained by a background task in
//! pipelined batches. Channel publications do not come this way (they go
//! through the channels' Redis Stream); the adapter's own requests do.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use socketioxide_redis::drivers::{ChanItem, Driver, MessageStream};
use tokio::sync::mpsc;

use super::error::ClusterError;
use super::redis_conn::Redis;

/// Messages waiting to be published; past this, a publish is refused with
/// [`ClusterError::Overloaded`] (and counted) rather than queued without bound.
const OUTBOX: usize = 8192;

/// Either no cluster (every call is a no-op, so the adapter delivers
/// locally) or Redis.
#[derive(Clone)]
pub enum ClusterDriver {
    Local,
    Redis(Arc<RedisDriver>),
}

pub struct RedisDriver {
    redis: Redis,
    outbox: mpsc::Sender<(String, Vec<u8>)>,
    pub published: AtomicU64,
    pub dropped: AtomicU64,
}

impl ClusterDriver {
    pub fn redis(redis: Redis) -> Self {
        let (tx, rx) = mpsc::channel::<(String, Vec<u8>)>(OUTBOX);
        let driver = Arc::new(RedisDriver {
            redis: redis.clone(),
            outbox: tx,
            published: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        });
        tokio::spawn(send_batches(redis, rx, Arc::downgrade(&driver)));
        Self::Redis(driver)
    }
}

/// Messages sent per round trip at most.
const BATCH: usize = 256;

/// Publish the outbox in pipelined batches (one round trip for up to
/// [`BATCH`] messages). A batch Redis refused is counted as dropped.
async fn send_batches(
    redis: Redis,
    mut rx: mpsc::Receiver<(String, Vec<u8>)>,
    stats: std::sync::Weak<RedisDriver>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let mut pipe = redis::pipe();
        for (chan, payload) in batch.drain(..) {
            pipe.cmd("PUBLISH").arg(chan).arg(payload).ignore();
        }
        let res = redis.run_pipe::<()>(&pipe).await;
        let Some(stats) = stats.upgrade() else { return };
        let n = pipe.len() as u64;
        match res {
            Ok(()) => stats.published.fetch_add(n, Ordering::Relaxed),
            Err(e) => {
                tracing::debug!(messages = n, "cross-node publish lost: {e}");
                stats.dropped.fetch_add(n, Ordering::Relaxed)
            }
        };
    }
}

impl Driver for ClusterDriver {
    type Error = ClusterError;

    async fn publish(&self, chan: String, val: Vec<u8>) -> Result<(), Self::Error> {
        if let Self::Redis(d) = self
            && d.outbox.try_send((chan, val)).is_err()
        {
            // Refused, not dropped silently: the adapter reports it to the caller.
            d.dropped.fetch_add(1, Ordering::Relaxed);
            return Err(ClusterError::Overloaded);
        }
        Ok(())
    }

    async fn subscribe(
        &self,
        chan: String,
        size: usize,
    ) -> Result<MessageStream<ChanItem>, Self::Error> {
        match self {
            Self::Local => Ok(MessageStream::new_empty()),
            Self::Redis(d) => Ok(MessageStream::new(d.redis.subscribe(&chan, size).await?)),
        }
    }

    async fn unsubscribe(&self, chan: String) -> Result<(), Self::Error> {
        match self {
            Self::Local => Ok(()),
            Self::Redis(d) => d.redis.unsubscribe(&chan).await,
        }
    }

    /// Nodes serving a namespace. While Redis is away a node counts itself
    /// alone, so requests that wait for every node's answer do not hang.
    async fn num_serv(&self, chan: &str) -> Result<u16, Self::Error> {
        match self {
            Self::Local => Ok(1),
            Self::Redis(d) => {
                let res: Result<(String, u16), _> = d
                    .redis
                    .run(redis::cmd("PUBSUB").arg("NUMSUB").arg(chan))
                    .await;
                Ok(res.map_or(1, |(_, n)| n.max(1)))
            }
        }
    }
}
