//! Event ids: `"<unix_ms>-<seq>"`, the format of Redis Streams ids, so a
//! cluster backend can hand out Redis ids unchanged.
//!
//! Ids are ordered by `(ms, seq)`. A clock never goes backwards: when the wall
//! clock steps back (or two events share a millisecond) the previous
//! millisecond is kept and the sequence grows. Because the millisecond part is
//! wall-clock time, ids handed out after a restart sort after the ones before
//! it (as long as the wall clock did not step back across the restart).

use std::fmt;
use std::str::FromStr;

/// One event's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId {
    pub ms: u64,
    pub seq: u64,
}

impl EventId {
    pub const fn new(ms: u64, seq: u64) -> Self {
        Self { ms, seq }
    }

    /// The largest id before this one.
    pub const fn predecessor(self) -> Self {
        match (self.ms, self.seq) {
            (0, 0) => self,
            (ms, 0) => Self {
                ms: ms - 1,
                seq: u64::MAX,
            },
            (ms, seq) => Self { ms, seq: seq - 1 },
        }
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// A string that is not `<digits>-<digits>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an event id like 1700000000000-0")]
pub struct BadId(pub String);

impl FromStr for EventId {
    type Err = BadId;

    fn from_str(s: &str) -> Result<Self, BadId> {
        let bad = || BadId(s.chars().take(64).collect());
        let (ms, seq) = s.split_once('-').ok_or_else(bad)?;
        let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(ms) || !digits(seq) {
            return Err(bad());
        }
        Ok(Self {
            ms: ms.parse().map_err(|_| bad())?,
            seq: seq.parse().map_err(|_| bad())?,
        })
    }
}

/// Hands out strictly increasing ids.
#[derive(Debug, Clone)]
pub struct IdClock {
    last: EventId,
}

impl IdClock {
    /// A clock whose ids all sort after `floor`.
    pub fn starting_after(floor: EventId) -> Self {
        Self { last: floor }
    }

    /// The next id at wall-clock time `now_ms`: `max(last_ms, now_ms)`, with
    /// the sequence counting up within one millisecond.
    /// The last id handed out or observed.
    pub fn last(&self) -> EventId {
        self.last
    }

    /// Account for an id assigned elsewhere: later ids sort after it.
    pub fn observe(&mut self, id: EventId) {
        self.last = self.last.max(id);
    }

    pub fn next(&mut self, now_ms: u64) -> EventId {
        self.last = if now_ms > self.last.ms {
            EventId::new(now_ms, 0)
        } else {
            EventId::new(self.last.ms, self.last.seq + 1)
        };
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_order_by_time_then_sequence() {
        let id: EventId = "1700000000123-7".parse().unwrap();
        assert_eq!(id, EventId::new(1_700_000_000_123, 7));
        assert_eq!(id.to_string(), "1700000000123-7");
        assert!(EventId::new(5, 9) < EventId::new(6, 0));
        assert!(EventId::new(5, 1) < EventId::new(5, 2));
        // Numeric, not lexicographic: 10 sorts after 9.
        assert!("9-0".parse::<EventId>().unwrap() < "10-0".parse().unwrap());
    }

    #[test]
    fn malformed_ids_are_refused() {
        for bad in [
            "",
            "-",
            "1",
            "1-",
            "-1",
            "a-1",
            "1-b",
            "1-2-3",
            " 1-2",
            "1-+2",
            "+1-2",
            "99999999999999999999-0",
        ] {
            assert!(bad.parse::<EventId>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn clock_is_monotonic_when_time_stalls_or_steps_back() {
        let mut c = IdClock::starting_after(EventId::new(100, 0));
        assert_eq!(c.next(100), EventId::new(100, 1));
        assert_eq!(c.next(100), EventId::new(100, 2));
        assert_eq!(c.next(105), EventId::new(105, 0));
        // The wall clock steps back: the id keeps the last millisecond.
        assert_eq!(c.next(90), EventId::new(105, 1));
        assert_eq!(c.next(106), EventId::new(106, 0));
        let mut prev = EventId::new(0, 0);
        for now in [1, 1, 0, 3, 2, 2, 7] {
            let id = c.next(now);
            assert!(id > prev);
            prev = id;
        }
    }
}
