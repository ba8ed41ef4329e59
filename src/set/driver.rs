//! The set's one driver thread: every lock's election (the same core a single elector runs), paced as
//! a single elector paces itself, its requests handed to the pool, the watch's changes routed to the lock
//! they are about, and the balance kept: a member over its share gives shards up (drained, then
//! released), a member under it campaigns for free and expired ones, and none while at its share.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::balance::{preferred, share, to_shed};
use super::members::Members;
use super::pool::{Done, Job, Pool};
use super::schedule::Schedule;
use super::slots;
use crate::client::{Interrupter, RestClient};
use crate::election::{Action, Election, Status, Timing, later};
use crate::error::Error;
use crate::events::StopReason;
use crate::random::Rng;
use crate::runner::pacing::{Situation, next_attempt};
use crate::runner::{State, server_answered};
use crate::watch::Watcher;

/// What the handle tells the driver.
pub(crate) enum SetCommand {
    /// The handle has ended every term and drained: release the shards marked `true` (and our member
    /// lease with `member`), then end.
    Stop { release: Vec<bool>, member: bool },
}

/// Where a lock's election is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    /// A step is under way: when it began, and whether we led then.
    Stepping {
        started: Instant,
        was_leading: bool,
    },
    /// Given up (over our share): waiting for the term's work to end before the release.
    Draining {
        until: Instant,
    },
    Releasing,
}

/// Whether a lock changed hands between two statuses (to us, from us, or between others): balance
/// depends on it, not on renews.
fn changed_hands(before: &Status, after: &Status) -> bool {
    fn holder(s: &Status) -> Option<Option<&str>> {
        match s {
            Status::Leading { .. } | Status::Holding { .. } => None,
            Status::Following { holder, .. } => Some(holder.as_deref()),
        }
    }
    holder(before) != holder(after)
}

/// One lock of the set.
pub(crate) struct Shard {
    pub(crate) name: String,
    pub(crate) election: Election,
    /// `None` while its request is in the pool.
    pub(crate) lock: Option<Box<dyn crate::lock::Lock>>,
    pub(crate) state: Arc<State>,
    standing: Status,
    since: Instant,
    jitter: (f64, f64),
    retry_after: Option<Duration>,
    phase: Phase,
    /// Given up: no attempt to take it again before this.
    hold_off: Option<Instant>,
    /// Since when we have seen it free (released, missing, or its holder's lease run out): with
    /// hashing, the member it prefers gets a lease duration to take it before anyone else does.
    free_since: Option<Instant>,
    failures: crate::runner::Failures,
}

impl Shard {
    pub(crate) fn new(
        name: String,
        election: Election,
        lock: Box<dyn crate::lock::Lock>,
        state: Arc<State>,
    ) -> Self {
        let now = Instant::now();
        Shard {
            name,
            election,
            lock: Some(lock),
            state,
            standing: Status::Following {
                holder: None,
                expiry: None,
            },
            since: now,
            jitter: (0.0, 0.0),
            retry_after: None,
            phase: Phase::Idle,
            hold_off: None,
            free_since: None,
            failures: Default::default(),
        }
    }

    fn holds(&self) -> bool {
        self.standing.hold_deadline().is_some()
    }

    /// Nobody holds it, as far as we know: released, missing, or its holder's lease has run out.
    fn free(&self, now: Instant) -> bool {
        match &self.standing {
            Status::Following { holder: None, .. } => true,
            Status::Following { expiry, .. } => expiry.is_none_or(|e| e <= now),
            Status::Leading { .. } | Status::Holding { .. } => false,
        }
    }
}

