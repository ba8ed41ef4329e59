//! The set's state machine: every lock's election (the same core a single elector runs), paced as a
//! single elector paces itself, and the balance kept: a member over its share gives locks up (drained,
//! then released), a member under it campaigns for free and expired ones, and none while at its share.
//!
//! It does no I/O and reads no clock: the driver thread (or the simulator) hands it the time, the
//! replies, the watched changes and the listings of member leases, and carries out what it asks
//! ([`Out`]): a request for one lock, or a listing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::balance::{share, spread, targets, to_shed};
use super::members::Members;
use super::schedule::Schedule;
use super::slots;
use super::{SetEvents, ShardEvent};
use crate::election::{
    Action, Election, ElectionConfig, Outcome, Reply, Request, Status, Timing, Watched, later,
};
use crate::error::{Error, Result};
use crate::events::{EventHub, StopReason};
use crate::random::Rng;
use crate::record::VersionedRecord;
use crate::runner::pacing::{Situation, next_attempt};
use crate::runner::{Owner, State, server_answered};

/// What the machine asks of its driver.
#[derive(Debug)]
pub(crate) enum Out {
    /// Make one request of lock `shard`'s election, finished by `until`; answer with
    /// [`SetMachine::answered`].
    Send {
        shard: usize,
        request: Request,
        until: Instant,
    },
    /// List the member leases; answer with [`SetMachine::listed`].
    ListMembers,
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

/// Whether nobody holds a lock we see as `status`.
fn is_free(status: &Status, now: Instant) -> bool {
    match status {
        Status::Following { holder: None, .. } => true,
        Status::Following { expiry, .. } => expiry.is_none_or(|e| e <= now),
        Status::Leading { .. } | Status::Holding { .. } => false,
    }
}

/// One lock of the set.
pub(crate) struct Shard {
    pub(crate) name: Arc<str>,
    election: Election<Error>,
    pub(crate) state: Arc<State>,
    /// A request of it is out.
    in_flight: bool,
    /// We campaign for it (not holding it yet).
    candidate: bool,
    /// A hash of the last other holder we saw, and when we saw it hold the lock.
    last_holder: (u64, Option<Instant>),
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
    fn holds(&self) -> bool {
        self.standing.hold_deadline().is_some()
    }

    /// What we now see of the lock; returns what we saw before.
    fn note_standing(&mut self, status: Status, now: Instant) -> Status {
        if let Status::Following {
            holder: Some(h), ..
        } = &status
        {
            self.last_holder = (spread("", h), Some(now));
        }
        std::mem::replace(&mut self.standing, status)
    }

    /// Whether `member` held it until a moment ago (within `lately`): it gave it up, or is gone, so it
    /// is not waited for, nor handed it back.
    fn left_lately_by(&self, member: &str, now: Instant, lately: Duration) -> bool {
        let (holder, at) = self.last_holder;
        holder == spread("", member)
            && at.is_some_and(|t| now.saturating_duration_since(t) < lately)
    }

