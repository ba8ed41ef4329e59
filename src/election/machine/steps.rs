//! A step's requests and their answers: the fast-path renew, reads, conditional writes, and the end
//! of the step with its outcome.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::{Election, Known, Phase, Term, later};
use crate::election::protocol::{Action, Outcome, Reply, Request, Slot, Status};
use crate::error::Error;
use crate::events::{LeaderEvent, StopReason};
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
            Reply::Failed(e) => self.fall_back(e, now),
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
        match reply {
            Reply::Object(v) => self.slots[slot.index()] = Known::Present(v),
            Reply::NotFound => self.gone(slot),
            Reply::Failed(e) => {
                self.step.error = Some(e);
                return self.finish(now);
            }
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
            Reply::Failed(e) if e.is_conflict() || e.is_already_exists() => self.lost_race(e, now),
            Reply::Failed(e) => {
                self.step.error = Some(e);
                self.finish(now)
            }
        }
    }

    /// The object was found missing: remember that it existed, and what it said.
    pub(super) fn gone(&mut self, slot: Slot) {
        let ghost = match &self.slots[slot.index()] {
            Known::Present(v) => Some(v.record.clone()),
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

    pub(super) fn names_us(&self, slot: Slot) -> bool {
        matches!(&self.slots[slot.index()], Known::Present(v) if v.record.holder_identity == self.config.identity)
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
        if self.leading.take().is_some_and(|t| t.announced) {
            self.step.events.push(LeaderEvent::StoppedLeading {
                reason: StopReason::LeaseLost { holder },
            });
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
                    self.step.error = Some(e);
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
        let sent = match &self.slots[slot.index()] {
            Known::Present(v) => Some(v.resource_version.clone()),
            _ => None,
        };
        if self.step.quarantine.is_some() {
            self.quarantine_pending = self.step.quarantine;
        }
        let r = record.clone();
        let rv = sent.clone();
        self.send(
            Phase::Write {
                slots,
                index,
                record,
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
            "{}: fast-path renew failed, reading the lock: {e}",
            self.config.lock
        );
        self.step.slow_path = true;
        self.step.error = Some(e);
        self.read(Slot::Primary, now)
    }

    /// A write lost a race (409, or the object vanished): read again and judge again, once per step. A race
    /// never means "still leader": if we cannot judge again, we stop leading.
    pub(super) fn lost_race(&mut self, e: Error, now: Instant) -> Action {
        self.step.error = Some(e);
        if self.step.rereads > 0 {
            self.step.rereads -= 1;
            self.step.observable = true;
            return self.read(Slot::Primary, now);
        }
        self.lose(None);
        self.finish(now)
    }

    /// Remember an object we wrote; a write that left the version unchanged (identical bytes, which the
    /// API server treats as a no-op) is invisible to followers.
    pub(super) fn wrote(&mut self, slot: Slot, v: VersionedRecord, sent: Option<&str>) {
        if sent.is_some_and(|s| s == v.resource_version) {
            self.step.observable = false;
        }
        self.slots[slot.index()] = Known::Present(v);
    }

    /// Every object holds our record: we lead until `start + renew_deadline` if followers can see the
    /// write; a write they cannot see moves nothing.
    pub(super) fn wrote_all(&mut self, record: LeaderElectionRecord, now: Instant) -> Action {
        if let Some(v) = self.view() {
            let mut events = std::mem::take(&mut self.step.events);
            self.observe(v, now, &mut events);
            self.step.events = events;
        }
        if !self.step.observable {
            log::debug!(
                "{}: the write changed nothing on the server (an identical record), so it does not count as a renew",
                self.config.lock
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
        let from = self.leads_from(start, now);
        let announced = self.leading.as_ref().is_some_and(|t| t.announced);
        if !announced && from > now {
            log::info!(
                "{}: re-created the lock after it was deleted; leading from a renew deadline on, when whoever held the deleted object has stopped",
                self.config.lock
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

    /// Where we stand now.
    pub(super) fn status(&self) -> Status {
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
                .as_ref()
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
            error: step.error,
        })
    }
}