/// The driver's settings and parts.
pub(crate) struct Driver {
    /// The shard locks, then our member lease (last).
    pub(crate) shards: Vec<Shard>,
    pub(crate) by_name: HashMap<String, usize>,
    pub(crate) identity: String,
    pub(crate) timing: Timing,
    pub(crate) balance: bool,
    pub(crate) hashing: bool,
    pub(crate) drain_timeout: Duration,
    pub(crate) member_prefix: String,
    pub(crate) members: Members,
    pub(crate) pool: Pool,
    pub(crate) done: Receiver<Done>,
    pub(crate) commands: Receiver<SetCommand>,
    pub(crate) watcher: Option<Watcher>,
    pub(crate) watch_silence: Duration,
    pub(crate) client: Arc<RestClient>,
    pub(crate) interrupter: Interrupter,
    /// The label-selected listing of member leases, for when the watch is not there.
    pub(crate) members_path: String,
    pub(crate) next_listing: Instant,
    pub(crate) listing: bool,
    pub(crate) rng: Rng,
    /// When we last gave a shard up for a member short of its floor.
    pub(crate) last_shed: Option<Instant>,
    /// Where the renew slots of the retry period are counted from.
    pub(crate) epoch: Instant,
    /// When each lock steps next.
    pub(crate) schedule: Schedule,
    /// The locks given up whose work is draining.
    pub(crate) draining: Vec<usize>,
    /// Something balance depends on changed (a lock changed hands, a member came or went): balance again
    /// at once rather than at `next_balance`.
    pub(crate) rebalance: bool,
    /// Balance is looked at again by then anyway, for what changes with time alone (expiries, hold-offs).
    pub(crate) next_balance: Instant,
}

impl Driver {
    fn shard_count(&self) -> usize {
        self.shards.len() - 1
    }

    fn is_member_lease(&self, i: usize) -> bool {
        i == self.shard_count()
    }

    /// The thread's body.
    pub(crate) fn run(mut self) {
        loop {
            let now = Instant::now();
            // Balance looks at every lock: done when something changed, not on every reply.
            if self.rebalance || now >= self.next_balance {
                self.rebalance = false;
                self.next_balance = later(now, self.timing.retry_period / 4);
                self.keep_balance(now);
            }
            self.finish_drains(now);
            self.start_due_steps(now);
            self.list_members_when_due(now);
            let until = self.next_wake(now);
            if let Some((release, member)) = self.wait(until) {
                self.stop(release, member);
                break;
            }
        }
        for s in &self.shards {
            s.state.close();
        }
    }

    /// Our share, and what it asks: give shards up while over it, campaign only while under it.
    fn keep_balance(&mut self, now: Instant) {
        let n = self.shard_count();
        let live = self.members.live(&self.identity, now);
        let cap = if self.balance {
            share(n, live.len())
        } else {
            n
        };
        let owned: Vec<usize> = (0..n)
            .filter(|&i| self.shards[i].holds() && self.shards[i].phase != Phase::Releasing)
            .filter(|&i| !matches!(self.shards[i].phase, Phase::Draining { .. }))
            .collect();
        let names: Vec<&str> = self.shards[..n].iter().map(|s| s.name.as_str()).collect();
        let shed_over_cap = (owned.len() > cap)
            .then(|| to_shed(&owned, &names, cap, &self.identity, &live, self.hashing));
        let shed_one = if shed_over_cap.is_none()
            && self.balance
            && self.short_member(&live, n, now)
            && owned.len() > n / live.len()
        {
            // Another member holds less than its floor while we hold more: give one shard up, and only
            // one every couple of retries, so the members short of it take it rather than everyone.
            let calm = self
                .last_shed
                .is_none_or(|t| now.saturating_duration_since(t) > self.timing.retry_period * 2);
            let busy = (0..n).any(|i| {
                matches!(
                    self.shards[i].phase,
                    Phase::Draining { .. } | Phase::Releasing
                )
            });
            let shed = to_shed(
                &owned,
                &names,
                owned.len() - 1,
                &self.identity,
                &live,
                self.hashing,
            );
            shed.first()
                .copied()
                .filter(|&i| calm && !busy && self.shards[i].phase == Phase::Idle)
        } else {
            None
        };
        if let Some(shed) = shed_over_cap {
            for i in shed {
                if self.shards[i].phase == Phase::Idle {
                    self.give_up(i, now);
                }
            }
        } else if let Some(i) = shed_one {
            self.last_shed = Some(now);
            self.give_up(i, now);
        }
        let room = owned.len() < cap;
        let grace = self.timing.lease_duration;
        for i in 0..n {
            let s = &mut self.shards[i];
            let held_off = s.hold_off.is_some_and(|h| h > now);
            if s.free(now) {
                s.free_since.get_or_insert(now);
            } else {
                s.free_since = None;
            }
            // With hashing, a free shard another live member prefers is left to it for a lease
            // duration; after that anyone with room takes it, so none stays unowned.
            let for_another = self.hashing
                && preferred(&s.name, &live).is_some_and(|p| p != self.identity)
                && s.free_since
                    .is_some_and(|t| now.saturating_duration_since(t) < grace);
            s.election
                .set_campaigning(room && !held_off && !for_another);
        }
    }

