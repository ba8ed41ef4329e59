//! Terms: taking in a write the server confirmed (our term, its deadline, a re-created lock's
//! quarantine), losing or lapsing, and the end of a step with where it left us.

use std::time::Instant;

use super::{Election, Phase, Term, later};
use crate::election::protocol::{Action, Outcome, Status};
use crate::error::Error;
use crate::events::{LeaderEvent, StopReason};
use crate::record::LeaderElectionRecord;

impl Election {
    /// Every object holds our record: we lead until `start + renew_deadline` if followers can see the
    /// write; a write they cannot see moves nothing.
    pub(super) fn wrote_all(&mut self, record: LeaderElectionRecord, now: Instant) -> Action {
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
    pub(super) fn finish(&mut self, now: Instant) -> Action {
        // Why renews fail, for the reason of a lapse (this one's, if the deadline passes now).
        if self.leading.is_some() {
            if let Some(e) = self
                .step
                .error
                .as_deref()
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
