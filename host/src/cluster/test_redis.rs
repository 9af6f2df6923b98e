//! A private `redis-server` for unit tests, on a free loopback port (never
//! 6379's), killed when dropped. `make test` installs redis-server.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::redis_conn::Redis;

pub struct TestRedis {
    child: Child,
    pub url: String,
}

impl TestRedis {
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server ({e}): install it (make test does)")
            });
        Self {
            child,
            url: format!("redis://127.0.0.1:{port}/"),
        }
    }

    /// A node's connection (it retries until the server accepts).
    pub async fn connect(&self) -> Redis {
        Redis::connect(&self.url, Duration::from_secs(10))
            .await
            .expect("test redis reachable")
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
