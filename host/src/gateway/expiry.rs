//! Disconnecting sockets whose token expires: one task per namespace keeps
//! every socket's deadline, instead of a sleeping task per socket (a task and
//! its timer cost ~0.5 KiB of every idle socket's memory).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use socketioxide::socket::Sid;
use tokio::sync::Notify;

use super::Io;
use super::session::Session;

/// One socket's deadline: when (seconds since the epoch), then a tie-break.
pub(super) type Deadline = (u64, u64);

/// The token deadlines of one namespace's sockets.
pub(super) struct Expiries {
    due: Mutex<BTreeMap<Deadline, (Weak<Session>, Sid)>>,
    next: AtomicU64,
    /// An earlier deadline was added: the task re-arms its timer.
    earlier: Notify,
}

impl Expiries {
    /// Deadlines of sockets of namespace `ns`, served by a task that ends
    /// when the returned value is dropped.
    pub(super) fn spawn(io: Io, ns: String) -> Arc<Self> {
        let this = Arc::new(Self {
            due: Mutex::new(BTreeMap::new()),
            next: AtomicU64::new(0),
            earlier: Notify::new(),
        });
        tokio::spawn(run(Arc::downgrade(&this), io, ns));
        this
    }

    /// Disconnect `sid` with reason `token_expired` at `at`. It holds no
    /// strong reference to the session; `cancel` when the socket goes.
    pub(super) fn add(&self, at: u64, session: &Arc<Session>, sid: Sid) -> Deadline {
        let key = (at, self.next.fetch_add(1, Ordering::Relaxed));
        let mut due = self.due.lock().unwrap();
        let first = due.first_key_value().is_none_or(|(k, _)| key < *k);
        due.insert(key, (Arc::downgrade(session), sid));
        drop(due);
        if first {
            self.earlier.notify_one();
        }
        key
    }

    pub(super) fn cancel(&self, key: Deadline) {
        self.due.lock().unwrap().remove(&key);
    }

    /// The deadlines passed at `now`, removed; and the next one.
    fn take_due(&self, now: u64) -> (Vec<(Weak<Session>, Sid)>, Option<u64>) {
        let mut due = self.due.lock().unwrap();
        let later = due.split_off(&(now + 1, 0));
        let passed = std::mem::replace(&mut *due, later);
        let next = due.first_key_value().map(|((at, _), _)| *at);
        (passed.into_values().collect(), next)
    }
}

fn now_secs() -> u64 {
    crate::channels::now_ms() / 1000
}

async fn run(this: Weak<Expiries>, io: Io, ns: String) {
    loop {
        let Some(expiries) = this.upgrade() else {
            return;
        };
        let (passed, next) = expiries.take_due(now_secs());
        for (session, sid) in passed {
            let (Some(session), Some(socket)) = (
                session.upgrade(),
                io.of(&ns).and_then(|ns| ns.get_socket(sid)),
            ) else {
                continue;
            };
            session.expired();
            session.kick("token_expired");
            tokio::spawn(async move { session.drain(&socket).await });
        }
        // Woken by the next deadline or by an earlier one being added; and
        // once a minute regardless, so a dropped namespace's task ends.
        let wait = next.map_or(Duration::from_secs(60), |at| {
            Duration::from_secs(at.saturating_sub(now_secs())).min(Duration::from_secs(60))
        });
        let _ = tokio::time::timeout(wait, expiries.earlier.notified()).await;
    }
}
