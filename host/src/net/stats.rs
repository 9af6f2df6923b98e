//! What the listeners refused or closed, as `/metrics` counters.

use prometheus_client::metrics::counter::Counter;

use super::activity::Expired;
use super::gate::Refused;

/// Counter handles of one listener (cloned from the node's metrics registry).
#[derive(Clone, Default)]
pub struct NetStats {
    /// Refused at accept: the listener's `max_connections` was reached.
    pub refused_total: Counter,
    /// Refused at accept: the address's `max_connections_per_ip` was reached.
    pub refused_per_ip: Counter,
    /// Refused at accept: the address opened connections faster than `accept_rate_per_ip`.
    pub refused_rate: Counter,
    /// Closed: no complete request head within `header_read_timeout_ms`.
    pub header_timeouts: Counter,
    /// Closed: no byte either way within `idle_timeout_ms`.
    pub idle_timeouts: Counter,
    /// Closed: a write waited `write_timeout_ms` for a peer that reads nothing.
    pub write_timeouts: Counter,
}

impl NetStats {
    pub fn refused(&self, why: Refused) {
        match why {
            Refused::Total => self.refused_total.inc(),
            Refused::PerIp => self.refused_per_ip.inc(),
            Refused::Rate => self.refused_rate.inc(),
        };
    }

    pub fn expired(&self, why: Expired) {
        match why {
            Expired::Header => self.header_timeouts.inc(),
            Expired::Idle => self.idle_timeouts.inc(),
            Expired::Write => self.write_timeouts.inc(),
        };
    }
}
