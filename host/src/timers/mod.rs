//! Plugin timers: "call me back in N ms", optionally about one connection.
//!
//! Each plugin has one [`TimerSpace`] shared by all its versions, so a timer
//! set by one version fires into whichever version is active then (a hot
//! swap keeps them). A fired timer is sent on the space's channel; the
//! gateway, which owns the sockets, takes the receiver when it mounts the
//! plugin and delivers it (to the connection's queue, or to the plugin alone).
//! Timers are node-local: in cluster mode they stay on the node that set
//! them and end with it.

mod error;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::AbortHandle;

pub use error::TimerError;

use crate::plugins::TimerEvent;

/// Bounds on a plugin's timers.
#[derive(Debug, Clone, Copy)]
pub struct TimerLimits {
    /// Timers pending at once per plugin.
    pub max_pending: u32,
    pub max_delay: Duration,
    /// Name and data together.
    pub max_bytes: usize,
}

impl Default for TimerLimits {
    fn default() -> Self {
        Self {
            max_pending: 1000,
            max_delay: Duration::from_secs(24 * 3600),
            max_bytes: 16 << 10,
        }
    }
}

/// Every plugin's timers on this node.
#[derive(Default)]
pub struct Timers {
    limits: TimerLimits,
    plugins: Mutex<HashMap<String, TimerSpace>>,
}

impl Timers {
    pub fn new(limits: TimerLimits) -> Self {
        Self {
            limits,
            plugins: Mutex::default(),
        }
    }

    /// The timers of `plugin` (the same space for every version of it).
    pub fn space(&self, plugin: &str) -> TimerSpace {
        let mut plugins = self.plugins.lock().unwrap();
        plugins
            .entry(plugin.to_owned())
            .or_insert_with(|| TimerSpace::new(self.limits))
            .clone()
    }

    /// A plugin was removed: cancel its timers.
    pub fn remove(&self, plugin: &str) {
        if let Some(space) = self.plugins.lock().unwrap().remove(plugin) {
            space.cancel_all();
        }
    }
}

struct Pending {
    conn: Option<String>,
    task: AbortHandle,
}

struct Inner {
    limits: TimerLimits,
    next_id: AtomicU64,
    pending: Mutex<HashMap<u64, Pending>>,
    fired: mpsc::UnboundedSender<TimerEvent>,
    receiver: Mutex<Option<mpsc::UnboundedReceiver<TimerEvent>>>,
    /// Timers set, fired, and refused by a limit.
    set: AtomicU64,
    delivered: AtomicU64,
    refused: AtomicU64,
}

/// One plugin's timers.
#[derive(Clone)]
pub struct TimerSpace(Arc<Inner>);

impl TimerSpace {
    fn new(limits: TimerLimits) -> Self {
        let (fired, receiver) = mpsc::unbounded_channel();
        Self(Arc::new(Inner {
            limits,
            next_id: AtomicU64::new(1),
            pending: Mutex::default(),
            fired,
            receiver: Mutex::new(Some(receiver)),
            set: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }))
    }