    /// Whether a live member other than us holds fewer shards than its floor, `shards / members`, as our
    /// observations of the shard leases show.
    fn short_member(&self, live: &[String], n: usize, now: Instant) -> bool {
        let floor = n / live.len().max(1);
        let mut held: HashMap<&str, usize> = live.iter().map(|m| (m.as_str(), 0)).collect();
        for s in &self.shards[..n] {
            if let Status::Following {
                holder: Some(h),
                expiry,
            } = &s.standing
            {
                if expiry.is_some_and(|e| e > now) {
                    if let Some(c) = held.get_mut(h.as_str()) {
                        *c += 1;
                    }
                }
            }
        }
        held.iter().any(|(m, c)| *m != self.identity && *c < floor)
    }

    /// Give shard `i` up: its term ends now; the release waits for its work.
    fn give_up(&mut self, i: usize, now: Instant) {
        let drain = self.drain_timeout;
        let cooldown = self.timing.lease_duration;
        let s = &mut self.shards[i];
        let Some(deadline) = s.state.deadline_instant().filter(|_| s.state.is_leader()) else {
            return;
        };
        log::info!(
            "{} as {}: over our share: giving it up",
            s.name,
            self.identity
        );
        s.state.end_term(StopReason::SteppedDown);
        let _ = s.election.resign(StopReason::SteppedDown);
        s.standing = s.election.status();
        s.phase = Phase::Draining {
            until: deadline.min(later(now, drain)),
        };
        s.hold_off = Some(later(now, cooldown));
        self.draining.push(i);
        self.rebalance = true;
    }

    /// Release the shards given up whose work has ended; keep those whose drain ran out.
    fn finish_drains(&mut self, now: Instant) {
        let draining = std::mem::take(&mut self.draining);
        for i in draining {
            let Phase::Draining { until } = self.shards[i].phase else {
                continue;
            };
            let s = &mut self.shards[i];
            if s.state.drain.running() == 0 {
                s.phase = Phase::Releasing;
                let action = s.election.begin_release(now, Utc::now());
                self.act(i, action, now);
            } else if now >= until {
                log::warn!(
                    "{} as {}: leader work still running when its drain ran out: not releasing; it expires on its own",
                    s.name,
                    self.identity
                );
                s.phase = Phase::Idle;
                self.schedule.set(i, now);
                self.rebalance = true;
            } else {
                self.draining.push(i);
            }
        }
    }

    fn start_due_steps(&mut self, now: Instant) {
        while let Some(i) = self.schedule.pop_due(now) {
            let s = &self.shards[i];
            // A lock busy with a step, a drain or a release is scheduled again when it is done.
            if s.phase != Phase::Idle || s.lock.is_none() {
                continue;
            }
            let was_leading = s.standing.leader_deadline().is_some();
            let s = &mut self.shards[i];
            s.phase = Phase::Stepping {
                started: now,
                was_leading,
            };
            let action = s.election.begin(now, Utc::now());
            self.act(i, action, now);
        }
    }

    /// Act on what an election asks: a request for the pool, or the end of a step or a release.
    fn act(&mut self, i: usize, action: Action, now: Instant) {
        match action {
            Action::Send(request) => {
                let Some(lock) = self.shards[i].lock.take() else {
                    return;
                };
                let until = later(now, request.timeout());
                self.pool.submit(Job::Lock {
                    shard: i,
                    lock,
                    request,
                    until,
                });
            }
            Action::Stepped(outcome) => self.stepped(i, outcome, now),
            Action::Released(result) => {
                let s = &mut self.shards[i];
                match result {
                    Ok(true) => log::info!("{} as {}: released", s.name, self.identity),
                    Ok(false) => {}
                    Err(e) => log::warn!("{} as {}: releasing: {e}", s.name, self.identity),
                }
                s.phase = Phase::Idle;
                s.standing = s.election.status();
                self.schedule.set(i, now);
                self.rebalance = true;
            }
        }
    }

