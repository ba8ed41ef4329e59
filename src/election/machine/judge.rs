//! Judging what the reads found: whose lock it is, whether it has expired by our clock, and the
//! record to write (a renewal of our term, or a new term).

use std::borrow::Cow;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::{Election, Known, Observation, View};
use crate::election::protocol::{Action, ElectionConfig, Slot, UNKNOWN_LEADER};
use crate::error::Error;
use crate::events::LeaderEvent;
use crate::record::LeaderElectionRecord;

impl Election {
    /// The record an object holds, with its version, or `-` for a deleted object's ghost: the holder it
    /// last named still holds it until that holder's lease runs out (a live holder re-creates it within
    /// a retry), and whoever re-creates it after that leads only after a quarantine (see
    /// [`Term::from`]). A released ghost holds nothing.
    pub(super) fn record_in(&self, slot: Slot) -> Option<(&LeaderElectionRecord, &str)> {
        record_in(&self.slots, slot)
    }

    pub(super) fn ours_while_holding(&self, r: &LeaderElectionRecord) -> bool {
        r.holder_identity == self.config.identity && self.leading.is_some()
    }

    /// Whether writing `slots` re-creates an object we saw before it was deleted (outside our term), and
    /// if so for how long the term must wait before it leads: the longest lease duration we know of (its
    /// records' and ours), after which whoever held the deleted object has stopped.
    pub(super) fn recreates(&self, slots: &[Slot]) -> Option<Duration> {
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

    /// Judge what the reads found and decide: hold, take, renew, or wait.
    pub(super) fn judge(&mut self, now: Instant, wall: DateTime<Utc>) -> Action {
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
    pub(super) fn judge_missing(&mut self, now: Instant, wall: DateTime<Utc>) -> Action {
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
    pub(super) fn judge_coordinated(
        &mut self,
        o: Observation,
        now: Instant,
        wall: DateTime<Utc>,
    ) -> Action {
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
    pub(super) fn renewal_of(&self, now: Instant, wall: DateTime<Utc>) -> LeaderElectionRecord {
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
        }
    }

    /// The highest term any record we know of carries (deleted ones included), so fencing tokens keep
    /// growing for everyone who saw them.
    pub(super) fn known_transitions(&self) -> i32 {
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
    pub(super) fn current_record(&self) -> Option<LeaderElectionRecord> {
        self.all_slots()
            .find_map(|s| self.record_in(s).map(|(r, _)| r.clone()))
    }

    /// The holder's advertised duration; a non-positive one (invalid on the wire) counts as ours.
    pub(super) fn duration_of(&self, r: &LeaderElectionRecord) -> Duration {
        duration_of(&self.config, r)
    }

    /// Take in what the objects say at `now`: a new key restarts the expiry countdown; a new holder is
    /// reported. `false` when no object exists. (Renews observe their own writes: the strings are copied
    /// into the buffers the observation already holds.)
    pub(super) fn observe_now(&mut self, now: Instant, events: &mut Vec<LeaderEvent>) -> bool {
        let Some(v) = view_of(&self.slots, &self.config, self.leading.is_some()) else {
            return false;
        };
        let o = self.observed.get_or_insert_with(|| Observation {
            key: String::new(),
            holder: String::new(),
            duration: v.duration,
            transitions: v.transitions,
            preferred: None,
            at: now,
        });
        if o.key != v.key {
            // Changed: the countdown starts now.
            o.key.clear();
            o.key.push_str(&v.key);
            o.at = now;
        }
        if o.holder != v.holder {
            o.holder.clear();
            o.holder.push_str(v.holder);
        }
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

/// The record an object holds, with its version, or `-` for a deleted object's ghost: the holder it
/// last named still holds it until that holder's lease runs out (a live holder re-creates it within a
/// retry), and whoever re-creates it after that leads only after a quarantine (see `Term::from`). A
/// released ghost holds nothing.
fn record_in(slots: &[Known; 2], slot: Slot) -> Option<(&LeaderElectionRecord, &str)> {
    match &slots[slot.index()] {
        Known::Present(v) => Some((&v.record, v.resource_version.as_str())),
        Known::Missing { ghost: Some(g) } if !g.holder_identity.is_empty() => Some((g, "-")),
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

/// How a record is judged: its holder and duration. A ghost is held for the longer of its duration and
/// ours (someone we did not see may have taken it before it was deleted), and our own ghost is ours only
/// while we hold the term (after a lapse, anyone may have taken it since).
fn judged<'a>(
    config: &ElectionConfig,
    holding: bool,
    r: &'a LeaderElectionRecord,
    version: &str,
) -> (&'a str, Duration) {
    if version != "-" {
        return (&r.holder_identity, duration_of(config, r));
    }
    let holder = if r.holder_identity == config.identity && !holding {
        UNKNOWN_LEADER
    } else {
        &r.holder_identity
    };
    (
        holder,
        duration_of(config, r).max(config.timing.lease_duration),
    )
}

/// What the objects say together, or `None` when none exists. In a pair, two records naming different
/// holders read as [`UNKNOWN_LEADER`], and the longest duration either advertises counts.
fn view_of<'a>(slots: &'a [Known; 2], config: &ElectionConfig, holding: bool) -> Option<View<'a>> {
    let primary = record_in(slots, Slot::Primary);
    let secondary = if config.pair {
        record_in(slots, Slot::Secondary)
    } else {
        None
    };
    let rv = |r: Option<(&LeaderElectionRecord, &'a str)>| r.map_or("-", |(_, v)| v);
    let key = if config.pair {
        Cow::Owned(format!("{}+{}", rv(primary), rv(secondary)))
    } else {
        Cow::Borrowed(rv(primary))
    };
    let judge = |r, v| judged(config, holding, r, v);
    let (holder, duration, transitions, preferred) = match (primary, secondary) {
        (None, None) => return None,
        (Some((r, v)), None) | (None, Some((r, v))) => {
            let (holder, duration) = judge(r, v);
            (
                holder,
                duration,
                r.leader_transitions,
                r.preferred_holder.as_deref(),
            )
        }
        (Some((p, pv)), Some((s, sv))) => {
            let (ph, pd) = judge(p, pv);
            let (sh, sd) = judge(s, sv);
            (
                if ph == sh { ph } else { UNKNOWN_LEADER },
                pd.max(sd),
                p.leader_transitions.max(s.leader_transitions),
                p.preferred_holder.as_deref(),
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
