//! Reading and judging: a step reads every object, remembers what each said (or that it is gone), then
//! judges what the reads found: whose lock it is, whether it has expired by our clock, and the record
//! to write (a renewal of our term, or a new term).

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::{Election, Ghost, Known, Observation, Phase, Seen, Slots, View};
use crate::election::protocol::{Action, ElectionConfig, Reply, Request, Slot, UNKNOWN_LEADER};
use crate::election::{ElectionError, StepError};
use crate::events::{LeaderEvent, StopReason};
use crate::record::{LeaderElectionRecord, VersionedRecord};

/// Who is asking, for judging records: our identity and incarnation, whether we hold a term, and
/// whether we ever wrote our record.
#[derive(Clone, Copy)]
struct Judge<'a> {
    config: &'a ElectionConfig,
    holding: bool,
    wrote: bool,
}

impl Judge<'_> {
    /// Whether this process wrote `r`: our identity, and our incarnation (or none, for locks that do not
    /// keep one) in a record we have written before.
    fn mine(&self, r: &LeaderElectionRecord) -> bool {
        r.holder_identity == self.config.identity
            && self.wrote
            && r.incarnation
                .as_deref()
                .is_none_or(|i| i == self.config.incarnation)
    }
}

impl<E: StepError> Election<E> {
    /// The answer to a step's read of `slot`: read the next object, or judge what the reads found.
    pub(super) fn on_read(
        &mut self,
        slot: Slot,
        reply: Reply<E>,
        now: Instant,
        wall: DateTime<Utc>,
    ) -> Action<E> {
        if let Err(e) = self.take_in_read(slot, reply) {
            self.step.error = Some(Box::new(e));
            return self.finish(now);
        }
        match self.next_slot(slot) {
            Some(next) => self.read(next, now),
            None => self.judge(now, wall),
        }
    }

    pub(super) fn read(&mut self, slot: Slot, now: Instant) -> Action<E> {
        self.send(Phase::Read { slot }, now, |timeout| Request::Get {
            slot,
            timeout,
        })
    }

    /// Remember what a read of `slot` found (the object, or that it is gone); a failed read is returned
    /// for the caller to judge, as a step and a release judge it differently.
    pub(super) fn take_in_read(&mut self, slot: Slot, reply: Reply<E>) -> Result<(), E> {
        match reply {
            Reply::Object(v) => self.take_in_object(slot, v),
            Reply::NotFound => self.gone(slot),
            Reply::Conflict(e) | Reply::Failed(e) => return Err(e),
        }
        Ok(())
    }

    /// The object was found missing: remember that it existed, and what it said.
    pub(super) fn gone(&mut self, slot: Slot) {
        let ghost = match &self.slots[slot.index()] {
            Known::Present(v) => Some(Box::new(v.record.clone())),
            Known::Cleared { ghost, .. } => Some(ghost.clone()),
            Known::Missing { ghost } => ghost.clone(),
            Known::Unread => None,
        };
        self.slots[slot.index()] = Known::Missing { ghost };
    }

