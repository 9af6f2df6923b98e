//! A canary: a new version that serves a share of the connections while its
//! failure rate is watched over a sliding window.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::version::PluginVersion;

/// When a canary is rolled back on its own.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CanaryPolicy {
    /// Failed calls / calls above which the canary is rolled back (0.0..=1.0).
    pub max_error_rate: f64,
    /// How far back calls are counted.
    pub window: Duration,
    /// Calls needed in the window before the rate is judged.
    pub min_calls: u64,
}

impl Default for CanaryPolicy {
    fn default() -> Self {
        Self {
            max_error_rate: 0.05,
            window: Duration::from_secs(30),
            min_calls: 20,
        }
    }
}

/// A version serving `percent` % of new connections.
pub struct Canary {
    /// Its revision id in the slot's history.
    pub revision: u64,
    pub version: Arc<PluginVersion>,
    pub percent: u8,
    pub started_at: SystemTime,
    /// Connections assigned so far; assignment spreads them evenly.
    assigned: AtomicU64,
    /// (when, calls, failures) samples, oldest first.
    samples: Mutex<VecDeque<(Instant, u64, u64)>>,
}

impl Canary {
    pub fn new(revision: u64, version: Arc<PluginVersion>, percent: u8) -> Self {
        Self {
            revision,
            version,
            percent: percent.min(100),
            started_at: SystemTime::now(),
            assigned: AtomicU64::new(0),
            samples: Mutex::default(),
        }
    }

    /// Whether the next connection goes to the canary. Deterministic: exactly
    /// `percent` of every 100 consecutive connections do, spread evenly.
    pub fn take_connection(&self) -> bool {
        let n = self.assigned.fetch_add(1, Ordering::Relaxed);
        let p = u64::from(self.percent);
        (n + 1) * p / 100 > n * p / 100
    }

    /// Record a sample and judge the window: `Some(reason)` when the canary
    /// must be rolled back.
    pub fn check(&self, policy: &CanaryPolicy, now: Instant) -> Option<String> {
        let c = &self.version.counters;
        let calls = c.calls.load(Ordering::Relaxed);
        let failures = self.version.failures();
        let mut samples = self.samples.lock().unwrap();
        samples.push_back((now, calls, failures));
        // Keep one sample at or before the window start as the baseline.
        while samples.len() > 2 && now.duration_since(samples[1].0) >= policy.window {
            samples.pop_front();
        }
        let (_, calls0, failures0) = *samples.front()?;
        let base_calls = if samples.len() == 1 { 0 } else { calls0 };
        let base_failures = if samples.len() == 1 { 0 } else { failures0 };
        let (calls, failures) = (calls - base_calls, failures - base_failures);
        if calls < policy.min_calls.max(1) {
            return None;
        }
        let rate = failures as f64 / calls as f64;
        (rate > policy.max_error_rate).then(|| {
            format!(
                "{failures} of {calls} calls failed ({:.0} %) within {} s, over the {:.0} % threshold",
                rate * 100.0,
                policy.window.as_secs(),
                policy.max_error_rate * 100.0
            )
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn assignment_is_exactly_the_percentage() {
        for p in [0u64, 1, 10, 33, 50, 100] {
            let picked = (0..100u64)
                .filter(|n| (n + 1) * p / 100 > n * p / 100)
                .count() as u64;
            assert_eq!(picked, p);
        }
    }
}
