//! The simulated world: a seeded scheduler, the network between electors and the model API server,
//! faults, the electors themselves (the real election core and pacing, driven as the renew thread drives
//! them), and the invariant checks after every event.

mod electors;
mod invariants;
mod life;
mod network;
mod setup;
mod watches;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};

use super::clock::SimClock;
use super::model::{Change, LockModel, ObjectKind};
use super::{Invariant, SimConfig, SimReport, Violation};
use crate::LockKind;
use crate::election::{Election, Reply, Request, Status, Timing};
use crate::error::{ApiError, Error, StatusReason};
use crate::random::Rng;
use crate::runner::watch::Mailbox;

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;
/// How late a `StoppedLeading` may come after the deadline passed: the renew thread wakes at the
/// deadline, and a request in flight times out by then, but a descheduled thread takes a while to act on
/// what it got (see `SCHEDULING_DELAY`).
const STOP_TOLERANCE: u64 = 25 * MS;
/// The longest a client thread is descheduled between receiving an answer and acting on it.
const SCHEDULING_DELAY: u64 = 20 * MS;

#[derive(Debug)]
enum Ev {
    Wake {
        e: usize,
        generation: u64,
    },
    Arrive {
        id: u64,
    },
    Answer {
        id: u64,
    },
    /// The client gives up when its own clock reads `local`.
    Timeout {
        id: u64,
        local: u64,
    },
    Watch {
        e: usize,
        inc: u32,
        change: Change,
    },
    WatchResume {
        e: usize,
        inc: u32,
        relist: bool,
    },
    Restart {
        e: usize,
    },
    FaultTick,
    LifeTick,
    ClockTick,
    DeleteTick,
    WatchTick,
    /// An administrator clears the record (not a release).
    ClearTick,
    /// Another writer touches the object without changing the record, now and then for a while.
    TouchTick,
    /// A watch delivers a lie.
    LieTick,
    /// An answer the client has received is processed (after a scheduling delay).
    Process {
        id: u64,
    },
}

/// What the network does to one request.
#[derive(Debug, Clone, Copy)]
enum Fate {
    Normal,
    /// Lost on the way: never applied; the connection is reset, or it just hangs.
    DropRequest {
        reset: bool,
    },
    /// Applied, but the answer is lost.
    DropAnswer,
    /// An error status, not applied.
    Status(u16, Option<Duration>),
    /// A 409 without the server applying anything (a storm of racing writers).
    Conflict,
}