    /// Nobody holds it, as far as we know: released, missing, or its holder's lease has run out.
    fn free(&self, now: Instant) -> bool {
        is_free(&self.standing, now)
    }
}

/// How many shards a member may campaign for: any, up to its share; and, with hashing, as many more free
/// ones meant for it as it holds shards meant for others. `short`: below its floor.
#[derive(Debug, Clone, Copy)]
struct Room {
    any: usize,
    home: usize,
    short: bool,
}

/// What a set is made of: its locks, who campaigns, and how.
pub(crate) struct SetSettings {
    pub(crate) identity: String,
    /// The shard locks' names (shared with their locks and the handle).
    pub(crate) locks: Vec<Arc<str>>,
    /// Our member lease's name, and the prefix every member lease's name has.
    pub(crate) member: String,
    pub(crate) member_prefix: String,
    pub(crate) namespace: String,
    pub(crate) timing: Timing,
    pub(crate) balance: bool,
    pub(crate) hashing: bool,
    pub(crate) drain_timeout: Duration,
    /// How long a healthy watch may say nothing before a follower reads for itself.
    pub(crate) watch_silence: Duration,
    /// The API server's URL, for the status's messages.
    pub(crate) server: Option<String>,
    pub(crate) events: Arc<SetEvents>,
}

/// Every lock's election and the balance between members.
pub(crate) struct SetMachine {
    /// The shard locks, then our member lease (last).
    shards: Vec<Shard>,
    by_name: HashMap<Arc<str>, usize>,
    identity: String,
    timing: Timing,
    balance: bool,
    hashing: bool,
    drain_timeout: Duration,
    member_prefix: String,
    members: Members,
    watch_silence: Duration,
    /// Whether the watch is up, and when it last said anything.
    watch: (bool, Option<Instant>),
    next_listing: Instant,
    listing: bool,
    rng: Rng,
    /// When we last gave a shard up for a member short of its floor.
    last_shed: Option<Instant>,
    /// Where the renew slots of the retry period are counted from.
    epoch: Instant,
    /// When each lock steps next.
    schedule: Schedule,
    /// The locks given up whose work is draining.
    draining: Vec<usize>,
    /// Something balance depends on changed (a lock changed hands, a member came or went): balance again
    /// at once rather than at `next_balance`.
    rebalance: bool,
    /// Balance is looked at again by then anyway, for what changes with time alone (expiries, hold-offs).
    next_balance: Instant,
    /// With hashing: the live members the targets were worked out for, and for each shard the one it is
    /// meant for (an index into them).
    meant_for: (Vec<String>, Vec<Option<usize>>),
    out: Vec<Out>,
    steps: u64,
}

impl SetMachine {
    /// Every lock's election, none begun. `seed` makes everything random (jitter, incarnations) follow
    /// from it; `None` draws it.
    pub(crate) fn new(s: SetSettings, now: Instant, seed: Option<u64>) -> Result<SetMachine> {
        let mut rng = seed.map_or_else(Rng::new, Rng::seeded);
        let count = s.locks.len() + 1;
        let mut shards = Vec::with_capacity(count);
        let mut by_name = HashMap::with_capacity(count);
        // One copy of what every lock shares, and of each lock's name.
        let identity: Arc<str> = s.identity.as_str().into();
        let server: Option<Arc<str>> = s.server.as_deref().map(Into::into);
        let member: Arc<str> = s.member.as_str().into();
        for (i, name) in s.locks.iter().chain(std::iter::once(&member)).enumerate() {
            let context = format!("leases {}/{name} as {}", s.namespace, s.identity);
            let mut config = ElectionConfig::new(&s.identity, context.clone(), s.timing);
            if seed.is_some() {
                config.incarnation = format!("{:016x}", rng.next_u64());
            }
            let election = Election::new(config)?;
            let hub = if i == s.locks.len() {
                EventHub::default()
            } else {
                let (set_events, lock) = (s.events.clone(), name.clone());
                EventHub::with_tap(move |e| {
                    set_events.publish(ShardEvent {
                        shard: i,
                        lock: lock.to_string(),
                        event: e.clone(),
                    })
                })
            };
            let owner = Owner {
                identity: identity.clone(),
                context,
                name: name.clone(),
                server: server.clone(),
            };
            let state = Arc::new(State::new(s.timing, owner, Arc::new(hub), None));
            by_name.insert(name.clone(), i);
            shards.push(Shard {
                name: name.clone(),
                election,
                state,
                in_flight: false,
                candidate: false,
                last_holder: (0, None),
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
            });
        }
        Ok(SetMachine {
            schedule: Schedule::new(count, now),
            shards,
            by_name,
            identity: s.identity,
            timing: s.timing,
            balance: s.balance,
            hashing: s.hashing,
            drain_timeout: s.drain_timeout,
            member_prefix: s.member_prefix,
            members: Members::default(),
            watch_silence: s.watch_silence,
            watch: (false, None),
            next_listing: now,
            listing: false,
            rng,
            last_shed: None,
            epoch: now,
            draining: Vec::new(),
            rebalance: true,
            next_balance: now,
            meant_for: (Vec::new(), Vec::new()),
            out: Vec::new(),
            steps: 0,
        })
    }

