//! What every phase of a step shares: sending a request (bounded by the time our term has left, and by
//! a release's own deadline), the objects a step walks through in order, and the time written into a
//! record.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::{Election, Known, Phase};
use crate::election::protocol::{Action, Request, Slot};
use crate::election::{ElectionError, StepError};

impl<E: StepError> Election<E> {
    pub(super) fn all_slots(&self) -> impl Iterator<Item = Slot> + use<E> {
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

    /// One of the election's own failures, in the driver's error type.
    pub(super) fn own(&self, failure: ElectionError) -> E {
        E::from(failure)
    }

    pub(super) fn deadline_error(&self) -> E {
        self.own(ElectionError::DeadlineExceeded {
            lock: self.config.lock.clone(),
        })
    }

    /// Send a request, or end the step when its time is up.
    pub(super) fn send(
        &mut self,
        phase: Phase,
        now: Instant,
        make: impl FnOnce(Duration) -> Request,
    ) -> Action<E> {
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
                    self.step.out_of_time = true;
                }
                self.finish(now)
            }
        }
    }
}