struct InFlight {
    e: usize,
    inc: u32,
    /// The sender's identity (its slot may hold another incarnation by the time the request arrives).
    who: String,
    /// When the client's own clock gives up on it.
    give_up: u64,
    request: Request,
    kind: ObjectKind,
    fate: Fate,
    /// Server-to-client latency.
    back: u64,
    /// The client has its answer (or gave up).
    done: bool,
    answer: Option<Reply<Error>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FaultKind {
    Errors,
    Throttle,
    Drops,
    Latency,
    Conflicts,
    Partition,
}

struct FaultWindow {
    until: u64,
    kind: FaultKind,
    /// One elector, or all.
    target: Option<usize>,
    probability: f64,
}

/// The last record-changing write of an object: for the takeover check.
#[derive(Debug, Clone)]
struct ObjMeta {
    holder: String,
    /// Who wrote it: (elector, incarnation); an administrator is `(usize::MAX, 0)`.
    writer: (usize, u32),
    duration: i32,
    /// The record it wrote: a later write of the same record (a re-creation after a delete, say) is no
    /// change to anyone who saw it.
    record: crate::record::LeaderElectionRecord,
    at: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Busy {
    Idle,
    Step(u64),
    Release(u64),
}

struct SimElector {
    identity: String,
    inc: u32,
    kind: LockKind,
    objects: Vec<ObjectKind>,
    timing: Timing,
    election: Election<Error>,
    /// What the runner paces by: the last step's status, or a watched change's since.
    standing: Status,
    clock: SimClock,
    alive: bool,
    /// Stopped gracefully and releasing (or done): no longer a candidate.
    stopping: bool,
    busy: Busy,
    generation: u64,
    wake_local: u64,
    /// The deadline `is_leader()` reads; `None` when not leading or stopped.
    published: Option<Instant>,
    announced: bool,
    /// Terms started by this elector (for reporting each overlap once).
    term_seq: u64,
    term_blind: bool,
    /// The objects this incarnation has read a record from.
    saw: BTreeSet<ObjectKind>,
    late_stop_reported: bool,
    retry_after: Option<Duration>,
    jitter: (f64, f64),
    /// When the last step ended: the pace counts from there.
    since: Instant,
    watching: bool,
    /// When the watch last delivered anything (local nanoseconds).
    watch_activity: u64,
    watch_silence: Duration,
    watch_connected: bool,
    watch_stalled: bool,
    watch_backlog: Vec<Change>,
    pending: Mailbox,
    rng: Rng,
    started_at: u64,
}

pub(crate) struct World {
    cfg: SimConfig,
    rng: Rng,
    now: u64,
    queue: super::agenda::Agenda<Ev>,
    base: Instant,
    wall_base: DateTime<Utc>,
    model: LockModel,
    meta: BTreeMap<ObjectKind, ObjMeta>,
    deleted: BTreeMap<ObjectKind, ObjMeta>,
    /// Objects whose record an administrator cleared: who held them then, and which electors
    /// (index, incarnation) had read them by then. Anyone else sees the cleared record first and cannot
    /// know who held it.
    cleared: BTreeMap<ObjectKind, (ObjMeta, BTreeSet<(usize, u32)>)>,
    /// Answers received but not processed yet (the client thread was descheduled).
    received: HashMap<u64, (usize, u32, Reply<Error>)>,
    /// Until when another writer touches the lock objects.
    touching_until: u64,
    /// Successors started under a running elector's identity.
    successors: u32,
    electors: Vec<SimElector>,
    requests: HashMap<u64, InFlight>,
    next_request: u64,
    windows: Vec<FaultWindow>,
    /// Until when the server counts as disturbed (faults, deletions, and what they leave behind).
    disturbed_until: u64,
    /// The last term started: holder, term, and when.
    last_started: Option<(String, i32, u64)>,
    /// The last administrator's delete or clear: the term counter restarts from what each candidate
    /// saw after one, so terms around it are not compared.
    last_deletion: Option<u64>,
    overlaps: BTreeSet<(usize, u64, usize, u64)>,
    leaderless_since: Option<u64>,
    gap_reported: bool,
    liveness_bound: u64,
    /// Administrators delete the lock now and then (then all electors share one lease duration: a
    /// candidate that finds the lock deleted can only wait for durations it knows).
    deletions: bool,
    common_lease: Option<u64>,
    /// Terms begun by creating a deleted lock without ever having seen it: (holder, term), and terms
    /// that took a lock such a term released (the same blindness, passed on).
    blind_terms: BTreeSet<(String, i32)>,
    /// Objects whose current record a blind term released.
    tainted: BTreeSet<ObjectKind>,
    /// When each identity last stopped gracefully (its claims end there).
    resigned: BTreeMap<String, u64>,
    report: SimReport,
}

pub(super) fn api(code: u16, reason: StatusReason, retry_after: Option<Duration>) -> Error {
    Error::from(ApiError {
        context: "sim".into(),
        code,
        reason,
        message: "injected".into(),
        retry_after,
    })
}

pub(super) fn transport() -> Error {
    Error::Transport {
        context: "sim: connection reset".into(),
        source: Box::new(ureq::Error::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        ))),
    }
}

fn objects_of(kind: LockKind) -> Vec<ObjectKind> {
    match kind {
        LockKind::Leases => vec![ObjectKind::Lease],
        LockKind::ConfigMaps => vec![ObjectKind::ConfigMap],
        LockKind::Endpoints => vec![ObjectKind::Endpoints],
        LockKind::ConfigMapsLeases => vec![ObjectKind::ConfigMap, ObjectKind::Lease],
        LockKind::EndpointsLeases => vec![ObjectKind::Endpoints, ObjectKind::Lease],
    }
}

