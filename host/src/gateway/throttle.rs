//! Flood protection with token buckets (governor): events per socket, and new
//! connections per IP address.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::{Config, ThrottleConfig};

/// The event limits of one namespace's sockets.
#[derive(Debug, Clone, Copy)]
pub struct EventLimits {
    /// Events per second and bucket size; `None`: unlimited.
    rate: Option<Quota>,
    /// Rejections allowed within a window before a disconnect; `None`: never.
    flood: Option<Quota>,
    /// Pause between the reason and the close of a server-side disconnect.
    pub(super) disconnect_grace: Duration,
    /// Events one socket may have waiting for the plugin; past it an event is
    /// refused at once (`overloaded`) instead of queued.
    pub(super) max_queued: usize,
}

impl EventLimits {
    /// `throttle.*`, with the plugin's own rate and burst when it has them.
    pub fn for_plugin(config: &Config, plugin: &str) -> Self {
        let (rate, burst) = config.event_limit(plugin);
        Self {
            disconnect_grace: Duration::from_millis(config.throttle.disconnect_grace_ms),
            max_queued: config.socketio.max_queued_events.max(1),
            ..Self::new(
                rate,
                burst,
                config.throttle.flood_max_rejected,
                Duration::from_secs(config.throttle.flood_window_secs),
            )
        }
    }

    pub fn new(rate: u32, burst: u32, flood_max: u32, flood_window: Duration) -> Self {
        Self {
            rate: bucket(rate, burst),
            flood: NonZeroU32::new(flood_max).and_then(|max| {
                Quota::with_period(flood_window / max.get()).map(|q| q.allow_burst(max))
            }),
            disconnect_grace: Duration::ZERO,
            max_queued: usize::MAX,
        }
    }
}

fn bucket(per_sec: u32, burst: u32) -> Option<Quota> {
    let rate = NonZeroU32::new(per_sec)?;
    Some(Quota::per_second(rate).allow_burst(NonZeroU32::new(burst).unwrap_or(rate)))
}

/// What to do with one incoming event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    Allow,
    /// Over the limit: refuse it (error ack, or drop).
    Reject,
    /// Over the limit too often: refuse it and disconnect the socket.
    Flood,
}

/// One socket's buckets and counters.
pub(super) struct SocketThrottle {
    events: Option<DefaultDirectRateLimiter>,
    strikes: Option<DefaultDirectRateLimiter>,
    pub(super) rejected: AtomicU64,
    pub(super) dropped: AtomicU64,
}

impl SocketThrottle {
    pub(super) fn new(limits: EventLimits) -> Self {
        Self {
            events: limits.rate.map(RateLimiter::direct),
            strikes: limits.flood.map(RateLimiter::direct),
            rejected: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    pub(super) fn check(&self) -> Verdict {
        let Some(events) = &self.events else {
            return Verdict::Allow;
        };
        if events.check().is_ok() {
            return Verdict::Allow;
        }
        self.rejected.fetch_add(1, Ordering::Relaxed);
        match &self.strikes {
            Some(strikes) if strikes.check().is_err() => Verdict::Flood,
            _ => Verdict::Reject,
        }
    }
}

/// New connections per IP address, shared by every namespace. The map is
/// bounded: idle addresses are evicted periodically, and when it is still
/// full every bucket starts afresh rather than refusing unknown addresses.
pub struct ConnectionLimiter {
    quota: Option<Quota>,
    map: ArcSwap<DefaultKeyedRateLimiter<IpAddr>>,
    max: usize,
    checks: AtomicU64,
}

impl ConnectionLimiter {
    pub fn new(c: &ThrottleConfig) -> Self {
        let quota = bucket(c.connections_per_sec, c.connection_burst);
        Self {
            quota,
            map: ArcSwap::from_pointee(RateLimiter::keyed(
                quota.unwrap_or(Quota::per_second(NonZeroU32::MIN)),
            )),
            max: c.max_tracked_ips.max(1),
            checks: AtomicU64::new(0),
        }
    }

    /// Whether `ip` may open one more connection now.
    pub fn allow(&self, ip: IpAddr) -> bool {
        let Some(quota) = self.quota else {
            return true;
        };
        let map = self.map.load();
        let ok = map.check_key(&ip).is_ok();
        let n = self.checks.fetch_add(1, Ordering::Relaxed);
        if n % 1024 == 1023 || map.len() > self.max {
            map.retain_recent();
            map.shrink_to_fit();
            if map.len() > self.max {
                tracing::warn!(
                    tracked = map.len(),
                    "per-IP connection limiter full of active addresses: resetting it"
                );
                self.map.store(RateLimiter::keyed(quota).into());
            }
        }
        ok
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.map.load().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_gets_its_burst_then_rejections_then_a_flood_verdict() {
        let t = SocketThrottle::new(EventLimits::new(1, 5, 3, Duration::from_secs(60)));
        let verdicts: Vec<Verdict> = (0..10).map(|_| t.check()).collect();
        assert_eq!(&verdicts[..5], &[Verdict::Allow; 5]);
        assert_eq!(&verdicts[5..8], &[Verdict::Reject; 3]);
        assert_eq!(&verdicts[8..], &[Verdict::Flood; 2]);
        assert_eq!(t.rejected.load(Ordering::Relaxed), 5);
    }

    #[test]
    fn buckets_are_per_socket_and_refill() {
        let limits = EventLimits::new(50, 2, 0, Duration::from_secs(1));
        let a = SocketThrottle::new(limits);
        let b = SocketThrottle::new(limits);
        assert_eq!(a.check(), Verdict::Allow);
        assert_eq!(a.check(), Verdict::Allow);
        // Without a flood threshold a flooder is only ever rejected.
        for _ in 0..100 {
            assert_eq!(a.check(), Verdict::Reject);
        }
        assert_eq!(b.check(), Verdict::Allow, "a's flood does not touch b");
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(a.check(), Verdict::Allow, "one token back after 20 ms");
    }

    #[test]
    fn zero_rate_means_unlimited() {
        let t = SocketThrottle::new(EventLimits::new(0, 0, 1, Duration::from_secs(1)));
        assert!((0..10_000).all(|_| t.check() == Verdict::Allow));
    }

    #[test]
    fn connections_are_limited_per_ip_and_the_map_stays_bounded() {
        let l = ConnectionLimiter::new(&ThrottleConfig {
            connections_per_sec: 1,
            connection_burst: 2,
            max_tracked_ips: 100,
            ..ThrottleConfig::default()
        });
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(l.allow(a) && l.allow(a));
        assert!(!l.allow(a));
        assert!(l.allow(b), "another address has its own bucket");
        for i in 0..1000u32 {
            l.allow(IpAddr::from(i.to_be_bytes()));
        }
        assert!(l.tracked() <= 101, "tracked {}", l.tracked());
    }
}
