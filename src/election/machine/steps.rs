//! A step's requests and their answers: the fast-path renew, reads, and conditional writes, each
//! bounded by the time our term has left.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::{Election, Known, Phase};
use crate::election::protocol::{Action, Reply, Request, Slot};
use crate::error::Error;
use crate::record::{LeaderElectionRecord, VersionedRecord};

impl Election {
    /// The answer to a fast-path renew of `slot`.
    pub(super) fn on_renewed(
        &mut self,
        slot: Slot,
        record: LeaderElectionRecord,
        sent: &str,
        reply: Reply,
        now: Instant,
    ) -> Action {
        match reply {
            Reply::Object(v) => {
                self.wrote(slot, v, Some(sent));
                match self.next_slot(slot) {
                    Some(next) => self.renew(next, record, now),
                    None => self.wrote_all(record, now),
                }
            }
            Reply::NotFound => self.fall_back(Error::lock_gone(&self.config.lock), now),
            Reply::Conflict(e) | Reply::Failed(e) => self.fall_back(e, now),
        }
    }

    /// The answer to a step's read of `slot`: read the next object, or judge what the reads found.
    pub(super) fn on_read(
        &mut self,
        slot: Slot,
        reply: Reply,
        now: Instant,
        wall: DateTime<Utc>,
    ) -> Action {
        if let Err(e) = self.take_in_read(slot, reply) {
            self.step.error = Some(Box::new(e));
            return self.finish(now);
        }
        match self.next_slot(slot) {
            Some(next) => self.read(next, now),
            None => self.judge(now, wall),
        }
    }

    /// The answer to the write of `slots[index]`: write the next object, or take in the term.
    pub(super) fn on_written(
        &mut self,
        slots: Vec<Slot>,
        index: usize,
        record: LeaderElectionRecord,
        sent: Option<String>,
        reply: Reply,
        now: Instant,
    ) -> Action {
        match reply {
            Reply::Object(v) => {
                self.wrote(slots[index], v, sent.as_deref());
                if index + 1 < slots.len() {
                    self.write(slots, index + 1, record, now)
                } else {
                    self.wrote_all(record, now)
                }
            }
            Reply::NotFound => self.lost_race(Error::lock_gone(&self.config.lock), now),
            Reply::Conflict(e) => self.lost_race(e, now),
            Reply::Failed(e) => {
                self.step.error = Some(Box::new(e));
                self.finish(now)
            }
        }
    }

    /// Remember what a read of `slot` found (the object, or that it is gone); a failed read is returned
    /// for the caller to judge, as a step and a release judge it differently.
    pub(super) fn take_in_read(&mut self, slot: Slot, reply: Reply) -> Result<(), Error> {
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

    pub(super) fn all_slots(&self) -> impl Iterator<Item = Slot> + use<> {
        let pair = self.config.pair;
        [Slot::Primary, Slot::Secondary]
            .into_iter()
            .filter(move |s| pair || *s == Slot::Primary)
    }

    pub(super) fn next_slot(&self, slot: Slot) -> Option<Slot> {
        (self.config.pair && slot == Slot::Primary).then_some(Slot::Secondary)
    }

    /// The object holds a record this process wrote.
    pub(super) fn names_us(&self, slot: Slot) -> bool {
        matches!(&self.slots[slot.index()], Known::Present(v) if self.mine(&v.record))
    }

    /// The time written into a record: our wall clock, or in coordinated mode the API server's clock as
    /// far as we can tell (its last `Date`, rounded up), whichever is later, so the server never judges
    /// our lease expired before we think it is.
    pub(super) fn record_time(&self, now: Instant, wall: DateTime<Utc>) -> DateTime<Utc> {
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

    /// The record for a fast-path renew: we lead and every object still holds our record, as we wrote it.
    pub(super) fn fast_path_record(&self) -> Option<LeaderElectionRecord> {
        let term = self.leading.as_ref()?;
        if self.end_of_term.is_some() {
            return None;
        }
        self.all_slots()
            .all(|s| self.names_us(s))
            .then(|| term.record.clone())
    }

    /// The timeout for the next request: the cap, never past our deadline (or a release's give-up).
    pub(super) fn timeout(&self, now: Instant) -> Option<Duration> {
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

    pub(super) fn deadline_error(&self) -> Error {
        Error::DeadlineExceeded {
            lock: self.config.lock.clone(),
        }
    }

    /// Send a request, or end the step when its time is up.
    pub(super) fn send(
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
                    self.step.error = Some(Box::new(e));
                }
                self.finish(now)
            }
        }
    }

    pub(super) fn renew(
        &mut self,
        slot: Slot,
        record: LeaderElectionRecord,
        now: Instant,
    ) -> Action {
        let Known::Present(v) = &self.slots[slot.index()] else {
            return self.read(Slot::Primary, now);
        };
        let sent = v.resource_version.clone();
        let (r, rv) = (record.clone(), sent.clone());
        let record = Box::new(record);
        self.send(Phase::Renew { slot, record, sent }, now, move |timeout| {
            Request::Update {
                slot,
                record: r,
                resource_version: rv,
                timeout,
            }
        })
    }

    pub(super) fn read(&mut self, slot: Slot, now: Instant) -> Action {
        self.send(Phase::Read { slot }, now, |timeout| Request::Get {
            slot,
            timeout,
        })
    }

    pub(super) fn write(
        &mut self,
        slots: Vec<Slot>,
        index: usize,
        record: LeaderElectionRecord,
        now: Instant,
    ) -> Action {
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

    /// The fast path failed: read the lock and judge it (the slow path).
    pub(super) fn fall_back(&mut self, e: Error, now: Instant) -> Action {
        log::debug!(
            "{} as {}: fast-path renew failed, reading the lock: {e}",
            self.config.lock,
            self.config.identity
        );
        self.step.slow_path = true;
        self.step.error = Some(Box::new(e));
        self.read(Slot::Primary, now)
    }

    /// A write lost a race (409, or the object vanished): read again and judge again, once per step. A race
    /// never means "still leader": if we cannot judge again, we stop leading.
    pub(super) fn lost_race(&mut self, e: Error, now: Instant) -> Action {
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

    /// The renew time for the next renewal of `base` (our record): the time to write now, but never at
    /// or before the latest one we sent or the server stored (a write the server took as a no-op leaves
    /// its own, later, time in place), so our records never repeat, even when the wall clock steps back.
    /// Followers tell renews apart by the record: a repeat could read as no renew at all.
    pub(super) fn next_renew_time(
        &self,
        base: &LeaderElectionRecord,
        now: Instant,
        wall: DateTime<Utc>,
    ) -> DateTime<Utc> {
        let latest = self
            .all_slots()
            .filter_map(|s| self.slots[s.index()].object())
            .filter(|v| self.mine(&v.record))
            .filter_map(|v| v.record.renew_time)
            .chain(base.renew_time)
            .max();
        let time = self.record_time(now, wall);
        match latest {
            Some(p) if time <= p => p + chrono::Duration::microseconds(1),
            _ => time,
        }
    }
}
