//! Presence of a single node: a map in memory.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use super::Member;

/// Socket id -> subject.
type Members = BTreeMap<String, Option<String>>;

/// `(plugin, channel)` -> members.
#[derive(Default)]
pub struct MemoryPresence {
    channels: Mutex<HashMap<(String, String), Members>>,
}

impl MemoryPresence {
    pub fn join(&self, plugin: &str, channel: &str, socket: &str, subject: Option<&str>) {
        self.channels
            .lock()
            .unwrap()
            .entry((plugin.to_owned(), channel.to_owned()))
            .or_default()
            .insert(socket.to_owned(), subject.map(str::to_owned));
    }

    pub fn leave(&self, plugin: &str, channel: &str, socket: &str) {
        let mut channels = self.channels.lock().unwrap();
        let key = (plugin.to_owned(), channel.to_owned());
        if let Some(members) = channels.get_mut(&key) {
            members.remove(socket);
            if members.is_empty() {
                channels.remove(&key);
            }
        }
    }

    pub fn list(&self, plugin: &str, channel: &str, node: &str) -> Vec<Member> {
        let channels = self.channels.lock().unwrap();
        channels
            .get(&(plugin.to_owned(), channel.to_owned()))
            .map(|m| {
                m.iter()
                    .map(|(socket, subject)| Member {
                        socket: socket.clone(),
                        subject: subject.clone(),
                        node: node.to_owned(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}
