//! The socketioxide-redis driver. The stock one keeps a single connection
//! and never recovers from a Redis restart; this one rides the node's
//! [`Redis`] connection manager, and never lets Redis delay local delivery:
//! publishes go through a bounded outbox drained by a background task.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::future::BoxFuture;
use tokio::sync::mpsc;

use super::redis_conn::Redis;
use crate::gateway::{ChanItem, CrossNode, CrossNodeError, CrossNodeStats};

/// Messages waiting to be published; past this, cross-node messages are
/// dropped (and counted) rather than queued without bound.
const OUTBOX: usize = 8192;

pub struct RedisDriver {
    redis: Redis,
    outbox: mpsc::Sender<(String, Vec<u8>)>,
    pub published: AtomicU64,
    pub dropped: AtomicU64,
}

impl RedisDriver {
    pub fn new(redis: Redis) -> Arc<Self> {
        let (tx, mut rx) = mpsc::channel::<(String, Vec<u8>)>(OUTBOX);
        let driver = Arc::new(RedisDriver {
            redis: redis.clone(),
            outbox: tx,
            published: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        });
        let stats = Arc::downgrade(&driver);
        tokio::spawn(async move {
            while let Some((chan, payload)) = rx.recv().await {
                let res = redis
                    .run::<redis::Value>(redis::cmd("PUBLISH").arg(&chan).arg(payload))
                    .await;
                let Some(stats) = stats.upgrade() else { return };
                match res {
                    Ok(_) => stats.published.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        tracing::debug!(channel = chan, "cross-node publish lost: {e}");
                        stats.dropped.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        });
        driver
    }
}

fn transport(e: super::ClusterError) -> CrossNodeError {
    CrossNodeError(e.to_string())
}

impl CrossNode for RedisDriver {
    fn publish(&self, chan: String, val: Vec<u8>) -> BoxFuture<'_, Result<(), CrossNodeError>> {
        if self.outbox.try_send((chan, val)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
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