    /// Every lock's state (the shard locks, then our member lease's), for the handle.
    pub(crate) fn states(&self) -> Vec<Arc<State>> {
        self.shards.iter().map(|s| s.state.clone()).collect()
    }

    fn shard_count(&self) -> usize {
        self.shards.len() - 1
    }

    fn is_member_lease(&self, i: usize) -> bool {
        i == self.shard_count()
    }

    /// Steps finished so far, all locks together.
    #[cfg(feature = "testing")]
    pub(crate) fn steps(&self) -> u64 {
        self.steps
    }

    /// The longest a request may take.
    pub(crate) fn request_timeout(&self) -> Duration {
        self.timing.request_timeout_cap()
    }

    /// What the machine asks for, in order; the driver carries it out.
    pub(crate) fn take_out(&mut self) -> Vec<Out> {
        std::mem::take(&mut self.out)
    }

    /// The watch is up (or not) and last said anything at `last_activity`.
    pub(crate) fn set_watch(&mut self, healthy: bool, last_activity: Option<Instant>) {
        self.watch = (healthy, last_activity);
    }

    /// Do what is due at `now`: balance (when something changed, or every quarter retry), release what
    /// finished draining, begin the steps that are due, list the members when due.
    pub(crate) fn tick(&mut self, now: Instant, wall: DateTime<Utc>) {
        if self.rebalance || now >= self.next_balance {
            self.rebalance = false;
            self.next_balance = later(now, self.timing.retry_period / 4);
            self.keep_balance(now);
        }
        self.finish_drains(now, wall);
        self.start_due_steps(now, wall);
        self.list_members_when_due(now);
    }

