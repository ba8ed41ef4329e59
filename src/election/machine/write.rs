//! Writing: a judged record to each object in order, each write conditional on the version the step
//! read (or a create where none exists), and taking in what the server confirmed: our term, its
//! deadline, and when a re-created lock lets it lead.

use std::time::Instant;

use super::{Election, Known, Phase, Term, later};
use crate::election::protocol::{Action, Reply, Request, Slot};
use crate::election::{ElectionError, StepError};
use crate::record::{LeaderElectionRecord, VersionedRecord};

impl<E: StepError> Election<E> {
    /// The answer to the write of `slots[index]`: write the next object, or take in the term.
    pub(super) fn on_written(
        &mut self,
        slots: Vec<Slot>,
        index: usize,
        record: LeaderElectionRecord,
        sent: Option<String>,
        reply: Reply<E>,
        now: Instant,
    ) -> Action<E> {
        match reply {
            Reply::Object(v) => {
                self.wrote(slots[index], v, sent.as_deref());
                if index + 1 < slots.len() {
                    self.write(slots, index + 1, record, now)
                } else {
                    self.wrote_all(record, now)
                }
            }
            Reply::NotFound => self.lost_race(
                self.own(ElectionError::LockGone {
                    lock: self.config.lock.clone(),
                }),
                now,
            ),
            Reply::Conflict(e) => self.lost_race(e, now),
            Reply::Failed(e) => {
                self.step.error = Some(Box::new(e));
                self.finish(now)
            }
        }
    }

    pub(super) fn write(
        &mut self,
        slots: Vec<Slot>,
        index: usize,
        record: LeaderElectionRecord,
        now: Instant,
    ) -> Action<E> {
        let slot = slots[index];
        let sent = self.slots[slot.index()]
            .object()
            .map(|v| v.resource_version.clone());
        if self.step.quarantine.is_some() {
            self.quarantine_pending = self.step.quarantine;
        }
        let r = record.clone();
        let rv = sent.clone();
        self.send(
            Phase::Write {
                slots,
                index,
                record: Box::new(record),
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

    /// A write lost a race (409, or the object vanished): read again and judge again, once per step. A race
    /// never means "still leader": if we cannot judge again, we stop leading.
    pub(super) fn lost_race(&mut self, e: E, now: Instant) -> Action<E> {
        self.step.error = Some(Box::new(e));
        if self.step.rereads > 0 {
            self.step.rereads -= 1;
            self.step.observable = true;
            return self.read(Slot::Primary, now);
        }
        self.lose(None);
        self.finish(now)
    }

    /// Remember an object we wrote. A write that left the record as it was is invisible to followers,
    /// who tell renews apart by the record: identical bytes (which the API server treats as a no-op and
    /// answers with the same version), or a record that reads the same as before.
    pub(super) fn wrote(&mut self, slot: Slot, v: VersionedRecord, sent: Option<&str>) {
        // What a follower may last have seen in the object: its record, or the record it had before it
        // was deleted or cleared (a re-created object reading as before is no change to them).
        let seen = match &self.slots[slot.index()] {
            Known::Present(b) => Some(&b.record),
            Known::Cleared { object, ghost } => Some(if **ghost == v.record {
                &**ghost
            } else {
                &object.record
            }),
            Known::Missing { ghost } => ghost.as_deref(),
            Known::Unread => None,
        };
        if sent.is_some_and(|s| s == v.resource_version) || seen.is_some_and(|r| *r == v.record) {
            self.step.observable = false;
        }
        if v.record.holder_identity == self.config.identity {
            self.wrote = true;
            self.step.wrote[slot.index()] = true;
        }
        self.slots[slot.index()] = Known::Present(v);
    }

    /// Every object holds our record: we lead until `start + renew_deadline` if followers can see the
    /// write; a write they cannot see moves nothing.
    pub(super) fn wrote_all(&mut self, record: LeaderElectionRecord, now: Instant) -> Action<E> {
        // A term whose deadline passed while the write was on its way is over: the write may begin a
        // new term, never extend that one (its workers saw it end).
        self.expire(now);
        let mut events = std::mem::take(&mut self.step.events);
        self.observe_now(now, &mut events);
        self.step.events = events;
        if !self.step.observable {
            log::debug!(
                "{} as {}: the write changed nothing on the server (an identical record), so it does not count as a renew",
                self.config.lock,
                self.config.identity
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
        let fresh = self.leading.is_none();
        let from = self.leads_from(start, now);
        let announced = self.leading.as_ref().is_some_and(|t| t.announced);
        if fresh && from > now {
            log::info!(
                "{} as {}: took a lock that was deleted, or whose record someone other than its holder cleared; holding it without leading for {:?}, until whoever held it has surely stopped",
                self.config.lock,
                self.config.identity,
                from.saturating_duration_since(now)
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

    /// When the term we now hold begins to lead: at once, or, for a lock we re-created over a deleted
    /// one, after its quarantine (whoever held the deleted object has stopped by then).
    pub(super) fn leads_from(&mut self, start: Instant, now: Instant) -> Instant {
        match &self.leading {
            Some(t) => t.from,
            None => match self.step.quarantine {
                Some(q) => {
                    let from = later(now, q);
                    self.quarantine_pending = None;
                    self.quarantine_until = Some(from);
                    from
                }
                None => self.quarantine_until.map_or(start, |q| q.max(start)),
            },
        }
    }
}
