//! Between the members and the server: each request's fate (faults during a storm, hangs while its
//! member is cut off), latency both ways, the client's own timeout, the server applying it to the
//! objects, and every change fanned out to the members' watches.

use super::super::model::ObjectKind;
use super::super::world::{api, transport};
use super::{Ev, Life, MS, SET, World};
use crate::election::{Reply, Request, Watched};
use crate::error::{Error, StatusReason};
use crate::record::VersionedRecord;
use crate::set::machine::Out;

/// What a request asks.
#[derive(Clone)]
pub(super) enum What {
    Lock { shard: usize, request: Request },
    List,
}

impl What {
    /// The answer that says this request failed with `e`.
    fn failed(&self, e: Error) -> Answer {
        match self {
            What::List => Answer::List(Err(e)),
            What::Lock { .. } => Answer::Lock(Reply::from_error(e)),
        }
    }
}

/// What the network does to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Normal,
    /// Lost on the way: never applied; the connection is reset (`true`) or it just hangs.
    DropRequest(bool),
    /// Applied, but the answer is lost: the connection is reset (`true`) or it just hangs.
    DropAnswer(bool),
    /// An error status, not applied.
    Status(u16),
    /// A 409 without anything applied (racing writers).
    Conflict,
}

/// The answer a client gets.
pub(super) enum Answer {
    Lock(Reply<Error>),
    List(crate::error::Result<Vec<(String, VersionedRecord)>>),
}

pub(super) struct InFlight {
    m: usize,
    inc: u32,
    what: What,
    fate: Fate,
    back: u64,
    answer: Option<Answer>,
    /// The client has its answer (or gave up).
    done: bool,
    /// The answer reached the client, which may take a moment to act on it.
    received: bool,
}

impl World {
    /// The object lock `shard` of member `m` stands for.
    pub(super) fn lock_name(&self, m: usize, shard: usize) -> String {
        if shard < self.shards {
            format!("{SET}-{shard}")
        } else {
            crate::set::member_lease(SET, &self.members[m].identity)
        }
    }

    fn latency(&mut self) -> u64 {
        let spike = self.now < self.storm_until && self.rng.next_f64() < 0.05;
        if spike {
            self.rng.next_u64() % (self.request_timeout() * 3 / 2)
        } else {
            100_000 + self.rng.next_u64() % (2 * MS)
        }
    }

    fn draw_fate(&mut self, m: usize) -> Fate {
        if self.now < self.members[m].cut_until {
            return Fate::DropRequest(false);
        }
        if self.now >= self.storm_until {
            return Fate::Normal;
        }
        let r = self.rng.next_f64();
        self.report.faults += u64::from(r < 0.2);
        match r {
            r if r < 0.06 => Fate::Status(500),
            r if r < 0.08 => Fate::Status(429),
            r if r < 0.12 => Fate::Conflict,
            r if r < 0.14 => Fate::DropAnswer(true),
            r if r < 0.16 => Fate::DropAnswer(false),
            r if r < 0.20 => Fate::DropRequest(self.rng.next_f64() < 0.5),
            _ => Fate::Normal,
        }
    }

    /// Carry out one thing member `m`'s machine asked for.
    pub(super) fn send(&mut self, m: usize, out: Out) {
        let (what, local_until) = match out {
            Out::Send {
                shard,
                request,
                until,
            } => (What::Lock { shard, request }, until),
            Out::ListMembers => {
                let (now, _) = self.local_now(m);
                let until = now + std::time::Duration::from_nanos(self.request_timeout());
                (What::List, until)
            }
        };
        self.next_request += 1;
        let id = self.next_request;
        let inc = self.members[m].inc;
        if self.cfg.trace {
            let who = self.members[m].identity.clone();
            let line = match &what {
                What::Lock { shard, request } => {
                    format!("{who} -> #{id} {} {request:?}", self.lock_name(m, *shard))
                }
                What::List => format!("{who} -> #{id} list members"),
            };
            self.trace(|| line);
        }
        // While stopping, before the releases, requests are interrupted at once (as the handle's stop
        // interrupts them).
        if self.members[m].life == Life::Stopping && self.members[m].releasing == 0 {
            self.requests.insert(
                id,
                InFlight {
                    m,
                    inc,
                    what,
                    fate: Fate::DropRequest(true),
                    back: 0,
                    answer: None,
                    done: false,
                    received: false,
                },
            );
            self.schedule(self.now, Ev::Answer { id });
            return;
        }
        let fate = self.draw_fate(m);
        let (go, back) = (self.latency(), self.latency());
        self.requests.insert(
            id,
            InFlight {
                m,
                inc,
                what,
                fate,
                back,
                answer: None,
                done: false,
                received: false,
            },
        );
        let local = super::local_of(self.base, local_until);
        let give_up = self.members[m].clock.real_at(local);
        self.schedule(give_up, Ev::Timeout { id, local });
        match fate {
            Fate::DropRequest(true) => self.schedule(self.now + go, Ev::Answer { id }),
            Fate::DropRequest(false) => {}
            _ => self.schedule(self.now + go, Ev::Arrive { id }),
        }
    }

