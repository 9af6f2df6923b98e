//! Cluster mode over Redis: the Redis implementations of capabilities the
//! domains define, picked by `server::Backends` when `cluster.redis_url` is
//! set (without it everything runs in memory on one node):
//!
//! | here | implements | of |
//! |---|---|---|
//! | [`RedisDriver`] | `gateway::CrossNode` | Socket.IO rooms across nodes (survives Redis restarts) |
//! | [`Streams`] | `channels::ChannelLog` | channel publications over one Redis Stream per plugin |
//! | [`RedisSessions`] | `gateway::SessionStore` | Socket.IO sessions waiting to be recovered |
//! | [`RedisKv`] | `plugins::KvBackend` | plugin KV |
//! | [`RedisPresence`] | `presence::PresenceStore` | presence with node heartbeats |
//! | [`RedisPluginStore`] | `admin::PluginRecords` | the cluster's plugin set |
//! | [`Redis`] | `ops::Upstream` | readiness and `redis_up` |
//!
//! This module imports those traits; no domain module imports this one.

mod driver;
mod error;
mod kv;
mod plugins;
mod presence;
mod redis_conn;
mod sessions;
mod streams;
#[cfg(test)]
pub(crate) mod test_redis;

pub use driver::RedisDriver;
pub use error::ClusterError;
pub use kv::RedisKv;
pub use plugins::RedisPluginStore;
pub use presence::RedisPresence;
pub use redis_conn::{COMMAND_TIMEOUT, Redis};
pub use sessions::RedisSessions;
pub use streams::Streams;