    fn judge_ctx(&self) -> Judge<'_> {
        Judge {
            config: &self.config,
            holding: self.leading.is_some(),
            wrote: self.wrote,
        }
    }

    /// Whether this process wrote `r` (see [`LeaderElectionRecord::incarnation`]).
    pub(super) fn mine(&self, r: &LeaderElectionRecord) -> bool {
        self.judge_ctx().mine(r)
    }

    pub(super) fn ours_while_holding(&self, r: &LeaderElectionRecord) -> bool {
        self.mine(r) && self.leading.is_some()
    }

    /// Take in an object as a read found it. A record that lost its holder without that holder's
    /// release is judged like a deleted object: the holder we last saw holds it until its lease runs out
    /// by our clock.
    pub(super) fn take_in_object(&mut self, slot: Slot, v: VersionedRecord) {
        let i = slot.index();
        // In coordinated mode the API server writes the holder, and clears it, itself.
        let ghost = if self.config.coordinated {
            None
        } else {
            cleared_ghost(&self.slots[i], &v.record)
        };
        self.slots[i] = match ghost {
            Some(ghost) => Known::Cleared { object: v, ghost },
            None => Known::Present(v),
        };
    }

    /// Take in an object as a watch showed it. A watch may lie: what it shows never ends what a read
    /// taught us of a deleted or cleared record's holder (only a read can show its release).
    pub(super) fn take_in_watched(&mut self, slot: Slot, v: VersionedRecord) {
        let i = slot.index();
        let kept = match &self.slots[i] {
            Known::Cleared { ghost, .. } => Some(ghost.clone()),
            Known::Missing { ghost: Some(g) } if !g.holder_identity.is_empty() => Some(g.clone()),
            _ => None,
        };
        match kept.filter(|_| v.record.holder_identity.is_empty()) {
            Some(ghost) => self.slots[i] = Known::Cleared { object: v, ghost },
            None => self.take_in_object(slot, v),
        }
    }

    /// Whether writing `slots` takes an object whose last holder may still be acting, and if so for how
    /// long the term must hold it before it leads: the longest lease duration we know of (its records'
    /// and ours). That is a re-creation of an object we saw deleted, and a takeover of a record we saw
    /// lose its holder without a release (cleared by a tool): whoever held it may have renewed unseen in
    /// between, and has stopped by then (our write ends its renews).
    pub(super) fn recreates(&self, slots: &[Slot]) -> Option<Duration> {
        let ours = self.config.timing.lease_duration;
        slots
            .iter()
            .filter_map(|s| match &self.slots[s.index()] {
                Known::Missing { ghost: Some(g) } | Known::Cleared { ghost: g, .. }
                    if !self.ours_while_holding(g) =>
                {
                    Some(self.duration_of(g).max(ours))
                }
                _ => None,
            })
            .max()
    }

    /// Judge what the reads found and decide: hold, take, renew, or wait.
    pub(super) fn judge(&mut self, now: Instant, wall: DateTime<Utc>) -> Action<E> {
        // The reads succeeded: whatever failed before (the fast path) is settled by what they found.
        self.step.error = None;
        let us = self.config.identity.clone();
        let mut events = std::mem::take(&mut self.step.events);
        let seen = self.observe_now(now, &mut events);
        self.step.events = events;
        if !seen {
            return self.judge_missing(now, wall);
        }
        let Some(o) = self.observed.clone() else {
            return self.finish(now);
        };
        if self.config.coordinated {
            return self.judge_coordinated(o, now, wall);
        }
        let ours = o.ours;
        if ours && self.leading.is_none() && self.quarantine_pending.is_some() {
            // Perhaps our own re-creation whose answer we lost: it leads only after its quarantine.
            self.step.quarantine = self.quarantine_pending;
        }
        if !ours {
            if o.holder != us {
                self.quarantine_pending = None;
            }
            if o.holder == us && self.leading.is_some() {
                // Our identity, written by another process: a successor under our name (a pod
                // re-created while we were cut off). Its term is not ours.
                log::warn!(
                    "{} as {us}: the lock names our identity but another process wrote it (identities must be unique per process; is a second replica running under this name?): stepping down",
                    self.config.lock
                );
                self.lose_as(StopReason::IdentityConflict);
            }
            // Whoever wrote the record, it is not our term any more.
            self.lose((!o.holder.is_empty()).then(|| o.holder.clone()));
            if (!o.holder.is_empty() && o.expiry() > now) || !self.campaigning {
                return self.finish(now);
            }
        }
        if ours && self.leading.is_none() && !self.campaigning {
            // Our record, but no term held: taking it up again would begin a term.
            return self.finish(now);
        }
        let record = if ours {
            self.renewal_of(now, wall)
        } else {
            let Some(term) = self.next_term() else {
                return self.refuse_term(now);
            };
            self.new_term(term, now, wall)
        };
        let slots: Vec<Slot> = self.all_slots().collect();
        self.step.quarantine = self.step.quarantine.max(self.recreates(&slots));
        self.write(slots, 0, record, now)
    }

    /// The term a new holder takes: one more than any we know of, or `None` at the counter's limit.
    fn next_term(&mut self) -> Option<i32> {
        let next = self.known_transitions().checked_add(1);
        if next.is_some() {
            self.term_limit_reported = false;
        }
        next
    }

    /// The lock's transition counter is at `i32::MAX`: a new term's fencing token could not be larger
    /// than the last one, so we do not take the lock.
    fn refuse_term(&mut self, now: Instant) -> Action<E> {
        self.step.error = Some(Box::new(self.own(ElectionError::TermLimit {
            lock: self.config.lock.clone(),
        })));
        if !std::mem::replace(&mut self.term_limit_reported, true) {
            self.step.events.push(LeaderEvent::TermLimitReached {
                transitions: i32::MAX,
            });
        }
        self.finish(now)
    }

    /// No lock object exists and none named a holder when we last saw it: create it, with the term
    /// after the last one we saw (a deleted lock keeps fencing tokens growing for those who saw it).
    pub(super) fn judge_missing(&mut self, now: Instant, wall: DateTime<Utc>) -> Action<E> {
        if self.config.coordinated {
            self.step.error = Some(Box::new(self.own(ElectionError::Coordinated(format!(
                "{} does not exist: the API server's coordinated election creates it (is the CoordinatedLeaderElection feature on?)",
                self.config.lock
            )))));
            return self.finish(now);
        }
        if !self.campaigning {
            return self.finish(now);
        }
        let slots: Vec<Slot> = self.all_slots().collect();
        let seen = self.recreates(&slots).is_some() || self.observed.is_some();
        let transitions = if seen {
            match self.next_term() {
                Some(t) => t,
                None => return self.refuse_term(now),
            }
        } else {
            0
        };
        let record = self.new_term(transitions, now, wall);
        self.step.quarantine = self.step.quarantine.max(self.recreates(&slots));
        self.write(slots, 0, record, now)
    }

    /// Coordinated mode: renew only a lease the API server gave us, and not once it prefers another.
    pub(super) fn judge_coordinated(
        &mut self,
        o: Observation,
        now: Instant,
        wall: DateTime<Utc>,
    ) -> Action<E> {
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

    /// Our record renewed: the term and acquire time kept, the renew time and our duration written. The
    /// renew time never goes back within a term, whatever the wall clock does, so a record we wrote never
    /// reads the same as an earlier one (followers tell renews apart by the record).
    pub(super) fn renewal_of(&self, now: Instant, wall: DateTime<Utc>) -> LeaderElectionRecord {
        let base = match &self.leading {
            Some(t) => t.record.clone(),
            None => self.current_record().unwrap_or_default(),
        };
        let time = self.next_renew_time(&base, now, wall);
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
            incarnation: Some(self.config.incarnation.clone()),
        }
    }

    /// A record starting a new term with us as holder.
    pub(super) fn new_term(
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
            incarnation: Some(self.config.incarnation.clone()),
        }
    }

    /// The highest term any record we know of carries (deleted and cleared ones included), so fencing
    /// tokens keep growing for everyone who saw them.
    pub(super) fn known_transitions(&self) -> i32 {
        let slots = self
            .all_slots()
            .filter_map(|s| match &self.slots[s.index()] {
                Known::Present(v) => Some(v.record.leader_transitions),
                Known::Cleared { object, ghost } => Some(
                    object
                        .record
                        .leader_transitions
                        .max(ghost.leader_transitions),
                ),
                Known::Missing { ghost: Some(g) } => Some(g.leader_transitions),
                _ => None,
            });
        slots
            .chain(self.observed.as_ref().map(|o| o.transitions))
            .max()
            .unwrap_or(0)
    }

    /// The record of the primary object if it exists, else the secondary's.
    pub(super) fn current_record(&self) -> Option<LeaderElectionRecord> {
        self.all_slots()
            .find_map(|s| record_in(&self.slots, s).map(|(r, _)| r.clone()))
    }

    /// The holder's advertised duration; a non-positive one (invalid on the wire) counts as ours.
    pub(super) fn duration_of(&self, r: &LeaderElectionRecord) -> Duration {
        duration_of(&self.config, r)
    }

    /// Take in what the objects say at `now`: a changed record restarts the expiry countdown (a write that
    /// leaves the record alone does not: it is no renew of the holder's); a new holder is reported.
    /// `false` when no object exists. (Renews observe their own writes: the records are copied into the
    /// buffers the observation already holds.)
    pub(super) fn observe_now(&mut self, now: Instant, events: &mut Vec<LeaderEvent>) -> bool {
        // Borrowed field by field, as the observation is updated while the view is held.
        let judge = Judge {
            config: &self.config,
            holding: self.leading.is_some(),
            wrote: self.wrote,
        };
        let Some(v) = view_of(&self.slots, judge) else {
            return false;
        };
        let o = self.observed.get_or_insert_with(|| Observation {
            seen: [Seen::Absent, Seen::Absent],
            holder: String::new(),
            ours: false,
            duration: v.duration,
            transitions: v.transitions,
            preferred: None,
            at: now,
        });
        // Changed by someone else (a record we wrote in this step is no sign of another holder, as when
        // the second write of a pair lost a race): the countdown starts now.
        let wrote = self.step.wrote;
        let mut changed = false;
        for (i, (s, k)) in o.seen.iter_mut().zip(self.slots.iter()).enumerate() {
            if !s.matches(k) {
                let ours_now = wrote[i] && k.object().is_some_and(|v| judge.mine(&v.record));
                changed |= !ours_now;
                s.take(k);
            }
        }
        if changed {
            o.at = now;
        }
        if o.holder != v.holder {
            o.holder.clear();
            o.holder.push_str(v.holder);
        }
        o.ours = v.ours;
        o.duration = v.duration;
        o.transitions = v.transitions;
        if o.preferred.as_deref() != v.preferred {
            o.preferred = v.preferred.map(str::to_string);
        }
        let holder = (!o.holder.is_empty()).then_some(o.holder.as_str());
        if self.reported.as_ref().map(Option::as_deref) != Some(holder) {
            let holder = holder.map(str::to_string);
            self.reported = Some(holder.clone());
            events.push(LeaderEvent::NewLeader { identity: holder });
        }
        true
    }
}

