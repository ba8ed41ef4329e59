//! [`Election`]: the algorithm as a state machine that does no I/O and reads no clock.
//!
//! A driver calls [`Election::begin`] with the time, sends the [`Request`] it gets back to the API server,
//! and feeds the answer to [`Election::feed`], until the election answers [`Action::Stepped`] with the
//! step's [`Outcome`]: what we are now (leading until a deadline, or following a holder until its lease
//! expires) and what changed (leadership events, in order).
//!
//! A step goes through phases, a file each: a leader's fast path (`renew.rs`: one write per object of
//! what it cached, no read), else reading every object and judging what they say (`judge.rs`), then
//! writing the judged record (`write.rs`), and ending the step (`term.rs`); a release has its own read
//! and write (`release.rs`). `steps.rs` holds what the phases share. This file holds the state, and
//! [`Election::begin`] and [`Election::feed`], which hand each reply to the phase that asked.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::Timing;
use super::protocol::{Action, ElectionConfig, Reply, Slot, WatchReaction, Watched};
use super::{ElectionError, StepError};
use crate::events::{LeaderEvent, StopReason};
use crate::record::{LeaderElectionRecord, VersionedRecord};

mod judge;
mod release;
mod renew;
mod steps;
mod term;
#[cfg(test)]
mod tests;
mod write;

/// How many times one step re-reads after a write lost a race (409) before it gives up.
const REREADS_PER_STEP: u8 = 1;

/// What we know of one lock object.
#[derive(Debug, Clone, Default)]
enum Known {
    #[default]
    Unread,
    /// The object does not exist. `ghost`: the last record we saw in it, if it named a holder: an
    /// administrator's delete does not end that holder's lease, so we judge it as still there.
    Missing {
        ghost: Option<Ghost>,
    },
    Present(VersionedRecord),
    /// The object exists, but its record lost its holder without a release by that holder (a tool or an
    /// administrator cleared it). Like a delete, that does not end the holder's lease: `ghost`, the last
    /// record naming a holder, is judged as still there.
    Cleared {
        object: VersionedRecord,
        ghost: Ghost,
    },
}

/// A record kept after its object was deleted or cleared: rare, so boxed (every lock pays for the size
/// of `Known` twice, and a process may hold a thousand locks).
type Ghost = Box<LeaderElectionRecord>;

impl Known {
    /// The object as the server holds it, if it exists.
    fn object(&self) -> Option<&VersionedRecord> {
        match self {
            Known::Present(v) | Known::Cleared { object: v, .. } => Some(v),
            Known::Unread | Known::Missing { .. } => None,
        }
    }
}

/// What we know of the lock's objects, by [`Slot::index`](crate::election::Slot): the primary's, and a
/// migration pair's secondary's, boxed, since most locks are one object (an elector set keeps an
/// election per lock, and this is the largest part of one).
#[derive(Debug, Default)]
struct Slots {
    primary: Known,
    secondary: Option<Box<Known>>,
}

/// The secondary of a lock that has none.
static UNREAD: Known = Known::Unread;

impl Slots {
    fn iter(&self) -> impl Iterator<Item = &Known> {
        [&self.primary, self.secondary.as_deref().unwrap_or(&UNREAD)].into_iter()
    }
}

impl std::ops::Index<usize> for Slots {
    type Output = Known;
    fn index(&self, i: usize) -> &Known {
        match i {
            0 => &self.primary,
            _ => self.secondary.as_deref().unwrap_or(&UNREAD),
        }
    }
}

impl std::ops::IndexMut<usize> for Slots {
    fn index_mut(&mut self, i: usize) -> &mut Known {
        match i {
            0 => &mut self.primary,
            _ => self.secondary.get_or_insert_with(Box::default),
        }
    }
}

/// What one object said when we last looked, for telling a change: its record, or that it was not
/// there. Only the record counts: a write that leaves it alone (a label, another controller's key in a
/// shared ConfigMap) changes the object's version but is no renew of the holder's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum Seen {
    #[default]
    Absent,
    /// Boxed: most locks are one object, and the second slot's `Seen` then costs a pointer.
    Record(Box<LeaderElectionRecord>),
}

impl Seen {
    fn matches(&self, known: &Known) -> bool {
        match (self, known.object()) {
            (Seen::Absent, None) => true,
            (Seen::Record(r), Some(v)) => **r == v.record,
            _ => false,
        }
    }

