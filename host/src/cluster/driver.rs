//! The socketioxide-redis driver. The stock one keeps a single connection
//! and never recovers from a Redis restart; this one rides the node's
//! [`Redis`] connection manager, and never lets Redis delay local delivery:
//! publishes go through a bounded outbox drained by a background task in
//! pipelined batches. Channel publications do not come this way (they go
//! through the channels' Redis Stream); the adapter's own requests do.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::future::BoxFuture;
use tokio::sync::mpsc;

use super::redis_conn::Redis;
use crate::gateway::{ChanItem, CrossNode, CrossNodeError, CrossNodeStats};

/// Messages waiting to be published; past this, a publish is refused with
/// [`ClusterError::Overloaded`] (and counted) rather than queued without bound.
const OUTBOX: usize = 8192;

pub struct RedisDriver {
    redis: Redis,
    outbox: mpsc::Sender<(String, Vec<u8>)>,
    pub published: AtomicU64,
    pub dropped: AtomicU64,
}

impl RedisDriver {
    pub fn new(redis: Redis) -> Arc<Self> {
        let (tx, rx) = mpsc::channel::<(String, Vec<u8>)>(OUTBOX);
        let driver = Arc::new(RedisDriver {
            redis: redis.clone(),
            outbox: tx,
            published: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        });
        tokio::spawn(send_batches(redis, rx, Arc::downgrade(&driver)));
        driver
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

fn transport(e: super::ClusterError) -> CrossNodeError {
    CrossNodeError(e.to_string())
}

impl CrossNode for RedisDriver {
    fn publish(&self, chan: String, val: Vec<u8>) -> BoxFuture<'_, Result<(), CrossNodeError>> {
        if self.outbox.try_send((chan, val)).is_err() {
            // Refused, not dropped silently: the adapter reports it to the caller.
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return Box::pin(std::future::ready(Err(CrossNodeError(
                "the outbox to Redis is full (overloaded)".into(),
            ))));
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn subscribe(
        &self,
        chan: String,
        size: usize,
    ) -> BoxFuture<'_, Result<mpsc::Receiver<ChanItem>, CrossNodeError>> {
        Box::pin(async move { self.redis.subscribe(&chan, size).await.map_err(transport) })
    }

    fn unsubscribe(&self, chan: String) -> BoxFuture<'_, Result<(), CrossNodeError>> {
        Box::pin(async move { self.redis.unsubscribe(&chan).await.map_err(transport) })
    }

    /// While Redis is away a node counts itself alone, so requests that wait
    /// for every node's answer do not hang.
    fn num_serv<'a>(&'a self, chan: &'a str) -> BoxFuture<'a, u16> {
        Box::pin(async move {
            let res: Result<(String, u16), _> = self
                .redis
                .run(redis::cmd("PUBSUB").arg("NUMSUB").arg(chan))
                .await;
            res.map_or(1, |(_, n)| n.max(1))
        })
    }

    fn stats(&self) -> CrossNodeStats {
        CrossNodeStats {
            published: self.published.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}
