//! Call-time statistics: a lock-free log-linear histogram, cheap enough to
//! record every plugin call (one relaxed atomic add).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Sub-buckets per power of two: percentiles are exact to within 1/8 (12.5 %).
const SUB_BITS: u32 = 3;
const SUB: usize = 1 << SUB_BITS;
const BUCKETS: usize = (64 - SUB_BITS as usize + 1) * SUB;

/// Durations in nanoseconds, bucketed by power of two and eighths of it.
pub struct Histogram {
    buckets: Box<[AtomicU64]>,
    /// Total of every recorded duration (for Prometheus' `_sum`).
    sum_ns: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
        }
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.count())
            .finish()
    }
}

fn index(ns: u64) -> usize {
    if ns < SUB as u64 {
        return ns as usize;
    }
    let exp = 63 - ns.leading_zeros();
    let sub = (ns >> (exp - SUB_BITS)) as usize & (SUB - 1);
    (exp - SUB_BITS + 1) as usize * SUB + sub
}

/// The largest value that lands in bucket `i`.
fn upper(i: usize) -> u64 {
    if i < SUB {
        return i as u64;
    }
    let exp = (i / SUB) as u32 + SUB_BITS - 1;
    let sub = (i % SUB) as u64;
    let base = (1u64 << exp) | (sub << (exp - SUB_BITS));
    base.saturating_add((1u64 << (exp - SUB_BITS)) - 1)
}

impl Histogram {
    pub fn record(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.buckets[index(ns)].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Sum of every recorded duration.
    pub fn sum(&self) -> Duration {
        Duration::from_nanos(self.sum_ns.load(Ordering::Relaxed))
    }

    /// Samples at or below each bound, for Prometheus' cumulative buckets.
    /// A bound inside one of our buckets counts that bucket only when the
    /// bucket's top fits under it, so counts never overstate.
    pub fn cumulative(&self, bounds: &[Duration]) -> Vec<u64> {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        bounds
            .iter()
            .map(|b| {
                let ns = u64::try_from(b.as_nanos()).unwrap_or(u64::MAX);
                counts
                    .iter()
                    .enumerate()
                    .take_while(|(i, _)| upper(*i) <= ns)
                    .map(|(_, c)| c)
                    .sum()
            })
            .collect()
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// The `q` quantile (0.0..=1.0) as an upper bound, `None` before any sample.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(Duration::from_nanos(upper(i)));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ordered_and_cover_their_values() {
        for ns in [
            0u64,
            1,
            7,
            8,
            9,
            15,
            16,
            17,
            1000,
            1_234_567,
            u64::MAX / 3,
            u64::MAX,
        ] {
            let i = index(ns);
            assert!(upper(i) >= ns, "{ns} in bucket {i} with upper {}", upper(i));
            if i > 0 {
                assert!(upper(i - 1) < ns, "{ns} belongs below bucket {i}");
            }
        }
    }

    #[test]
    fn quantiles_are_within_an_eighth() {
        let h = Histogram::default();
        assert_eq!(h.quantile(0.5), None);
        for us in 1..=100u64 {
            h.record(Duration::from_micros(us));
        }
        let p50 = h.quantile(0.5).unwrap().as_nanos() as f64;
        let p99 = h.quantile(0.99).unwrap().as_nanos() as f64;
        assert!((50_000.0..=50_000.0 * 1.125).contains(&p50), "{p50}");
        assert!((99_000.0..=99_000.0 * 1.125).contains(&p99), "{p99}");
        assert_eq!(h.count(), 100);
        assert_eq!(h.sum(), Duration::from_micros(5050));
    }

    #[test]
    fn cumulative_counts_are_monotonic_and_bounded() {
        let h = Histogram::default();
        for us in [1u64, 10, 100, 1000, 10_000] {
            h.record(Duration::from_micros(us));
        }
        let bounds = [5u64, 50, 500, 5000, 50_000].map(Duration::from_micros);
        assert_eq!(h.cumulative(&bounds), vec![1, 2, 3, 4, 5]);
    }
}
