//! The network between electors and the model API server: latency, lost requests and answers, writes
//! that take effect after the client gave up, and the answers delivered.

use std::time::Duration;

use super::super::Invariant;
use super::super::model::ObjectKind;
use crate::election::{Reply, Request, Slot};
use crate::error::{Error, StatusReason};

use super::{
    Busy, Ev, Fate, FaultKind, InFlight, MS, ObjMeta, SCHEDULING_DELAY, SEC, World, api, transport,
};

impl World {
    pub(super) fn object_of(&self, e: usize, slot: Slot) -> ObjectKind {
        let objects = &self.electors[e].objects;
        match slot {
            Slot::Primary => objects[0],
            Slot::Secondary => objects[objects.len() - 1],
        }
    }

    pub(super) fn faulted(&mut self, e: usize) -> Option<(FaultKind, f64)> {
        let now = self.now;
        self.windows.retain(|w| w.until > now);
        self.windows
            .iter()
            .find(|w| w.target.is_none_or(|t| t == e))
            .map(|w| (w.kind, w.probability))
    }

    pub(super) fn latency(&mut self) -> u64 {
        // Mostly a fraction of a millisecond to a few; now and then tens.
        let r = self.rng.next_f64();
        if r < 0.9 {
            100_000 + (self.rng.next_f64() * 3.0 * MS as f64) as u64
        } else {
            (self.rng.next_f64() * 40.0 * MS as f64) as u64 + MS
        }
    }

    pub(super) fn send(&mut self, e: usize, request: Request) {
        let id = self.next_request;
        self.next_request += 1;
        let kind = self.object_of(e, request.slot());
        let (mut go, mut back) = (self.latency(), self.latency());
        let fate = self.draw_fate(e, &mut go, &mut back);
        let el = &mut self.electors[e];
        el.busy = match el.busy {
            Busy::Release(_) => Busy::Release(id),
            _ if el.stopping => Busy::Release(id),
            _ => Busy::Step(id),
        };
        let give_up = el.clock.local(self.now) + request.timeout().as_nanos() as u64;
        let timeout_at = el.clock.real_at(give_up);
        let inc = el.inc;
        if self.cfg.trace {
            let who = el.identity.clone();
            let r = format!("{request:?}");
            self.trace(|| format!("{who} -> #{id} {kind:?} {r} {fate:?}"));
        }
        self.requests.insert(
            id,
            InFlight {
                e,
                inc,
                who: self.electors[e].identity.clone(),
                give_up,
                request,
                kind,
                fate,
                back,
                done: false,
                answer: None,
            },
        );
        self.schedule(timeout_at, Ev::Timeout { id, local: give_up });
        self.dispatch(id, fate, go, back);
    }

    /// What happens to a request: a fault window may answer it with an error, drop it or its answer,
    /// slow it down, or make it conflict.
    fn draw_fate(&mut self, e: usize, go: &mut u64, back: &mut u64) -> Fate {
        if let Some((fault, p)) = self.faulted(e) {
            if self.rng.next_f64() < p {
                self.report.faults += 1;
                return match fault {
                    FaultKind::Errors => {
                        let code = if self.rng.next_f64() < 0.5 { 500 } else { 503 };
                        let after = (self.rng.next_f64() < 0.3)
                            .then(|| Duration::from_secs(1 + self.rng.next_u64() % 5));
                        Fate::Status(code, after)
                    }
                    FaultKind::Throttle => {
                        let hostile = [
                            Duration::from_secs(3600),
                            Duration::from_secs(10_000_000_000_000_000_000),
                            Duration::MAX,
                            Duration::from_secs(1),
                        ];
                        Fate::Status(429, Some(hostile[(self.rng.next_u64() % 4) as usize]))
                    }
                    FaultKind::Drops => {
                        let r = self.rng.next_f64();
                        if r < 0.4 {
                            Fate::DropRequest { reset: true }
                        } else if r < 0.6 {
                            Fate::DropRequest { reset: false }
                        } else {
                            Fate::DropAnswer
                        }
                    }
                    FaultKind::Latency => {
                        *go += (self.rng.next_f64() * 3.0 * SEC as f64) as u64;
                        *back += (self.rng.next_f64() * 2.0 * SEC as f64) as u64;
                        Fate::Normal
                    }
                    FaultKind::Conflicts => Fate::Conflict,
                    FaultKind::Partition => Fate::DropRequest { reset: false },
                };
            }
        }
        Fate::Normal
    }

