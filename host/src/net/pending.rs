//! Engine.IO sessions that have not joined a namespace yet. Before a
//! namespace CONNECT there is no token and no per-namespace limit, yet a
//! session already holds a transport, buffers and partial binary packets.
//! So new sessions are admitted against a cap in total and per client
//! address, and each admission counts until the session asks to join a
//! namespace or its time to join (`socketio.connect_timeout_ms`, after which
//! socketioxide closes it) runs out. A join attempt is where the per-address
//! connection rate limit and the token check take over, so a refused attempt
//! settles the admission too (its session still closes at the time to join).
//!
//! Admissions are matched to attempts by address, not by session: an attempt
//! from an address settles that address's oldest admission.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::gate::{Refused, client_key};

/// Pending sessions, in total and by address.
pub struct PendingSessions {
    max: usize,
    per_ip: usize,
    ttl: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Admissions in order (they expire in order: one ttl for all).
    queue: VecDeque<(Instant, IpAddr)>,
    by_ip: HashMap<IpAddr, Pending>,
    total: usize,
}

#[derive(Default)]
struct Pending {
    /// Admissions not yet settled.
    open: usize,
    /// Admissions settled by a join whose queue entries have not expired yet.
    joined: usize,
}

impl PendingSessions {
    /// `max` pending in total and `per_ip` per address (0: no cap), each for at most `ttl`.
    pub fn new(max: usize, per_ip: usize, ttl: Duration) -> Self {
        let cap = |n: usize| if n == 0 { usize::MAX } else { n };
        Self {
            max: cap(max),
            per_ip: cap(per_ip),
            ttl,
            state: Mutex::new(State::default()),
        }
    }

    /// A new session from `ip` wants in.
    pub fn admit(&self, ip: IpAddr) -> Result<(), Refused> {
        let ip = client_key(ip);
        let now = Instant::now();
        let mut s = self.state.lock().unwrap();
        s.expire(now);
        if s.total >= self.max {
            return Err(Refused::Total);
        }
        let mine = s.by_ip.entry(ip).or_default();
        if mine.open >= self.per_ip {
            return Err(Refused::PerIp);
        }
        mine.open += 1;
        s.total += 1;
        s.queue.push_back((now + self.ttl, ip));
        Ok(())
    }

    /// A session from `ip` asked to join a namespace.
    pub fn settle(&self, ip: IpAddr) {
        let ip = client_key(ip);
        let mut s = self.state.lock().unwrap();
        let Some(mine) = s.by_ip.get_mut(&ip) else {
            return;
        };
        if mine.open > 0 {
            mine.open -= 1;
            mine.joined += 1;
            s.total -= 1;
        }
    }

    /// Sessions pending now.
    pub fn count(&self) -> usize {
        let mut s = self.state.lock().unwrap();
        s.expire(Instant::now());
        s.total
    }
}

impl State {
    fn expire(&mut self, now: Instant) {
        while let Some(&(deadline, ip)) = self.queue.front() {
            if deadline > now {
                break;
            }
            self.queue.pop_front();
            let Some(mine) = self.by_ip.get_mut(&ip) else {
                continue;
            };
            if mine.joined > 0 {
                mine.joined -= 1;
            } else if mine.open > 0 {
                mine.open -= 1;
                self.total -= 1;
            }
            if mine.open == 0 && mine.joined == 0 {
                self.by_ip.remove(&ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn caps_until_join_or_expiry() {
        let ttl = Duration::from_millis(50);
        let p = PendingSessions::new(3, 2, ttl);
        let (a, b) = (ip("10.0.0.1"), ip("10.0.0.2"));
        p.admit(a).unwrap();
        p.admit(a).unwrap();
        assert_eq!(p.admit(a), Err(Refused::PerIp));
        p.settle(a);
        p.admit(a).unwrap();
        p.admit(b).unwrap();
        assert_eq!(p.admit(b), Err(Refused::Total));
        assert_eq!(p.count(), 3);
        tokio::time::sleep(ttl).await;
        assert_eq!(p.count(), 0);
        // The joined admission expired without touching the later ones' count.
        p.admit(a).unwrap();
        p.admit(a).unwrap();
        assert_eq!(p.admit(a), Err(Refused::PerIp));
    }

    #[tokio::test]
    async fn settles_beyond_admissions_are_ignored() {
        let p = PendingSessions::new(0, 1, Duration::from_secs(1));
        let a = ip("10.0.0.1");
        p.settle(a);
        p.admit(a).unwrap();
        p.settle(a);
        p.settle(a);
        assert_eq!(p.count(), 0);
        p.admit(a).unwrap();
        assert_eq!(p.admit(a), Err(Refused::PerIp));
    }
}

/// The Engine.IO path socketioxide serves.
const ENGINE_IO_PATH: &str = "/socket.io";

/// [`PendingSessions`] in front of socketioxide, with its `/metrics` counters.
#[derive(Clone)]
pub struct SessionGate {
    pub pending: std::sync::Arc<PendingSessions>,
    refused_total: prometheus_client::metrics::counter::Counter,
    refused_per_ip: prometheus_client::metrics::counter::Counter,
}

impl SessionGate {
    pub fn new(pending: PendingSessions, metrics: &crate::ops::Metrics) -> Self {
        Self {
            pending: std::sync::Arc::new(pending),
            refused_total: metrics.limit("pending_sessions"),
            refused_per_ip: metrics.limit("pending_sessions_per_ip"),
        }
    }
}

/// Middleware: an Engine.IO handshake (a `GET` without `sid`) over the cap
/// is answered `503 too_many_sessions` before socketioxide sees it.
pub async fn admit_sessions(
    axum::extract::State(gate): axum::extract::State<SessionGate>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    if let Some(ip) = peer
        && req.method() == http::Method::GET
        && req.uri().path().starts_with(ENGINE_IO_PATH)
        && !has_sid(req.uri().query())
        && let Err(why) = gate.pending.admit(ip)
    {
        let (counter, message) = match why {
            Refused::Total | Refused::Rate => (
                &gate.refused_total,
                "too many sessions are waiting to connect",
            ),
            Refused::PerIp => (
                &gate.refused_per_ip,
                "too many sessions from your address are waiting to connect",
            ),
        };
        counter.inc();
        return axum::response::IntoResponse::into_response(crate::http_error::ApiError::new(
            http::StatusCode::SERVICE_UNAVAILABLE,
            "too_many_sessions",
            message,
        ));
    }
    next.run(req).await
}

fn has_sid(query: Option<&str>) -> bool {
    query.is_some_and(|q| q.split('&').any(|kv| kv.starts_with("sid=")))
}
