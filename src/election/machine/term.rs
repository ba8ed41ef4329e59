//! The end of a term and of a step: leadership lapsing at its deadline, losing the lock, where we stand,
//! and the outcome a step ends with.

use std::time::Instant;

use super::{Election, Phase};
use crate::election::StepError;
use crate::election::protocol::{Action, Outcome, Status};
use crate::events::{LeaderEvent, StopReason};

impl<E: StepError> Election<E> {
    /// End leadership once its deadline has passed.
    pub(super) fn expire(&mut self, now: Instant) {
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
    pub(super) fn lose(&mut self, holder: Option<String>) {
        self.lose_as(StopReason::LeaseLost { holder });
    }

    /// Lose leadership now, for `reason`.
    pub(super) fn lose_as(&mut self, reason: StopReason) {
        if self.leading.take().is_some_and(|t| t.announced) {
            self.step
                .events
                .push(LeaderEvent::StoppedLeading { reason });
        }
    }

    /// Where we stand now: leading until a deadline, holding a re-created lock until we lead, or
    /// following a holder until its lease expires by our clock.
    pub fn status(&self) -> Status {
        match &self.leading {
            Some(t) if t.announced => Status::Leading {
                deadline: t.deadline,
                term: t.term,
            },
            Some(t) => Status::Holding {
                deadline: t.deadline,
                leads_from: t.from,
                term: t.term,
            },
            None => Status::Following {
                holder: self.holder().map(str::to_string),
                expiry: self.holder_expiry(),
            },
        }
    }

    /// End the step: where it left us and what changed.
    pub(super) fn finish(&mut self, now: Instant) -> Action<E> {
        // Why renews fail, for the reason of a lapse (this one's, if the deadline passes now).
        if self.leading.is_some() {
            if let Some(e) = self
                .step
                .error
                .as_deref()
                .filter(|_| !self.step.out_of_time)
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
        Action::Stepped(Outcome {
            status: self.status(),
            holder: observed,
            events: step.events,
            renewed: step.renewed,
            slow_path: step.slow_path,
            error: step.error.map(|e| *e),
        })
    }
}