/// The holder a record without one still belongs to, judged from what the object said before (`None`:
/// the lock is free):
/// * a record naming a holder, cleared by anyone but that holder's release: that holder;
/// * a record cleared again, or cleared the first time we see it after we saw its holder: still that
///   holder (a release after it frees it: its holder wrote it after an update we missed);
/// * an object re-created after a delete with no holder: the deleted record's holder (its release could
///   not have re-created the object);
/// * a released record followed by another record without a holder that is no release: someone we never
///   saw took it in between.
///
/// The first time we see the object, we cannot know who held it: free.
fn cleared_ghost(before: &Known, now: &LeaderElectionRecord) -> Option<Ghost> {
    if !now.holder_identity.is_empty() {
        return None;
    }
    let released = now.is_release();
    match before {
        Known::Missing { ghost: Some(g) } if !g.holder_identity.is_empty() => Some(g.clone()),
        Known::Cleared { ghost, .. } if !released => Some(ghost.clone()),
        Known::Present(p) if !released && !p.record.holder_identity.is_empty() => {
            Some(Box::new(p.record.clone()))
        }
        Known::Present(p) if !released && p.record != *now => {
            Some(Box::new(LeaderElectionRecord {
                holder_identity: UNKNOWN_LEADER.to_string(),
                ..now.clone()
            }))
        }
        _ => None,
    }
}

