//! A channel's bounded history: the newest events, at most `size` of them,
//! `max_bytes` of them in all, and none older than `max_age`. It remembers the newest id it let go of, so a
//! reader asking for "everything after X" learns whether it can be served.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use super::encoded::Encoded;
use super::id::EventId;

/// One published event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: EventId,
    pub channel: Arc<str>,
    pub event: String,
    /// One JSON value, compact (no newlines).
    pub data: String,
    /// Wall-clock time it was published at, for aging.
    pub at_ms: u64,
    /// The Socket.IO socket that published it without wanting it back.
    pub except: Option<Arc<str>>,
    /// Its packet, encoded by the first socket it went to, for the others.
    pub encoded: Encoded,
}

/// How much history a channel keeps.
#[derive(Debug, Clone, Copy)]
pub struct HistoryLimits {
    pub size: usize,
    pub max_age: Duration,
    /// Bytes of event names and data kept per channel.
    pub max_bytes: usize,
}

impl Entry {
    /// What the entry counts against `max_bytes`: its text plus its bookkeeping.
    pub fn weight(&self) -> usize {
        self.event.len() + self.data.len() + std::mem::size_of::<Self>()
    }
}

/// What a reader resuming after an id gets.
#[derive(Debug, PartialEq, Eq)]
pub enum Since {
    /// Every event after the id, oldest first (possibly none).
    Events(Vec<Arc<Entry>>),
    /// Events after the id were already dropped: the reader must resync.
    Gap,
}

#[derive(Debug, Default)]
pub struct History {
    entries: VecDeque<Arc<Entry>>,
    /// Newest id dropped (by size or age).
    dropped_upto: Option<EventId>,
    /// Sum of the kept entries' weights.
    bytes: usize,
}

impl History {
    pub fn push(&mut self, entry: Arc<Entry>, limits: HistoryLimits) {
        if limits.size == 0 {
            self.dropped_upto = Some(entry.id);
            return;
        }
        self.bytes += entry.weight();
        self.entries.push_back(entry);
        while self.entries.len() > limits.size || self.bytes > limits.max_bytes {
            self.drop_oldest();
        }
    }

    /// Drop entries older than `max_age` at `now_ms`.
    pub fn expire(&mut self, now_ms: u64, limits: HistoryLimits) {
        let max_age = u64::try_from(limits.max_age.as_millis()).unwrap_or(u64::MAX);
        while self
            .entries
            .front()
            .is_some_and(|e| now_ms.saturating_sub(e.at_ms) > max_age)
        {
            self.drop_oldest();
        }
    }

    fn drop_oldest(&mut self) {
        if let Some(e) = self.entries.pop_front() {
            self.bytes -= e.weight();
            self.dropped_upto = Some(e.id);
        }
    }

    /// Everything after `last`, unless something after it was dropped.
    pub fn since(&self, last: EventId) -> Since {
        if self.dropped_upto.is_some_and(|d| d > last) {
            return Since::Gap;
        }
        // Ids grow along the deque: skip the prefix at or before `last`.
        let start = self.entries.partition_point(|e| e.id <= last);
        Since::Events(self.entries.range(start..).cloned().collect())
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn dropped_upto(&self) -> Option<EventId> {
        self.dropped_upto
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HistoryLimits = HistoryLimits {
        size: 3,
        max_age: Duration::from_secs(10),
        max_bytes: usize::MAX,
    };

    fn entry(ms: u64, seq: u64) -> Arc<Entry> {
        Arc::new(Entry {
            id: EventId::new(ms, seq),
            channel: Arc::from("c"),
            event: "e".into(),
            data: format!("{ms}"),
            at_ms: ms,
            except: None,
            encoded: Default::default(),
        })
    }

    fn ids(s: Since) -> Vec<String> {
        match s {
            Since::Events(v) => v.iter().map(|e| e.id.to_string()).collect(),
            Since::Gap => vec!["gap".into()],
        }
    }

    #[test]
    fn since_returns_exactly_the_later_events_in_order() {
        let mut h = History::default();
        for (ms, seq) in [(1, 0), (1, 1), (2, 0)] {
            h.push(entry(ms, seq), LIMITS);
        }
        assert_eq!(ids(h.since(EventId::new(0, 0))), ["1-0", "1-1", "2-0"]);
        assert_eq!(ids(h.since(EventId::new(1, 0))), ["1-1", "2-0"]);
        // An id between two events (another channel's) resumes correctly too.
        assert_eq!(ids(h.since(EventId::new(1, 5))), ["2-0"]);
        assert!(ids(h.since(EventId::new(2, 0))).is_empty());
        assert!(ids(h.since(EventId::new(9, 0))).is_empty());
    }

    #[test]
    fn size_bound_turns_old_ids_into_a_gap() {
        let mut h = History::default();
        for ms in 1..=5 {
            h.push(entry(ms, 0), LIMITS);
        }
        // 1 and 2 were dropped: a reader at 1 missed 2.
        assert_eq!(ids(h.since(EventId::new(1, 0))), ["gap"]);
        // A reader at 2 saw the newest dropped one: nothing is missing.
        assert_eq!(ids(h.since(EventId::new(2, 0))), ["3-0", "4-0", "5-0"]);
    }

    #[test]
    fn age_bound_expires_old_events() {
        let mut h = History::default();
        h.push(entry(1_000, 0), LIMITS);
        h.push(entry(5_000, 0), LIMITS);
        // Exactly max_age old is kept; one millisecond more is not.
        h.expire(11_000, LIMITS);
        assert_eq!(ids(h.since(EventId::new(999, 0))), ["1000-0", "5000-0"]);
        h.expire(11_001, LIMITS);
        assert_eq!(ids(h.since(EventId::new(1_000, 0))), ["5000-0"]);
        assert_eq!(ids(h.since(EventId::new(999, 0))), ["gap"]);
        h.expire(15_001, LIMITS);
        assert!(h.is_empty());
        // The reader who saw the last event still resumes cleanly (with nothing).
        assert!(ids(h.since(EventId::new(5_000, 0))).is_empty());
        assert_eq!(h.dropped_upto(), Some(EventId::new(5_000, 0)));
    }

    #[test]
    fn byte_bound_drops_the_oldest_and_an_oversized_event() {
        let w = entry(1, 0).weight();
        let limits = HistoryLimits {
            size: 100,
            max_bytes: 2 * w,
            ..LIMITS
        };
        let mut h = History::default();
        for ms in 1..=4 {
            h.push(entry(ms, 0), limits);
        }
        assert_eq!(ids(h.since(EventId::new(2, 0))), ["3-0", "4-0"]);
        assert_eq!(ids(h.since(EventId::new(1, 0))), ["gap"]);
        let mut big = (*entry(5, 0)).clone();
        big.data = "x".repeat(3 * w);
        h.push(Arc::new(big), limits);
        assert!(h.is_empty(), "an event over the whole budget is not kept");
        assert_eq!(h.dropped_upto(), Some(EventId::new(5, 0)));
    }

    #[test]
    fn zero_size_keeps_nothing() {
        let mut h = History::default();
        h.push(entry(1, 0), HistoryLimits { size: 0, ..LIMITS });
        assert!(h.is_empty());
        assert_eq!(ids(h.since(EventId::new(0, 0))), ["gap"]);
        assert!(ids(h.since(EventId::new(1, 0))).is_empty());
    }
}