    /// Send the request on its way, or answer it as its fate says.
    fn dispatch(&mut self, id: u64, fate: Fate, go: u64, back: u64) {
        match fate {
            Fate::Normal | Fate::DropAnswer => self.schedule(self.now + go, Ev::Arrive { id }),
            Fate::DropRequest { reset: true } => {
                if let Some(r) = self.requests.get_mut(&id) {
                    r.answer = Some(Reply::Failed(transport()));
                }
                self.schedule(self.now + go, Ev::Answer { id });
            }
            Fate::DropRequest { reset: false } => {}
            Fate::Status(code, after) => {
                let reason = StatusReason::from_code(code);
                if let Some(r) = self.requests.get_mut(&id) {
                    r.answer = Some(Reply::from_error(api(code, reason, after)));
                }
                self.schedule(self.now + go + back, Ev::Answer { id });
            }
            Fate::Conflict => {
                if let Some(r) = self.requests.get_mut(&id) {
                    r.answer = Some(Reply::from_error(api(409, StatusReason::Conflict, None)));
                }
                self.schedule(self.now + go + back, Ev::Answer { id });
            }
        }
    }

    /// The request reaches the server and takes effect.
    pub(super) fn arrive(&mut self, id: u64) {
        let Some(r) = self.requests.get(&id) else {
            return;
        };
        let (e, inc, kind, fate, back) = (r.e, r.inc, r.kind, r.fate, r.back);
        let writer = r.who.clone();
        let writer_saw = self.electors[e].inc == inc && self.electors[e].saw.contains(&kind);
        let before = self.model.stored(kind).map(|s| s.record.clone());
        let result = match r.request.clone() {
            Request::Get { .. } => self.model.get(kind).map(|v| (v, None)),
            Request::Create { record, .. } => self.model.create(kind, &record),
            Request::Update {
                record,
                resource_version,
                ..
            } => self.model.update(kind, &record, &resource_version),
        };
        let reply = match result {
            Ok((v, change)) => {
                if let Some(change) = change {
                    self.written(kind, &v.record, before, &writer, writer_saw, (e, inc));
                    self.broadcast(change);
                }
                Reply::Object(v)
            }
            Err(err) => Reply::from_error(err),
        };
        let answer = match fate {
            Fate::DropAnswer => Reply::Failed(transport()),
            _ => reply,
        };
        if let Some(r) = self.requests.get_mut(&id) {
            r.answer = Some(answer);
        }
        self.schedule(self.now + back, Ev::Answer { id });
    }

    /// A write changed an object: check the takeover rule and remember who wrote what when.
    pub(super) fn written(
        &mut self,
        kind: ObjectKind,
        record: &crate::record::LeaderElectionRecord,
        before: Option<crate::record::LeaderElectionRecord>,
        writer: &str,
        writer_saw: bool,
        (e, inc): (usize, u32),
    ) {
        let key = (writer.to_string(), record.leader_transitions);
        // What a reader may have seen last, to tell whether this write changed the record at all.
        let over_cleared = before
            .as_ref()
            .is_some_and(|b| b.holder_identity.is_empty() && self.cleared.contains_key(&kind));
        let prior = match &before {
            Some(_) if over_cleared => self.cleared.get(&kind).map(|(g, _)| g.clone()),
            Some(_) => self.meta.get(&kind).cloned(),
            None => self.deleted.get(&kind).cloned(),
        };
        if before.as_ref().is_some_and(|b| {
            b.holder_identity.is_empty() && !b.is_release() && !record.holder_identity.is_empty()
        }) {
            // Taking a record without a holder that is no release: its term waits a lease before it
            // leads.
            self.disturb(self.now);
        }
        let previous = match before {
            // A write over a record an administrator cleared: one that saw who held it holds it a lease
            // before it leads (checked by OneLeader); one that first saw it cleared cannot know.
            Some(_) if over_cleared => {
                let informed = self
                    .cleared
                    .get(&kind)
                    .is_some_and(|(_, seen)| seen.contains(&(e, inc)));
                if !informed && record.holder_identity == writer {
                    self.blind_terms.insert(key.clone());
                    self.report.excused_blind_clears += 1;
                }
                None
            }
            Some(_) => self.meta.get(&kind).cloned(),
            None => {
                // A create after a delete: a creator that saw the object holds it but leads only after
                // a quarantine (checked by OneLeader); one that never saw it cannot know who held it.
                if self.deleted.remove(&kind).is_some() {
                    if !writer_saw {
                        self.blind_terms.insert(key.clone());
                        self.report.excused_blind_creates += 1;
                    }
                    // Re-created after a delete: its term waits a lease before it leads.
                    self.disturb(self.now);
                }
                None
            }
        };
        if !record.holder_identity.is_empty() {
            self.cleared.remove(&kind);
        }
        if record.holder_identity.is_empty() {
            // A release: if by a blind term, whoever takes it inherits the blindness.
            if self.blind_terms.contains(&key) {
                self.tainted.insert(kind);
            } else {
                self.tainted.remove(&kind);
            }
        } else if self.tainted.remove(&kind) && record.holder_identity == writer {
            self.blind_terms.insert(key);
        }
        // A holder that resigned since, or whose term began blind (it overlaps already), is not checked.
        let checked = |p: &ObjMeta| {
            self.resigned.get(&p.holder).is_none_or(|r| *r < p.at)
                && !self
                    .blind_terms
                    .contains(&(p.holder.clone(), p.record.leader_transitions))
        };
        if let Some(p) = previous.filter(checked) {
            let taken = !p.holder.is_empty()
                && record.holder_identity == writer
                && (record.holder_identity != p.holder || p.writer != (e, inc));
            if taken && p.duration > 0 {
                let lease = Duration::from_secs(p.duration.unsigned_abs().into()).as_nanos() as f64;
                let earliest = p.at + (lease / (1.0 + self.cfg.drift)) as u64;
                if self.now + MS < earliest {
                    self.violation(
                        Invariant::NoEarlyTakeover,
                        format!(
                            "{writer} took {kind:?} from {} {:.3} s after its last write (lease {} s)",
                            p.holder,
                            (self.now - p.at) as f64 / SEC as f64,
                            p.duration
                        ),
                    );
                }
            }
        }
        // A write that leaves the record as it was (an identical re-creation) changes nothing for
        // anyone who saw it: its holder's lease still counts from the earlier write.
        let at = match &prior {
            Some(p) if p.record == *record => p.at,
            _ => self.now,
        };
        self.meta.insert(
            kind,
            ObjMeta {
                holder: record.holder_identity.clone(),
                writer: (e, inc),
                duration: record.lease_duration_seconds,
                record: record.clone(),
                at,
            },
        );
    }

