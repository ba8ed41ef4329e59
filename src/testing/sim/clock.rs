//! Simulated clocks: real time is the scheduler's (nanoseconds since the start); each elector reads its
//! own monotonic clock, whose rate differs from real time within a bound and may drift, and its own wall
//! clock, which may jump.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

/// One elector's clocks.
#[derive(Debug, Clone)]
pub(crate) struct SimClock {
    anchor_real: u64,
    anchor_local: u64,
    rate: f64,
    /// Wall clock minus real time, in nanoseconds (jumps move it).
    wall_offset: i64,
}

impl SimClock {
    pub(crate) fn new(real: u64, local_start: u64, rate: f64, wall_offset: i64) -> Self {
        SimClock {
            anchor_real: real,
            anchor_local: local_start,
            rate,
            wall_offset,
        }
    }

    /// The monotonic reading at real time `real`, in nanoseconds.
    pub(crate) fn local(&self, real: u64) -> u64 {
        let elapsed = real.saturating_sub(self.anchor_real) as f64 * self.rate;
        self.anchor_local + elapsed as u64
    }

    /// The earliest real time at which the monotonic clock reads `local` (at the current rate).
    pub(crate) fn real_at(&self, local: u64) -> u64 {
        if local <= self.anchor_local {
            return self.anchor_real;
        }
        let span = (local - self.anchor_local) as f64 / self.rate;
        let mut real = self.anchor_real + span.ceil() as u64;
        // Floating point may land a nanosecond short: step until the clock reads `local`.
        while self.local(real) < local {
            real += 1;
        }
        real
    }

    /// Change the rate from real time `real` on; the reading stays continuous.
    pub(crate) fn set_rate(&mut self, real: u64, rate: f64) {
        self.anchor_local = self.local(real);
        self.anchor_real = real;
        self.rate = rate;
    }

    /// Move the wall clock by `by` nanoseconds (NTP stepping, an operator).
    pub(crate) fn jump_wall(&mut self, by: i64) {
        self.wall_offset = self.wall_offset.saturating_add(by);
    }

    pub(crate) fn instant(&self, base: Instant, real: u64) -> Instant {
        base + Duration::from_nanos(self.local(real))
    }

    pub(crate) fn wall(&self, base: DateTime<Utc>, real: u64) -> DateTime<Utc> {
        let ns = (real as i64).saturating_add(self.wall_offset);
        base + chrono::Duration::nanoseconds(ns)
    }
}

/// The local nanoseconds of an instant read from a [`SimClock`].
pub(crate) fn local_of(base: Instant, t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(base).as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_conversions() {
        let mut c = SimClock::new(1_000, 5_000, 1.01, 0);
        assert_eq!(c.local(1_000), 5_000);
        assert_eq!(c.local(101_000), 106_000);
        assert!(c.local(c.real_at(200_000)) >= 200_000);
        c.set_rate(101_000, 0.99);
        assert_eq!(c.local(101_000), 106_000, "continuous");
        assert_eq!(c.local(201_000), 205_000);
    }
}
