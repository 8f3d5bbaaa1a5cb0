//! Per-minute counts of the last hour, for the console's charts: messages confirmed,
//! deliveries handed out, acked, and gone DEAD, as this process saw them.
//!
//! Each series is a ring of 60 slots, one per minute, each an atomic count stamped with its
//! minute; a slot is reset when a new minute first lands on it. Recording is two atomic
//! operations (the hot path pays no lock); a count racing a reset may be lost, which a chart
//! can afford.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::domain::Timestamp;

/// Minutes kept.
pub const MINUTES: usize = 60;

/// What is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Series {
    Confirmed,
    Delivered,
    Acked,
    Dead,
}

impl Series {
    pub const ALL: [Series; 4] = [Self::Confirmed, Self::Delivered, Self::Acked, Self::Dead];

    pub fn label(self) -> &'static str {
        match self {
            Self::Confirmed => "confirmed",
            Self::Delivered => "delivered",
            Self::Acked => "acked",
            Self::Dead => "dead",
        }
    }
}

struct Ring {
    minute: [AtomicI64; MINUTES],
    count: [AtomicU64; MINUTES],
}

impl Ring {
    const fn new() -> Self {
        Self {
            minute: [const { AtomicI64::new(-1) }; MINUTES],
            count: [const { AtomicU64::new(0) }; MINUTES],
        }
    }

    fn add(&self, minute: i64, n: u64) {
        let slot = minute.rem_euclid(MINUTES as i64) as usize;
        let stamped = self.minute[slot].load(Ordering::Relaxed);
        if stamped != minute
            && self.minute[slot]
                .compare_exchange(stamped, minute, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            self.count[slot].store(0, Ordering::Relaxed);
        }
        self.count[slot].fetch_add(n, Ordering::Relaxed);
    }

    fn get(&self, minute: i64) -> u64 {
        let slot = minute.rem_euclid(MINUTES as i64) as usize;
        match self.minute[slot].load(Ordering::Acquire) == minute {
            true => self.count[slot].load(Ordering::Relaxed),
            false => 0,
        }
    }
}

static RINGS: [Ring; 4] = [Ring::new(), Ring::new(), Ring::new(), Ring::new()];

fn minute_of(at: Timestamp) -> i64 {
    at.as_millis().div_euclid(60_000)
}

/// Counts `n` events of `series` now.
pub fn count(series: Series, n: u64) {
    if n > 0 {
        RINGS[series as usize].add(minute_of(Timestamp::now()), n);
    }
}

/// The counts of `series` in the last [`MINUTES`] minutes up to `now`, oldest first (the last
/// is the minute in progress).
pub fn last_hour(series: Series, now: Timestamp) -> Vec<u64> {
    let current = minute_of(now);
    (0..MINUTES as i64)
        .rev()
        .map(|back| RINGS[series as usize].get(current - back))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_counts_its_own_minute_only() {
        let ring = Ring::new();
        ring.add(100, 2);
        ring.add(100, 3);
        assert_eq!(ring.get(100), 5);
        ring.add(160, 1); // the same slot, an hour later
        assert_eq!(ring.get(160), 1);
        assert_eq!(ring.get(100), 0);
        assert_eq!(ring.get(99), 0);
    }
}