    /// Fire `name`/`data_json` after `delay`. Must run inside the tokio runtime.
    pub fn set(
        &self,
        delay: Duration,
        name: String,
        data_json: String,
        conn: Option<String>,
    ) -> Result<u64, TimerError> {
        let result = self.check(delay, &name, &data_json);
        if result.is_err() {
            self.0.refused.fetch_add(1, Ordering::Relaxed);
        }
        result?;
        let mut pending = self.0.pending.lock().unwrap();
        if pending.len() >= self.0.limits.max_pending as usize {
            self.0.refused.fetch_add(1, Ordering::Relaxed);
            return Err(TimerError::TooMany(self.0.limits.max_pending));
        }
        let id = self.0.next_id.fetch_add(1, Ordering::Relaxed);
        let event = TimerEvent {
            id,
            name,
            data_json,
            conn: conn.clone(),
        };
        // The task holds only a weak reference: a removed plugin's timers go with it.
        let weak = Arc::downgrade(&self.0);
        let task = tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let Some(inner) = weak.upgrade() else { return };
            if inner.pending.lock().unwrap().remove(&id).is_some() {
                inner.delivered.fetch_add(1, Ordering::Relaxed);
                let _ = inner.fired.send(event);
            }
        })
        .abort_handle();
        pending.insert(id, Pending { conn, task });
        self.0.set.fetch_add(1, Ordering::Relaxed);
        Ok(id)
    }

    fn check(&self, delay: Duration, name: &str, data: &str) -> Result<(), TimerError> {
        let l = self.0.limits;
        if delay > l.max_delay {
            return Err(TimerError::Invalid(format!(
                "delay over the maximum of {} s",
                l.max_delay.as_secs()
            )));
        }
        if name.len() + data.len() > l.max_bytes {
            return Err(TimerError::Invalid(format!(
                "name and data over {} bytes",
                l.max_bytes
            )));
        }
        Ok(())
    }

    /// Cancel one pending timer; whether it was pending.
    pub fn cancel(&self, id: u64) -> bool {
        match self.0.pending.lock().unwrap().remove(&id) {
            Some(p) => {
                p.task.abort();
                true
            }
            None => false,
        }
    }

    /// Cancel the timers set for connection `conn` (it ended).
    pub fn cancel_for(&self, conn: &str) -> usize {
        let mut pending = self.0.pending.lock().unwrap();
        let before = pending.len();
        pending.retain(|_, p| {
            let keep = p.conn.as_deref() != Some(conn);
            if !keep {
                p.task.abort();
            }
            keep
        });
        before - pending.len()
    }

    fn cancel_all(&self) {
        for (_, p) in self.0.pending.lock().unwrap().drain() {
            p.task.abort();
        }
    }

    /// The fired timers, for the one deliverer (the gateway's mount); `None` after the first call.
    pub fn take_receiver(&self) -> Option<mpsc::UnboundedReceiver<TimerEvent>> {
        self.0.receiver.lock().unwrap().take()
    }

    /// Timers pending now.
    pub fn pending(&self) -> usize {
        self.0.pending.lock().unwrap().len()
    }

    /// Timers set, delivered, and refused by a limit, so far.
    pub fn counts(&self) -> (u64, u64, u64) {
        let i = &self.0;
        (
            i.set.load(Ordering::Relaxed),
            i.delivered.load(Ordering::Relaxed),
            i.refused.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fires_once_and_cancels_by_id_or_connection() {
        let timers = Timers::new(TimerLimits {
            max_pending: 2,
            ..TimerLimits::default()
        });
        let space = timers.space("p");
        let mut fired = space.take_receiver().unwrap();
        assert!(space.take_receiver().is_none());
        let a = space
            .set(Duration::from_millis(10), "a".into(), "{}".into(), None)
            .unwrap();
        let b = space
            .set(
                Duration::from_millis(5),
                "b".into(),
                "1".into(),
                Some("s1".into()),
            )
            .unwrap();
        assert_eq!(
            space.set(Duration::ZERO, "c".into(), String::new(), None),
            Err(TimerError::TooMany(2))
        );
        assert_eq!(space.cancel_for("s1"), 1);
        assert!(!space.cancel(b));
        let got = fired.recv().await.unwrap();
        assert_eq!((got.id, got.name.as_str(), got.conn), (a, "a", None));
        assert_eq!(space.pending(), 0);
        let c = space
            .set(Duration::from_secs(1), "c".into(), String::new(), None)
            .unwrap();
        assert!(space.cancel(c));
        assert_eq!(space.counts(), (3, 1, 1));
        assert!(matches!(
            space.set(Duration::from_secs(90_000), "d".into(), String::new(), None),
            Err(TimerError::Invalid(_))
        ));
    }
}
