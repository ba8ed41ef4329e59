//! [`Election`]: the algorithm as a state machine that does no I/O and reads no clock.
//!
//! A driver calls [`Election::begin`] with the time, sends the [`Request`] it gets back to the API server,
//! and feeds the answer to [`Election::feed`], until the election answers [`Action::Stepped`] with the
//! step's [`Outcome`]: what we are now (leading until a deadline, or following a holder until its lease
//! expires) and what changed (leadership events, in order).

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::Timing;
use crate::error::Error;
use crate::events::{LeaderEvent, StopReason};
use crate::record::{LeaderElectionRecord, VersionedRecord};

/// The holder a migration lock pair reports when its two records name different holders.
pub const UNKNOWN_LEADER: &str = "leaderelection.k8s.io/unknown";

/// How many times one step re-reads after a write lost a race (409) before it gives up.
const REREADS_PER_STEP: u8 = 1;

/// Which of the lock objects a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slot {
    /// The lock object (during a migration: the old kind, written first).
    Primary,
    /// During a migration: the Lease, written second.
    Secondary,
}

impl Slot {
    fn index(self) -> usize {
        match self {
            Slot::Primary => 0,
            Slot::Secondary => 1,
        }
    }
}

/// What the election asks the driver to do with a lock object. Every request carries the timeout it must
/// finish within: while we lead, never past our leadership deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Read the object.
    Get {
        /// Which object.
        slot: Slot,
        /// How long the request may take.
        timeout: Duration,
    },
    /// Create the object carrying `record`.
    Create {
        /// Which object.
        slot: Slot,
        /// The record to write.
        record: LeaderElectionRecord,
        /// How long the request may take.
        timeout: Duration,
    },
    /// Replace the record in the object, on condition that the object is still at `resource_version`.
    Update {
        /// Which object.
        slot: Slot,
        /// The record to write.
        record: LeaderElectionRecord,
        /// The version the election judged: the write fails with 409 Conflict if the object moved on.
        resource_version: String,
        /// How long the request may take.
        timeout: Duration,
    },
}

impl Request {
    /// The object the request is for.
    pub fn slot(&self) -> Slot {
        match self {
            Request::Get { slot, .. }
            | Request::Create { slot, .. }
            | Request::Update { slot, .. } => *slot,
        }
    }

    /// How long the request may take.
    pub fn timeout(&self) -> Duration {
        match self {
            Request::Get { timeout, .. }
            | Request::Create { timeout, .. }
            | Request::Update { timeout, .. } => *timeout,
        }
    }
}

/// The answer to a [`Request`].
#[derive(Debug)]
pub enum Reply {
    /// The object as the API server holds it now: read, created or updated.
    Object(VersionedRecord),
    /// 404: the object does not exist.
    NotFound,
    /// Anything else: an error status, a timeout, a transport failure, a malformed body.
    Failed(Error),
}

impl Reply {
    /// The reply to a `Get`, from a lock's result.
    pub fn from_read(result: crate::Result<Option<VersionedRecord>>) -> Self {
        match result {
            Ok(Some(v)) => Reply::Object(v),
            Ok(None) => Reply::NotFound,
            Err(e) if e.is_not_found() => Reply::NotFound,
            Err(e) => Reply::Failed(e),
        }
    }

    /// The reply to a `Create` or `Update`, from a lock's result.
    pub fn from_write(result: crate::Result<VersionedRecord>) -> Self {
        match result {
            Ok(v) => Reply::Object(v),
            Err(e) => Reply::Failed(e),
        }
    }
}

/// What the driver does next.
#[derive(Debug)]
pub enum Action {
    /// Send this request and feed its reply.
    Send(Request),
    /// The step is over.
    Stepped(Outcome),
    /// The release is over: `Ok(true)` when we cleared our record, `Ok(false)` when none was ours.
    Released(crate::Result<bool>),
}

/// Where a step left us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// We lead until `deadline` unless a later step renews.
    Leading {
        /// The end of our leadership unless renewed: start of the last renew that followers could see
        /// plus `renew_deadline`.
        deadline: Instant,
        /// Our term: the lock's transition counter, a fencing token.
        term: i32,
    },
    /// Someone else leads, or nobody does.
    Following {
        /// The holder we observe (`None`: released, missing or not read yet).
        holder: Option<String>,
        /// When that holder's lease expires by our clock, while it is another candidate.
        expiry: Option<Instant>,
    },
}

/// What one step did.
#[derive(Debug)]
#[non_exhaustive]
pub struct Outcome {
    /// Where the step left us.
    pub status: Status,
    /// The holder we observe (ourselves while we lead; `None`: released, missing or unknown).
    pub holder: Option<String>,
    /// What changed, in order: `NewLeader` for each holder change observed, `StoppedLeading` when we
    /// lost, `StartedLeading` when a term began.
    pub events: Vec<LeaderEvent>,
    /// The step moved our leadership deadline (we acquired or renewed).
    pub renewed: bool,
    /// The fast path (one write of the cached object) failed and the step read the lock again.
    pub slow_path: bool,
    /// Why the step did not succeed, if it did not.
    pub error: Option<Error>,
}

impl Outcome {
    /// Whether we lead after the step.
    pub fn is_leading(&self) -> bool {
        matches!(self.status, Status::Leading { .. })
    }

    /// The step only reported that our leadership ran out (its deadline passed): it sent nothing, and the
    /// next step should follow at once.
    pub fn lapsed(&self) -> bool {
        matches!(
            self.events[..],
            [LeaderEvent::StoppedLeading {
                reason: StopReason::RenewDeadlineExceeded { .. } | StopReason::EndOfTerm { .. }
            }]
        ) && !self.renewed
            && !self.slow_path
            && self.error.is_none()
    }

    /// The holder we observe: ourselves while leading.
    pub fn holder(&self) -> Option<&str> {
        self.holder.as_deref()
    }
}

/// How a step reacts to a change seen on a watch.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct WatchReaction {
    /// `NewLeader` when the holder changed.
    pub events: Vec<LeaderEvent>,
    /// The change calls for a step now (the lock was released or deleted, or names someone else while we
    /// lead): do not wait for the next retry.
    pub attempt_now: bool,
}

