//! Presence: who is in a channel. Joins and leaves of Socket.IO sockets
//! (the plugin's `join`/`leave` actions, and disconnects) are recorded here;
//! plugins read them with the `presence` import, operators with
//! `GET /admin/v1/plugins/{name}/presence/{channel}`.
//!
//! Where members are recorded is the [`PresenceStore`] capability: on one
//! node a map in memory; in cluster mode a Redis hash per channel, and each
//! node keeps a heartbeat key alive: members of a node whose heartbeat
//! expired (the node died) are not listed.

mod error;
mod memory;
mod store;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

pub use error::PresenceError;
use memory::MemoryPresence;
pub use store::{Beat, PresenceStore};

/// One socket in a channel.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Member {
    /// Socket id.
    pub socket: String,
    /// The `sub` claim of the socket's token, if it had one.
    pub subject: Option<String>,
    /// The node the socket is connected to.
    pub node: String,
}

/// A local socket's subject and the channels it is in.
type Joined = (Option<String>, BTreeSet<String>);

/// The presence record of this node (and, in cluster mode, of the cluster).
pub struct Presence {
    node: String,
    store: Arc<dyn PresenceStore>,
    /// Channels each local socket is in, by `(plugin, socket)`: what to remove
    /// at disconnect, and what to record again after Redis lost it.
    local: Mutex<HashMap<(String, String), Joined>>,
}

impl Presence {
    pub fn memory(node: String) -> Arc<Self> {
        let store = Arc::new(MemoryPresence::new(node.clone()));
        Self::new(node, store)
    }

    /// Over `store` (cluster mode: call [`Presence::spawn_heartbeat`] once serving).
    pub fn new(node: String, store: Arc<dyn PresenceStore>) -> Arc<Self> {
        Arc::new(Self {
            node,
            store,
            local: Mutex::default(),
        })
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// `socket` joined `channel` of `plugin`.
    pub async fn join(&self, plugin: &str, channel: &str, socket: &str, subject: Option<&str>) {
        {
            let mut local = self.local.lock().unwrap();
            let entry = local
                .entry((plugin.to_owned(), socket.to_owned()))
                .or_insert_with(|| (subject.map(str::to_owned), BTreeSet::new()));
            entry.1.insert(channel.to_owned());
        }
        self.store.join(plugin, channel, socket, subject).await
    }

    /// `socket` left `channel` of `plugin`.
    pub async fn leave(&self, plugin: &str, channel: &str, socket: &str) {
        {
            let mut local = self.local.lock().unwrap();
            if let Some(entry) = local.get_mut(&(plugin.to_owned(), socket.to_owned())) {
                entry.1.remove(channel);
            }
        }
        self.store.leave(plugin, channel, socket).await
    }

    /// `socket` is gone: it leaves every channel it was in.
    pub async fn disconnected(&self, plugin: &str, socket: &str) {
        let entry = self
            .local
            .lock()
            .unwrap()
            .remove(&(plugin.to_owned(), socket.to_owned()));
        let Some((_, channels)) = entry else { return };
        for channel in channels {
            self.store.leave(plugin, &channel, socket).await;
        }
    }

    /// Who is in `channel` of `plugin`, on every node, ordered by socket id.
    pub async fn list(&self, plugin: &str, channel: &str) -> Result<Vec<Member>, PresenceError> {
        let mut members = self.store.list(plugin, channel).await?;
        members.sort_by(|a, b| a.socket.cmp(&b.socket));
        Ok(members)
    }

    /// Cluster mode: keep this node's heartbeat alive, and record the local
    /// members again whenever Redis comes back (it may have lost them).
    pub fn spawn_heartbeat(self: &Arc<Self>) {
        let Some(every) = self.store.heartbeat_every() else {
            return;
        };
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(this) = weak.upgrade() else { return };
                if this.store.heartbeat().await == Beat::Renewed {
                    let entries: Vec<_> = this
                        .local
                        .lock()
                        .unwrap()
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    for ((plugin, socket), (subject, channels)) in entries {
                        for channel in channels {
                            let subject = subject.as_deref();
                            this.store.join(&plugin, &channel, &socket, subject).await;
                        }
                    }
                    tracing::debug!("presence of this node recorded");
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn join_leave_and_disconnect() {
        let p = Presence::memory("n1".into());
        p.join("chat", "lobby", "s1", Some("alice")).await;
        p.join("chat", "lobby", "s2", None).await;
        p.join("chat", "other", "s1", Some("alice")).await;
        p.join("feed", "lobby", "s3", None).await;
        let lobby = p.list("chat", "lobby").await.unwrap();
        assert_eq!(
            lobby,
            vec![
                Member {
                    socket: "s1".into(),
                    subject: Some("alice".into()),
                    node: "n1".into()
                },
                Member {
                    socket: "s2".into(),
                    subject: None,
                    node: "n1".into()
                },
            ]
        );
        p.leave("chat", "lobby", "s2").await;
        assert_eq!(p.list("chat", "lobby").await.unwrap().len(), 1);
        p.disconnected("chat", "s1").await;
        assert!(p.list("chat", "lobby").await.unwrap().is_empty());
        assert!(p.list("chat", "other").await.unwrap().is_empty());
        assert_eq!(p.list("feed", "lobby").await.unwrap().len(), 1);
    }
}
