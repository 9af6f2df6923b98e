//! Cluster mode over Redis: Socket.IO rooms across nodes (socketioxide-redis
//! with a driver that survives Redis restarts), SSE channels over Redis
//! Streams, and plugin KV in Redis.
//! Without `cluster.redis_url` everything runs in memory on one node.

mod driver;
mod error;
mod kv;
mod plugins;
mod presence;
mod redis_conn;
mod streams;

pub use driver::ClusterDriver;
pub use error::ClusterError;
pub use kv::RedisKv;
pub use plugins::{Changed, PluginRecord, PluginStore, RecordLimits};
pub use presence::{Beat, RedisPresence};
pub use redis_conn::{COMMAND_TIMEOUT, Redis};
pub use streams::Streams;

/// The Socket.IO adapter of every node: with [`ClusterDriver::Local`] it only
/// delivers locally; with Redis, broadcasts reach the other nodes too.
pub type Adapter =
    socketioxide_redis::CustomRedisAdapter<socketioxide::adapter::Emitter, ClusterDriver>;