    pub(super) fn answer(&mut self, id: u64) {
        let Some(r) = self.requests.get_mut(&id) else {
            return;
        };
        if r.done {
            self.requests.remove(&id);
            return;
        }
        let Some(reply) = r.answer.take() else {
            return;
        };
        r.done = true;
        let (e, inc, kind) = (r.e, r.inc, r.kind);
        let read = matches!(r.request, Request::Get { .. });
        self.requests.remove(&id);
        if read && matches!(reply, Reply::Object(_)) {
            // It has seen this object's record (a write's own answer does not count: that is its own).
            let el = &mut self.electors[e];
            if el.inc == inc {
                el.saw.insert(kind);
            }
        }
        // Now and then (one answer in five) the client thread is descheduled between receiving an answer and acting on it:
        // its clock moves on (past a deadline, say) before it takes the answer in.
        if self.rng.next_f64() < 0.2 {
            let delay = 100_000 + self.rng.next_u64() % SCHEDULING_DELAY;
            self.received.insert(id, (e, inc, reply));
            self.schedule(self.now + delay, Ev::Process { id });
            return;
        }
        self.deliver(e, inc, id, reply);
    }

    /// A received answer, processed after a scheduling delay.
    pub(super) fn process(&mut self, id: u64) {
        if let Some((e, inc, reply)) = self.received.remove(&id) {
            self.deliver(e, inc, id, reply);
        }
    }

    pub(super) fn timed_out(&mut self, id: u64, local: u64) {
        let Some(r) = self.requests.get_mut(&id) else {
            return;
        };
        if r.done {
            return;
        }
        let clock = &self.electors[r.e].clock;
        if clock.local(self.now) < local {
            // The clock's rate changed: the client's timer has not run out yet.
            let at = clock.real_at(local);
            self.schedule(at, Ev::Timeout { id, local });
            return;
        }
        r.done = true;
        let (e, inc, timeout) = (r.e, r.inc, r.request.timeout());
        // The request may still take effect: keep it until it arrives (or never does).
        if r.answer.is_some() || matches!(r.fate, Fate::DropRequest { reset: false }) {
            self.requests.remove(&id);
        }
        self.deliver(
            e,
            inc,
            id,
            Reply::Failed(Error::Timeout {
                context: "sim".into(),
                after: timeout,
            }),
        );
    }

    pub(super) fn deliver(&mut self, e: usize, inc: u32, id: u64, reply: Reply<Error>) {
        let el = &mut self.electors[e];
        if el.inc != inc
            || !el.alive
            || !matches!(el.busy, Busy::Step(x) | Busy::Release(x) if x == id)
        {
            return;
        }
        if self.cfg.trace {
            let who = el.identity.clone();
            let r = format!("{reply:?}");
            self.trace(|| format!("{who} <- #{id} {r}"));
        }
        let (now, wall) = self.local_now(e);
        let action = self.electors[e].election.feed(reply, now, wall);
        self.act(e, action);
    }
}