    fn stepped(&mut self, i: usize, outcome: crate::election::Outcome, now: Instant) {
        let s = &mut self.shards[i];
        let (started, was_leading) = match s.phase {
            Phase::Stepping {
                started,
                was_leading,
            } => (started, was_leading),
            _ => (now, false),
        };
        s.phase = Phase::Idle;
        let before = std::mem::replace(&mut s.standing, outcome.status.clone());
        let lapsed = outcome.lapsed();
        if !lapsed && !s.state.is_stopped() {
            let context = format!("{} as {}", s.name, self.identity);
            s.failures
                .note(&context, outcome.error.as_ref(), self.timing.retry_period);
            if server_answered(outcome.error.as_ref()) {
                s.state.note_answer(now);
            }
        }
        let applied = s
            .state
            .apply(&outcome, was_leading, started.elapsed(), None);
        if applied.lapsed {
            let _ = s.election.resign(StopReason::RenewDeadlineExceeded {
                last_error: "the renew succeeded only after the renew deadline had passed".into(),
            });
            s.standing = s.election.status();
        }
        if changed_hands(&before, &s.standing) {
            self.rebalance = true;
        }
        let s = &mut self.shards[i];
        s.retry_after = outcome
            .error
            .as_ref()
            .and_then(Error::api)
            .and_then(|a| a.retry_after);
        s.since = now;
        s.jitter = (self.rng.next_f64(), self.rng.next_f64());
        if lapsed || applied.lapsed {
            self.schedule.set(i, now);
        } else {
            self.pace(i, now);
        }
    }

    /// When shard `i` should step next: as a single elector paces itself.
    fn pace(&mut self, i: usize, now: Instant) {
        let stale_at = self
            .watcher
            .as_ref()
            .filter(|w| w.healthy())
            .and_then(Watcher::last_activity)
            .map(|t| later(t, self.watch_silence));
        let count = self.shards.len();
        let s = &mut self.shards[i];
        let situation = Situation::of(&s.standing, s.since, s.retry_after, stale_at, now);
        let next = next_attempt(&self.timing, s.since, situation, s.jitter.0, s.jitter.1);
        let period = self.timing.retry_period;
        // A renew a full period on: pulled into this lock's slot, so the set's renews spread out.
        let next = if situation.deadline.is_some() && next == later(s.since, period) {
            slots::slotted(next, self.epoch, period, slots::offset(i, count, period))
        } else {
            next
        };
        self.schedule.set(i, next);
    }

    /// Without a watch (or while it is down), list the member leases every retry period.
    fn list_members_when_due(&mut self, now: Instant) {
        let watching = self.watcher.as_ref().is_some_and(Watcher::healthy);
        if self.listing || now < self.next_listing {
            return;
        }
        let every = if watching {
            // A safety net: the watch may have missed a lease that vanished.
            self.timing.lease_duration
        } else {
            self.timing.retry_period
        };
        self.next_listing = later(now, every);
        self.listing = true;
        self.pool.submit(Job::List {
            client: self.client.clone(),
            path: self.members_path.clone(),
            timeout: self.timing.request_timeout_cap(),
        });
    }

    fn next_wake(&mut self, now: Instant) -> Instant {
        let mut until = later(now, self.timing.retry_period);
        if let Some(at) = self.schedule.earliest() {
            until = until.min(at);
        }
        // Draining locks are checked every few milliseconds, until their drain's end at the latest.
        for &i in &self.draining {
            if let Phase::Draining { until: d } = self.shards[i].phase {
                until = until.min(d.min(later(now, Duration::from_millis(5))));
            }
        }
        until.min(self.next_listing).min(self.next_balance).max(now)
    }

    /// Wait for a reply, a watched change, a command or `until`. `Some(what to release)` to stop.
    fn wait(&mut self, until: Instant) -> Option<(Vec<bool>, bool)> {
        let timeout = until.saturating_duration_since(Instant::now());
        let never = crossbeam_channel::never();
        let wake = self.watcher.as_ref().map_or(&never, |w| w.wake());
        crossbeam_channel::select! {
            recv(self.done) -> done => {
                if let Ok(done) = done {
                    self.take_in(done);
                }
                // Take in whatever else is done without waiting.
                while let Ok(done) = self.done.try_recv() {
                    self.take_in(done);
                }
            }
            recv(wake) -> _ => self.take_watched(),
            recv(self.commands) -> c => match c {
                Ok(SetCommand::Stop { release, member }) => return Some((release, member)),
                Err(_) => return Some((vec![true; self.shards.len()], true)),
            },
            default(timeout) => {}
        }
        None
    }

