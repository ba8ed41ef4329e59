//! The simulation of elector sets: three to five members, each running the set's real state machine
//! (every lock's election core, pacing, renew slots, member leases, balance and hashing) on its own
//! drifting clock, against the in-memory API server, under faults (error storms, lost requests and
//! answers, latency, members cut off, watches that stall), crashes, graceful stops, restarts under the
//! same identity and joins. Checked at every step: one owner per shard at any instant, no early takeover
//! of any shard or member lease, fencing tokens that grow with every new owner, events in order; and
//! after a quiet spell, every shard owned and every member between `floor` and `ceil` of its share.
//!
//! ```
//! use kube_elector::testing::sim::sets::{SetSimConfig, simulate_set};
//! let report = simulate_set(&SetSimConfig { seed: 3, steps: 5_000, ..SetSimConfig::default() });
//! assert!(report.violations.is_empty(), "{report}");
//! assert!(report.steps >= 5_000);
//! ```

mod checks;
mod life;
mod network;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use crossbeam_channel::Receiver;

use super::clock::{SimClock, local_of};
use super::model::LockModel;
use super::{Invariant, SimReport, Violation};
use crate::election::{Timing, Watched};
use crate::random::Rng;
use crate::runner::State;
use crate::set::ShardEvent;
use crate::set::machine::{SetMachine, SetSettings};

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;
/// The set's name: shards `s-0` …, member leases `s-member-…`.
const SET: &str = "s";

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SetSimConfig {
    /// Everything else follows from it.
    pub seed: u64,
    /// Stop after this many lock steps (all members and locks together)...
    pub steps: u64,
    /// ...or this much simulated time, whichever comes first.
    pub max_time: Duration,
    /// Each member's monotonic clock runs at a rate in `[1 - drift, 1 + drift]` of real time.
    pub drift: f64,
    /// Inject faults, crashes, stops, restarts and joins. Without them the members start together and
    /// stay, on a healthy server.
    pub faults: bool,
    /// Keep a readable history of the run.
    pub trace: bool,
}

impl Default for SetSimConfig {
    fn default() -> Self {
        SetSimConfig {
            seed: 1,
            steps: 20_000,
            max_time: Duration::from_secs(3_600),
            drift: 0.01,
            faults: true,
            trace: false,
        }
    }
}

/// Run one simulation of an elector set.
pub fn simulate_set(config: &SetSimConfig) -> SimReport {
    World::new(config.clone()).run()
}

#[derive(Debug)]
enum Ev {
    /// A member's driver wakes.
    Tick {
        m: usize,
        inc: u32,
        generation: u64,
    },
    /// A request reaches the server.
    Arrive {
        id: u64,
    },
    /// Its answer reaches the client.
    Answer {
        id: u64,
    },
    /// The client gives up on it when its clock reads `local`.
    Timeout {
        id: u64,
        local: u64,
    },
    /// A watched change reaches a member.
    Watch {
        m: usize,
        inc: u32,
        name: String,
        change: Watched,
    },
    /// A member's watch comes back (and lists what it missed).
    WatchResume {
        m: usize,
        inc: u32,
    },
    /// A crashed or stopped member comes back.
    Restart {
        m: usize,
    },
    LifeTick,
    FaultTick,
    ClockTick,
    CheckTick,
}

/// Where a member is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Life {
    Running,
    /// Stopping gracefully: every term has ended; its releases are under way.
    Stopping,
    /// Crashed or stopped: nothing runs.
    Down,
}

