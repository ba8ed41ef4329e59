//! The electors: the renew thread's loop on simulated time, driving the real election core and pacing.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::super::Invariant;
use super::super::clock::local_of;
use crate::election::{Action, Outcome, Status, Watched};
use crate::error::Error;
use crate::events::{LeaderEvent, StopReason};
use crate::runner::pacing::{Situation, next_attempt};

use super::{Busy, Ev, SEC, World};

impl World {
    pub(super) fn local_now(&self, e: usize) -> (Instant, DateTime<Utc>) {
        let el = &self.electors[e];
        (
            el.clock.instant(self.base, self.now),
            el.clock.wall(self.wall_base, self.now),
        )
    }

    pub(super) fn wake(&mut self, e: usize, generation: u64) {
        self.trace(|| format!("e{e} wake gen {generation}"));
        let el = &self.electors[e];
        if !el.alive || el.stopping || el.busy != Busy::Idle || el.generation != generation {
            return;
        }
        if el.clock.local(self.now) < el.wake_local {
            // The clock's rate changed since the wake was scheduled.
            let t = el.clock.real_at(el.wake_local);
            self.schedule(t, Ev::Wake { e, generation });
            return;
        }
        let (now, wall) = self.local_now(e);
        let action = self.electors[e].election.begin(now, wall);
        self.act(e, action);
    }

    pub(super) fn act(&mut self, e: usize, action: Action<Error>) {
        match action {
            Action::Send(request) => self.send(e, request),
            Action::Stepped(outcome) => {
                self.electors[e].busy = Busy::Idle;
                self.report.steps += 1;
                let lapsed = outcome.lapsed();
                self.stepped(e, outcome);
                if lapsed {
                    self.attempt_now(e);
                } else {
                    self.after_step(e);
                }
            }
            Action::Released(result) => {
                let el = &mut self.electors[e];
                el.busy = Busy::Idle;
                el.alive = false;
                let id = el.identity.clone();
                self.trace(|| format!("{id} released: {result:?}"));
            }
        }
    }

    /// What the runner's state does with an outcome: events in order, each after the leadership it
    /// reports; a renew moves the deadline.
    pub(super) fn stepped(&mut self, e: usize, outcome: Outcome<Error>) {
        self.electors[e].standing = outcome.status.clone();
        let deadline = outcome.status.leader_deadline();
        if self.cfg.trace {
            let id = self.electors[e].identity.clone();
            // Instants as seconds on the elector's own clock, so a replay prints the same text.
            let at = |t: &Instant| local_of(self.base, *t) as f64 / SEC as f64;
            let status = match &outcome.status {
                Status::Leading { deadline, term } => {
                    format!("leading term {term} until {:.6}", at(deadline))
                }
                Status::Holding {
                    deadline,
                    leads_from,
                    term,
                } => format!(
                    "holding term {term} until {:.6}, leading from {:.6}",
                    at(deadline),
                    at(leads_from)
                ),
                Status::Following { holder, expiry } => format!(
                    "following {holder:?} until {:?}",
                    expiry.as_ref().map(|e| format!("{:.6}", at(e)))
                ),
            };
            let err = outcome.error.as_ref().map(ToString::to_string);
            self.trace(|| format!("{id} stepped: {status} err={err:?}"));
        }
        for event in outcome.events {
            match event {
                LeaderEvent::StartedLeading { transitions } => {
                    if let Some(d) = deadline {
                        self.started(e, d, transitions);
                    }
                }
                LeaderEvent::StoppedLeading { reason } => self.stopped(e, reason),
                LeaderEvent::NewLeader { .. } | LeaderEvent::TermLimitReached { .. } => {}
            }
        }
        let (now, _) = self.local_now(e);
        let el = &mut self.electors[e];
        if let Some(d) = deadline.filter(|_| outcome.renewed && el.announced) {
            if el.published.is_some_and(|p| p <= now) {
                let id = el.identity.clone();
                self.violation(
                    Invariant::TermEnds,
                    format!("{id}: a renew extended a term whose deadline had passed"),
                );
            }
            let el = &mut self.electors[e];
            el.published = Some(d);
        }
        let el = &mut self.electors[e];
        el.retry_after = outcome
            .error
            .as_ref()
            .and_then(Error::api)
            .and_then(|a| a.retry_after);
    }

