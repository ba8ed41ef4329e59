//! The invariants, checked at every simulated instant: one leader, no early takeover, growing terms,
//! events that match `is_leader()`, and liveness on a healthy server.

use std::time::Duration;

use super::super::Invariant;
use super::super::clock::local_of;

use super::{SEC, STOP_TOLERANCE, World};

impl World {
    pub(super) fn is_leader(&self, e: usize) -> bool {
        let el = &self.electors[e];
        el.alive
            && !el.stopping
            && el
                .published
                .is_some_and(|d| el.clock.instant(self.base, self.now) < d)
    }

    pub(super) fn check(&mut self) {
        let leaders: Vec<usize> = (0..self.electors.len())
            .filter(|&e| self.is_leader(e))
            .collect();
        for (i, &a) in leaders.iter().enumerate() {
            for &b in &leaders[i + 1..] {
                let key = (a, self.electors[a].term_seq, b, self.electors[b].term_seq);
                if !self.overlaps.insert(key) {
                    continue;
                }
                let (ea, eb) = (&self.electors[a], &self.electors[b]);
                if ea.term_blind || eb.term_blind {
                    continue;
                }
                let detail = format!(
                    "{} ({}) and {} ({}) both lead",
                    ea.identity, ea.kind, eb.identity, eb.kind
                );
                self.violation(Invariant::OneLeader, detail);
            }
        }
        for e in 0..self.electors.len() {
            let el = &self.electors[e];
            if !el.alive || el.stopping || !el.announced || el.late_stop_reported {
                continue;
            }
            let Some(deadline) = el.published else {
                continue;
            };
            let real = el.clock.real_at(local_of(self.base, deadline));
            if self.now > real + STOP_TOLERANCE {
                let id = el.identity.clone();
                self.electors[e].late_stop_reported = true;
                self.violation(
                    Invariant::EventOrder,
                    format!(
                        "{id}: is_leader() turned false {:.3} s ago without StoppedLeading",
                        (self.now - real) as f64 / SEC as f64
                    ),
                );
            }
        }
        self.check_liveness(!leaders.is_empty());
    }

    pub(super) fn check_liveness(&mut self, led: bool) {
        if led {
            if let Some(since) = self.leaderless_since.take() {
                let start = since.max(self.healthy_from());
                if self.now > start && self.now >= self.disturbed_until {
                    let gap = Duration::from_nanos(self.now - start);
                    if gap > self.report.longest_healthy_gap {
                        self.report.longest_healthy_gap = gap;
                    }
                }
            }
            self.gap_reported = false;
            return;
        }
        let since = *self.leaderless_since.get_or_insert(self.now);
        let candidates = self.electors.iter().any(|e| e.alive && !e.stopping);
        if !candidates || self.gap_reported || self.now < self.disturbed_until {
            return;
        }
        let start = since.max(self.healthy_from());
        if self.now > start + self.liveness_bound {
            self.gap_reported = true;
            self.violation(
                Invariant::Liveness,
                format!(
                    "no leader for {:.3} s on a healthy server (bound {:.3} s)",
                    (self.now - start) as f64 / SEC as f64,
                    self.liveness_bound as f64 / SEC as f64
                ),
            );
        }
    }

    /// Since when the server has been healthy and a candidate has been running.
    pub(super) fn healthy_from(&self) -> u64 {
        let first_alive = self
            .electors
            .iter()
            .filter(|e| e.alive && !e.stopping)
            .map(|e| e.started_at)
            .min()
            .unwrap_or(self.now);
        self.disturbed_until.max(first_alive)
    }
}