    /// The request reaches the server.
    pub(super) fn arrive(&mut self, id: u64) {
        let Some(r) = self.requests.get(&id) else {
            return;
        };
        let (fate, back) = (r.fate, r.back);
        let answer = match fate {
            Fate::Status(code) => {
                let retry_after = (code == 429).then(|| std::time::Duration::from_secs(1));
                let reason = if code == 429 {
                    StatusReason::TooManyRequests
                } else {
                    StatusReason::InternalError
                };
                Answer::Lock(Reply::from_error(api(code, reason, retry_after)))
            }
            Fate::Conflict => {
                Answer::Lock(Reply::from_error(api(409, StatusReason::Conflict, None)))
            }
            _ => self.apply(id),
        };
        let answer = match (fate, answer) {
            (Fate::DropAnswer(true), _) => Some(Answer::Lock(Reply::Failed(transport()))),
            (Fate::DropAnswer(false), _) => None,
            (_, Answer::List(l)) => Some(Answer::List(l)),
            (_, a) => Some(a),
        };
        let list = matches!(self.requests.get(&id).map(|r| &r.what), Some(What::List));
        let answer = answer.map(|a| match (list, a) {
            // A listing's failure is a listing's.
            (true, Answer::Lock(Reply::Failed(e) | Reply::Conflict(e))) => Answer::List(Err(e)),
            (_, a) => a,
        });
        let Some(answer) = answer else {
            return;
        };
        if let Some(r) = self.requests.get_mut(&id) {
            r.answer = Some(answer);
        }
        self.schedule(self.now + back, Ev::Answer { id });
    }

    /// What the server does with a request that reaches it.
    fn apply(&mut self, id: u64) -> Answer {
        let Some(r) = self.requests.get(&id) else {
            return Answer::Lock(Reply::Failed(transport()));
        };
        let m = r.m;
        let (shard, request) = match &r.what {
            What::List => {
                let prefix = format!("{SET}-member-");
                let items = self
                    .objects
                    .iter()
                    .filter(|(name, _)| name.starts_with(&prefix))
                    .filter_map(|(name, o)| {
                        o.get(ObjectKind::Lease).ok().map(|v| (name.clone(), v))
                    })
                    .collect();
                return Answer::List(Ok(items));
            }
            What::Lock { shard, request } => (*shard, request.clone()),
        };
        let name = self.lock_name(m, shard);
        let writer = self.members[m].identity.clone();
        let object = self.objects.entry(name.clone()).or_default();
        let result = match request {
            Request::Get { .. } => object.get(ObjectKind::Lease).map(|v| (v, None)),
            Request::Create { record, .. } => object.create(ObjectKind::Lease, &record),
            Request::Update {
                record,
                resource_version,
                ..
            } => object.update(ObjectKind::Lease, &record, &resource_version),
        };
        match result {
            Ok((v, change)) => {
                if change.is_some() {
                    self.written(&name, &v, &writer);
                    self.broadcast(&name, Watched::Changed(v.clone()));
                }
                Answer::Lock(Reply::Object(v))
            }
            Err(e) => Answer::Lock(Reply::from_error(e)),
        }
    }

    /// A changed object reaches every watching member, in order, a moment later.
    fn broadcast(&mut self, name: &str, change: Watched) {
        for m in 0..self.members.len() {
            let mb = &self.members[m];
            if mb.life != Life::Running || !mb.watching || !mb.watch_up || self.now < mb.cut_until {
                continue;
            }
            let lat = self.latency().min(50 * MS);
            let mb = &mut self.members[m];
            let at = (self.now + lat).max(mb.watch_last);
            mb.watch_last = at;
            let inc = mb.inc;
            self.schedule(
                at,
                Ev::Watch {
                    m,
                    inc,
                    name: name.to_string(),
                    change: change.clone(),
                },
            );
        }
    }

    /// The answer reaches the client.
    pub(super) fn answer(&mut self, id: u64) {
        let Some(r) = self.requests.get_mut(&id) else {
            return;
        };
        if r.done {
            self.requests.remove(&id);
            return;
        }
        if !r.received {
            r.received = true;
            if r.fate == Fate::DropRequest(true) {
                r.answer = Some(r.what.failed(transport()));
            }
            // Now and then (one answer in five) the client thread is descheduled between receiving the
            // answer and acting on it: its clock moves on before it takes the answer in.
            if self.rng.next_f64() < 0.2 {
                let delay = 100_000 + self.rng.next_u64() % (20 * MS);
                self.schedule(self.now + delay, Ev::Answer { id });
                return;
            }
        }
        let Some(r) = self.requests.remove(&id) else {
            return;
        };
        if let Some(answer) = r.answer {
            self.deliver(r.m, r.inc, r.what, answer);
        }
    }

