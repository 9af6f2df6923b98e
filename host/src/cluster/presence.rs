//! Presence in Redis: a hash per channel (`portico:presence:<plugin>:<channel>`,
//! socket id -> `{"subject", "node"}`) and a heartbeat key per node
//! (`portico:node:<id>`, expiring after the TTL). Members of a node whose
//! heartbeat expired are not listed, and are deleted when seen.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use futures::future::BoxFuture;

use super::redis_conn::Redis;
use crate::presence::{Beat, Member, PresenceError, PresenceStore};

#[derive(Serialize, Deserialize)]
struct Entry {
    subject: Option<String>,
    node: String,
}

pub struct RedisPresence {
    redis: Redis,
    node: String,
    ttl: Duration,
}

fn key(plugin: &str, channel: &str) -> String {
    format!("portico:presence:{plugin}:{channel}")
}

fn node_key(node: &str) -> String {
    format!("portico:node:{node}")
}

impl RedisPresence {
    /// `ttl`: how long a node counts as alive after its last heartbeat.
    pub fn new(redis: Redis, node: String, ttl: Duration) -> Self {
        Self {
            redis,
            node,
            ttl: ttl.max(Duration::from_millis(300)),
        }
    }

    /// Refresh this node's heartbeat.
    async fn beat(&self) -> Beat {
        let cmd = redis::cmd("SET")
            .arg(node_key(&self.node))
            .arg(1)
            .arg("PX")
            .arg(self.ttl.as_millis() as u64)
            .arg("GET")
            .to_owned();
        match self.redis.run::<Option<String>>(&cmd).await {
            Ok(Some(_)) => Beat::Kept,
            Ok(None) => Beat::Renewed,
            Err(e) => {
                tracing::debug!("presence heartbeat failed: {e}");
                Beat::Failed
            }
        }
    }

    async fn add(&self, plugin: &str, channel: &str, socket: &str, subject: Option<&str>) {
        let entry = Entry {
            subject: subject.map(str::to_owned),
            node: self.node.clone(),
        };
        let json = serde_json::to_string(&entry).expect("entries serialize");
        let cmd = redis::cmd("HSET")
            .arg(key(plugin, channel))
            .arg(socket)
            .arg(json)
            .to_owned();
        if let Err(e) = self.redis.run::<redis::Value>(&cmd).await {
            // Recorded again by the heartbeat once Redis is back.
            tracing::debug!(plugin, channel, "presence join not recorded yet: {e}");
        }
    }

    async fn remove(&self, plugin: &str, channel: &str, socket: &str) {
        let cmd = redis::cmd("HDEL")
            .arg(key(plugin, channel))
            .arg(socket)
            .to_owned();
        if let Err(e) = self.redis.run::<redis::Value>(&cmd).await {
            tracing::debug!(plugin, channel, "presence leave not recorded: {e}");
        }
    }

    async fn members(&self, plugin: &str, channel: &str) -> Result<Vec<Member>, PresenceError> {
        let unavailable = |e: super::ClusterError| PresenceError::Unavailable(e.to_string());
        let k = key(plugin, channel);
        let raw: BTreeMap<String, String> = self
            .redis
            .run(redis::cmd("HGETALL").arg(&k))
            .await
            .map_err(unavailable)?;
        let entries: Vec<(String, Entry)> = raw
            .into_iter()
            .filter_map(|(socket, json)| serde_json::from_str(&json).ok().map(|e| (socket, e)))
            .collect();
        let nodes: BTreeSet<&str> = entries.iter().map(|(_, e)| e.node.as_str()).collect();
        let mut dead = BTreeSet::new();
        for node in nodes {
            // This node is alive by definition, whatever Redis remembers.
            if node == self.node {
                continue;
            }
            let alive: bool = self
                .redis
                .run(redis::cmd("EXISTS").arg(node_key(node)))
                .await
                .map_err(unavailable)?;
            if !alive {
                dead.insert(node.to_owned());
            }
        }
        let (gone, members): (Vec<_>, Vec<_>) = entries
            .into_iter()
            .partition(|(_, e)| dead.contains(&e.node));
        if !gone.is_empty() {
            let mut cmd = redis::cmd("HDEL");
            cmd.arg(&k);
            for (socket, _) in &gone {
                cmd.arg(socket);
            }
            let _ = self.redis.run::<redis::Value>(&cmd).await;
        }
        Ok(members
            .into_iter()
            .map(|(socket, e)| Member {
                socket,
                subject: e.subject,
                node: e.node,
            })
            .collect())
    }
}

impl PresenceStore for RedisPresence {
    fn join<'a>(
        &'a self,
        plugin: &'a str,
        channel: &'a str,
        socket: &'a str,
        subject: Option<&'a str>,
    ) -> BoxFuture<'a, ()> {
        Box::pin(self.add(plugin, channel, socket, subject))
    }

    fn leave<'a>(
        &'a self,
        plugin: &'a str,
        channel: &'a str,
        socket: &'a str,
    ) -> BoxFuture<'a, ()> {
        Box::pin(self.remove(plugin, channel, socket))
    }

    fn list<'a>(
        &'a self,
        plugin: &'a str,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Member>, PresenceError>> {
        Box::pin(self.members(plugin, channel))
    }

    /// Three times per TTL, so one lost beat does not expire a node.
    fn heartbeat_every(&self) -> Option<Duration> {
        Some(self.ttl / 3)
    }

    fn heartbeat(&self) -> BoxFuture<'_, Beat> {
        Box::pin(self.beat())
    }
}
