//! The fast path: a leader renews by writing its cached objects once each (one PUT apiece, no read),
//! conditional on the version it last saw; if that fails, the step falls back to reading the lock and
//! judging it afresh.

use std::time::Instant;

use chrono::{DateTime, Utc};

use super::{Election, Known, Phase};
use crate::election::protocol::{Action, Reply, Request, Slot};
use crate::election::{ElectionError, StepError};
use crate::record::LeaderElectionRecord;

impl<E: StepError> Election<E> {
    /// The answer to a fast-path renew of `slot`.
    pub(super) fn on_renewed(
        &mut self,
        slot: Slot,
        record: LeaderElectionRecord,
        sent: &str,
        reply: Reply<E>,
        now: Instant,
    ) -> Action<E> {
        match reply {
            Reply::Object(v) => {
                self.wrote(slot, v, Some(sent));
                match self.next_slot(slot) {
                    Some(next) => self.renew(next, record, now),
                    None => self.wrote_all(record, now),
                }
            }
            Reply::NotFound => self.fall_back(
                self.own(ElectionError::LockGone {
                    lock: self.config.lock.clone(),
                }),
                now,
            ),
            Reply::Conflict(e) | Reply::Failed(e) => self.fall_back(e, now),
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

    pub(super) fn renew(
        &mut self,
        slot: Slot,
        record: LeaderElectionRecord,
        now: Instant,
    ) -> Action<E> {
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

    /// The fast path failed: read the lock and judge it (the slow path).
    pub(super) fn fall_back(&mut self, e: E, now: Instant) -> Action<E> {
        log::debug!(
            "{} as {}: fast-path renew failed, reading the lock: {e}",
            self.config.lock,
            self.config.identity
        );
        self.step.slow_path = true;
        self.step.error = Some(Box::new(e));
        self.read(Slot::Primary, now)
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