/// One member process.
struct Member {
    identity: String,
    /// Bumped at every crash, stop and restart: what was meant for an earlier life is dropped.
    inc: u32,
    life: Life,
    machine: Option<SetMachine>,
    states: Vec<Arc<State>>,
    events: Option<Receiver<ShardEvent>>,
    clock: SimClock,
    generation: u64,
    wake_local: u64,
    /// Follows the set by a watch (else it polls).
    watching: bool,
    watch_up: bool,
    /// When (its local nanoseconds) the watch last brought anything.
    watch_activity: u64,
    /// When its last watched change is due, so changes arrive in order.
    watch_last: u64,
    /// Cut off from the server until then (real time).
    cut_until: u64,
    /// Per shard: `StartedLeading` seen and not yet `StoppedLeading`.
    announced: Vec<bool>,
    /// Releases under way while stopping.
    releasing: usize,
    /// Its machine's steps already counted.
    counted: u64,
}

/// The simulated world of one set.
pub(crate) struct World {
    cfg: SetSimConfig,
    rng: Rng,
    now: u64,
    queue: super::agenda::Agenda<Ev>,
    base: Instant,
    wall_base: DateTime<Utc>,
    timing: Timing,
    shards: usize,
    hashing: bool,
    members: Vec<Member>,
    /// The API server: one object per lock name.
    objects: BTreeMap<String, LockModel>,
    /// Per object, the last write that changed its record: holder, incarnation, when, lease seconds.
    last_write: BTreeMap<String, (String, Option<String>, u64, i32)>,
    requests: BTreeMap<u64, network::InFlight>,
    next_request: u64,
    /// Per-request faults are on (an error storm) until then.
    storm_until: u64,
    /// Nothing has disturbed the world since then (a fault, a crash, a stop, a join, a cut).
    quiet_from: u64,
    /// Per shard: the last owner to start leading it (member, its life, term).
    last_started: Vec<Option<(usize, u32, i32)>>,
    /// Per shard: since when (sampled) no running member has led it.
    unowned_since: Vec<Option<u64>>,
    max_members: usize,
    report: SimReport,
}

impl World {
    fn new(cfg: SetSimConfig) -> World {
        let mut rng = Rng::seeded(cfg.seed ^ 0x5e75_5e75);
        let shards = [4usize, 8, 16, 32][(rng.next_u64() % 4) as usize];
        let members = 3 + (rng.next_u64() % 3) as usize;
        let hashing = rng.next_f64() < 0.5;
        let lease = [2u64, 2, 3, 4, 5][(rng.next_u64() % 5) as usize] * 1000;
        let renew = (lease as f64 * (0.5 + 0.35 * rng.next_f64())) as u64;
        let retry = ((renew as f64 / (2.0 + 6.0 * rng.next_f64())) as u64).max(50);
        let timing = Timing {
            lease_duration: Duration::from_millis(lease),
            renew_deadline: Duration::from_millis(renew),
            retry_period: Duration::from_millis(retry),
        };
        let mut w = World {
            rng,
            now: 0,
            queue: super::agenda::Agenda::new(),
            base: Instant::now(),
            wall_base: Utc
                .timestamp_opt(1_800_000_000, 0)
                .single()
                .unwrap_or_default(),
            timing,
            shards,
            hashing,
            members: Vec::new(),
            objects: BTreeMap::new(),
            last_write: BTreeMap::new(),
            requests: BTreeMap::new(),
            next_request: 0,
            storm_until: 0,
            quiet_from: 0,
            last_started: vec![None; shards],
            unowned_since: vec![None; shards],
            max_members: 5,
            report: SimReport {
                seed: cfg.seed,
                ..SimReport::default()
            },
            cfg,
        };
        for i in 0..members {
            let start = w.rng.next_u64() % (2 * SEC);
            w.add_member(format!("m{i}"), start);
        }
        w.report.scenario = format!(
            "set of {shards} shards, {members} members{}, lease {lease} ms, renew {renew} ms, retry {retry} ms",
            if hashing { ", hashing" } else { "" },
        );
        w.schedule(SEC / 2, Ev::CheckTick);
        if w.cfg.faults {
            w.schedule(3 * SEC, Ev::LifeTick);
            w.schedule(2 * SEC, Ev::FaultTick);
            w.schedule(SEC, Ev::ClockTick);
        }
        w
    }

