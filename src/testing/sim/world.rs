//! The simulated world: a seeded scheduler, the network between electors and the model API server,
//! faults, the electors themselves (the real election core and pacing, driven as the renew thread drives
//! them), and the invariant checks after every event.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};

use super::clock::{SimClock, local_of};
use super::model::{Change, LockModel, ObjectKind};
use super::{Invariant, SimConfig, SimReport, Violation};
use crate::LockKind;
use crate::election::{
    Action, Election, ElectionConfig, Outcome, Reply, Request, Slot, Status, Timing, Watched,
};
use crate::error::{ApiError, Error, StatusReason};
use crate::events::{LeaderEvent, StopReason};
use crate::random::Rng;
use crate::runner::pacing::{Situation, next_attempt};
use crate::watch::Mailbox;

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;
/// How late a `StoppedLeading` may come after the deadline passed (the renew thread wakes at the
/// deadline, and a request in flight times out by then).
const STOP_TOLERANCE: u64 = 5 * MS;

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
}

struct Scheduled {
    t: u64,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.t, self.seq) == (other.t, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        // A min-heap on (time, sequence).
        (other.t, other.seq).cmp(&(self.t, self.seq))
    }
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
    /// When the client's own clock gives up on it.
    give_up: u64,
    request: Request,
    kind: ObjectKind,
    fate: Fate,
    /// Server-to-client latency.
    back: u64,
    /// The client has its answer (or gave up).
    done: bool,
    answer: Option<Reply>,
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
    duration: i32,
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
    election: Election,
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
    seq: u64,
    queue: BinaryHeap<Scheduled>,
    base: Instant,
    wall_base: DateTime<Utc>,
    model: LockModel,
    meta: BTreeMap<ObjectKind, ObjMeta>,
    deleted: BTreeMap<ObjectKind, ObjMeta>,
    electors: Vec<SimElector>,
    requests: HashMap<u64, InFlight>,
    next_request: u64,
    windows: Vec<FaultWindow>,
    /// Until when the server counts as disturbed (faults, deletions, and what they leave behind).
    disturbed_until: u64,
    /// The last term started: holder, term, and when.
    last_started: Option<(String, i32, u64)>,
    /// The last administrator's delete: the term counter restarts from what each candidate saw after
    /// one, so terms around it are not compared.
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

fn api(code: u16, reason: StatusReason, retry_after: Option<Duration>) -> Error {
    Error::from(ApiError {
        context: "sim".into(),
        code,
        reason,
        message: "injected".into(),
        retry_after,
    })
}