    /// Become what `known` says, reusing the buffers already held.
    fn take(&mut self, known: &Known) {
        match (&mut *self, known.object()) {
            (Seen::Record(r), Some(v)) => (**r).clone_from(&v.record),
            (_, Some(v)) => *self = Seen::Record(Box::new(v.record.clone())),
            (_, None) => *self = Seen::Absent,
        }
    }
}

/// What the lock objects say together, borrowed from them (an observation copies what it keeps).
#[derive(Debug, Clone)]
struct View<'a> {
    holder: &'a str,
    /// The holder is this process (our identity, written by this election).
    ours: bool,
    /// The holder's advertised duration (the longest either record advertises in a pair).
    duration: Duration,
    transitions: i32,
    preferred: Option<&'a str>,
}

/// The last change we observed, and when (on our monotonic clock).
#[derive(Debug, Clone)]
struct Observation {
    /// The records it was taken from: a change of either is a change.
    seen: [Seen; 2],
    holder: String,
    /// The holder is this process.
    ours: bool,
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
    /// Fast-path renew: writing the cached objects. (The records are boxed: every lock carries a
    /// `Phase`, idle most of the time.)
    Renew {
        slot: Slot,
        record: Box<LeaderElectionRecord>,
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
        record: Box<LeaderElectionRecord>,
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

/// The bookkeeping of one step. `E`: the driver's error type.
#[derive(Debug)]
struct StepState<E> {
    /// When the step began (`None` before the first step).
    start: Option<Instant>,
    events: Vec<LeaderEvent>,
    slow_path: bool,
    /// Every write so far changed the object's version, so followers can see it.
    observable: bool,
    renewed: bool,
    rereads: u8,
    /// (Boxed: set only when a step fails, and every lock carries its `StepState`.)
    error: Option<Box<E>>,
    /// `error` says only that the renew deadline passed (no reason for a lapse).
    out_of_time: bool,
    /// A release gives up at this instant.
    give_up: Option<Instant>,
    /// The writes re-create an object we have seen before (deleted since): the term they begin waits
    /// this long before it leads.
    quarantine: Option<Duration>,
    /// Which objects this step wrote our record to: a change we made is no sign of another holder.
    wrote: [bool; 2],
}

/// The election for one candidate on one lock, as a state machine free of I/O and clocks.
///
/// ```
/// use std::time::{Duration, Instant};
/// use kube_elector::election::{Action, Election, ElectionConfig, Reply, Request};
/// use kube_elector::Timing;
///
/// let config = ElectionConfig::new("me", "leases default/demo", Timing::default());
/// // Driven with the crate's own error type, as `Elector` drives it (`with_error_type` takes yours).
/// let mut e = Election::new(config).unwrap();
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
pub struct Election<E> {
    config: ElectionConfig,
    slots: Slots,
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
    /// This election has written our record at least once. A record naming us that we never wrote is
    /// another process's (an earlier run under the same identity): judged like anyone else's.
    wrote: bool,
    /// The lock's transition counter could not grow for a new term, and we said so.
    term_limit_reported: bool,
    /// Whether a step may begin a new term (take a free or expired lock): an elector set's member at its
    /// share only observes. Our own term is renewed either way.
    campaigning: bool,
    phase: Phase,
    step: StepState<E>,
}

impl<E> Default for StepState<E> {
    fn default() -> Self {
        StepState {
            start: None,
            events: Vec::new(),
            slow_path: false,
            observable: false,
            renewed: false,
            rereads: 0,
            error: None,
            out_of_time: false,
            give_up: None,
            quarantine: None,
            wrote: [false; 2],
        }
    }
}

impl<E> StepState<E> {
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

impl<E: StepError> Election<E> {
    /// A new election whose driver's requests fail with errors of type `E` (see [`StepError`]). Fails
    /// if the timing or the identity is invalid. With the crate's own error, as [`Elector`] drives it,
    /// [`Election::new`] names the type for you.
    ///
    /// [`Elector`]: crate::election::Elector
    pub fn with_error_type(config: ElectionConfig) -> Result<Self, ElectionError> {
        config.timing.check()?;
        if config.identity.is_empty() {
            return Err(ElectionError::InvalidSettings(
                "identity must not be empty".into(),
            ));
        }
        Ok(Election {
            config,
            slots: Slots::default(),
            observed: None,
            leading: None,
            reported: None,
            last_error: None,
            end_of_term: None,
            server_clock: None,
            quarantine_pending: None,
            quarantine_until: None,
            wrote: false,
            term_limit_reported: false,
            campaigning: true,
            phase: Phase::Idle,
            step: StepState::default(),
        })
    }

    /// The election's durations.
    pub fn timing(&self) -> Timing {
        self.config.timing
    }

    /// The election's settings.
    pub fn config(&self) -> &ElectionConfig {
        &self.config
    }

    /// Whether steps may take the lock when it is free or its holder's lease has expired (default true).
    /// With `false` a step still reads, observes and renews a term we hold, but begins no new one.
    pub fn set_campaigning(&mut self, campaigning: bool) {
        self.campaigning = campaigning;
    }

    /// Whether the API server chooses the holder (coordinated leader election).
    pub fn is_coordinated(&self) -> bool {
        self.config.coordinated
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
        (!o.holder.is_empty() && !o.ours).then(|| o.expiry())
    }

    /// Record when the API server said it was `date` (its `Date` header) in the answer to a request sent
    /// at `sent`. Coordinated mode writes renew times on the server's clock, which is the one the server
    /// judges them by.
    pub fn note_server_time(&mut self, date: DateTime<Utc>, sent: Instant) {
        self.server_clock = Some(ServerClock { date, sent });
    }

    /// Start a step at `now`: renew if we lead (one write of the cached object), else read the lock and
    /// judge it. A step still in progress is abandoned.
    pub fn begin(&mut self, now: Instant, wall: DateTime<Utc>) -> Action<E> {
        self.phase = Phase::Idle;
        self.step = StepState::new(now, REREADS_PER_STEP, None);
        self.expire(now);
        if !self.step.events.is_empty() {
            // Our deadline passed: say so now, not after another round of requests.
            return self.finish(now);
        }
        if let Some(term) = self.fast_path_record() {
            let mut record = term;
            record.renew_time = Some(self.next_renew_time(&record, now, wall));
            record.lease_duration_seconds = self.config.timing.lease_seconds();
            return self.renew(Slot::Primary, record, now);
        }
        self.read(Slot::Primary, now)
    }

    /// Feed the reply to the last request.
    pub fn feed(&mut self, reply: Reply<E>, now: Instant, wall: DateTime<Utc>) -> Action<E> {
        match std::mem::replace(&mut self.phase, Phase::Idle) {
            // A reply without a request: nothing to continue.
            Phase::Idle => self.finish(now),
            Phase::Renew { slot, record, sent } => {
                self.on_renewed(slot, *record, &sent, reply, now)
            }
            Phase::Read { slot } => self.on_read(slot, reply, now, wall),
            Phase::Write {
                slots,
                index,
                record,
                sent,
            } => self.on_written(slots, index, *record, sent, reply, now),
            Phase::ReleaseRead { slot } => self.on_release_read(slot, reply, now, wall),
            Phase::ReleaseWrite { slots, index, sent } => {
                self.on_release_written(slots, index, &sent, reply, now, wall)
            }
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

    /// A change seen on a watch of the lock object, at `now` (when it arrived). Followers observe it (the
    /// countdown to the holder's expiry restarts when the record changes); a leader only checks it for
    /// news of a new holder. Nothing a watch says is acted on by itself: a watch can be late, lose events
    /// or lie, so a change that calls for a step (a release, a new holder while we lead) makes the step
    /// read the lock before it judges, and every write is conditional on what that read found.
    pub fn observe_watched(&mut self, watched: Watched, now: Instant) -> WatchReaction {
        let mut reaction = WatchReaction::default();
        if self.config.pair || !matches!(self.phase, Phase::Idle) {
            return reaction;
        }
        if self.leading.is_some() {
            // Holding a term: the watch is only news, for a step to confirm by reading.
            reaction.attempt_now = match &watched {
                Watched::Changed(v) => !self.mine(&v.record),
                Watched::Deleted => true,
            };
            return reaction;
        }
        match watched {
            Watched::Changed(v) => {
                let released = v.record.is_release();
                self.take_in_watched(Slot::Primary, v);
                self.observe_now(now, &mut reaction.events);
                // A release, or our own record (a write whose answer we lost): look now.
                reaction.attempt_now = released
                    || self
                        .observed
                        .as_ref()
                        .is_some_and(|o| o.holder.is_empty() || o.ours);
            }
            Watched::Deleted => {
                self.gone(Slot::Primary);
                reaction.attempt_now = true;
            }
        }
        reaction.status = Some(self.status());
        reaction
    }
}