/// A change seen on a watch of the (single) lock object.
#[derive(Debug, Clone)]
pub enum Watched {
    /// The object as it is now.
    Changed(VersionedRecord),
    /// The object was deleted.
    Deleted,
}

/// The settings of an [`Election`].
#[derive(Debug, Clone)]
pub struct ElectionConfig {
    /// Our identity, written as holder.
    pub identity: String,
    /// The lock for messages, e.g. `leases default/my-app`.
    pub lock: String,
    /// The durations.
    pub timing: Timing,
    /// Two objects (primary, then secondary) for a migration lock, else one.
    pub pair: bool,
    /// Coordinated leader election: the API server chooses the holder; we never create or take the lock.
    pub coordinated: bool,
}

/// What we know of one lock object.
#[derive(Debug, Clone)]
enum Known {
    Unread,
    /// The object does not exist. `ghost`: the last record we saw in it, if it named a holder: an
    /// administrator's delete does not end that holder's lease, so we judge it as still there.
    Missing {
        ghost: Option<LeaderElectionRecord>,
    },
    Present(VersionedRecord),
}

/// What the lock objects say together.
#[derive(Debug, Clone)]
struct View {
    /// The object versions it was read at: a change of key is a change.
    key: String,
    holder: String,
    /// The holder's advertised duration (the longest either record advertises in a pair).
    duration: Duration,
    transitions: i32,
    preferred: Option<String>,
}

/// The last change we observed, and when (on our monotonic clock).
#[derive(Debug, Clone)]
struct Observation {
    /// The object versions it was read at: a change of key is a change.
    key: String,
    holder: String,
    /// The holder's advertised duration (the longest either record advertises in a pair).
    duration: Duration,
    transitions: i32,
    preferred: Option<String>,
    at: Instant,
}

impl Observation {
    fn expiry(&self) -> Instant {
        later(self.at, self.duration)
    }
}

/// The term we hold.
#[derive(Debug, Clone)]
struct Term {
    term: i32,
    deadline: Instant,
    /// We lead only from here: a lock we re-created after someone else's object was deleted is held a
    /// renew deadline before we lead, so whoever held the deleted object has stopped by then.
    from: Instant,
    /// `StartedLeading` was sent for this term.
    announced: bool,
    /// What we write on a renew.
    record: LeaderElectionRecord,
}

impl Term {
    fn leads(&self, now: Instant) -> bool {
        self.announced && now < self.deadline
    }
}

/// A reading of the API server's clock from a response's `Date` header (whole seconds).
#[derive(Debug, Clone, Copy)]
struct ServerClock {
    date: DateTime<Utc>,
    sent: Instant,
}

/// Where a step or release is.
#[derive(Debug)]
enum Phase {
    Idle,
    /// Fast-path renew: writing the cached objects.
    Renew {
        slot: Slot,
        record: LeaderElectionRecord,
        sent: String,
    },
    /// Reading the objects to judge them.
    Read {
        slot: Slot,
    },
    /// Writing a judged record to each object in order.
    Write {
        slots: Vec<Slot>,
        index: usize,
        record: LeaderElectionRecord,
        sent: Option<String>,
    },
    ReleaseRead {
        slot: Slot,
    },
    ReleaseWrite {
        slots: Vec<Slot>,
        index: usize,
        sent: String,
    },
}

/// The bookkeeping of one step.
#[derive(Debug, Default)]
struct StepState {
    /// When the step began (`None` before the first step).
    start: Option<Instant>,
    events: Vec<LeaderEvent>,
    slow_path: bool,
    /// Every write so far changed the object's version, so followers can see it.
    observable: bool,
    renewed: bool,
    rereads: u8,
    error: Option<Error>,
    /// A release gives up at this instant.
    give_up: Option<Instant>,
    /// The writes re-create an object we have seen before (deleted since): the term they begin waits
    /// this long before it leads.
    quarantine: Option<Duration>,
}

/// The election for one candidate on one lock, as a state machine free of I/O and clocks.
///
/// ```
/// use std::time::{Duration, Instant};
/// use kube_elector::election::{Action, Election, ElectionConfig, Reply, Request};
/// use kube_elector::Timing;
///
/// let mut e = Election::new(ElectionConfig {
///     identity: "me".into(),
///     lock: "leases default/demo".into(),
///     timing: Timing::default(),
///     pair: false,
///     coordinated: false,
/// })
/// .unwrap();
/// let now = Instant::now();
/// let wall = chrono::Utc::now();
/// // A step starts by reading the lock...
/// let Action::Send(Request::Get { .. }) = e.begin(now, wall) else { panic!() };
/// // ...which does not exist, so we create it...
/// let Action::Send(Request::Create { record, .. }) = e.feed(Reply::NotFound, now, wall) else { panic!() };
/// assert_eq!(record.holder_identity, "me");
/// // ...and once the server confirms it, we lead.
/// let created = kube_elector::record::VersionedRecord { record, resource_version: "1".into() };
/// let Action::Stepped(outcome) = e.feed(Reply::Object(created), now, wall) else { panic!() };
/// assert!(outcome.is_leading());
/// assert!(e.is_leader(now + Duration::from_secs(9)));
/// assert!(!e.is_leader(now + Duration::from_secs(10)), "renew_deadline is 10 s");
/// ```
#[derive(Debug)]
pub struct Election {
    config: ElectionConfig,
    slots: [Known; 2],
    observed: Option<Observation>,
    leading: Option<Term>,
    /// The holder last reported in a `NewLeader` event.
    reported: Option<Option<String>>,
    /// The last error while leading, for the reason of a lapse.
    last_error: Option<String>,
    /// Coordinated mode: the API server prefers this candidate, so we stopped renewing.
    end_of_term: Option<String>,
    server_clock: Option<ServerClock>,
    /// A write re-creating a deleted object was sent (with its quarantine): until we see how it ended, a
    /// record naming us may be that re-creation, and must not be led before its quarantine.
    quarantine_pending: Option<Duration>,
    /// No term begun from our re-creation of a deleted object leads before this.
    quarantine_until: Option<Instant>,
    /// A watch brought a released record since the last step: a follower may take it without reading
    /// again (its write is conditional on the version the watch showed).
    watched_fresh: bool,
    /// This election has written our record at least once. A record naming us that we never wrote is
    /// another process's (an earlier run under the same identity): judged like anyone else's.
    wrote: bool,
    phase: Phase,
    step: StepState,
}

