//! A deterministic simulation of elections (in the spirit of FoundationDB's and TigerBeetle's): electors
//! running the real election core and pacing, an in-memory API server, simulated clocks that drift and
//! jump, and a seeded scheduler that interleaves every request's send, its effect at the server and its
//! answer with everything else, under faults. Invariants are checked at every simulated instant.
//!
//! Everything is decided by the seed: a failing run prints it, and [`simulate`] with the same
//! [`SimConfig`] replays the same history (set `trace` to read it).
//!
//! ```
//! use kube_elector::testing::sim::{SimConfig, simulate};
//! let report = simulate(&SimConfig { seed: 7, steps: 2_000, ..SimConfig::default() });
//! assert!(report.violations.is_empty(), "{report}");
//! assert!(report.steps >= 2_000);
//! ```

mod agenda;
mod clock;
mod model;
pub mod sets;
mod world;

use std::fmt;
use std::time::Duration;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Everything else follows from it.
    pub seed: u64,
    /// Stop after this many election steps (all electors together)...
    pub steps: u64,
    /// ...or this much simulated time, whichever comes first.
    pub max_time: Duration,
    /// The bound on clock-rate differences: each elector's monotonic clock runs at a rate in
    /// `[1 - drift, 1 + drift]` of real time, changing now and then.
    pub drift: f64,
    /// Inject faults (errors, drops, latency, 409 storms, hostile `Retry-After`, deletions, watch stalls,
    /// crashes, stops and restarts). Without faults the server is healthy throughout.
    pub faults: bool,
    /// Keep a readable history of the run.
    pub trace: bool,
    /// Lock kinds to draw scenarios from (default: all of them, migrations included).
    pub scenarios: Vec<Scenario>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 1,
            steps: 10_000,
            max_time: Duration::from_secs(3_600),
            drift: 0.01,
            faults: true,
            trace: false,
            scenarios: Scenario::ALL.to_vec(),
        }
    }
}

/// Which lock kinds the electors of a run use (those that share objects, as in a real migration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Everyone on `leases`.
    Leases,
    /// Everyone on `configmaps`.
    ConfigMaps,
    /// Everyone on `endpoints`.
    Endpoints,
    /// Migration step 1: `configmaps` and `configmapsleases`.
    ConfigMapsMigrating,
    /// Migration step 2: `configmapsleases` and `leases`.
    ConfigMapsToLeases,
    /// Migration step 1 from Endpoints: `endpoints` and `endpointsleases`.
    EndpointsMigrating,
    /// Migration step 2 from Endpoints: `endpointsleases` and `leases`.
    EndpointsToLeases,
}

impl Scenario {
    /// Every scenario.
    pub const ALL: [Scenario; 7] = [
        Scenario::Leases,
        Scenario::ConfigMaps,
        Scenario::Endpoints,
        Scenario::ConfigMapsMigrating,
        Scenario::ConfigMapsToLeases,
        Scenario::EndpointsMigrating,
        Scenario::EndpointsToLeases,
    ];

    /// The lock kinds electors of this scenario pick from.
    pub fn kinds(self) -> &'static [crate::LockKind] {
        use crate::LockKind::*;
        match self {
            Scenario::Leases => &[Leases],
            Scenario::ConfigMaps => &[ConfigMaps],
            Scenario::Endpoints => &[Endpoints],
            Scenario::ConfigMapsMigrating => &[ConfigMaps, ConfigMapsLeases],
            Scenario::ConfigMapsToLeases => &[ConfigMapsLeases, Leases],
            Scenario::EndpointsMigrating => &[Endpoints, EndpointsLeases],
            Scenario::EndpointsToLeases => &[EndpointsLeases, Leases],
        }
    }
}

