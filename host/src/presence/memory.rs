//! Presence of a single node: a map in memory.

use std::collections::{BTreeMap, HashMap};
use std::future::ready;
use std::sync::Mutex;

use futures::future::BoxFuture;

use super::{Member, PresenceError, PresenceStore};

/// Socket id -> subject.
type Members = BTreeMap<String, Option<String>>;

/// `(plugin, channel)` -> members, all on node `node`.
pub struct MemoryPresence {
    node: String,
    channels: Mutex<HashMap<(String, String), Members>>,
}

impl PresenceStore for MemoryPresence {
    fn join<'a>(
        &'a self,
        plugin: &'a str,
        channel: &'a str,
        socket: &'a str,
        subject: Option<&'a str>,
    ) -> BoxFuture<'a, ()> {
        self.add(plugin, channel, socket, subject);
        Box::pin(ready(()))
    }

    fn leave<'a>(
        &'a self,
        plugin: &'a str,
        channel: &'a str,
        socket: &'a str,
    ) -> BoxFuture<'a, ()> {
        self.remove(plugin, channel, socket);
        Box::pin(ready(()))
    }

    fn list<'a>(
        &'a self,
        plugin: &'a str,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Member>, PresenceError>> {
        Box::pin(ready(Ok(self.members(plugin, channel))))
    }
}

impl MemoryPresence {
    pub fn new(node: String) -> Self {
        Self {
            node,
            channels: Mutex::default(),
        }
    }

    fn add(&self, plugin: &str, channel: &str, socket: &str, subject: Option<&str>) {
        self.channels
            .lock()
            .unwrap()
            .entry((plugin.to_owned(), channel.to_owned()))
            .or_default()
            .insert(socket.to_owned(), subject.map(str::to_owned));
    }

    fn remove(&self, plugin: &str, channel: &str, socket: &str) {
        let mut channels = self.channels.lock().unwrap();
        let key = (plugin.to_owned(), channel.to_owned());
        if let Some(members) = channels.get_mut(&key) {
            members.remove(socket);
            if members.is_empty() {
                channels.remove(&key);
            }
        }
    }

    fn members(&self, plugin: &str, channel: &str) -> Vec<Member> {
        let channels = self.channels.lock().unwrap();
        channels
            .get(&(plugin.to_owned(), channel.to_owned()))
            .map(|m| {
                m.iter()
                    .map(|(socket, subject)| Member {
                        socket: socket.clone(),
                        subject: subject.clone(),
                        node: self.node.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}