    /// The client's timer runs out.
    pub(super) fn timed_out(&mut self, id: u64, local: u64) {
        let Some(r) = self.requests.get_mut(&id) else {
            return;
        };
        if r.done || r.received {
            return;
        }
        let clock = &self.members[r.m].clock;
        if clock.local(self.now) < local {
            let at = clock.real_at(local);
            self.schedule(at, Ev::Timeout { id, local });
            return;
        }
        r.done = true;
        let (m, inc) = (r.m, r.inc);
        let what = r.what.clone();
        let timeout = Error::Timeout {
            context: "sim".into(),
            after: self.timing.request_timeout_cap(),
        };
        let answer = what.failed(timeout);
        // A request still on its way may yet take effect (its answer is then dropped); one that hangs
        // never will.
        if self
            .requests
            .get(&id)
            .is_some_and(|r| r.answer.is_some() || r.fate == Fate::DropRequest(false))
        {
            self.requests.remove(&id);
        }
        self.deliver(m, inc, what, answer);
    }

    /// Member `m` takes in an answer.
    fn deliver(&mut self, m: usize, inc: u32, what: What, answer: Answer) {
        let mb = &self.members[m];
        if mb.inc != inc || mb.life == Life::Down || mb.machine.is_none() {
            return;
        }
        if self.cfg.trace {
            let who = mb.identity.clone();
            let text = match &answer {
                Answer::Lock(r) => format!("{r:?}"),
                Answer::List(Ok(items)) => format!("{} members", items.len()),
                Answer::List(Err(e)) => format!("{e}"),
            };
            self.trace(|| format!("{who} <- {text}"));
        }
        let (now, wall) = self.local_now(m);
        self.note_watch(m);
        let Some(machine) = self.members[m].machine.as_mut() else {
            return;
        };
        match (what, answer) {
            (What::Lock { shard, .. }, Answer::Lock(reply)) => {
                machine.answered(shard, reply, now, wall);
                self.after(m);
                self.stopping_progress(m, Some(shard));
            }
            (What::List, Answer::List(result)) => {
                machine.listed(result, now);
                self.after(m);
            }
            _ => {}
        }
    }

    /// A watched change reaches member `m`.
    pub(super) fn watched(&mut self, m: usize, inc: u32, name: &str, change: Watched) {
        let mb = &mut self.members[m];
        if mb.inc != inc || mb.life != Life::Running || !mb.watch_up {
            return;
        }
        mb.watch_activity = mb.clock.local(self.now);
        let (now, _) = self.local_now(m);
        self.note_watch(m);
        if let Some(machine) = self.members[m].machine.as_mut() {
            machine.watched(name, change, now);
        }
        self.after(m);
    }

    /// Member `m`'s watch is back: it lists every object of the set, then follows changes again.
    pub(super) fn watch_resume(&mut self, m: usize, inc: u32) {
        let mb = &mut self.members[m];
        if mb.inc != inc || mb.life != Life::Running || self.now < mb.cut_until {
            return;
        }
        mb.watch_up = true;
        let objects: Vec<(String, VersionedRecord)> = self
            .objects
            .iter()
            .filter_map(|(n, o)| o.get(ObjectKind::Lease).ok().map(|v| (n.clone(), v)))
            .collect();
        for (name, v) in objects {
            let lat = self.latency().min(50 * MS);
            let mb = &mut self.members[m];
            let at = (self.now + lat).max(mb.watch_last);
            mb.watch_last = at;
            self.schedule(
                at,
                Ev::Watch {
                    m,
                    inc,
                    name,
                    change: Watched::Changed(v),
                },
            );
        }
    }
}

impl World {
    /// Member `m`'s lock requests its client still waits for.
    pub(super) fn requests_of(&self, m: usize) -> Vec<u64> {
        let inc = self.members[m].inc;
        self.requests
            .iter()
            .filter(|(_, r)| r.m == m && r.inc == inc && !r.done)
            .filter(|(_, r)| matches!(r.what, What::Lock { .. }))
            .map(|(id, _)| *id)
            .collect()
    }

    /// An interrupted request: its client gets a failure now (the request may still take effect).
    pub(super) fn fail_now(&mut self, id: u64) {
        let Some(r) = self.requests.get_mut(&id) else {
            return;
        };
        if r.done {
            return;
        }
        r.done = true;
        let (m, inc) = (r.m, r.inc);
        let what = r.what.clone();
        if r.answer.is_some() || r.received || r.fate == Fate::DropRequest(false) {
            self.requests.remove(&id);
        }
        let answer = what.failed(transport());
        self.deliver(m, inc, what, answer);
    }
}