    fn take_in(&mut self, done: Done) {
        let now = Instant::now();
        match done {
            Done::Lock { shard, lock, reply } => {
                let s = &mut self.shards[shard];
                s.lock = Some(lock);
                let action = s.election.feed(reply, now, Utc::now());
                self.act(shard, action, now);
            }
            Done::Listed(Ok(items)) => {
                self.listing = false;
                let mut names = Vec::new();
                for (name, v) in items {
                    if name.starts_with(&self.member_prefix) && !self.by_name.contains_key(&name) {
                        self.members.observe(&name, Some(v.record), now);
                        names.push(name);
                    }
                }
                self.members.keep_only(&names);
                self.rebalance = true;
            }
            Done::Listed(Err(e)) => {
                self.listing = false;
                log::debug!("{}: listing the set's members: {e}", self.identity);
            }
        }
    }

    fn take_watched(&mut self) {
        let Some(watcher) = self.watcher.as_ref() else {
            return;
        };
        let now = Instant::now();
        let mut changes = Vec::new();
        while let Some(change) = watcher.take_named() {
            changes.push(change);
        }
        for (name, change) in changes {
            match self.by_name.get(&name).copied() {
                Some(i) => {
                    let s = &mut self.shards[i];
                    if s.phase != Phase::Idle {
                        continue;
                    }
                    let reaction = s.election.observe_watched(change, now);
                    if let Some(status) = reaction.status {
                        if changed_hands(&s.standing, &status) {
                            self.rebalance = true;
                        }
                        s.standing = status;
                    }
                    for event in reaction.events {
                        s.state.publish(event);
                    }
                    if reaction.attempt_now {
                        self.schedule.set(i, now);
                    } else {
                        self.pace(i, now);
                    }
                }
                None if name.starts_with(&self.member_prefix) => {
                    let record = match change {
                        crate::election::Watched::Changed(v) => Some(v.record),
                        crate::election::Watched::Deleted => None,
                    };
                    self.members.observe(&name, record, now);
                    self.rebalance = true;
                }
                None => {}
            }
        }
    }

    /// The handle has ended every term and waited for the work: release what it marked, our member
    /// lease too, through the pool, and wait for the releases to end (at most one request timeout).
    fn stop(&mut self, release: Vec<bool>, member: bool) {
        self.watcher = None;
        let give_up = later(Instant::now(), self.timing.request_timeout_cap() * 2);
        // The handle interrupted the requests in flight: take their (failed) answers first.
        while self.shards.iter().any(|s| s.lock.is_none()) {
            let left = give_up.saturating_duration_since(Instant::now());
            match self.done.recv_timeout(left) {
                Ok(done) => self.take_in(done),
                Err(_) => break,
            }
        }
        self.interrupter.resume();
        let now = Instant::now();
        let mut pending = 0usize;
        for i in 0..self.shards.len() {
            let wanted = if self.is_member_lease(i) {
                member
            } else {
                release.get(i).copied().unwrap_or(false)
            };
            let s = &mut self.shards[i];
            let _ = s.election.resign(StopReason::Stopped);
            if !wanted || s.lock.is_none() {
                continue;
            }
            s.phase = Phase::Releasing;
            let action = s.election.begin_release(now, Utc::now());
            self.act(i, action, now);
            if self.shards[i].phase == Phase::Releasing {
                pending += 1;
            }
        }
        let give_up = later(now, self.timing.request_timeout_cap() * 2);
        while pending > 0 {
            let left = give_up.saturating_duration_since(Instant::now());
            match self.done.recv_timeout(left) {
                Ok(done) => {
                    let shard = match &done {
                        Done::Lock { shard, .. } => Some(*shard),
                        Done::Listed(_) => None,
                    };
                    self.take_in(done);
                    if let Some(i) = shard {
                        if self.shards[i].phase == Phase::Idle {
                            pending -= 1;
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
    }
}
