//! Portico's own listener: what hyper does not do by itself when a client is
//! hostile. Every accepted socket gets `TCP_NODELAY`; connections are capped
//! in total and per client address at accept; a connection that does not
//! send a complete request head (or finish its TLS handshake) in time, or
//! moves no byte for the idle timeout, is closed; the open-file limit is
//! raised at start so the caps, not `EMFILE`, are what refuses clients. A
//! connection the server closes drains what its peer still sends first
//! (lingering close), so a refused request's answer is read, not reset.
//!
//! ```text
//! accept ─ Gate (max, per IP) ─ nodelay ─ linger ─ [TLS] ─ hyper auto (h1 | h2) ─ Router
//!                                   └── watchdog: header timeout, idle timeout
//! ```

mod activity;
mod fdlimit;
mod gate;
mod linger;
mod pending;
mod serve;
mod stats;

pub use fdlimit::{connection_budget, raise as raise_open_file_limit};
pub use gate::{Gate, client_key};
pub use pending::{PendingSessions, SessionGate, admit_sessions};
pub use serve::{Listener, Timeouts};
pub use stats::NetStats;

impl NetStats {
    /// The listeners' counters in the node's registry (`portico_refused_total{limit}`).
    pub fn register(metrics: &crate::ops::Metrics) -> Self {
        Self {
            refused_total: metrics.limit("connections"),
            refused_per_ip: metrics.limit("connections_per_ip"),
            refused_rate: metrics.limit("accept_rate_per_ip"),
            header_timeouts: metrics.limit("header_read_timeout"),
            idle_timeouts: metrics.limit("idle_timeout"),
            write_timeouts: metrics.limit("write_timeout"),
        }
    }
}

/// Admin listener connections at most: operators and their scripts.
const ADMIN_MAX_CONNECTIONS: usize = 64;

/// The listeners' shared limits, worked out once at start.
pub struct Plan {
    pub main: std::sync::Arc<Gate>,
    pub admin: std::sync::Arc<Gate>,
    pub timeouts: Timeouts,
    pub stats: NetStats,
}

impl Plan {
    /// Raise (or set) the open-file limit, size the caps from it, log both.
    pub fn new(c: &crate::config::NetConfig, metrics: &crate::ops::Metrics) -> Self {
        let files = raise_open_file_limit(c.max_open_files);
        let budget = connection_budget(files);
        let max = match c.max_connections {
            0 => budget,
            n if n > budget => {
                tracing::warn!(
                    "net.max_connections = {n} is over what {files} open files allow; using {budget}"
                );
                budget
            }
            n => n,
        };
        tracing::info!(
            open_files = files,
            max_connections = max,
            max_connections_per_ip = c.max_connections_per_ip,
            "connection limits"
        );
        Self {
            main: Gate::with_rate(
                max,
                c.max_connections_per_ip,
                c.accept_rate_per_ip,
                c.accept_burst_per_ip,
            ),
            admin: Gate::new(ADMIN_MAX_CONNECTIONS, 0),
            timeouts: Timeouts {
                header_read: std::time::Duration::from_millis(c.header_read_timeout_ms.max(1)),
                idle: std::time::Duration::from_millis(c.idle_timeout_ms.max(1)),
                write: std::time::Duration::from_millis(c.write_timeout_ms.max(1)),
            },
            stats: NetStats::register(metrics),
        }
    }

    /// Bind `addr` with the main (or admin) caps.
    pub async fn bind(
        &self,
        addr: std::net::SocketAddr,
        tls: Option<std::sync::Arc<rustls::ServerConfig>>,
        admin: bool,
    ) -> std::io::Result<Listener> {
        Ok(Listener {
            tcp: tokio::net::TcpListener::bind(addr).await?,
            tls,
            gate: if admin { &self.admin } else { &self.main }.clone(),
            timeouts: self.timeouts,
            stats: self.stats.clone(),
        })
    }
}