    pub(super) fn started(&mut self, e: usize, deadline: Instant, term: i32) {
        let blind = self
            .blind_terms
            .contains(&(self.electors[e].identity.clone(), term));
        let el = &mut self.electors[e];
        if el.stopping || !el.alive {
            return;
        }
        if el.announced {
            let id = el.identity.clone();
            self.violation(
                Invariant::EventOrder,
                format!("{id}: StartedLeading twice without StoppedLeading"),
            );
            return;
        }
        let el = &mut self.electors[e];
        el.announced = true;
        el.published = Some(deadline);
        el.term_seq += 1;
        el.term_blind = blind;
        el.late_stop_reported = false;
        let id = el.identity.clone();
        self.report.terms += 1;
        self.trace(|| {
            format!(
                "{id} StartedLeading term {term}{}",
                if blind { " (blind create)" } else { "" }
            )
        });
        if let Some((prev, prev_term, prev_at)) = self.last_started.clone() {
            let ok = if prev == id {
                term >= prev_term
            } else {
                term > prev_term
            };
            // A term's writes precede its start by up to a request timeout.
            let window = 2 * SEC;
            let across_delete = self.last_deletion.is_some_and(|d| d + window >= prev_at);
            if !ok && !blind && !across_delete {
                self.violation(
                    Invariant::FencingToken,
                    format!("{id} started term {term} after {prev} had term {prev_term}"),
                );
            }
        }
        self.last_started = Some((id, term, self.now));
    }

    pub(super) fn stopped(&mut self, e: usize, reason: StopReason) {
        let el = &mut self.electors[e];
        el.published = None;
        if !el.announced {
            let id = el.identity.clone();
            self.violation(
                Invariant::EventOrder,
                format!("{id}: StoppedLeading ({reason:?}) without StartedLeading"),
            );
            return;
        }
        el.announced = false;
        let id = el.identity.clone();
        self.trace(|| format!("{id} StoppedLeading {reason:?}"));
    }

    /// The runner's wait: a watched change that arrived during the step is taken in now; then sleep as
    /// pacing says.
    pub(super) fn after_step(&mut self, e: usize) {
        let (now, _) = self.local_now(e);
        let el = &mut self.electors[e];
        el.jitter = (el.rng.next_f64(), el.rng.next_f64());
        el.since = now;
        if el.pending.is_empty() {
            self.pace(e);
        } else {
            self.take_pending(e);
        }
    }

    pub(super) fn pace(&mut self, e: usize) {
        let (now, _) = self.local_now(e);
        let el = &mut self.electors[e];
        let since = el.since;
        let stale_at = (el.watching && el.watch_connected)
            .then(|| self.base + Duration::from_nanos(el.watch_activity) + el.watch_silence);
        let situation = Situation::of(&el.standing, since, el.retry_after, stale_at, now);
        let at = next_attempt(&el.timing, since, situation, el.jitter.0, el.jitter.1);
        el.generation += 1;
        el.wake_local = local_of(self.base, at);
        let (t, generation) = (el.clock.real_at(el.wake_local), el.generation);
        self.trace(|| {
            format!(
                "e{e} sleeps until {:.6} (gen {generation})",
                t as f64 / SEC as f64
            )
        });
        self.schedule(t, Ev::Wake { e, generation });
    }

    pub(super) fn attempt_now(&mut self, e: usize) {
        let el = &mut self.electors[e];
        el.generation += 1;
        el.wake_local = 0;
        let generation = el.generation;
        self.schedule(self.now, Ev::Wake { e, generation });
    }

    /// The runner's wait loop taking in watched changes one by one.
    pub(super) fn take_pending(&mut self, e: usize) {
        while let Some(change) = self.electors[e].pending.take() {
            let (now, _) = self.local_now(e);
            if let Watched::Changed(_) = &change {
                let kind = self.electors[e].objects[0];
                self.electors[e].saw.insert(kind);
            }
            let reaction = self.electors[e].election.observe_watched(change, now);
            if let Some(status) = reaction.status {
                self.electors[e].standing = status;
            }
            if reaction.attempt_now {
                self.attempt_now(e);
                return;
            }
        }
        self.pace(e);
    }
}
