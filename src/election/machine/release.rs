//! Giving the lock up: one conditional write per object of the record as we last wrote it, read
//! again only if someone wrote since.

use std::time::Instant;

use chrono::{DateTime, Utc};

use super::{Election, Known, Phase, StepState, later};
use crate::election::StepError;
use crate::election::protocol::{Action, Reply, Request, Slot};
use crate::record::LeaderElectionRecord;

impl<E: StepError> Election<E> {
    /// Start giving the lock up: clear the record of each object that still names us (holder `""`,
    /// duration 1 s), so a follower takes over at once. The write is conditional on the version we last
    /// wrote, so it can only clear our own record: if anyone wrote since, it fails, and the lock is read
    /// and only a record that still names us is cleared (a late release never clears a successor's
    /// lease). A racing write is retried until `timing.request_timeout_cap()` has passed. Call
    /// [`resign`](Self::resign) first.
    pub fn begin_release(&mut self, now: Instant, wall: DateTime<Utc>) -> Action<E> {
        self.phase = Phase::Idle;
        self.leading = None;
        let give_up = later(now, self.config.timing.request_timeout_cap());
        self.step = StepState::new(now, 0, Some(give_up));
        let believed_ours = self.observed.as_ref().is_some_and(|o| o.ours)
            || self.all_slots().any(|s| self.names_us(s));
        if !believed_ours {
            return self.released(Ok(false));
        }
        if self.quarantine_pending.is_some() || self.quarantine_until.is_some_and(|q| q > now) {
            // A lock we re-created after a delete is not free to hand on yet: whoever held the deleted
            // object may still lead. Left as it is, it expires a lease duration after our last renew.
            log::info!(
                "{} as {}: not releasing a lock created a moment ago over a deleted one; it expires a lease after our last renew",
                self.config.lock,
                self.config.identity
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

    pub(super) fn release_read(&mut self, slot: Slot, now: Instant) -> Action<E> {
        self.send(Phase::ReleaseRead { slot }, now, |timeout| Request::Get {
            slot,
            timeout,
        })
    }

    pub(super) fn release_write(
        &mut self,
        slots: Vec<Slot>,
        index: usize,
        now: Instant,
        wall: DateTime<Utc>,
    ) -> Action<E> {
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
            incarnation: Some(self.config.incarnation.clone()),
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

    /// The answer to a release's read of `slot`: read the next object, or clear the ones naming us.
    pub(super) fn on_release_read(
        &mut self,
        slot: Slot,
        reply: Reply<E>,
        now: Instant,
        wall: DateTime<Utc>,
    ) -> Action<E> {
        if let Err(e) = self.take_in_read(slot, reply) {
            return self.released(Err(e));
        }
        match self.next_slot(slot) {
            Some(next) => self.release_read(next, now),
            None => {
                let ours: Vec<Slot> = self.all_slots().filter(|s| self.names_us(*s)).collect();
                if ours.is_empty() {
                    return self.released(Ok(false));
                }
                self.release_write(ours, 0, now, wall)
            }
        }
    }

    /// The answer to the release write of `slots[index]`.
    pub(super) fn on_release_written(
        &mut self,
        slots: Vec<Slot>,
        index: usize,
        sent: &str,
        reply: Reply<E>,
        now: Instant,
        wall: DateTime<Utc>,
    ) -> Action<E> {
        match reply {
            Reply::Object(v) => {
                self.wrote(slots[index], v, Some(sent));
                if index + 1 < slots.len() {
                    self.release_write(slots, index + 1, now, wall)
                } else {
                    self.released(Ok(true))
                }
            }
            // A racing write (our own late renew, or a new holder): look again.
            Reply::Conflict(_) => self.release_read(Slot::Primary, now),
            Reply::NotFound => self.released(Ok(false)),
            Reply::Failed(e) => self.released(Err(e)),
        }
    }

    pub(super) fn released(&mut self, result: Result<bool, E>) -> Action<E> {
        self.phase = Phase::Idle;
        self.step = StepState::default();
        Action::Released(result)
    }
}
