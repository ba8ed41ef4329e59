//! Setting a world up: the electors (kind, timing, watching, start time drawn from the seed), the
//! liveness bound they imply, and the periodic fault, life, clock, watch and delete ticks.

use std::collections::BTreeSet;
use std::time::Duration;

use super::super::clock::SimClock;
use super::{Busy, Ev, MS, SEC, SimElector, World, objects_of};
use crate::election::{Election, ElectionConfig, Status, Timing};
use crate::lock::LockKind;
use crate::random::Rng;
use crate::runner::watch::Mailbox;

impl World {
    /// Draw `n` electors for `scenario`; a line describing each.
    pub(super) fn add_electors(
        &mut self,
        scenario: super::super::Scenario,
        n: usize,
    ) -> Vec<String> {
        let mut described = Vec::new();
        for i in 0..n {
            let kinds = scenario.kinds();
            let kind = kinds[(self.rng.next_u64() % kinds.len() as u64) as usize];
            let timing = self.draw_timing(kind != LockKind::Leases);
            let watching = !kind.is_pair() && self.rng.next_f64() < 0.5;
            described.push(format!(
                "e{i}:{kind}{} {}/{}/{}ms",
                if watching { "+watch" } else { "" },
                timing.lease_duration.as_millis(),
                timing.renew_deadline.as_millis(),
                timing.retry_period.as_millis()
            ));
            let start = self.rng.next_u64() % SEC;
            let elector = self.new_elector(i, format!("e{i}"), kind, timing, watching, start);
            self.electors.push(elector);
            self.schedule(
                start,
                Ev::Wake {
                    e: i,
                    generation: 0,
                },
            );
        }
        described
    }

    /// How long a healthy server may go without a leader: the longest lease (stretched by the drift),
    /// 2.2 retries of jitter and the expiry spread, a quiet watch, and latency.
    pub(super) fn liveness_bound(&self) -> u64 {
        let max_lease = self
            .electors
            .iter()
            .map(|e| e.timing.lease_duration)
            .max()
            .unwrap_or_default();
        let max_retry = self
            .electors
            .iter()
            .map(|e| e.timing.retry_period)
            .max()
            .unwrap_or_default();
        // A watch that stalls without a sign is noticed after it has been quiet this long.
        let max_silence = self
            .electors
            .iter()
            .filter(|e| e.watching)
            .map(|e| e.watch_silence)
            .max()
            .unwrap_or_default();
        // lease (stretched by the drift) + 2.2 retries of jitter + 0.1 of spread + a quiet watch +
        // latency.
        // Annotation records change at most once a second: a holder re-taking its own lock can spend up
        // to a second writing records that restart followers' countdowns but do not count for itself.
        let annotations = self.electors.iter().any(|e| e.kind != LockKind::Leases);
        (max_lease.as_nanos() as f64 * (1.0 + self.cfg.drift)) as u64
            + (max_retry.as_nanos() as f64 * 2.3) as u64
            + max_silence.as_nanos() as u64
            + if annotations { SEC } else { 0 }
            + 100 * MS
    }

    pub(super) fn schedule_ticks(&mut self) {
        if self.cfg.faults {
            for (t, ev) in [
                (2 * SEC, Ev::FaultTick),
                (3 * SEC, Ev::LifeTick),
                (SEC, Ev::ClockTick),
                (2 * SEC, Ev::WatchTick),
            ] {
                self.schedule(t, ev);
            }
            self.schedule(4 * SEC, Ev::TouchTick);
            self.schedule(3 * SEC, Ev::LieTick);
            if self.deletions {
                self.schedule(5 * SEC, Ev::DeleteTick);
                self.schedule(7 * SEC, Ev::ClearTick);
            }
        } else {
            self.schedule(SEC, Ev::ClockTick);
        }
    }

    pub(super) fn draw_timing(&mut self, annotations: bool) -> Timing {
        let drawn = [1u64, 2, 2, 3, 4][(self.rng.next_u64() % 5) as usize];
        let mut lease = self.common_lease.unwrap_or(drawn);
        if annotations {
            // Annotation records carry whole seconds: a renew shows at most once a second.
            lease = lease.max(2);
        }
        let lease_ms = lease * 1000;
        let mut renew_ms = (lease_ms as f64 * (0.5 + 0.35 * self.rng.next_f64())) as u64;
        let mut retry_ms = ((renew_ms as f64 / (1.3 + 6.7 * self.rng.next_f64())) as u64).max(20);
        if annotations && renew_ms <= 1000 + retry_ms {
            // A renew shows at most once a second: the deadline must leave room for that, and still
            // stay well under the lease (the margin for clock drift).
            let most = lease_ms * 17 / 20;
            retry_ms = retry_ms.min(most - 1001).max(20);
            renew_ms = (1000 + retry_ms + 1).max(renew_ms).min(most);
        }
        Timing {
            lease_duration: Duration::from_secs(lease),
            renew_deadline: Duration::from_millis(renew_ms),
            retry_period: Duration::from_millis(retry_ms),
        }
    }

    pub(super) fn new_elector(
        &mut self,
        _index: usize,
        identity: String,
        kind: LockKind,
        timing: Timing,
        watching: bool,
        start: u64,
    ) -> SimElector {
        let objects = objects_of(kind);
        let election = Election::new(ElectionConfig {
            identity: identity.clone(),
            lock: format!("{kind} sim/lock"),
            timing,
            pair: objects.len() == 2,
            coordinated: false,
            // Drawn from the seed, so a run replays.
            incarnation: format!("{:016x}", self.rng.next_u64()),
        })
        .expect("drawn timings are valid");
        let rate = 1.0 + self.cfg.drift * (2.0 * self.rng.next_f64() - 1.0);
        let local_start = (self.rng.next_u64() % 1_000) * SEC;
        let wall_offset = (self.rng.next_u64() % (10 * SEC)) as i64;
        SimElector {
            identity,
            inc: 0,
            kind,
            objects,
            timing,
            election,
            standing: Status::Following {
                holder: None,
                expiry: None,
            },
            clock: SimClock::new(start, local_start, rate, wall_offset),
            alive: true,
            stopping: false,
            busy: Busy::Idle,
            generation: 0,
            wake_local: 0,
            published: None,
            announced: false,
            term_seq: 0,
            term_blind: false,
            saw: BTreeSet::new(),
            late_stop_reported: false,
            retry_after: None,
            jitter: (0.0, 0.0),
            since: self.base,
            watching,
            watch_activity: 0,
            watch_silence: crate::runner::pacing::watch_silence(&timing, kind != LockKind::Leases),
            watch_connected: watching,
            watch_stalled: false,
            watch_backlog: Vec::new(),
            pending: Mailbox::default(),
            rng: Rng::seeded(self.rng.next_u64()),
            started_at: start,
        }
    }
}