    fn schedule(&mut self, t: u64, ev: Ev) {
        self.queue.push(t.max(self.now), ev);
    }

    fn trace(&mut self, line: impl FnOnce() -> String) {
        if self.cfg.trace {
            let l = format!("{:>12.6} {}", self.now as f64 / SEC as f64, line());
            self.report.history.push(l);
        }
    }

    fn violation(&mut self, invariant: Invariant, detail: String) {
        self.trace(|| format!("VIOLATION {invariant:?}: {detail}"));
        self.report.violations.push(Violation {
            at: Duration::from_nanos(self.now),
            invariant,
            detail,
        });
    }

    fn local_now(&self, m: usize) -> (Instant, DateTime<Utc>) {
        let c = &self.members[m].clock;
        (
            c.instant(self.base, self.now),
            c.wall(self.wall_base, self.now),
        )
    }

    /// The longest a request may take.
    fn request_timeout(&self) -> u64 {
        self.timing.request_timeout_cap().as_nanos() as u64
    }

    fn run(mut self) -> SimReport {
        let end = self.cfg.max_time.as_nanos() as u64;
        let mut same = 0u32;
        while let Some(s) = self.queue.pop() {
            if s.t > end
                || self.report.steps >= self.cfg.steps
                || !self.report.violations.is_empty()
            {
                break;
            }
            same = if s.t == self.now { same + 1 } else { 0 };
            // Time stands still only if something loops: the run is broken, not the set.
            assert!(
                same < 1_000_000,
                "seed {}: simulated time stopped at {} ns ({:?}); {} events queued",
                self.cfg.seed,
                self.now,
                s.ev,
                self.queue.len()
            );
            self.now = s.t;
            self.handle(s.ev);
        }
        self.report.simulated = Duration::from_nanos(self.now);
        self.report
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Tick { m, inc, generation } => self.tick(m, inc, generation),
            Ev::Arrive { id } => self.arrive(id),
            Ev::Answer { id } => self.answer(id),
            Ev::Timeout { id, local } => self.timed_out(id, local),
            Ev::Watch {
                m,
                inc,
                name,
                change,
            } => self.watched(m, inc, &name, change),
            Ev::WatchResume { m, inc } => self.watch_resume(m, inc),
            Ev::Restart { m } => self.restart(m),
            Ev::LifeTick => self.life_tick(),
            Ev::FaultTick => self.fault_tick(),
            Ev::ClockTick => self.clock_tick(),
            Ev::CheckTick => {
                self.check_quiet();
                let every = (self.timing.retry_period.as_nanos() as u64 / 2).max(20 * MS);
                self.schedule(self.now + every, Ev::CheckTick);
            }
        }
    }

    /// A new member process (or a member starting again), first waking at real time `start`.
    fn add_member(&mut self, identity: String, start: u64) -> usize {
        let rate = 1.0 + self.cfg.drift * (2.0 * self.rng.next_f64() - 1.0);
        let local_start = (self.rng.next_u64() % 1_000) * SEC;
        let wall_offset = (self.rng.next_u64() % (10 * SEC)) as i64;
        let watching = self.rng.next_f64() < 0.8;
        let member = Member {
            identity,
            inc: 0,
            life: Life::Down,
            machine: None,
            states: Vec::new(),
            events: None,
            clock: SimClock::new(start, local_start, rate, wall_offset),
            generation: 0,
            wake_local: 0,
            watching,
            watch_up: false,
            watch_activity: 0,
            watch_last: 0,
            cut_until: 0,
            announced: vec![false; self.shards],
            releasing: 0,
            counted: 0,
        };
        self.members.push(member);
        let m = self.members.len() - 1;
        self.boot(m, start);
        m
    }

    /// Start member `m`'s process at real time `at`: a new state machine, campaigning from scratch.
    fn boot(&mut self, m: usize, at: u64) {
        let seed = self.rng.next_u64();
        let events = Arc::new(crate::set::SetEvents::default());
        let rx = events.subscribe();
        let identity = self.members[m].identity.clone();
        let local = self.members[m].clock.instant(self.base, at);
        let settings = SetSettings {
            identity: identity.clone(),
            locks: (0..self.shards)
                .map(|i| format!("{SET}-{i}").into())
                .collect(),
            member: crate::set::member_lease(SET, &identity),
            member_prefix: format!("{SET}-member-"),
            namespace: "sim".into(),
            timing: self.timing,
            balance: true,
            hashing: self.hashing,
            drain_timeout: self.timing.renew_deadline,
            watch_silence: crate::runner::pacing::watch_silence(&self.timing, false),
            server: None,
            events,
        };
        let machine =
            SetMachine::new(settings, local, Some(seed)).expect("drawn timings are valid");
        let mb = &mut self.members[m];
        mb.inc += 1;
        mb.life = Life::Running;
        mb.states = machine.states();
        mb.machine = Some(machine);
        mb.events = Some(rx);
        mb.watch_up = mb.watching;
        mb.watch_activity = mb.clock.local(at);
        mb.watch_last = at;
        mb.announced = vec![false; self.shards];
        mb.releasing = 0;
        mb.counted = 0;
        let inc = mb.inc;
        if mb.watching {
            // The watch opens by listing: every object as it is.
            self.schedule(at, Ev::WatchResume { m, inc });
        }
        self.wake_at(m, at);
    }

    /// Wake member `m`'s driver at real time `at` (replacing any earlier wake).
    fn wake_at(&mut self, m: usize, at: u64) {
        let mb = &mut self.members[m];
        mb.generation += 1;
        mb.wake_local = mb.clock.local(at);
        let (inc, generation) = (mb.inc, mb.generation);
        self.schedule(at, Ev::Tick { m, inc, generation });
    }

    fn tick(&mut self, m: usize, inc: u32, generation: u64) {
        let mb = &self.members[m];
        if mb.inc != inc || mb.generation != generation || mb.machine.is_none() {
            return;
        }
        if mb.clock.local(self.now) < mb.wake_local {
            // Its clock's rate changed since the wake was set.
            let t = mb.clock.real_at(mb.wake_local);
            self.schedule(t, Ev::Tick { m, inc, generation });
            return;
        }
        let (now, wall) = self.local_now(m);
        self.note_watch(m);
        if let Some(machine) = self.members[m].machine.as_mut() {
            machine.tick(now, wall);
        }
        self.after(m);
    }

    /// Tell member `m`'s machine how its watch is.
    fn note_watch(&mut self, m: usize) {
        let mb = &mut self.members[m];
        let activity = self.base + Duration::from_nanos(mb.watch_activity);
        let up = mb.watching && mb.watch_up;
        if let Some(machine) = mb.machine.as_mut() {
            machine.set_watch(up, up.then_some(activity));
        }
    }

    /// After member `m`'s machine did anything: carry out what it asks, check what it did, and wake it
    /// when it next has something to do.
    fn after(&mut self, m: usize) {
        let Some(machine) = self.members[m].machine.as_mut() else {
            return;
        };
        let outs = machine.take_out();
        let steps = machine.steps();
        let (now, _) = self.local_now(m);
        let next = self.members[m].machine.as_mut().map(|mc| mc.next_wake(now));
        let mb = &mut self.members[m];
        self.report.steps += steps.saturating_sub(mb.counted);
        mb.counted = steps;
        for out in outs {
            self.send(m, out);
        }
        self.check_events(m);
        self.check_owners(m);
        if self.members[m].life == Life::Running {
            if let Some(next) = next {
                let local = local_of(self.base, next);
                let at = self.members[m].clock.real_at(local);
                self.wake_at(m, at);
            }
        }
    }
}