fn transport() -> Error {
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
            seq: 0,
            queue: BinaryHeap::new(),
            base: Instant::now(),
            wall_base: Utc
                .timestamp_opt(1_800_000_000, 0)
                .single()
                .unwrap_or_default(),
            model: LockModel::default(),
            meta: BTreeMap::new(),
            deleted: BTreeMap::new(),
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
        let mut described = Vec::new();
        for i in 0..n {
            let kinds = scenario.kinds();
            let kind = kinds[(w.rng.next_u64() % kinds.len() as u64) as usize];
            let timing = w.draw_timing(kind != LockKind::Leases);
            let watching = !kind.is_pair() && w.rng.next_f64() < 0.5;
            described.push(format!(
                "e{i}:{kind}{} {}/{}/{}ms",
                if watching { "+watch" } else { "" },
                timing.lease_duration.as_millis(),
                timing.renew_deadline.as_millis(),
                timing.retry_period.as_millis()
            ));
            let start = w.rng.next_u64() % SEC;
            let elector = w.new_elector(i, format!("e{i}"), kind, timing, watching, start);
            w.electors.push(elector);
            w.schedule(
                start,
                Ev::Wake {
                    e: i,
                    generation: 0,
                },
            );
        }
        let max_lease = w
            .electors
            .iter()
            .map(|e| e.timing.lease_duration)
            .max()
            .unwrap_or_default();
        let max_retry = w
            .electors
            .iter()
            .map(|e| e.timing.retry_period)
            .max()
            .unwrap_or_default();
        // A watch that stalls without a sign is noticed after it has been quiet this long.
        let max_silence = w
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
        let annotations = w.electors.iter().any(|e| e.kind != LockKind::Leases);
        w.liveness_bound = (max_lease.as_nanos() as f64 * (1.0 + w.cfg.drift)) as u64
            + (max_retry.as_nanos() as f64 * 2.3) as u64
            + max_silence.as_nanos() as u64
            + if annotations { SEC } else { 0 }
            + 100 * MS;
        w.report.scenario = format!(
            "{scenario:?}{}: {}",
            if w.deletions { " with deletions" } else { "" },
            described.join(", ")
        );
        if w.cfg.faults {
            for (t, ev) in [
                (2 * SEC, Ev::FaultTick),
                (3 * SEC, Ev::LifeTick),
                (SEC, Ev::ClockTick),
                (2 * SEC, Ev::WatchTick),
            ] {
                w.schedule(t, ev);
            }
            if w.deletions {
                w.schedule(5 * SEC, Ev::DeleteTick);
            }
        } else {
            w.schedule(SEC, Ev::ClockTick);
        }
        w
    }

    fn draw_timing(&mut self, annotations: bool) -> Timing {
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

    fn new_elector(
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

    fn schedule(&mut self, t: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Scheduled {
            t: t.max(self.now),
            seq: self.seq,
            ev,
        });
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
        while let Some(s) = self.queue.pop() {
            if self.report.steps >= self.cfg.steps || s.t > max {
                break;
            }
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
        }
    }

    // ---- electors: the renew thread's loop, on simulated time ----

    fn local_now(&self, e: usize) -> (Instant, DateTime<Utc>) {
        let el = &self.electors[e];
        (
            el.clock.instant(self.base, self.now),
            el.clock.wall(self.wall_base, self.now),
        )
    }

    fn wake(&mut self, e: usize, generation: u64) {
        self.trace(|| format!("e{e} wake gen {generation}"));
        let el = &self.electors[e];
        if !el.alive || el.stopping || el.busy != Busy::Idle || el.generation != generation {
            return;
        }
        if el.clock.local(self.now) < el.wake_local {
            // The clock's rate changed since the wake was scheduled.
            let t = el.clock.real_at(el.wake_local);
            self.schedule(t, Ev::Wake { e, generation });
            return;
        }
        let (now, wall) = self.local_now(e);
        let action = self.electors[e].election.begin(now, wall);
        self.act(e, action);
    }

    fn act(&mut self, e: usize, action: Action) {
        match action {
            Action::Send(request) => self.send(e, request),
            Action::Stepped(outcome) => {
                self.electors[e].busy = Busy::Idle;
                self.report.steps += 1;
                let lapsed = outcome.lapsed();
                self.stepped(e, outcome);
                if lapsed {
                    self.attempt_now(e);
                } else {
                    self.after_step(e);
                }
            }
            Action::Released(result) => {
                let el = &mut self.electors[e];
                el.busy = Busy::Idle;
                el.alive = false;
                let id = el.identity.clone();
                self.trace(|| format!("{id} released: {result:?}"));
            }
        }
    }

    /// What the runner's state does with an outcome: events in order, each after the leadership it
    /// reports; a renew moves the deadline.
    fn stepped(&mut self, e: usize, outcome: Outcome) {
        self.electors[e].standing = outcome.status.clone();
        let deadline = outcome.status.leader_deadline();
        if self.cfg.trace {
            let id = self.electors[e].identity.clone();
            // Instants as seconds on the elector's own clock, so a replay prints the same text.
            let at = |t: &Instant| local_of(self.base, *t) as f64 / SEC as f64;
            let status = match &outcome.status {
                Status::Leading { deadline, term } => {
                    format!("leading term {term} until {:.6}", at(deadline))
                }
                Status::Holding {
                    deadline,
                    leads_from,
                    term,
                } => format!(
                    "holding term {term} until {:.6}, leading from {:.6}",
                    at(deadline),
                    at(leads_from)
                ),
                Status::Following { holder, expiry } => format!(
                    "following {holder:?} until {:?}",
                    expiry.as_ref().map(|e| format!("{:.6}", at(e)))
                ),
            };
            let err = outcome.error.as_ref().map(ToString::to_string);
            self.trace(|| format!("{id} stepped: {status} err={err:?}"));
        }
        for event in outcome.events {
            match event {
                LeaderEvent::StartedLeading { transitions } => {
                    if let Some(d) = deadline {
                        self.started(e, d, transitions);
                    }
                }
                LeaderEvent::StoppedLeading { reason } => self.stopped(e, reason),
                LeaderEvent::NewLeader { .. } => {}
            }
        }
        let el = &mut self.electors[e];
        if let Some(d) = deadline.filter(|_| outcome.renewed && el.announced) {
            el.published = Some(d);
        }
        el.retry_after = outcome
            .error
            .as_ref()
            .and_then(Error::api)
            .and_then(|a| a.retry_after);
    }

    fn started(&mut self, e: usize, deadline: Instant, term: i32) {
        let blind = self
            .blind_terms
            .contains(&(self.electors[e].identity.clone(), term));
        let el = &mut self.electors[e];
        if el.stopping || !el.alive {
            return;
        }
        if el.announced {
            let id = el.identity.clone();
            self.violation(
                Invariant::EventOrder,
                format!("{id}: StartedLeading twice without StoppedLeading"),
            );
            return;
        }
        let el = &mut self.electors[e];
        el.announced = true;
        el.published = Some(deadline);
        el.term_seq += 1;
        el.term_blind = blind;
        el.late_stop_reported = false;
        let id = el.identity.clone();
        self.report.terms += 1;
        self.trace(|| {
            format!(
                "{id} StartedLeading term {term}{}",
                if blind { " (blind create)" } else { "" }
            )
        });
        if let Some((prev, prev_term, prev_at)) = self.last_started.clone() {
            let ok = if prev == id {
                term >= prev_term
            } else {
                term > prev_term
            };
            // A term's writes precede its start by up to a request timeout.
            let window = 2 * SEC;
            let across_delete = self.last_deletion.is_some_and(|d| d + window >= prev_at);
            if !ok && !blind && !across_delete {
                self.violation(
                    Invariant::FencingToken,
                    format!("{id} started term {term} after {prev} had term {prev_term}"),
                );
            }
        }
        self.last_started = Some((id, term, self.now));
    }

    fn stopped(&mut self, e: usize, reason: StopReason) {
        let el = &mut self.electors[e];
        el.published = None;
        if !el.announced {
            let id = el.identity.clone();
            self.violation(
                Invariant::EventOrder,
                format!("{id}: StoppedLeading ({reason:?}) without StartedLeading"),
            );
            return;
        }
        el.announced = false;
        let id = el.identity.clone();
        self.trace(|| format!("{id} StoppedLeading {reason:?}"));
    }

    /// The runner's wait: a watched change that arrived during the step is taken in now; then sleep as
    /// pacing says.
    fn after_step(&mut self, e: usize) {
        let (now, _) = self.local_now(e);
        let el = &mut self.electors[e];
        el.jitter = (el.rng.next_f64(), el.rng.next_f64());
        el.since = now;
        if el.pending.is_empty() {
            self.pace(e);
        } else {
            self.take_pending(e);
        }
    }

    fn pace(&mut self, e: usize) {
        let (now, _) = self.local_now(e);
        let el = &mut self.electors[e];
        let since = el.since;
        let stale_at = (el.watching && el.watch_connected)
            .then(|| self.base + Duration::from_nanos(el.watch_activity) + el.watch_silence);
        let situation = Situation::of(&el.standing, since, el.retry_after, stale_at, now);
        let at = next_attempt(&el.timing, since, situation, el.jitter.0, el.jitter.1);
        el.generation += 1;
        el.wake_local = local_of(self.base, at);
        let (t, generation) = (el.clock.real_at(el.wake_local), el.generation);
        self.trace(|| {
            format!(
                "e{e} sleeps until {:.6} (gen {generation})",
                t as f64 / SEC as f64
            )
        });
        self.schedule(t, Ev::Wake { e, generation });
    }

    fn attempt_now(&mut self, e: usize) {
        let el = &mut self.electors[e];
        el.generation += 1;
        el.wake_local = 0;
        let generation = el.generation;
        self.schedule(self.now, Ev::Wake { e, generation });
    }

    /// The runner's wait loop taking in watched changes one by one.
    fn take_pending(&mut self, e: usize) {
        while let Some(change) = self.electors[e].pending.take() {
            let (now, _) = self.local_now(e);
            if let Watched::Changed(_) = &change {
                let kind = self.electors[e].objects[0];
                self.electors[e].saw.insert(kind);
            }
            let reaction = self.electors[e].election.observe_watched(change, now);
            if let Some(status) = reaction.status {
                self.electors[e].standing = status;
            }
            if reaction.attempt_now {
                self.attempt_now(e);
                return;
            }
        }
        self.pace(e);
    }

    // ---- the network ----

    fn object_of(&self, e: usize, slot: Slot) -> ObjectKind {
        let objects = &self.electors[e].objects;
        match slot {
            Slot::Primary => objects[0],
            Slot::Secondary => objects[objects.len() - 1],
        }
    }

    fn faulted(&mut self, e: usize) -> Option<(FaultKind, f64)> {
        let now = self.now;
        self.windows.retain(|w| w.until > now);
        self.windows
            .iter()
            .find(|w| w.target.is_none_or(|t| t == e))
            .map(|w| (w.kind, w.probability))
    }

    fn latency(&mut self) -> u64 {
        // Mostly a fraction of a millisecond to a few; now and then tens.
        let r = self.rng.next_f64();
        if r < 0.9 {
            100_000 + (self.rng.next_f64() * 3.0 * MS as f64) as u64
        } else {
            (self.rng.next_f64() * 40.0 * MS as f64) as u64 + MS
        }
    }

    fn send(&mut self, e: usize, request: Request) {
        let id = self.next_request;
        self.next_request += 1;
        let kind = self.object_of(e, request.slot());
        let (mut go, mut back) = (self.latency(), self.latency());
        let mut fate = Fate::Normal;
        if let Some((fault, p)) = self.faulted(e) {
            if self.rng.next_f64() < p {
                self.report.faults += 1;
                fate = match fault {
                    FaultKind::Errors => {
                        let code = if self.rng.next_f64() < 0.5 { 500 } else { 503 };
                        let after = (self.rng.next_f64() < 0.3)
                            .then(|| Duration::from_secs(1 + self.rng.next_u64() % 5));
                        Fate::Status(code, after)
                    }
                    FaultKind::Throttle => {
                        let hostile = [
                            Duration::from_secs(3600),
                            Duration::from_secs(10_000_000_000_000_000_000),
                            Duration::MAX,
                            Duration::from_secs(1),
                        ];
                        Fate::Status(429, Some(hostile[(self.rng.next_u64() % 4) as usize]))
                    }
                    FaultKind::Drops => {
                        let r = self.rng.next_f64();
                        if r < 0.4 {
                            Fate::DropRequest { reset: true }
                        } else if r < 0.6 {
                            Fate::DropRequest { reset: false }
                        } else {
                            Fate::DropAnswer
                        }
                    }
                    FaultKind::Latency => {
                        go += (self.rng.next_f64() * 3.0 * SEC as f64) as u64;
                        back += (self.rng.next_f64() * 2.0 * SEC as f64) as u64;
                        Fate::Normal
                    }
                    FaultKind::Conflicts => Fate::Conflict,
                    FaultKind::Partition => Fate::DropRequest { reset: false },
                };
            }
        }
        let el = &mut self.electors[e];
        el.busy = match el.busy {
            Busy::Release(_) => Busy::Release(id),
            _ if el.stopping => Busy::Release(id),
            _ => Busy::Step(id),
        };
        let give_up = el.clock.local(self.now) + request.timeout().as_nanos() as u64;
        let timeout_at = el.clock.real_at(give_up);
        let inc = el.inc;
        if self.cfg.trace {
            let who = el.identity.clone();
            let r = format!("{request:?}");
            self.trace(|| format!("{who} -> #{id} {kind:?} {r} {fate:?}"));
        }
        self.requests.insert(
            id,
            InFlight {
                e,
                inc,
                give_up,
                request,
                kind,
                fate,
                back,
                done: false,
                answer: None,
            },
        );
        self.schedule(timeout_at, Ev::Timeout { id, local: give_up });
        match fate {
            Fate::Normal | Fate::DropAnswer => self.schedule(self.now + go, Ev::Arrive { id }),
            Fate::DropRequest { reset: true } => {
                if let Some(r) = self.requests.get_mut(&id) {
                    r.answer = Some(Reply::Failed(transport()));
                }
                self.schedule(self.now + go, Ev::Answer { id });
            }
            Fate::DropRequest { reset: false } => {}
            Fate::Status(code, after) => {
                let reason = StatusReason::from_code(code);
                if let Some(r) = self.requests.get_mut(&id) {
                    r.answer = Some(Reply::Failed(api(code, reason, after)));
                }
                self.schedule(self.now + go + back, Ev::Answer { id });
            }
            Fate::Conflict => {
                if let Some(r) = self.requests.get_mut(&id) {
                    r.answer = Some(Reply::Failed(api(409, StatusReason::Conflict, None)));
                }
                self.schedule(self.now + go + back, Ev::Answer { id });
            }
        }
    }

    /// The request reaches the server and takes effect.
    fn arrive(&mut self, id: u64) {
        let Some(r) = self.requests.get(&id) else {
            return;
        };
        let (e, kind, fate, back) = (r.e, r.kind, r.fate, r.back);
        let writer = self.electors[e].identity.clone();
        let writer_saw = self.electors[e].saw.contains(&kind);
        let before = self
            .model
            .stored(kind)
            .map(|s| s.record.holder_identity.clone());
        let result = match r.request.clone() {
            Request::Get { .. } => self.model.get(kind).map(|v| (v, None)),
            Request::Create { record, .. } => self.model.create(kind, &record),
            Request::Update {
                record,
                resource_version,
                ..
            } => self.model.update(kind, &record, &resource_version),
        };
        let reply = match result {
            Ok((v, change)) => {
                if let Some(change) = change {
                    self.written(kind, &v.record, before, &writer, writer_saw, e);
                    self.broadcast(change);
                }
                Reply::Object(v)
            }
            Err(err) if err.is_not_found() => Reply::NotFound,
            Err(err) => Reply::Failed(err),
        };
        let answer = match fate {
            Fate::DropAnswer => Reply::Failed(transport()),
            _ => reply,
        };
        if let Some(r) = self.requests.get_mut(&id) {
            r.answer = Some(answer);
        }
        self.schedule(self.now + back, Ev::Answer { id });
    }

    /// A write changed an object: check the takeover rule and remember who wrote what when.
    fn written(
        &mut self,
        kind: ObjectKind,
        record: &crate::record::LeaderElectionRecord,
        before: Option<String>,
        writer: &str,
        writer_saw: bool,
        e: usize,
    ) {
        let previous = match before {
            Some(_) => self.meta.get(&kind).cloned(),
            None => {
                // A create after a delete: a creator that saw the object holds it but leads only after
                // a quarantine (checked by OneLeader); one that never saw it cannot know who held it.
                if self.deleted.remove(&kind).is_some() {
                    if !writer_saw {
                        self.blind_terms
                            .insert((writer.to_string(), record.leader_transitions));
                        self.report.excused_blind_creates += 1;
                    }
                    // Re-created after a delete: its term waits a lease before it leads.
                    self.disturb(self.now);
                }
                None
            }
        };
        let _ = e;
        let key = (writer.to_string(), record.leader_transitions);
        if record.holder_identity.is_empty() {
            // A release: if by a blind term, whoever takes it inherits the blindness.
            if self.blind_terms.contains(&key) {
                self.tainted.insert(kind);
            } else {
                self.tainted.remove(&kind);
            }
        } else if self.tainted.remove(&kind) && record.holder_identity == writer {
            self.blind_terms.insert(key);
        }
        if let Some(p) = previous.filter(|p| self.resigned.get(&p.holder).is_none_or(|r| *r < p.at))
        {
            let taken = record.holder_identity != p.holder
                && !p.holder.is_empty()
                && record.holder_identity == writer;
            if taken && p.duration > 0 {
                let lease = Duration::from_secs(p.duration.unsigned_abs().into()).as_nanos() as f64;
                let earliest = p.at + (lease / (1.0 + self.cfg.drift)) as u64;
                if self.now + MS < earliest {
                    self.violation(
                        Invariant::NoEarlyTakeover,
                        format!(
                            "{writer} took {kind:?} from {} {:.3} s after its last write (lease {} s)",
                            p.holder,
                            (self.now - p.at) as f64 / SEC as f64,
                            p.duration
                        ),
                    );
                }
            }
        }
        self.meta.insert(
            kind,
            ObjMeta {
                holder: record.holder_identity.clone(),
                duration: record.lease_duration_seconds,
                at: self.now,
            },
        );
    }

    fn answer(&mut self, id: u64) {
        let Some(r) = self.requests.get_mut(&id) else {
            return;
        };
        if r.done {
            self.requests.remove(&id);
            return;
        }
        let Some(reply) = r.answer.take() else {
            return;
        };
        r.done = true;
        let (e, inc, kind) = (r.e, r.inc, r.kind);
        let read = matches!(r.request, Request::Get { .. });
        self.requests.remove(&id);
        if read && matches!(reply, Reply::Object(_)) {
            // It has seen this object's record (a write's own answer does not count: that is its own).
            let el = &mut self.electors[e];
            if el.inc == inc {
                el.saw.insert(kind);
            }
        }
        self.deliver(e, inc, id, reply);
    }

    fn timed_out(&mut self, id: u64, local: u64) {
        let Some(r) = self.requests.get_mut(&id) else {
            return;
        };
        if r.done {
            return;
        }
        let clock = &self.electors[r.e].clock;
        if clock.local(self.now) < local {
            // The clock's rate changed: the client's timer has not run out yet.
            let at = clock.real_at(local);
            self.schedule(at, Ev::Timeout { id, local });
            return;
        }
        r.done = true;
        let (e, inc, timeout) = (r.e, r.inc, r.request.timeout());
        // The request may still take effect: keep it until it arrives (or never does).
        if r.answer.is_some() || matches!(r.fate, Fate::DropRequest { reset: false }) {
            self.requests.remove(&id);
        }
        self.deliver(
            e,
            inc,
            id,
            Reply::Failed(Error::Timeout {
                context: "sim".into(),
                after: timeout,
            }),
        );
    }

    fn deliver(&mut self, e: usize, inc: u32, id: u64, reply: Reply) {
        let el = &mut self.electors[e];
        if el.inc != inc
            || !el.alive
            || !matches!(el.busy, Busy::Step(x) | Busy::Release(x) if x == id)
        {
            return;
        }
        if self.cfg.trace {
            let who = el.identity.clone();
            let r = format!("{reply:?}");
            self.trace(|| format!("{who} <- #{id} {r}"));
        }
        let (now, wall) = self.local_now(e);
        let action = self.electors[e].election.feed(reply, now, wall);
        self.act(e, action);
    }

    // ---- watches ----

    fn broadcast(&mut self, change: Change) {
        let kind = match &change {
            Change::Written(k, _) | Change::Deleted(k) => *k,
        };
        for e in 0..self.electors.len() {
            let el = &mut self.electors[e];
            if !el.alive || !el.watching || el.objects != [kind] {
                continue;
            }
            if el.watch_stalled {
                el.watch_backlog.push(change.clone());
                continue;
            }
            if !el.watch_connected {
                continue;
            }
            let inc = el.inc;
            let at = self.now + self.latency();
            self.schedule(
                at,
                Ev::Watch {
                    e,
                    inc,
                    change: change.clone(),
                },
            );
        }
    }

    fn watched(&mut self, e: usize, inc: u32, change: Change) {
        let el = &mut self.electors[e];
        if el.inc != inc || !el.alive || el.stopping || !el.watch_connected {
            return;
        }
        let w = match change {
            Change::Written(_, v) => Watched::Changed(v),
            Change::Deleted(_) => Watched::Deleted,
        };
        el.watch_activity = el.clock.local(self.now);
        el.pending.put(w);
        if el.busy == Busy::Idle {
            self.take_pending(e);
        }
    }

    fn watch_resume(&mut self, e: usize, inc: u32, relist: bool) {
        let el = &mut self.electors[e];
        if el.inc != inc || !el.alive {
            return;
        }
        el.watch_stalled = false;
        el.watch_connected = true;
        el.watch_activity = el.clock.local(self.now);
        let backlog = std::mem::take(&mut el.watch_backlog);
        let kind = el.objects[0];
        if relist {
            // A new watch starts with the object as it is now.
            let change = match self.model.get(kind) {
                Ok(v) => Change::Written(kind, v),
                Err(_) => Change::Deleted(kind),
            };
            self.watched(e, inc, change);
        } else {
            for change in backlog {
                self.watched(e, inc, change);
            }
        }
        if self.electors[e].busy == Busy::Idle && self.electors[e].pending.is_empty() {
            self.pace(e);
        }
    }

    // ---- faults and life ----

    fn fault_tick(&mut self) {
        let kinds = [
            FaultKind::Errors,
            FaultKind::Throttle,
            FaultKind::Drops,
            FaultKind::Latency,
            FaultKind::Conflicts,
            FaultKind::Partition,
        ];
        let kind = kinds[(self.rng.next_u64() % kinds.len() as u64) as usize];
        let length = 200 * MS + (self.rng.next_f64() * 4.0 * SEC as f64) as u64;
        let target = (self.rng.next_f64() < 0.5)
            .then(|| (self.rng.next_u64() % self.electors.len() as u64) as usize);
        let window = FaultWindow {
            until: self.now + length,
            kind,
            target,
            probability: 0.3 + 0.7 * self.rng.next_f64(),
        };
        self.trace(|| {
            format!(
                "fault {kind:?} on {target:?} for {:.3} s",
                length as f64 / SEC as f64
            )
        });
        self.disturb(self.now + length);
        self.windows.push(window);
        let next = self.now + length + 2 * SEC + self.rng.next_u64() % (8 * SEC);
        self.schedule(next, Ev::FaultTick);
    }

    /// The server counts as disturbed until `until`, plus what a disturbance leaves behind: requests
    /// that time out (one request timeout) and a `Retry-After` or a deletion honoured for a lease.
    fn disturb(&mut self, until: u64) {
        let longest = self
            .electors
            .iter()
            .map(|e| e.timing.request_timeout_cap() + e.timing.lease_duration)
            .max()
            .unwrap_or_default();
        let after = until + longest.as_nanos() as u64;
        self.disturbed_until = self.disturbed_until.max(after);
    }

    fn life_tick(&mut self) {
        let e = (self.rng.next_u64() % self.electors.len() as u64) as usize;
        let r = self.rng.next_f64();
        let el = &self.electors[e];
        if el.alive && !el.stopping {
            let restart = self.now + 500 * MS + self.rng.next_u64() % (6 * SEC);
            if r < 0.5 {
                self.crash(e);
            } else {
                self.stop(e);
            }
            self.schedule(restart, Ev::Restart { e });
        }
        let next = self.now + 3 * SEC + self.rng.next_u64() % (12 * SEC);
        self.schedule(next, Ev::LifeTick);
    }

    /// A crash: the process is gone; requests already sent may still take effect.
    fn crash(&mut self, e: usize) {
        let el = &mut self.electors[e];
        el.alive = false;
        el.published = None;
        el.announced = false;
        el.busy = Busy::Idle;
        let id = el.identity.clone();
        self.trace(|| format!("{id} CRASHED"));
    }

    /// A graceful stop, as `LeaderHandle::stop` does it: leadership ends at once, the request in flight
    /// is cut, then the lock is released.
    fn stop(&mut self, e: usize) {
        let (now, wall) = self.local_now(e);
        let el = &mut self.electors[e];
        el.stopping = true;
        el.published = None;
        let name = el.identity.clone();
        self.resigned.insert(name, self.now);
        let el = &mut self.electors[e];
        if let Busy::Step(id) = el.busy {
            if let Some(r) = self.requests.get_mut(&id) {
                r.done = true;
            }
        }
        el.busy = Busy::Idle;
        let resigned = el.election.resign(StopReason::Stopped);
        let was = el.announced;
        el.announced = false;
        let id = el.identity.clone();
        if was {
            self.trace(|| format!("{id} StoppedLeading Stopped"));
        }
        let _ = resigned;
        let action = self.electors[e].election.begin_release(now, wall);
        self.electors[e].busy = Busy::Release(u64::MAX);
        self.act(e, action);
    }

    fn restart(&mut self, e: usize) {
        if self.electors[e].alive {
            return;
        }
        let old = &self.electors[e];
        let (kind, timing, watching, inc) = (old.kind, old.timing, old.watching, old.inc + 1);
        let (old_identity, clock) = (old.identity.clone(), old.clock.clone());
        // After a crash a pod may come back under the same name; otherwise a new identity.
        let identity = if self.rng.next_f64() < 0.3 {
            old_identity
        } else {
            format!("e{e}.{inc}")
        };
        let mut fresh = self.new_elector(e, identity, kind, timing, watching, self.now);
        fresh.inc = inc;
        fresh.clock = clock;
        let id = fresh.identity.clone();
        self.electors[e] = fresh;
        self.trace(|| format!("{id} started"));
        self.attempt_now(e);
    }

    fn clock_tick(&mut self) {
        let e = (self.rng.next_u64() % self.electors.len() as u64) as usize;
        if self.cfg.faults && self.rng.next_f64() < 0.3 {
            let by = ((self.rng.next_f64() * 2.0 - 1.0) * 3.0 * SEC as f64) as i64;
            self.electors[e].clock.jump_wall(by);
        } else {
            let rate = 1.0 + self.cfg.drift * (2.0 * self.rng.next_f64() - 1.0);
            let now = self.now;
            self.electors[e].clock.set_rate(now, rate);
            // Timers run on the elector's clock: move them to where the new rate puts them.
            let el = &self.electors[e];
            match el.busy {
                Busy::Step(id) | Busy::Release(id) => {
                    if let Some(local) = self.requests.get(&id).map(|r| r.give_up) {
                        let at = el.clock.real_at(local);
                        self.schedule(at, Ev::Timeout { id, local });
                    }
                }
                Busy::Idle => {
                    let (at, generation) = (el.clock.real_at(el.wake_local), el.generation);
                    self.schedule(at, Ev::Wake { e, generation });
                }
            }
        }
        let next = self.now + SEC + self.rng.next_u64() % (4 * SEC);
        self.schedule(next, Ev::ClockTick);
    }

    fn delete_tick(&mut self) {
        let kinds = [
            ObjectKind::Lease,
            ObjectKind::ConfigMap,
            ObjectKind::Endpoints,
        ];
        for kind in kinds {
            if self.rng.next_f64() < 0.7 {
                if let Some(m) = self.meta.get(&kind).cloned() {
                    if let Some(change) = self.model.delete(kind) {
                        self.last_deletion = Some(self.now);
                        self.trace(|| format!("admin deleted {kind:?} (held by {:?})", m.holder));
                        self.deleted.insert(kind, m);
                        self.broadcast(change);
                        self.report.faults += 1;
                        self.disturb(self.now);
                    }
                }
            }
        }
        let next = self.now + 5 * SEC + self.rng.next_u64() % (25 * SEC);
        self.schedule(next, Ev::DeleteTick);
    }

    fn watch_tick(&mut self) {
        let watchers: Vec<usize> = (0..self.electors.len())
            .filter(|&e| self.electors[e].alive && self.electors[e].watching)
            .collect();
        if !watchers.is_empty() {
            let e = watchers[(self.rng.next_u64() % watchers.len() as u64) as usize];
            let length = 500 * MS + self.rng.next_u64() % (6 * SEC);
            let stall = self.rng.next_f64() < 0.6;
            let relist = !stall || self.rng.next_f64() < 0.5;
            let el = &mut self.electors[e];
            if stall {
                // Silent: the stream still looks open.
                el.watch_stalled = true;
            } else {
                el.watch_connected = false;
            }
            let inc = el.inc;
            self.trace(|| {
                format!(
                    "watch of e{e} {} for {length} ns",
                    if stall { "stalls" } else { "drops" }
                )
            });
            self.report.faults += 1;
            // A stalled stream delivers stale changes late, which restart countdowns: not a healthy time.
            self.disturb(self.now + length);
            self.schedule(self.now + length, Ev::WatchResume { e, inc, relist });
            if !stall && self.electors[e].busy == Busy::Idle {
                self.pace(e);
            }
        }
        let next = self.now + 3 * SEC + self.rng.next_u64() % (9 * SEC);
        self.schedule(next, Ev::WatchTick);
    }

    // ---- invariants at every instant ----

    fn is_leader(&self, e: usize) -> bool {
        let el = &self.electors[e];
        el.alive
            && !el.stopping
            && el
                .published
                .is_some_and(|d| el.clock.instant(self.base, self.now) < d)
    }

    fn check(&mut self) {
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

    fn check_liveness(&mut self, led: bool) {
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
    fn healthy_from(&self) -> u64 {
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