/// The rules a run must keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Invariant {
    /// At most one elector's leadership deadline covers any instant.
    OneLeader,
    /// No write takes the lock from a holder before that holder's lease expired (by real time, allowing
    /// for the drift bound).
    NoEarlyTakeover,
    /// The fencing token (the transition counter) grows with every new leader.
    FencingToken,
    /// Every `StartedLeading` is followed by exactly one `StoppedLeading`, and the events match
    /// `is_leader()`: true only after `StartedLeading`, and `StoppedLeading` at the latest when the
    /// deadline passes.
    EventOrder,
    /// A term, once `is_leader()` has turned false for it, never comes back: a renew that succeeds after
    /// the deadline passed begins a new term (with its events), never extends the old one.
    TermEnds,
    /// With a healthy server and a live candidate, a leader again within
    /// `lease + 2.2 × retry` (plus latency and drift) after the last one ended; in a set, every shard
    /// owned within about that after the last disturbance.
    Liveness,
    /// In a set, after a quiet spell, every running member holds between `floor(shards / members)` and
    /// `ceil(shards / members)` shards.
    Balance,
}

/// A broken rule.
#[derive(Debug, Clone)]
pub struct Violation {
    /// When, in simulated time.
    pub at: Duration,
    /// Which rule.
    pub invariant: Invariant,
    /// What happened.
    pub detail: String,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct SimReport {
    /// The seed.
    pub seed: u64,
    /// Election steps taken.
    pub steps: u64,
    /// Simulated time.
    pub simulated: Duration,
    /// The electors, their lock kinds and timings.
    pub scenario: String,
    /// Terms started.
    pub terms: u64,
    /// Faults injected.
    pub faults: u64,
    /// The longest time without a leader while the server was healthy.
    pub longest_healthy_gap: Duration,
    /// Overlaps excused because a candidate that never saw the lock object created it after an
    /// administrator deleted it (it cannot know the old holder; see README, Guarantees).
    pub excused_blind_creates: u64,
    /// Overlaps excused because a candidate whose first look at the lock object found its record
    /// cleared by an administrator took it (it cannot know who held it; see README, Guarantees).
    pub excused_blind_clears: u64,
    /// In a set: the instants at which every shard was owned and the balance was checked (after a quiet
    /// spell long enough for it).
    pub balance_checks: u64,
    /// Broken rules.
    pub violations: Vec<Violation>,
    /// The history (with `trace`).
    pub history: Vec<String>,
}

impl fmt::Display for SimReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seed {}: {} steps, {:.1} s simulated, {} terms, {} faults, longest healthy gap {:?}; {}",
            self.seed,
            self.steps,
            self.simulated.as_secs_f64(),
            self.terms,
            self.faults,
            self.longest_healthy_gap,
            self.scenario
        )?;
        for v in self.violations.iter().take(10) {
            writeln!(
                f,
                "  VIOLATION {:?} at {:.6} s: {}",
                v.invariant,
                v.at.as_secs_f64(),
                v.detail
            )?;
        }
        for line in &self.history {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

impl SimReport {
    /// Keep only the history that led to the first violation: the `before` lines up to it, and it (the
    /// whole history when nothing broke). A failing seed's replay is read from there.
    pub fn up_to_first_violation(mut self, before: usize) -> Self {
        if let Some(first) = self.history.iter().position(|l| l.contains("VIOLATION")) {
            self.history.truncate(first + 1);
            self.history.drain(..first.saturating_sub(before));
        }
        self
    }
}

/// Run one simulation.
pub fn simulate(config: &SimConfig) -> SimReport {
    world::World::new(config.clone()).run()
}

#[cfg(test)]
mod tests {
    use super::SimReport;

    fn report(history: &[&str]) -> SimReport {
        SimReport {
            history: history.iter().map(|l| l.to_string()).collect(),
            ..SimReport::default()
        }
    }

    #[test]
    fn a_replay_keeps_the_lines_before_the_first_violation_and_it() {
        let r = report(&["a", "b", "c", "VIOLATION one", "d", "VIOLATION two"]);
        assert_eq!(
            r.up_to_first_violation(2).history,
            ["b", "c", "VIOLATION one"]
        );
        let r = report(&["VIOLATION first", "x"]);
        assert_eq!(r.up_to_first_violation(5).history, ["VIOLATION first"]);
        let r = report(&["a", "b"]);
        assert_eq!(
            r.up_to_first_violation(1).history,
            ["a", "b"],
            "nothing broke"
        );
    }
}
