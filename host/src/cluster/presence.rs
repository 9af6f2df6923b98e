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
        match self.redis.run::<Option<Vec<u8>>>(&cmd).await {
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

    /// A channel's readable entries; garbage (an entry that does not parse,
    /// a key of the wrong type) is deleted and counted.
    async fn entries(
        &self,
        plugin: &str,
        channel: &str,
        k: &str,
    ) -> Result<Vec<(String, Entry)>, PresenceError> {
        let raw: BTreeMap<Vec<u8>, Vec<u8>> =
            match self.redis.run(redis::cmd("HGETALL").arg(k)).await {
                Ok(raw) => raw,
                Err(super::ClusterError::Redis(m)) if m.contains("WRONGTYPE") => {
                    // Garbage where the channel's hash belongs: no member can be
                    // recorded there until it is gone.
                    tracing::error!(
                        plugin,
                        channel,
                        "presence key in redis is not a hash; deleted"
                    );
                    self.redis.refuse("presence_entry");
                    let _ = self
                        .redis
                        .run::<redis::Value>(redis::cmd("DEL").arg(k))
                        .await;
                    BTreeMap::new()
                }
                Err(e) => return Err(PresenceError::Unavailable(e.to_string())),
            };
        let mut garbage = Vec::new();
        let mut entries: Vec<(String, Entry)> = Vec::new();
        for (socket, json) in raw {
            match parse_entry(&socket, &json) {
                Some(entry) => entries.push(entry),
                None => garbage.push(socket),
            }
        }
        if !garbage.is_empty() {
            tracing::warn!(
                plugin,
                channel,
                entries = garbage.len(),
                "unreadable presence entries in redis; deleted"
            );
            for _ in &garbage {
                self.redis.refuse("presence_entry");
            }
            let mut cmd = redis::cmd("HDEL");
            cmd.arg(k);
            for socket in &garbage {
                cmd.arg(socket.as_slice());
            }
            let _ = self.redis.run::<redis::Value>(&cmd).await;
        }
        Ok(entries)
    }

    async fn members(&self, plugin: &str, channel: &str) -> Result<Vec<Member>, PresenceError> {
        let unavailable = |e: super::ClusterError| PresenceError::Unavailable(e.to_string());
        let k = key(plugin, channel);
        let entries = self.entries(plugin, channel, &k).await?;
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

/// Longest socket id, node id and subject accepted from Redis.
const MAX_FIELD_BYTES: usize = 4096;

/// One member as Redis holds it, if it is one.
fn parse_entry(socket: &[u8], json: &[u8]) -> Option<(String, Entry)> {
    let socket = std::str::from_utf8(socket).ok()?;
    let e: Entry = serde_json::from_slice(json).ok()?;
    let ok = !socket.is_empty()
        && socket.len() <= MAX_FIELD_BYTES
        && !e.node.is_empty()
        && e.node.len() <= MAX_FIELD_BYTES
        && e.subject
            .as_ref()
            .is_none_or(|s| s.len() <= MAX_FIELD_BYTES);
    ok.then(|| (socket.to_owned(), e))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::test_redis::TestRedis;

    #[tokio::test]
    async fn garbage_entries_are_skipped_counted_and_deleted() {
        let server = TestRedis::start();
        let r = server.connect().await;
        let p = RedisPresence::new(r.clone(), "me".into(), Duration::from_secs(10));
        p.add("chat", "lobby", "s1", Some("alice")).await;
        let k = key("chat", "lobby");
        for (field, value) in [
            (&b"s2"[..], &b"{not json"[..]),
            (b"\xff", br#"{"subject":null,"node":"me"}"#),
            (b"s3", br#"{"subject":null,"node":""}"#),
            (b"s4", b"\xff\xfe"),
        ] {
            let _: redis::Value = r
                .run(redis::cmd("HSET").arg(&k).arg(field).arg(value))
                .await
                .unwrap();
        }
        let members = p.members("chat", "lobby").await.unwrap();
        assert_eq!(members.len(), 1);
        assert_eq!(members[0].subject.as_deref(), Some("alice"));
        assert_eq!(r.refused(), [("presence_entry", 4)]);
        let left: i64 = r.run(redis::cmd("HLEN").arg(&k)).await.unwrap();
        assert_eq!(left, 1);

        // A key of the wrong type is dropped, so members can be recorded again.
        let other = key("chat", "other");
        let _: redis::Value = r.run(redis::cmd("SET").arg(&other).arg("x")).await.unwrap();
        assert!(p.members("chat", "other").await.unwrap().is_empty());
        p.add("chat", "other", "s1", None).await;
        assert_eq!(p.members("chat", "other").await.unwrap().len(), 1);
        // The heartbeat key holding garbage still counts as a beat.
        let _: redis::Value = r
            .run(redis::cmd("SET").arg(node_key("me")).arg(&b"\xff"[..]))
            .await
            .unwrap();
        assert!(matches!(p.beat().await, Beat::Kept));
    }
}