/// The record an object is judged by, and whether it is a ghost: a deleted object's last record, or the
/// last record naming a holder of an object someone else cleared. A ghost's holder still holds it until
/// its lease runs out (a live holder re-creates or rewrites it within a retry); whoever re-creates a
/// deleted one after that leads only after a quarantine (see `Term::from`). A released ghost holds
/// nothing.
fn record_in(slots: &Slots, slot: Slot) -> Option<(&LeaderElectionRecord, bool)> {
    match &slots[slot.index()] {
        Known::Present(v) => Some((&v.record, false)),
        Known::Cleared { ghost, .. } => Some((&**ghost, true)),
        Known::Missing { ghost: Some(g) } if !g.holder_identity.is_empty() => Some((&**g, true)),
        _ => None,
    }
}

/// The holder's advertised duration; a non-positive one (invalid on the wire) counts as ours.
fn duration_of(config: &ElectionConfig, r: &LeaderElectionRecord) -> Duration {
    if r.lease_duration_seconds > 0 {
        Duration::from_secs(u64::from(r.lease_duration_seconds.unsigned_abs()))
    } else {
        config.timing.lease_duration
    }
}

/// How a record is judged: its holder, whether that is this process, and its duration. A ghost is held
/// for the longer of its duration and ours (someone we did not see may have taken it before it was
/// deleted or cleared), and our own ghost is ours only while we hold the term (after a lapse, anyone may
/// have taken it since).
fn judged<'a>(
    judge: Judge<'_>,
    r: &'a LeaderElectionRecord,
    ghost: bool,
) -> (&'a str, bool, Duration) {
    let config = judge.config;
    let mine = judge.mine(r);
    if !ghost {
        return (&r.holder_identity, mine, duration_of(config, r));
    }
    let (holder, mine) = if r.holder_identity == config.identity && !(mine && judge.holding) {
        (UNKNOWN_LEADER, false)
    } else {
        (r.holder_identity.as_str(), mine)
    };
    (
        holder,
        mine,
        duration_of(config, r).max(config.timing.lease_duration),
    )
}

/// What the objects say together, or `None` when none exists. In a pair, two records naming different
/// holders read as [`UNKNOWN_LEADER`], and the longest duration either advertises counts.
fn view_of<'a>(slots: &'a Slots, judge: Judge<'_>) -> Option<View<'a>> {
    let primary = record_in(slots, Slot::Primary);
    let secondary = if judge.config.pair {
        record_in(slots, Slot::Secondary)
    } else {
        None
    };
    let (holder, ours, duration, transitions, preferred) = match (primary, secondary) {
        (None, None) => return None,
        (Some((r, g)), None) | (None, Some((r, g))) => {
            let (holder, ours, duration) = judged(judge, r, g);
            (
                holder,
                ours,
                duration,
                r.leader_transitions,
                r.preferred_holder.as_deref(),
            )
        }
        (Some((p, pg)), Some((s, sg))) => {
            let (ph, po, pd) = judged(judge, p, pg);
            let (sh, so, sd) = judged(judge, s, sg);
            let same = ph == sh;
            (
                if same { ph } else { UNKNOWN_LEADER },
                same && po && so,
                pd.max(sd),
                p.leader_transitions.max(s.leader_transitions),
                p.preferred_holder.as_deref(),
            )
        }
    };
    Some(View {
        holder,
        ours,
        duration,
        transitions,
        preferred,
    })
}