impl World {
    pub(crate) fn new(cfg: SimConfig) -> World {
        let mut rng = Rng::seeded(cfg.seed);
        let scenarios = if cfg.scenarios.is_empty() {
            super::Scenario::ALL.to_vec()
        } else {
            cfg.scenarios.clone()
        };
        let scenario = scenarios[(rng.next_u64() % scenarios.len() as u64) as usize];
        let n = 2 + (rng.next_u64() % 5) as usize;
        let deletions = cfg.faults && rng.next_f64() < 0.6;
        let common_lease = deletions.then(|| [2u64, 2, 3, 4][(rng.next_u64() % 4) as usize]);
        let mut w = World {
            rng,
            now: 0,
            queue: super::agenda::Agenda::new(),
            base: Instant::now(),
            wall_base: Utc
                .timestamp_opt(1_800_000_000, 0)
                .single()
                .unwrap_or_default(),
            model: LockModel::default(),
            meta: BTreeMap::new(),
            deleted: BTreeMap::new(),
            cleared: BTreeMap::new(),
            received: HashMap::new(),
            touching_until: 0,
            successors: 0,
            electors: Vec::new(),
            requests: HashMap::new(),
            next_request: 0,
            windows: Vec::new(),
            disturbed_until: 0,
            last_started: None,
            last_deletion: None,
            overlaps: BTreeSet::new(),
            leaderless_since: Some(0),
            gap_reported: false,
            liveness_bound: 0,
            deletions,
            common_lease,
            blind_terms: BTreeSet::new(),
            tainted: BTreeSet::new(),
            resigned: BTreeMap::new(),
            report: SimReport {
                seed: cfg.seed,
                ..SimReport::default()
            },
            cfg,
        };
        let described = w.add_electors(scenario, n);
        w.liveness_bound = w.liveness_bound();
        w.report.scenario = format!(
            "{scenario:?}{}: {}",
            if w.deletions { " with deletions" } else { "" },
            described.join(", ")
        );
        w.schedule_ticks();
        w
    }

    fn schedule(&mut self, t: u64, ev: Ev) {
        self.queue.push(t.max(self.now), ev);
    }

    fn trace(&mut self, line: impl FnOnce() -> String) {
        if self.cfg.trace {
            let l = format!("{:>11.6} {}", self.now as f64 / SEC as f64, line());
            self.report.history.push(l);
        }
    }

    fn violation(&mut self, invariant: Invariant, detail: String) {
        self.trace(|| format!("VIOLATION {invariant:?}: {detail}"));
        if self.report.violations.len() < 100 {
            self.report.violations.push(Violation {
                at: Duration::from_nanos(self.now),
                invariant,
                detail,
            });
        }
    }

    pub(crate) fn run(mut self) -> SimReport {
        let max = u64::try_from(self.cfg.max_time.as_nanos()).unwrap_or(u64::MAX);
        let mut same_instant = 0u32;
        while let Some(s) = self.queue.pop() {
            if self.report.steps >= self.cfg.steps || s.t > max {
                break;
            }
            same_instant = if s.t == self.now { same_instant + 1 } else { 0 };
            assert!(
                same_instant < 1_000_000,
                "seed {}: the simulation stopped advancing at {} ns (a bug in the simulation)",
                self.cfg.seed,
                s.t
            );
            self.now = s.t;
            self.handle(s.ev);
            self.check();
        }
        self.report.simulated = Duration::from_nanos(self.now);
        self.report
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Wake { e, generation } => self.wake(e, generation),
            Ev::Arrive { id } => self.arrive(id),
            Ev::Answer { id } => self.answer(id),
            Ev::Timeout { id, local } => self.timed_out(id, local),
            Ev::Watch { e, inc, change } => self.watched(e, inc, change),
            Ev::WatchResume { e, inc, relist } => self.watch_resume(e, inc, relist),
            Ev::Restart { e } => self.restart(e),
            Ev::FaultTick => self.fault_tick(),
            Ev::LifeTick => self.life_tick(),
            Ev::ClockTick => self.clock_tick(),
            Ev::DeleteTick => self.delete_tick(),
            Ev::WatchTick => self.watch_tick(),
            Ev::ClearTick => self.clear_tick(),
            Ev::TouchTick => self.touch_tick(),
            Ev::LieTick => self.lie_tick(),
            Ev::Process { id } => self.process(id),
        }
    }
}
