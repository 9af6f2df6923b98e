//! Caps on open connections, checked at accept: one for the listener, one
//! per client address. A refused connection is closed before anything is
//! read from it, so a flood of half-open connections costs one file
//! descriptor each for an instant, not a slot until some timeout.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Which cap refused a connection (the `limit` label in `/metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The listener already holds `max_connections`.
    Total,
    /// This address already holds `max_connections_per_ip`.
    PerIp,
    /// This address opened connections faster than `accept_rate_per_ip`.
    Rate,
}

/// Open connections, in total and by address.
pub struct Gate {
    max: usize,
    per_ip: usize,
    open: Mutex<Counts>,
    /// New connections per second per address; `None`: unlimited.
    rate: Option<governor::DefaultKeyedRateLimiter<IpAddr>>,
    admitted: std::sync::atomic::AtomicU64,
}

/// Addresses the accept-rate buckets hold before idle ones are dropped.
const RATE_KEYS_SWEEP: usize = 65_536;

#[derive(Default)]
struct Counts {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
}

/// One admitted connection; dropping it frees its slots.
pub struct Permit {
    gate: Arc<Gate>,
    ip: IpAddr,
}

impl Gate {
    /// `max` connections in total, `per_ip` from one address (0: no per-address cap).
    pub fn new(max: usize, per_ip: usize) -> Arc<Self> {
        Self::with_rate(max, per_ip, 0, 0)
    }

    /// And at most `per_sec` new connections per second from one address,
    /// `burst` at once (`per_sec` 0: unlimited).
    pub fn with_rate(max: usize, per_ip: usize, per_sec: u32, burst: u32) -> Arc<Self> {
        use std::num::NonZeroU32;
        let rate = NonZeroU32::new(per_sec).map(|r| {
            let q = governor::Quota::per_second(r).allow_burst(NonZeroU32::new(burst).unwrap_or(r));
            governor::RateLimiter::keyed(q)
        });
        Arc::new(Self {
            max,
            per_ip: if per_ip == 0 { usize::MAX } else { per_ip },
            open: Mutex::new(Counts::default()),
            rate,
            admitted: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Take a slot for a connection from `ip`, or say which cap is full.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, Refused> {
        let ip = client_key(ip);
        if let Some(rate) = &self.rate {
            if rate.check_key(&ip).is_err() {
                return Err(Refused::Rate);
            }
            let n = self
                .admitted
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if n.is_multiple_of(4096) && rate.len() > RATE_KEYS_SWEEP {
                rate.retain_recent();
            }
        }
        let mut open = self.open.lock().unwrap();
        if open.total >= self.max {
            return Err(Refused::Total);
        }
        let mine = open.by_ip.entry(ip).or_default();
        if *mine >= self.per_ip {
            return Err(Refused::PerIp);
        }
        *mine += 1;
        open.total += 1;
        Ok(Permit {
            gate: self.clone(),
            ip,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.lock().unwrap().total
    }

    /// The total cap.
    pub fn max(&self) -> usize {
        self.max
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut open = self.gate.open.lock().unwrap();
        open.total -= 1;
        if let Some(n) = open.by_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.by_ip.remove(&self.ip);
            }
        }
    }
}

/// The address a per-client cap counts against: IPv4 as is (IPv4-mapped IPv6
/// too), IPv6 by its /64, which is what one client usually holds.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_total_and_per_address_and_frees_on_drop() {
        let gate = Gate::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = gate.admit(a).unwrap();
        let _a2 = gate.admit(a).unwrap();
        assert_eq!(gate.admit(a).err(), Some(Refused::PerIp));
        let _b1 = gate.admit(b).unwrap();
        assert_eq!(gate.admit(b).err(), Some(Refused::Total));
        drop(a1);
        assert_eq!(gate.open(), 2);
        assert!(gate.admit(a).is_ok());
    }

    #[test]
    fn accept_rate_per_address() {
        let gate = Gate::with_rate(100, 100, 1, 3);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let kept: Vec<_> = (0..3).map(|_| gate.admit(a).unwrap()).collect();
        assert_eq!(gate.admit(a).err(), Some(Refused::Rate));
        assert!(gate.admit("10.0.0.2".parse().unwrap()).is_ok());
        drop(kept);
    }

    #[test]
    fn ipv6_counts_by_64_and_mapped_v4_as_v4() {
        let gate = Gate::new(10, 1);
        let _x = gate.admit("2001:db8::1".parse().unwrap()).unwrap();
        assert_eq!(
            gate.admit("2001:db8::2".parse().unwrap()).err(),
            Some(Refused::PerIp)
        );
        assert!(gate.admit("2001:db8:0:1::1".parse().unwrap()).is_ok());
        let _v4 = gate.admit("10.0.0.9".parse().unwrap()).unwrap();
        assert_eq!(
            gate.admit("::ffff:10.0.0.9".parse().unwrap()).err(),
            Some(Refused::PerIp)
        );
    }
}