    /// When [`tick`](Self::tick) has something to do next, at the latest.
    pub(crate) fn next_wake(&mut self, now: Instant) -> Instant {
        if self.rebalance {
            return now;
        }
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
        // A listing under way is waited for, not asked for again: its answer wakes us.
        if !self.listing {
            until = until.min(self.next_listing);
        }
        until.min(self.next_balance).max(now)
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
        // With hashing, the member each shard is meant for (the same in every member that sees the same
        // live members); it is worked out again only when they change.
        if self.hashing && self.meant_for.0 != live {
            let names: Vec<&str> = self.shards[..n].iter().map(|s| &*s.name).collect();
            self.meant_for = (live.clone(), targets(&names, &live));
        }
        let me = live.iter().position(|m| *m == self.identity);
        let (held, foreign) = self.holdings(&live, n, &owned, now);
        // A member takes a shard meant for it if it has room, or holds shards meant for others (it then
        // gives one of those up): a shard meant for a member waits for it only then.
        let waits_for: Vec<bool> = (0..live.len())
            .map(|m| Some(m) != me && (held[m] < cap || foreign[m] > 0))
            .collect();
        let floor = n / live.len().max(1);
        let meant = &self.meant_for.1;
        let mine = |i: usize| !self.hashing || meant.get(i).copied().flatten() == me;
        let shed_over_cap = (owned.len() > cap).then(|| to_shed(&owned, cap, mine));
        // Beyond the share: one shard at a time, every couple of retries at most, and none while one
        // is on its way out, so the members it is for take it rather than everyone.
        let calm = self
            .last_shed
            .is_none_or(|t| now.saturating_duration_since(t) > self.timing.retry_period * 2);
        let busy = (0..n).any(|i| {
            matches!(
                self.shards[i].phase,
                Phase::Draining { .. } | Phase::Releasing
            )
        });
        let idle = |i: &usize| self.shards[*i].phase == Phase::Idle;
        let shed_one = if shed_over_cap.is_some() || !self.balance || !calm || busy {
            None
        } else if held
            .iter()
            .enumerate()
            .any(|(m, c)| Some(m) != me && *c < floor)
            && owned.len() > floor
            && !(0..n).any(|i| self.shards[i].free(now))
        {
            // Another member holds less than its floor while we hold more, and no shard is free for it
            // to take: give one up. (Our view of the others lags: with a shard free, the one short
            // takes that, and a member that just won the free shard does not hand it back.)
            to_shed(&owned, owned.len() - 1, mine)
                .first()
                .copied()
                .filter(idle)
        } else if self.hashing && owned.len() > floor {
            // Above our floor, a shard meant for another member that will take it goes home, so the set
            // settles on the shards' preferred members (and a member that comes back gets its own
            // shards back). At the floor we keep it: handing it over would leave us short.
            owned.iter().rev().copied().filter(idle).find(|&i| {
                meant.get(i).copied().flatten().is_some_and(|t| {
                    waits_for[t]
                        && !self.shards[i].left_lately_by(&live[t], now, self.timing.lease_duration)
                })
            })
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
        let short = self.balance && owned.len() < floor;
        let room = Room {
            any: cap.saturating_sub(owned.len()),
            home: me.map_or(0, |m| foreign[m]),
            short,
        };
        self.choose_candidates(n, room, (me, &waits_for), now);
    }

    /// Campaign for as many shards as we have room for, and no more: a member with room for one that
    /// campaigned for every free shard could win them all at once, be over its share at once, and give
    /// them back (churn; and, with everyone doing it, shards every member is holding off from). Free shards
    /// come first, those meant for us first among them (with hashing), then those we already campaign
    /// for (an attempt may be under way); then held ones, the soonest to expire first (their holder may
    /// be gone); ties are broken by a hash of shard and member, so members with room go for different
    /// shards.
    ///
    /// A member short of its floor (`shards / members`) waits for nothing: it takes any free shard,
    /// held off or meant for another, so the members over it that give a shard up for it see it taken.
    ///
    /// With hashing, a member that holds shards meant for others may also campaign for as many free
    /// shards meant for it (beyond its room): once it has one, it is over its share and gives one of
    /// the others' up.
    fn choose_candidates(
        &mut self,
        n: usize,
        room: Room,
        (me, waits_for): (Option<usize>, &[bool]),
        now: Instant,
    ) {
        let short = room.short;
        let grace = self.timing.lease_duration;
        let mut open: Vec<(bool, bool, bool, Option<Instant>, u64, usize)> = Vec::new();
        for i in 0..n {
            let s = &mut self.shards[i];
            if s.free(now) {
                s.free_since.get_or_insert(now);
            } else {
                s.free_since = None;
            }
            if s.holds() || matches!(s.phase, Phase::Draining { .. } | Phase::Releasing) {
                continue;
            }
            let held_off = s.hold_off.is_some_and(|h| h > now);
            // With hashing, a free shard meant for another live member is left to it for a lease
            // duration; after that anyone with room takes it, so none stays unowned.
            let meant = self.meant_for.1.get(i).copied().flatten();
            // (Not for a member that just gave it up: it holds off from it.)
            let for_another = self.hashing
                && meant.is_some_and(|m| {
                    waits_for.get(m).copied().unwrap_or(false)
                        && !self
                            .meant_for
                            .0
                            .get(m)
                            .is_some_and(|id| s.left_lately_by(id, now, grace))
                })
                && s.free_since
                    .is_some_and(|t| now.saturating_duration_since(t) < grace);
            if (held_off || for_another) && !short {
                continue;
            }
            let expiry = match &s.standing {
                Status::Following { expiry, .. } => *expiry,
                _ => None,
            };
            open.push((
                !s.free(now),
                !(self.hashing && meant.is_some() && meant == me),
                !s.candidate,
                expiry,
                spread(&s.name, &self.identity),
                i,
            ));
        }
        open.sort_unstable();
        let mut chosen = vec![false; n];
        let (mut any, mut home) = (room.any, room.home);
        for c in &open {
            let ours_and_free = !c.0 && !c.1;
            if any > 0 {
                any -= 1;
            } else if home > 0 && ours_and_free {
                home -= 1;
            } else {
                continue;
            }
            chosen[c.5] = true;
        }
        for (i, s) in self.shards[..n].iter_mut().enumerate() {
            let campaign = s.holds() || chosen[i];
            if campaign && !s.candidate && !s.holds() && s.phase == Phase::Idle && s.free(now) {
                // Newly chosen and free: try now rather than at its next read.
                self.schedule.set(i, now);
            }
            s.candidate = chosen[i];
            s.election.set_campaigning(campaign);
        }
    }

    /// How many shards each live member holds (by index into `live`), as our observations of the shard
    /// leases show (ours is `ours`), and with hashing how many of those are meant for another member.
    fn holdings(
        &self,
        live: &[String],
        n: usize,
        ours: &[usize],
        now: Instant,
    ) -> (Vec<usize>, Vec<usize>) {
        let mut held = vec![0; live.len()];
        let mut foreign = vec![0; live.len()];
        let meant = |i: usize| self.meant_for.1.get(i).copied().flatten();
        for (i, s) in self.shards[..n].iter().enumerate() {
            if let Status::Following {
                holder: Some(h),
                expiry,
            } = &s.standing
            {
                if expiry.is_some_and(|e| e > now) {
                    if let Ok(m) = live.binary_search(h) {
                        held[m] += 1;
                        foreign[m] += usize::from(self.hashing && meant(i) != Some(m));
                    }
                }
            }
        }
        if let Ok(m) = live.binary_search(&self.identity) {
            held[m] = ours.len();
            foreign[m] = ours
                .iter()
                .filter(|&&i| self.hashing && meant(i) != Some(m))
                .count();
        }
        (held, foreign)
    }

    /// Give shard `i` up: its term ends now; the release waits for its work.
    fn give_up(&mut self, i: usize, now: Instant) {
        let drain = self.drain_timeout;
        let cooldown = self.timing.lease_duration;
        let s = &mut self.shards[i];
        let Some(deadline) = s.state.deadline_instant().filter(|d| *d > now) else {
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
    fn finish_drains(&mut self, now: Instant, wall: DateTime<Utc>) {
        let draining = std::mem::take(&mut self.draining);
        for i in draining {
            let Phase::Draining { until } = self.shards[i].phase else {
                continue;
            };
            let s = &mut self.shards[i];
            if s.state.drain.running() == 0 {
                s.phase = Phase::Releasing;
                let action = s.election.begin_release(now, wall);
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

    fn start_due_steps(&mut self, now: Instant, wall: DateTime<Utc>) {
        while let Some(i) = self.schedule.pop_due(now) {
            let s = &mut self.shards[i];
            // A lock busy with a step, a drain or a release is scheduled again when it is done.
            if s.phase != Phase::Idle || s.in_flight {
                continue;
            }
            s.phase = Phase::Stepping {
                started: now,
                was_leading: s.standing.leader_deadline().is_some(),
            };
            let action = s.election.begin(now, wall);
            self.act(i, action, now);
        }
    }

    /// Act on what an election asks: a request, or the end of a step or a release.
    fn act(&mut self, i: usize, action: Action<Error>, now: Instant) {
        match action {
            Action::Send(request) => {
                let until = later(now, request.timeout());
                self.shards[i].in_flight = true;
                self.out.push(Out::Send {
                    shard: i,
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

    /// The answer to lock `shard`'s request.
    pub(crate) fn answered(
        &mut self,
        shard: usize,
        reply: Reply<Error>,
        now: Instant,
        wall: DateTime<Utc>,
    ) {
        let s = &mut self.shards[shard];
        s.in_flight = false;
        let action = s.election.feed(reply, now, wall);
        self.act(shard, action, now);
    }

    fn stepped(&mut self, i: usize, outcome: Outcome<Error>, now: Instant) {
        self.steps += 1;
        let s = &mut self.shards[i];
        let (started, was_leading) = match s.phase {
            Phase::Stepping {
                started,
                was_leading,
            } => (started, was_leading),
            _ => (now, false),
        };
        s.phase = Phase::Idle;
        let before = s.note_standing(outcome.status.clone(), now);
        let lapsed = outcome.lapsed();
        if !lapsed && !s.state.is_stopped() {
            let (name, identity) = (&s.name, &self.identity);
            s.failures.note(
                || format!("{name} as {identity}"),
                outcome.error.as_ref(),
                self.timing.retry_period,
                now,
            );
            if server_answered(outcome.error.as_ref()) {
                s.state.note_answer(now);
            }
        }
        let latency = now.saturating_duration_since(started);
        let applied = s.state.apply(&outcome, was_leading, latency, None);
        if applied.lapsed {
            let _ = s.election.resign(StopReason::RenewDeadlineExceeded {
                last_error: "the renew succeeded only after the renew deadline had passed".into(),
            });
            s.standing = s.election.status();
        }
        // Balance looks again when a lock changed hands, or turned free for us to choose.
        if changed_hands(&before, &s.standing)
            || (!s.candidate && !is_free(&before, now) && is_free(&s.standing, now))
        {
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
        let stale_at = match self.watch {
            (true, Some(t)) => Some(later(t, self.watch_silence)),
            _ => None,
        };
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

    /// Without a watch (or while it is down), list the member leases every retry period; with one, every
    /// lease duration, as a safety net for a lease that vanished unseen.
    fn list_members_when_due(&mut self, now: Instant) {
        if self.listing || now < self.next_listing {
            return;
        }
        let every = if self.watch.0 {
            self.timing.lease_duration
        } else {
            self.timing.retry_period
        };
        self.next_listing = later(now, every);
        self.listing = true;
        self.out.push(Out::ListMembers);
    }

    /// The listing of member leases (by name).
    pub(crate) fn listed(&mut self, result: Result<Vec<(String, VersionedRecord)>>, now: Instant) {
        self.listing = false;
        match result {
            Ok(items) => {
                let mut names = Vec::new();
                for (name, v) in items {
                    if name.starts_with(&self.member_prefix)
                        && !self.by_name.contains_key(name.as_str())
                    {
                        self.members.observe(&name, Some(v.record), now);
                        names.push(name);
                    }
                }
                self.members.keep_only(&names);
                self.rebalance = true;
            }
            Err(e) => log::debug!("{}: listing the set's members: {e}", self.identity),
        }
    }

    /// What the watch saw of object `name`: one of our locks, another member's lease, or neither.
    pub(crate) fn watched(&mut self, name: &str, change: Watched, now: Instant) {
        match self.by_name.get(name).copied() {
            Some(i) => {
                let s = &mut self.shards[i];
                if s.phase != Phase::Idle {
                    return;
                }
                let reaction = s.election.observe_watched(change, now);
                if let Some(status) = reaction.status {
                    if changed_hands(&s.standing, &status) {
                        self.rebalance = true;
                    }
                    s.note_standing(status, now);
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
                    Watched::Changed(v) => Some(v.record),
                    Watched::Deleted => None,
                };
                self.members.observe(name, record, now);
                self.rebalance = true;
            }
            None => {}
        }
    }

    /// The set stops: every election ends, and the locks marked in `release` (and our member lease with
    /// `member`) are released, except those with a request still out. Returns how many releases are
    /// under way: [`releasing`](Self::releasing) tells when each is done.
    pub(crate) fn stop(
        &mut self,
        release: &[bool],
        member: bool,
        now: Instant,
        wall: DateTime<Utc>,
    ) -> usize {
        self.watch = (false, None);
        let mut pending = 0;
        for i in 0..self.shards.len() {
            let wanted = if self.is_member_lease(i) {
                member
            } else {
                release.get(i).copied().unwrap_or(false)
            };
            let s = &mut self.shards[i];
            let _ = s.election.resign(StopReason::Stopped);
            if !wanted || s.in_flight {
                continue;
            }
            s.phase = Phase::Releasing;
            let action = s.election.begin_release(now, wall);
            self.act(i, action, now);
            if self.shards[i].phase == Phase::Releasing {
                pending += 1;
            }
        }
        pending
    }

    /// Whether lock `i` is being released.
    pub(crate) fn releasing(&self, i: usize) -> bool {
        self.shards[i].phase == Phase::Releasing
    }

    /// Every lock's state ends: its event streams close.
    pub(crate) fn close(&self) {
        for s in &self.shards {
            s.state.close();
        }
    }
}