impl StepState {
    fn new(start: Instant, rereads: u8, give_up: Option<Instant>) -> Self {
        StepState {
            start: Some(start),
            observable: true,
            rereads,
            give_up,
            ..StepState::default()
        }
    }
}

/// `t + d`, saturating far in the future instead of panicking on overflow.
pub(crate) fn later(t: Instant, d: Duration) -> Instant {
    t.checked_add(d)
        .or_else(|| t.checked_add(Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(t)
}

impl Election {
    /// A new election. Fails if the timing or the identity is invalid.
    pub fn new(config: ElectionConfig) -> crate::Result<Self> {
        config.timing.validate()?;
        if config.identity.is_empty() {
            return Err(Error::InvalidElectionConfig(
                "identity must not be empty".into(),
            ));
        }
        Ok(Election {
            config,
            slots: [Known::Unread, Known::Unread],
            observed: None,
            leading: None,
            reported: None,
            last_error: None,
            end_of_term: None,
            server_clock: None,
            quarantine_pending: None,
            quarantine_until: None,
            watched_fresh: false,
            wrote: false,
            phase: Phase::Idle,
            step: StepState::default(),
        })
    }

    /// The election's durations.
    pub fn timing(&self) -> Timing {
        self.config.timing
    }

    /// Our identity.
    pub fn identity(&self) -> &str {
        &self.config.identity
    }

    /// Whether we lead at `now`: until our deadline, and only if no step has found otherwise.
    pub fn is_leader(&self, now: Instant) -> bool {
        self.leading.as_ref().is_some_and(|t| t.leads(now))
    }

    /// When a term we hold but do not lead yet begins (see the re-created lock above): the runner wakes
    /// then to start leading.
    pub fn leading_from(&self) -> Option<Instant> {
        self.leading
            .as_ref()
            .filter(|t| !t.announced)
            .map(|t| t.from)
    }

    /// The holder we observe (ourselves while we lead); `None` when the lock is free or unread.
    pub fn holder(&self) -> Option<&str> {
        self.observed
            .as_ref()
            .map(|o| o.holder.as_str())
            .filter(|h| !h.is_empty())
    }

    /// Our leadership deadline while we lead (it may already have passed).
    pub fn deadline(&self) -> Option<Instant> {
        self.leading.as_ref().map(|t| t.deadline)
    }

    /// When the holder we observe (another candidate) loses its lease by our clock: the moment a
    /// follower should look again.
    pub fn holder_expiry(&self) -> Option<Instant> {
        let o = self.observed.as_ref()?;
        (!o.holder.is_empty() && o.holder != self.config.identity).then(|| o.expiry())
    }

    /// Record when the API server said it was `date` (its `Date` header) in the answer to a request sent
    /// at `sent`. Coordinated mode writes renew times on the server's clock, which is the one the server
    /// judges them by.
    pub fn note_server_time(&mut self, date: DateTime<Utc>, sent: Instant) {
        self.server_clock = Some(ServerClock { date, sent });
    }

    /// Start a step at `now`: renew if we lead (one write of the cached object), else read the lock and
    /// judge it. A step still in progress is abandoned.
    pub fn begin(&mut self, now: Instant, wall: DateTime<Utc>) -> Action {
        self.phase = Phase::Idle;
        self.step = StepState::new(now, REREADS_PER_STEP, None);
        self.expire(now);
        if !self.step.events.is_empty() {
            // Our deadline passed: say so now, not after another round of requests.
            return self.finish(now);
        }
        if std::mem::take(&mut self.watched_fresh) && self.leading.is_none() && !self.config.pair {
            // The watch showed the lock as it is: judge that, no read (the write is conditional).
            return self.judge(now, wall);
        }
        if let Some(term) = self.fast_path_record() {
            let mut record = term;
            record.renew_time = Some(self.record_time(now, wall));
            record.lease_duration_seconds = self.config.timing.lease_seconds();
            return self.renew(Slot::Primary, record, now);
        }
        self.read(Slot::Primary, now)
    }

    /// Feed the reply to the last request.
    pub fn feed(&mut self, reply: Reply, now: Instant, wall: DateTime<Utc>) -> Action {
        let reply = match reply {
            Reply::Failed(e) if e.is_not_found() => Reply::NotFound,
            other => other,
        };
        match std::mem::replace(&mut self.phase, Phase::Idle) {
            Phase::Idle => {
                // A reply without a request: nothing to continue.
                self.finish(now)
            }
            Phase::Renew { slot, record, sent } => match reply {
                Reply::Object(v) => {
                    self.wrote(slot, v, Some(&sent));
                    match self.next_slot(slot) {
                        Some(next) => self.renew(next, record, now),
                        None => self.wrote_all(record, now),
                    }
                }
                Reply::NotFound => self.fall_back(Error::lock_gone(&self.config.lock), now),
                Reply::Failed(e) => self.fall_back(e, now),
            },
            Phase::Read { slot } => {
                match reply {
                    Reply::Object(v) => self.slots[slot.index()] = Known::Present(v),
                    Reply::NotFound => self.gone(slot),
                    Reply::Failed(e) => {
                        self.step.error = Some(e);
                        return self.finish(now);
                    }
                }
                match self.next_slot(slot) {
                    Some(next) => self.read(next, now),
                    None => self.judge(now, wall),
                }
            }
            Phase::Write {
                slots,
                index,
                record,
                sent,
            } => match reply {
                Reply::Object(v) => {
                    self.wrote(slots[index], v, sent.as_deref());
                    if index + 1 < slots.len() {
                        self.write(slots, index + 1, record, now)
                    } else {
                        self.wrote_all(record, now)
                    }
                }
                Reply::NotFound => self.lost_race(Error::lock_gone(&self.config.lock), now),
                Reply::Failed(e) if e.is_conflict() || e.is_already_exists() => {
                    self.lost_race(e, now)
                }
                Reply::Failed(e) => {
                    self.step.error = Some(e);
                    self.finish(now)
                }
            },
            Phase::ReleaseRead { slot } => {
                match reply {
                    Reply::Object(v) => self.slots[slot.index()] = Known::Present(v),
                    Reply::NotFound => self.gone(slot),
                    Reply::Failed(e) => return self.released(Err(e)),
                }
                match self.next_slot(slot) {
                    Some(next) => self.release_read(next, now),
                    None => {
                        let ours: Vec<Slot> =
                            self.all_slots().filter(|s| self.names_us(*s)).collect();
                        if ours.is_empty() {
                            return self.released(Ok(false));
                        }
                        self.release_write(ours, 0, now, wall)
                    }
                }
            }
            Phase::ReleaseWrite { slots, index, sent } => match reply {
                Reply::Object(v) => {
                    self.wrote(slots[index], v, Some(&sent));
                    if index + 1 < slots.len() {
                        self.release_write(slots, index + 1, now, wall)
                    } else {
                        self.released(Ok(true))
                    }
                }
                Reply::Failed(e) if e.is_conflict() => {
                    // A racing write (our own late renew, or a new holder): look again.
                    self.release_read(Slot::Primary, now)
                }
                Reply::NotFound => self.released(Ok(false)),
                Reply::Failed(e) => self.released(Err(e)),
            },
        }
    }

    /// Stop claiming leadership now (stop, abandon): `StoppedLeading { reason }` if we led. A step in
    /// progress is abandoned.
    pub fn resign(&mut self, reason: StopReason) -> Option<LeaderEvent> {
        self.phase = Phase::Idle;
        self.step = StepState::default();
        self.leading
            .take()
            .filter(|t| t.announced)
            .map(|_| LeaderEvent::StoppedLeading { reason })
    }

    /// Start giving the lock up: clear the record of each object that still names us (holder `""`,
    /// duration 1 s), so a follower takes over at once. The write is conditional on the version we last
    /// wrote, so it can only clear our own record: if anyone wrote since, it fails, and the lock is read
    /// and only a record that still names us is cleared (a late release never clears a successor's
    /// lease). A racing write is retried until `timing.request_timeout_cap()` has passed. Call
    /// [`resign`](Self::resign) first.
    pub fn begin_release(&mut self, now: Instant, wall: DateTime<Utc>) -> Action {
        self.phase = Phase::Idle;
        self.leading = None;
        let give_up = later(now, self.config.timing.request_timeout_cap());
        self.step = StepState::new(now, 0, Some(give_up));
        let believed_ours = self
            .observed
            .as_ref()
            .is_some_and(|o| o.holder == self.config.identity)
            || self.all_slots().any(|s| self.names_us(s));
        if !believed_ours {
            return self.released(Ok(false));
        }
        if self.quarantine_pending.is_some() || self.quarantine_until.is_some_and(|q| q > now) {
            // A lock we re-created after a delete is not free to hand on yet: whoever held the deleted
            // object may still lead. Left as it is, it expires a lease duration after our last renew.
            log::info!(
                "{}: not releasing a lock created a moment ago over a deleted one; it expires a lease after our last renew",
                self.config.lock
            );
            return self.released(Ok(false));
        }
        let slots: Vec<Slot> = self.all_slots().collect();
        if slots.iter().all(|s| self.names_us(*s)) {
            // Each object as we last wrote it: one conditional PUT each, no read first.
            return self.release_write(slots, 0, now, wall);
        }
        self.release_read(Slot::Primary, now)
    }

    /// A change seen on a watch of the lock object, at `now` (when it arrived). Followers observe it (the
    /// countdown to the holder's expiry restarts on every change); a leader only checks it for news of a
    /// new holder, which a step must confirm by reading. Leadership itself only ever changes in a step.
    pub fn observe_watched(&mut self, watched: Watched, now: Instant) -> WatchReaction {
        let mut reaction = WatchReaction::default();
        if self.config.pair || !matches!(self.phase, Phase::Idle) {
            return reaction;
        }
        let us = self.config.identity.clone();
        if self.is_leader(now) {
            reaction.attempt_now = match &watched {
                Watched::Changed(v) => v.record.holder_identity != us,
                Watched::Deleted => true,
            };
            return reaction;
        }
        match watched {
            Watched::Changed(v) => {
                let holder = v.record.holder_identity.clone();
                self.slots[0] = Known::Present(v);
                if let Some(o) = self.view() {
                    self.observe(o, now, &mut reaction.events);
                }
                // A release seen on the watch is taken without reading it again (the write is
                // conditional on the version the watch showed): the handoff takes one round trip.
                self.watched_fresh = holder.is_empty();
                reaction.attempt_now = holder.is_empty() || holder == us;
            }
            Watched::Deleted => {
                self.gone(Slot::Primary);
                self.watched_fresh = false;
                reaction.attempt_now = true;
            }
        }
        reaction
    }

    // ---- steps ----

    /// The object was found missing: remember that it existed, and what it said.
    fn gone(&mut self, slot: Slot) {
        let ghost = match &self.slots[slot.index()] {
            Known::Present(v) => Some(v.record.clone()),
            Known::Missing { ghost } => ghost.clone(),
            Known::Unread => None,
        };
        self.slots[slot.index()] = Known::Missing { ghost };
    }

    /// The record an object holds, with its version, or `-` for a deleted object's ghost: the holder it
    /// last named still holds it until that holder's lease runs out (a live holder re-creates it within
    /// a retry), and whoever re-creates it after that leads only after a quarantine (see
    /// [`Term::from`]). A released ghost holds nothing.
    fn record_in(&self, slot: Slot) -> Option<(&LeaderElectionRecord, &str)> {
        match &self.slots[slot.index()] {
            Known::Present(v) => Some((&v.record, v.resource_version.as_str())),
            Known::Missing { ghost: Some(g) } if !g.holder_identity.is_empty() => Some((g, "-")),
            _ => None,
        }
    }

    /// How a record is judged: its holder and duration. A ghost is held for the longer of its duration
    /// and ours (someone we did not see may have taken it before it was deleted), and our own ghost is
    /// ours only while we hold the term (after a lapse, anyone may have taken it since).
    fn judged(&self, r: &LeaderElectionRecord, version: &str) -> (String, Duration) {
        if version != "-" {
            return (r.holder_identity.clone(), self.duration_of(r));
        }
        let holder = if r.holder_identity == self.config.identity && self.leading.is_none() {
            UNKNOWN_LEADER.to_string()
        } else {
            r.holder_identity.clone()
        };
        (
            holder,
            self.duration_of(r).max(self.config.timing.lease_duration),
        )
    }

    fn ours_while_holding(&self, r: &LeaderElectionRecord) -> bool {
        r.holder_identity == self.config.identity && self.leading.is_some()
    }

    /// Whether writing `slots` re-creates an object we saw before it was deleted (outside our term), and
    /// if so for how long the term must wait before it leads: the longest lease duration we know of (its
    /// records' and ours), after which whoever held the deleted object has stopped.
    fn recreates(&self, slots: &[Slot]) -> Option<Duration> {
        slots
            .iter()
            .filter_map(|s| match &self.slots[s.index()] {
                Known::Missing { ghost: Some(g) } if !self.ours_while_holding(g) => {
                    Some(self.duration_of(g).max(self.config.timing.lease_duration))
                }
                _ => None,
            })
            .max()
    }

    fn all_slots(&self) -> impl Iterator<Item = Slot> + use<> {
        let pair = self.config.pair;
        [Slot::Primary, Slot::Secondary]
            .into_iter()
            .filter(move |s| pair || *s == Slot::Primary)
    }

    fn next_slot(&self, slot: Slot) -> Option<Slot> {
        (self.config.pair && slot == Slot::Primary).then_some(Slot::Secondary)
    }

    fn names_us(&self, slot: Slot) -> bool {
        matches!(&self.slots[slot.index()], Known::Present(v) if v.record.holder_identity == self.config.identity)
    }

    /// The time written into a record: our wall clock, or in coordinated mode the API server's clock as
    /// far as we can tell (its last `Date`, rounded up), whichever is later, so the server never judges
    /// our lease expired before we think it is.
    fn record_time(&self, now: Instant, wall: DateTime<Utc>) -> DateTime<Utc> {
        match self.server_clock.filter(|_| self.config.coordinated) {
            Some(c) => {
                let since = now.saturating_duration_since(c.sent);
                let server = chrono::Duration::from_std(since + Duration::from_secs(1))
                    .ok()
                    .and_then(|d| c.date.checked_add_signed(d))
                    .unwrap_or(wall);
                server.max(wall)
            }
            None => wall,
        }
    }

    /// End leadership once its deadline has passed.
    fn expire(&mut self, now: Instant) {
        if self.leading.as_ref().is_some_and(|t| now >= t.deadline) {
            if !self.leading.take().is_some_and(|t| t.announced) {
                return;
            }
            let reason = match self.end_of_term.clone() {
                Some(preferred_holder) => StopReason::EndOfTerm { preferred_holder },
                None => StopReason::RenewDeadlineExceeded {
                    last_error: self
                        .last_error
                        .clone()
                        .unwrap_or_else(|| "no renew succeeded within the renew deadline".into()),
                },
            };
            self.step
                .events
                .push(LeaderEvent::StoppedLeading { reason });
        }
    }

    /// Lose leadership now, because someone else holds or wrote the lock.
    fn lose(&mut self, holder: Option<String>) {
        if self.leading.take().is_some_and(|t| t.announced) {
            self.step.events.push(LeaderEvent::StoppedLeading {
                reason: StopReason::LeaseLost { holder },
            });
        }
    }

    /// The record for a fast-path renew: we lead and every object still holds our record, as we wrote it.
    fn fast_path_record(&self) -> Option<LeaderElectionRecord> {
        let term = self.leading.as_ref()?;
        if self.end_of_term.is_some() {
            return None;
        }
        self.all_slots()
            .all(|s| self.names_us(s))
            .then(|| term.record.clone())
    }

    /// The timeout for the next request: the cap, never past our deadline (or a release's give-up).
    fn timeout(&self, now: Instant) -> Option<Duration> {
        let cap = self.config.timing.request_timeout_cap();
        let until = self
            .step
            .give_up
            .or_else(|| self.leading.as_ref().map(|t| t.deadline));
        match until {
            None => Some(cap),
            Some(d) => {
                let left = d.saturating_duration_since(now);
                (left >= Duration::from_millis(1)).then(|| left.min(cap))
            }
        }
    }

    fn deadline_error(&self) -> Error {
        Error::DeadlineExceeded {
            lock: self.config.lock.clone(),
        }
    }

    /// Send a request, or end the step when its time is up.
    fn send(
        &mut self,
        phase: Phase,
        now: Instant,
        make: impl FnOnce(Duration) -> Request,
    ) -> Action {
        let releasing = matches!(
            phase,
            Phase::ReleaseRead { .. } | Phase::ReleaseWrite { .. }
        );
        match self.timeout(now) {
            Some(timeout) => {
                self.phase = phase;
                Action::Send(make(timeout))
            }
            None if releasing => self.released(Err(self.deadline_error())),
            None => {
                let e = self.deadline_error();
                if self.step.error.is_none() {
                    self.step.error = Some(e);
                }
                self.finish(now)
            }
        }
    }

    fn renew(&mut self, slot: Slot, record: LeaderElectionRecord, now: Instant) -> Action {
        let Known::Present(v) = &self.slots[slot.index()] else {
            return self.read(Slot::Primary, now);
        };
        let sent = v.resource_version.clone();
        let (r, rv) = (record.clone(), sent.clone());
        self.send(Phase::Renew { slot, record, sent }, now, move |timeout| {
            Request::Update {
                slot,
                record: r,
                resource_version: rv,
                timeout,
            }
        })
    }

    fn read(&mut self, slot: Slot, now: Instant) -> Action {
        self.send(Phase::Read { slot }, now, |timeout| Request::Get {
            slot,
            timeout,
        })
    }

    fn release_read(&mut self, slot: Slot, now: Instant) -> Action {
        self.send(Phase::ReleaseRead { slot }, now, |timeout| Request::Get {
            slot,
            timeout,
        })
    }

    fn write(
        &mut self,
        slots: Vec<Slot>,
        index: usize,
        record: LeaderElectionRecord,
        now: Instant,
    ) -> Action {
        let slot = slots[index];
        let sent = match &self.slots[slot.index()] {
            Known::Present(v) => Some(v.resource_version.clone()),
            _ => None,
        };
        if self.step.quarantine.is_some() {
            self.quarantine_pending = self.step.quarantine;
        }
        let r = record.clone();
        let rv = sent.clone();
        self.send(
            Phase::Write {
                slots,
                index,
                record,
                sent,
            },
            now,
            move |timeout| match rv {
                Some(resource_version) => Request::Update {
                    slot,
                    record: r,
                    resource_version,
                    timeout,
                },
                None => Request::Create {
                    slot,
                    record: r,
                    timeout,
                },
            },
        )
    }

    fn release_write(
        &mut self,
        slots: Vec<Slot>,
        index: usize,
        now: Instant,
        wall: DateTime<Utc>,
    ) -> Action {
        let slot = slots[index];
        let Known::Present(v) = &self.slots[slot.index()] else {
            return self.released(Ok(false));
        };
        let record = LeaderElectionRecord {
            holder_identity: String::new(),
            lease_duration_seconds: 1,
            acquire_time: Some(wall),
            renew_time: Some(wall),
            leader_transitions: v.record.leader_transitions,
            strategy: v.record.strategy.clone(),
            preferred_holder: None,
        };
        let sent = v.resource_version.clone();
        let rv = sent.clone();
        self.send(
            Phase::ReleaseWrite { slots, index, sent },
            now,
            move |timeout| Request::Update {
                slot,
                record,
                resource_version: rv,
                timeout,
            },
        )
    }

    /// The fast path failed: read the lock and judge it (the slow path).
    fn fall_back(&mut self, e: Error, now: Instant) -> Action {
        log::debug!(
            "{}: fast-path renew failed, reading the lock: {e}",
            self.config.lock
        );
        self.step.slow_path = true;
        self.step.error = Some(e);
        self.read(Slot::Primary, now)
    }

    /// A write lost a race (409, or the object vanished): read again and judge again, once per step. A race
    /// never means "still leader": if we cannot judge again, we stop leading.
    fn lost_race(&mut self, e: Error, now: Instant) -> Action {
        self.step.error = Some(e);
        if self.step.rereads > 0 {
            self.step.rereads -= 1;
            self.step.observable = true;
            return self.read(Slot::Primary, now);
        }
        self.lose(None);
        self.finish(now)
    }

    /// Remember an object we wrote; a write that left the version unchanged (identical bytes, which the
    /// API server treats as a no-op) is invisible to followers.
    fn wrote(&mut self, slot: Slot, v: VersionedRecord, sent: Option<&str>) {
        if sent.is_some_and(|s| s == v.resource_version) {
            self.step.observable = false;
        }
        self.slots[slot.index()] = Known::Present(v);
    }

    /// Every object holds our record: we lead until `start + renew_deadline` if followers can see the
    /// write; a write they cannot see moves nothing.
    fn wrote_all(&mut self, record: LeaderElectionRecord, now: Instant) -> Action {
        if let Some(v) = self.view() {
            let mut events = std::mem::take(&mut self.step.events);
            self.observe(v, now, &mut events);
            self.step.events = events;
        }
        if !self.step.observable {
            log::debug!(
                "{}: the write changed nothing on the server (an identical record), so it does not count as a renew",
                self.config.lock
            );
            return self.finish(now);
        }
        let start = self.step.start.unwrap_or(now);
        let rd = self.config.timing.renew_deadline;
        let deadline = later(start, rd);
        if deadline <= now {
            // The write took effect, but so late that the term it would give us is already over.
            return self.finish(now);
        }
        let term = record.leader_transitions;
        if self.leading.as_ref().is_some_and(|t| t.term != term) {
            // Our term changed under us (another process with our identity wrote it): say so.
            self.lose(Some(self.config.identity.clone()));
        }
        let from = match &self.leading {
            Some(t) => t.from,
            // Whoever held the object that was deleted led at most until its last renew (before the
            // delete, so before our create took effect) plus a renew deadline.
            None if self.step.quarantine.is_some() => {
                let from = later(now, self.step.quarantine.unwrap_or(rd));
                self.quarantine_pending = None;
                self.quarantine_until = Some(from);
                from
            }
            None => self.quarantine_until.map_or(start, |q| q.max(start)),
        };
        let announced = self.leading.as_ref().is_some_and(|t| t.announced);
        if !announced && from > now {
            log::info!(
                "{}: re-created the lock after it was deleted; leading from a renew deadline on, when whoever held the deleted object has stopped",
                self.config.lock
            );
        }
        self.leading = Some(Term {
            term,
            deadline,
            from,
            announced,
            record,
        });
        self.last_error = None;
        self.wrote = true;
        self.step.renewed = true;
        self.step.error = None;
        self.finish(now)
    }

    /// Judge what the reads found and decide: hold, take, renew, or wait.
    fn judge(&mut self, now: Instant, wall: DateTime<Utc>) -> Action {
        // The reads succeeded: whatever failed before (the fast path) is settled by what they found.
        self.step.error = None;
        let us = self.config.identity.clone();
        let Some(v) = self.view() else {
            return self.judge_missing(now, wall);
        };
        let mut events = std::mem::take(&mut self.step.events);
        self.observe(v, now, &mut events);
        self.step.events = events;
        let Some(o) = self.observed.clone() else {
            return self.finish(now);
        };
        if self.config.coordinated {
            return self.judge_coordinated(o, now, wall);
        }
        let ours = o.holder == us && self.wrote;
        if ours && self.leading.is_none() && self.quarantine_pending.is_some() {
            // Perhaps our own re-creation whose answer we lost: it leads only after its quarantine.
            self.step.quarantine = self.quarantine_pending;
        }
        if !ours {
            if o.holder != us {
                self.quarantine_pending = None;
            }
            // Whoever wrote the record, it is not our term any more.
            self.lose((!o.holder.is_empty()).then(|| o.holder.clone()));
            if !o.holder.is_empty() && o.expiry() > now {
                return self.finish(now);
            }
        }
        let record = if ours {
            self.renewal_of(now, wall)
        } else {
            self.new_term(self.known_transitions().saturating_add(1), now, wall)
        };
        let slots: Vec<Slot> = self.all_slots().collect();
        self.step.quarantine = self.step.quarantine.max(self.recreates(&slots));
        self.write(slots, 0, record, now)
    }

    /// No lock object exists and none named a holder when we last saw it: create it, with the term
    /// after the last one we saw (a deleted lock keeps fencing tokens growing for those who saw it).
    fn judge_missing(&mut self, now: Instant, wall: DateTime<Utc>) -> Action {
        if self.config.coordinated {
            self.step.error = Some(Error::Coordinated(format!(
                "{} does not exist: the API server's coordinated election creates it (is the CoordinatedLeaderElection feature on?)",
                self.config.lock
            )));
            return self.finish(now);
        }
        let slots: Vec<Slot> = self.all_slots().collect();
        let seen = self.recreates(&slots).is_some() || self.observed.is_some();
        let transitions = if seen {
            self.known_transitions().saturating_add(1)
        } else {
            0
        };
        let record = self.new_term(transitions, now, wall);
        self.step.quarantine = self.step.quarantine.max(self.recreates(&slots));
        self.write(slots, 0, record, now)
    }

    /// Coordinated mode: renew only a lease the API server gave us, and not once it prefers another.
    fn judge_coordinated(&mut self, o: Observation, now: Instant, wall: DateTime<Utc>) -> Action {
        if o.holder != self.config.identity {
            self.end_of_term = None;
            self.lose((!o.holder.is_empty()).then(|| o.holder.clone()));
            return self.finish(now);
        }
        self.end_of_term = o.preferred.clone().filter(|p| *p != self.config.identity);
        if self.end_of_term.is_some() {
            // Our term ends by its deadline; the server hands the lease on after it expires.
            return self.finish(now);
        }
        if self.leading.is_none() && o.expiry() <= now {
            // A stale assignment: the API server will hand the lease out again.
            return self.finish(now);
        }
        let mut record = self.renewal_of(now, wall);
        record.preferred_holder = None;
        self.write(vec![Slot::Primary], 0, record, now)
    }

    /// Our record renewed: the term and acquire time kept, the renew time and our duration written.
    fn renewal_of(&self, now: Instant, wall: DateTime<Utc>) -> LeaderElectionRecord {
        let time = self.record_time(now, wall);
        let base = match &self.leading {
            Some(t) => t.record.clone(),
            None => self.current_record().unwrap_or_default(),
        };
        LeaderElectionRecord {
            holder_identity: self.config.identity.clone(),
            lease_duration_seconds: self.config.timing.lease_seconds(),
            acquire_time: base.acquire_time.or(Some(time)),
            renew_time: Some(time),
            leader_transitions: self
                .observed
                .as_ref()
                .map_or(base.leader_transitions, |o| o.transitions),
            strategy: base.strategy,
            preferred_holder: base.preferred_holder,
        }
    }

    /// A record starting a new term with us as holder.
    fn new_term(
        &self,
        transitions: i32,
        now: Instant,
        wall: DateTime<Utc>,
    ) -> LeaderElectionRecord {
        let time = self.record_time(now, wall);
        LeaderElectionRecord {
            holder_identity: self.config.identity.clone(),
            lease_duration_seconds: self.config.timing.lease_seconds(),
            acquire_time: Some(time),
            renew_time: Some(time),
            leader_transitions: transitions,
            strategy: None,
            preferred_holder: None,
        }
    }

    /// The highest term any record we know of carries (deleted ones included), so fencing tokens keep
    /// growing for everyone who saw them.
    fn known_transitions(&self) -> i32 {
        let slots = self
            .all_slots()
            .filter_map(|s| match &self.slots[s.index()] {
                Known::Present(v) => Some(v.record.leader_transitions),
                Known::Missing { ghost: Some(g) } => Some(g.leader_transitions),
                _ => None,
            });
        slots
            .chain(self.observed.as_ref().map(|o| o.transitions))
            .max()
            .unwrap_or(0)
    }

    /// The record of the primary object if it exists, else the secondary's.
    fn current_record(&self) -> Option<LeaderElectionRecord> {
        self.all_slots()
            .find_map(|s| self.record_in(s).map(|(r, _)| r.clone()))
    }

    /// The holder's advertised duration; a non-positive one (invalid on the wire) counts as ours.
    fn duration_of(&self, r: &LeaderElectionRecord) -> Duration {
        if r.lease_duration_seconds > 0 {
            Duration::from_secs(u64::from(r.lease_duration_seconds.unsigned_abs()))
        } else {
            self.config.timing.lease_duration
        }
    }

    /// What the objects say together, or `None` when none exists. In a pair, two records naming
    /// different holders read as [`UNKNOWN_LEADER`], and the longest duration either advertises counts.
    fn view(&self) -> Option<View> {
        let primary = self.record_in(Slot::Primary);
        let secondary = if self.config.pair {
            self.record_in(Slot::Secondary)
        } else {
            None
        };
        let rv = |r: Option<(&LeaderElectionRecord, &str)>| r.map_or("-", |(_, v)| v).to_string();
        let key = if self.config.pair {
            format!("{}+{}", rv(primary), rv(secondary))
        } else {
            rv(primary)
        };
        let (holder, duration, transitions, preferred) = match (primary, secondary) {
            (None, None) => return None,
            (Some((r, v)), None) | (None, Some((r, v))) => {
                let (holder, duration) = self.judged(r, v);
                (
                    holder,
                    duration,
                    r.leader_transitions,
                    r.preferred_holder.clone(),
                )
            }
            (Some((p, pv)), Some((s, sv))) => {
                let (ph, pd) = self.judged(p, pv);
                let (sh, sd) = self.judged(s, sv);
                (
                    if ph == sh {
                        ph
                    } else {
                        UNKNOWN_LEADER.to_string()
                    },
                    pd.max(sd),
                    p.leader_transitions.max(s.leader_transitions),
                    p.preferred_holder.clone(),
                )
            }
        };
        Some(View {
            key,
            holder,
            duration,
            transitions,
            preferred,
        })
    }

    /// Take in an observation at `now`: a new key restarts the expiry countdown; a new holder is reported.
    fn observe(&mut self, v: View, now: Instant, events: &mut Vec<LeaderEvent>) {
        match &mut self.observed {
            Some(old) if old.key == v.key => {
                // Unchanged: the countdown goes on from the first sighting.
                old.holder = v.holder;
                old.duration = v.duration;
                old.transitions = v.transitions;
                old.preferred = v.preferred;
            }
            _ => {
                self.observed = Some(Observation {
                    key: v.key,
                    holder: v.holder,
                    duration: v.duration,
                    transitions: v.transitions,
                    preferred: v.preferred,
                    at: now,
                })
            }
        }
        let holder = self
            .observed
            .as_ref()
            .map(|o| o.holder.clone())
            .filter(|h| !h.is_empty());
        if self.reported.as_ref() != Some(&holder) {
            self.reported = Some(holder.clone());
            events.push(LeaderEvent::NewLeader { identity: holder });
        }
    }

    /// End the step: where it left us and what changed.
    fn finish(&mut self, now: Instant) -> Action {
        // Why renews fail, for the reason of a lapse (this one's, if the deadline passes now).
        if self.leading.is_some() {
            if let Some(e) = self
                .step
                .error
                .as_ref()
                .filter(|e| !matches!(e, Error::DeadlineExceeded { .. }))
            {
                self.last_error = Some(e.to_string());
            }
        }
        self.expire(now);
        if let Some(t) = self
            .leading
            .as_mut()
            .filter(|t| !t.announced && t.from <= now)
        {
            t.announced = true;
            let term = t.term;
            self.step
                .events
                .push(LeaderEvent::StartedLeading { transitions: term });
        }
        self.phase = Phase::Idle;
        let step = std::mem::take(&mut self.step);
        let observed = self
            .observed
            .as_ref()
            .map(|o| o.holder.clone())
            .filter(|h| !h.is_empty());
        let status = match self.leading.as_ref().filter(|t| t.announced) {
            Some(t) => Status::Leading {
                deadline: t.deadline,
                term: t.term,
            },
            None => Status::Following {
                holder: observed.clone(),
                expiry: self.holder_expiry(),
            },
        };
        Action::Stepped(Outcome {
            status,
            holder: observed,
            events: step.events,
            renewed: step.renewed,
            slow_path: step.slow_path,
            error: step.error,
        })
    }

    fn released(&mut self, result: crate::Result<bool>) -> Action {
        self.phase = Phase::Idle;
        self.step = StepState::default();
        Action::Released(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{ApiError, StatusReason};
    use proptest::prelude::*;

    fn failed(code: u16, retry_after: Option<Duration>) -> Reply {
        Reply::Failed(Error::Api(ApiError {
            context: "test".into(),
            code,
            reason: StatusReason::from_code(code),
            message: String::new(),
            retry_after,
        }))
    }

    proptest! {
        /// Whatever the server answers (hostile durations, terms, holders, errors, Retry-After) and however
        /// time jumps, the core neither panics nor leads without a write the server confirmed, and never past
        /// that write's step start plus the renew deadline.
        #[test]
        fn hostile_answers_never_panic_or_make_a_leader(
            answers in proptest::collection::vec(
                (0u8..7, any::<i32>(), any::<i32>(), prop_oneof![Just("me".to_string()), Just(String::new()), ".{0,6}"],
                 any::<u64>(), 0u64..4_000),
                1..80),
            pair in any::<bool>(),
            coordinated in any::<bool>(),
        ) {
            let timing = Timing {
                lease_duration: Duration::from_secs(2),
                renew_deadline: Duration::from_millis(1500),
                retry_period: Duration::from_millis(200),
            };
            let mut e = Election::new(ElectionConfig {
                identity: "me".into(),
                lock: "test".into(),
                timing,
                pair,
                coordinated,
            }).unwrap();
            let base = Instant::now();
            let (mut now, wall) = (base, Utc::now());
            let mut rv = 0u64;
            let mut step_start = now;
            let mut confirmed: Option<Instant> = None;
            let mut wrote_ok = false;
            let mut action = e.begin(now, wall);
            // When the current action was produced.
            let mut acted = now;
            for (kind, duration, transitions, holder, retry, advance) in answers {
                now += Duration::from_millis(advance);
                action = match action {
                    Action::Send(request) => {
                        rv += 1;
                        let echo = match &request {
                            Request::Create { record, .. } | Request::Update { record, .. } => Some(record.clone()),
                            Request::Get { .. } => None,
                        };
                        let reply = match kind {
                            0 | 1 => Reply::Object(VersionedRecord {
                                record: match (&echo, kind) {
                                    (Some(r), 0) => r.clone(),
                                    _ => LeaderElectionRecord {
                                        holder_identity: holder,
                                        lease_duration_seconds: duration,
                                        leader_transitions: transitions,
                                        ..Default::default()
                                    },
                                },
                                resource_version: rv.to_string(),
                            }),
                            2 => Reply::NotFound,
                            3 => failed(409, None),
                            4 => failed(429, Some(Duration::from_secs(retry))),
                            5 => Reply::Failed(Error::Timeout { context: "t".into(), after: Duration::from_secs(1) }),
                            _ => failed(500, Some(Duration::new(retry, 999_999_999))),
                        };
                        if echo.is_some() && matches!(reply, Reply::Object(_)) {
                            wrote_ok = true;
                        }
                        e.feed(reply, now, wall)
                    }
                    Action::Stepped(outcome) => {
                        if wrote_ok {
                            confirmed = Some(step_start);
                        }
                        if let Status::Leading { deadline, .. } = outcome.status {
                            let start = confirmed.expect("leading without a confirmed write");
                            prop_assert!(deadline <= start + timing.renew_deadline);
                            prop_assert!(acted < deadline);
                        }
                        wrote_ok = false;
                        step_start = now;
                        e.begin(now, wall)
                    }
                    Action::Released(_) => {
                        step_start = now;
                        e.begin(now, wall)
                    }
                };
                acted = now;
            }
        }
    }
}
