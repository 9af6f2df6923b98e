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

pub use driver::RedisDriver;
pub use error::ClusterError;
pub use kv::RedisKv;
pub use plugins::RedisPluginStore;
pub use presence::RedisPresence;
pub use redis_conn::{COMMAND_TIMEOUT, Redis};
pub use streams::Streams;
