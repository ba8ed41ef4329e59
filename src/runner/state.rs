//! What the renew thread shares with the handle and other threads: leadership as one atomic deadline
//! (read by `is_leader()` without locks), the term it belongs to, the holder, the counters and the event
//! fan-out.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::drain::Drain;
use super::event_recorder::EventRecorder;
use crate::election::{Outcome, Timing};
use crate::error::{Error, Result};
use crate::events::{EventHub, LeaderEvent, StopReason};
use crate::lock::ObjectReference;
use crate::sync::{lock, wait};

const NOT_LEADING: u64 = 0;
/// Terminal: set by `stop()`, never left.
const STOPPED: u64 = 1;

/// A snapshot of an elector's counters (see [`LeaderStatus::stats`](crate::runner::LeaderStatus::stats)). Cheap to
/// take; the renew thread updates it once per step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ElectorStats {
    /// Steps taken.
    pub attempts: u64,
    /// Steps taken while leading that renewed the lease.
    pub renews_ok: u64,
    /// Steps taken while leading that did not renew it.
    pub renews_failed: u64,
    /// Renews that needed the slow path (a GET after a failed PUT): client-go's
    /// `leader_election_slowpath_total`.
    pub slow_path_renews: u64,
    /// Times we started leading.
    pub acquisitions: u64,
    /// Changes of holder we observed (`NewLeader` events).
    pub leader_changes_seen: u64,
    /// How long the last step took.
    pub last_latency: Option<Duration>,
    /// The last error, if the last step failed.
    pub last_error: Option<String>,
    /// Whether we lead (client-go's `leader_election_master_status`).
    pub is_leader: bool,
}

/// The state of one running elector.
#[derive(Debug)]
pub(crate) struct State {
    base: Instant,
    /// Leadership deadline in nanoseconds since `base`; `NOT_LEADING` or `STOPPED` otherwise.
    deadline: AtomicU64,
    /// `StartedLeading` was sent and its `StoppedLeading` not yet.
    announced: AtomicBool,
    /// Held while announcing a start or a stop: the handle announces the stop itself (so a renew thread
    /// stuck in a request cannot hold it back), and the two must never cross.
    announcing: Mutex<()>,
    leader: Mutex<Option<String>>,
    pub(crate) events: Arc<EventHub>,
    pub(crate) timing: Timing,
    stats: Mutex<ElectorStats>,
    /// Posts Kubernetes Events, when enabled; dropped (its thread drains and ends) when the elector
    /// ends, however long statuses and terms outlive it.
    recorder: Mutex<Option<EventRecorder>>,
    pub(crate) identity: Arc<str>,
    /// The lock object, for Events (boxed: only electors that record Events fill it, and an elector set
    /// keeps a state per lock).
    lock_ref: Mutex<Option<Box<ObjectReference>>>,
    /// The lock and our identity, for log lines: `leases default/my-app as pod-a`.
    pub(crate) context: String,
    /// The lock's name: the `name` label of the metrics.
    pub(crate) name: Arc<str>,
    /// The number of the current (or last) term. A term's number is published before its deadline, so
    /// a reader who sees the deadline sees the number too.
    term_seq: AtomicU64,
    /// The current term, written under this lock; waiters for leadership changes sleep on `changed`.
    term: Mutex<TermSlot>,
    changed: Condvar,
    /// Leader work in flight: a handoff waits for it before it releases the lock.
    pub(crate) drain: Drain,
    /// When the API server last answered a request of ours (nanoseconds since `base`; 0: never): a
    /// step that got an answer, or the watch bringing anything.
    answered: AtomicU64,
    /// The API server, for messages (`None` for a lock the caller built).
    server: Option<Arc<str>>,
    /// The deadline the last term had when it was ended early (a step-down or a stop), in nanoseconds
    /// since `base`: until then its work may still be waited for before the lock is released.
    ended_deadline: AtomicU64,
}

/// What a step's outcome did to the shared state.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Applied {
    /// Leadership ended.
    pub(crate) lost: bool,
    /// It ended because a renew came back after the term's deadline had passed: the election still
    /// counts the term as renewed and must be told it is over.
    pub(crate) lapsed: bool,
}

/// The current (or last) term: its number and the lock's transition counter.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct TermSlot {
    pub(crate) seq: u64,
    pub(crate) transitions: i32,
}

/// Who the state belongs to.
/// (Shared where they can be: an elector set's locks have one identity and one server.)
pub(crate) struct Owner {
    pub(crate) identity: Arc<str>,
    pub(crate) context: String,
    pub(crate) name: Arc<str>,
    /// The API server's URL, when the elector built its lock from a config.
    pub(crate) server: Option<Arc<str>>,
}

impl State {
    pub(crate) fn new(
        timing: Timing,
        owner: Owner,
        events: Arc<EventHub>,
        recorder: Option<EventRecorder>,
    ) -> Self {
        State {
            base: Instant::now(),
            deadline: AtomicU64::new(NOT_LEADING),
            announced: AtomicBool::new(false),
            announcing: Mutex::new(()),
            leader: Mutex::new(None),
            events,
            timing,
            stats: Mutex::new(ElectorStats::default()),
            recorder: Mutex::new(recorder),
            identity: owner.identity,
            lock_ref: Mutex::new(None),
            context: owner.context,
            name: owner.name,
            term_seq: AtomicU64::new(0),
            term: Mutex::new(TermSlot::default()),
            changed: Condvar::new(),
            drain: Drain::default(),
            answered: AtomicU64::new(0),
            server: owner.server,
            ended_deadline: AtomicU64::new(NOT_LEADING),
        }
    }

    /// Nanoseconds since `base`, without 128-bit arithmetic: this is on the `is_leader()` path.
    #[inline]
    fn nanos(&self, t: Instant) -> u64 {
        let d = t.saturating_duration_since(self.base);
        d.as_secs()
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(d.subsec_nanos()))
    }

    #[inline]
    pub(crate) fn is_leader(&self) -> bool {
        let d = self.deadline.load(Ordering::Acquire);
        d > STOPPED && self.nanos(Instant::now()) < d
    }

    /// Leadership ends for good (stop, abandon, a panic): `is_leader()` is false from now on.
    /// Sequentially consistent with [`begin_work`](Self::begin_work): see there.
    pub(crate) fn stop(&self) {
        let was = self.deadline.swap(STOPPED, Ordering::SeqCst);
        self.note_ended(was);
        self.notify();
    }

    /// Register a unit of work of term `seq`, if the term still holds. The count goes up before the
    /// term is checked, and a term's end is stored before the drain reads the count (both sequentially
    /// consistent): so either the drain waits for this work, or this work sees its term over and does
    /// not begin.
    pub(crate) fn begin_work(&self, seq: u64) -> bool {
        self.drain.enter();
        let d = self.deadline.load(Ordering::SeqCst);
        let holds = d > STOPPED
            && self.nanos(Instant::now()) < d
            && self.term_seq.load(Ordering::SeqCst) == seq;
        if !holds {
            self.drain.leave();
        }
        holds
    }

    /// Wake every thread waiting for a change of leadership. Taking the lock first means a waiter is
    /// either still before its check (and will see the change) or already asleep (and is woken).
    fn notify(&self) {
        drop(lock(&self.term));
        self.changed.notify_all();
    }

    /// When the current deadline passes, while we lead.
    pub(crate) fn deadline_instant(&self) -> Option<Instant> {
        let d = self.deadline.load(Ordering::Acquire);
        (d > STOPPED).then(|| self.base + Duration::from_nanos(d))
    }

    /// Whether term `seq` is still ours: we lead, and no later term has begun. Two atomic loads and a
    /// clock read; exact at the instant `is_leader()` turns false.
    #[inline]
    pub(crate) fn holds_term(&self, seq: u64) -> bool {
        // The deadline first: a deadline from a later term implies its (later) number is visible.
        self.is_leader() && self.term_seq.load(Ordering::Acquire) == seq
    }

    /// The current term, if we lead.
    pub(crate) fn current_term(&self) -> Option<TermSlot> {
        let slot = *lock(&self.term);
        self.holds_term(slot.seq).then_some(slot)
    }

    /// Wait until we lead (`Some`), the elector stops or `timeout` passes (`None`; `None` timeout: no limit).
    pub(crate) fn wait_for_term(&self, timeout: Option<Duration>) -> Option<TermSlot> {
        let end = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut slot = lock(&self.term);
        loop {
            if self.holds_term(slot.seq) {
                return Some(*slot);
            }
            if self.is_stopped() || end.is_some_and(|e| e <= Instant::now()) {
                return None;
            }
            slot = self.sleep(slot, end);
        }
    }

    /// Wait until term `seq` ends (true) or `timeout` passes while it lasts (false). Wakes at the
    /// leadership deadline by itself, so a renew thread stuck on a hung server cannot delay it.
    pub(crate) fn wait_term_end(&self, seq: u64, timeout: Option<Duration>) -> bool {
        let end = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut guard = lock(&self.term);
        loop {
            if !self.holds_term(seq) {
                return true;
            }
            let Some(deadline) = self.deadline_instant() else {
                return true;
            };
            if end.is_some_and(|e| e <= Instant::now()) {
                return false;
            }
            guard = self.sleep(guard, Some(end.map_or(deadline, |e| e.min(deadline))));
        }
    }

    /// Sleep until a change of leadership is signalled or `until` passes (`None`: no limit).
    fn sleep<'a>(
        &self,
        guard: MutexGuard<'a, TermSlot>,
        until: Option<Instant>,
    ) -> MutexGuard<'a, TermSlot> {
        let timeout = until.map(|t| t.saturating_duration_since(Instant::now()));
        wait(&self.changed, guard, timeout)
    }

    /// Begin a term: its number first, then its deadline. False when stopped. The caller announces
    /// the term and then wakes the waiters.
    fn begin_term(&self, transitions: i32, deadline: Instant) -> bool {
        {
            let mut slot = lock(&self.term);
            slot.seq += 1;
            slot.transitions = transitions;
            self.term_seq.store(slot.seq, Ordering::Release);
        }
        self.set_deadline(deadline)
    }

    /// Whether `stop()` was called (or the thread panicked).
    pub(crate) fn is_stopped(&self) -> bool {
        self.deadline.load(Ordering::Acquire) == STOPPED
    }

    /// Publish a new deadline unless stopped. False when stopped.
    fn set_deadline(&self, deadline: Instant) -> bool {
        let new = self.nanos(deadline).max(STOPPED + 1);
        self.deadline
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                (cur != STOPPED).then_some(new)
            })
            .is_ok()
    }

    /// Move the deadline of the current term to `deadline`, unless the term is already over: stopped,
    /// or its deadline passed before the renew could be published (then `is_leader()` has turned false
    /// and must stay false for this term). False when the term is over.
    fn extend_deadline(&self, deadline: Instant) -> bool {
        let new = self.nanos(deadline).max(STOPPED + 1);
        let now = self.nanos(Instant::now());
        self.deadline
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                (cur > STOPPED && cur > now).then_some(new.max(cur))
            })
            .is_ok()
    }

    fn clear_deadline(&self) {
        if let Ok(was) = self
            .deadline
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |cur| {
                (cur != STOPPED).then_some(NOT_LEADING)
            })
        {
            self.note_ended(was);
        }
        self.notify();
    }

    fn note_ended(&self, deadline: u64) {
        if deadline > STOPPED {
            self.ended_deadline.store(deadline, Ordering::SeqCst);
        }
    }

    /// How long the work of the current term, or of the last one if it was ended early (by a step-down
    /// or by `stop()`), may be waited for before the lock is released: the term's deadline (`None`: no
    /// term was ever ours).
    pub(crate) fn drain_deadline(&self) -> Option<Instant> {
        self.deadline_instant().or_else(|| {
            let d = self.ended_deadline.load(Ordering::SeqCst);
            (d > STOPPED).then(|| self.base + Duration::from_nanos(d))
        })
    }

    /// End the current term now without stopping the elector (a step-down): `is_leader()` turns false,
    /// the term's tokens are cancelled, `StoppedLeading` is sent.
    pub(crate) fn end_term(&self, reason: StopReason) {
        self.clear_deadline();
        self.announce_stopped(reason);
    }

    /// The API server answered a request of ours at `at`.
    pub(crate) fn note_answer(&self, at: Instant) {
        let n = self.nanos(at).max(1);
        self.answered.fetch_max(n, Ordering::AcqRel);
    }

    /// The readiness check behind [`LeaderStatus::ready`](crate::runner::LeaderStatus::ready).
    pub(crate) fn ready(&self, max_silence: Duration) -> Result<()> {
        let server = self
            .server
            .as_deref()
            .map_or_else(String::new, |s| format!(" at {s}"));
        let last_error = lock(&self.stats)
            .last_error
            .clone()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        let answered = self.answered.load(Ordering::Acquire);
        if answered == 0 {
            return Err(Error::NotReady(format!(
                "{}: the API server{server} has not answered yet{last_error}",
                self.context
            )));
        }
        let at = self.base + Duration::from_nanos(answered);
        let silence = Instant::now().saturating_duration_since(at);
        if silence > max_silence {
            return Err(Error::NotReady(format!(
                "{}: the API server{server} has not answered for {silence:?} (more than {max_silence:?}){last_error}",
                self.context
            )));
        }
        Ok(())
    }

    /// The start of the last successful renew, while we lead (`check()` needs it).
    pub(crate) fn last_renew(&self) -> Option<Instant> {
        if !self.announced.load(Ordering::Acquire) {
            return None;
        }
        let d = self.deadline.load(Ordering::Acquire);
        (d > STOPPED).then(|| {
            let deadline = self.base + Duration::from_nanos(d);
            deadline
                .checked_sub(self.timing.renew_deadline)
                .unwrap_or(self.base)
        })
    }

    pub(crate) fn leader(&self) -> Option<String> {
        lock(&self.leader).clone()
    }

    pub(crate) fn stats(&self) -> ElectorStats {
        let mut st = lock(&self.stats).clone();
        st.is_leader = self.is_leader();
        st
    }

    /// Count one step and act on its outcome: publish its events in order, each after the leadership
    /// state it reports (so a subscriber who sees `StartedLeading` also sees `is_leader()` true), and
    /// move the deadline after a renew. A renew whose term ran out before it could be published ends
    /// that term instead (`Applied::lapsed`): the election must be told.
    pub(crate) fn apply(
        &self,
        outcome: &Outcome<Error>,
        was_leading: bool,
        latency: Duration,
        lock_ref: Option<ObjectReference>,
    ) -> Applied {
        {
            let mut st = lock(&self.stats);
            st.attempts += 1;
            st.last_latency = Some(latency);
            if was_leading {
                if outcome.renewed {
                    st.renews_ok += 1;
                } else {
                    st.renews_failed += 1;
                }
                if outcome.slow_path {
                    st.slow_path_renews += 1;
                }
            }
            st.last_error = outcome.error.as_ref().map(ToString::to_string);
        }
        let deadline = outcome.status.leader_deadline();
        let mut applied = Applied::default();
        let mut began = false;
        for event in &outcome.events {
            match event {
                LeaderEvent::StartedLeading { transitions } => {
                    if let Some(d) = deadline {
                        began = true;
                        if self.begin_term(*transitions, d) {
                            self.announce_started(*transitions, lock_ref.clone());
                            self.notify();
                        }
                    }
                }
                LeaderEvent::StoppedLeading { reason } => {
                    applied.lost = true;
                    self.clear_deadline();
                    self.announce_stopped(reason.clone());
                }
                other => self.publish(other.clone()),
            }
        }
        if let Some(d) = deadline.filter(|_| outcome.renewed && !began) {
            if !self.extend_deadline(d) && !self.is_stopped() {
                // The term's deadline passed between the renew's answer and now: is_leader() turned
                // false, and a term that ended stays ended.
                applied.lost = true;
                applied.lapsed = true;
                self.clear_deadline();
                self.announce_stopped(crate::events::StopReason::RenewDeadlineExceeded {
                    last_error: "the renew succeeded only after the renew deadline had passed"
                        .into(),
                });
            }
        }
        applied
    }

    /// The elector has ended and sent its last event: every event stream ends once read, and the Event
    /// recorder's thread finishes what it has queued and ends.
    pub(crate) fn close(&self) {
        self.events.close();
        lock(&self.recorder).take();
    }

    /// Publish events that are not about our leadership (holder changes seen on a watch).
    pub(crate) fn publish(&self, event: LeaderEvent) {
        if let LeaderEvent::NewLeader { identity } = &event {
            *lock(&self.leader) = identity.clone();
            lock(&self.stats).leader_changes_seen += 1;
            match identity {
                Some(holder) => log::info!("{}: the leader is now {holder}", self.context),
                None => log::info!("{}: the lock is free", self.context),
            }
        }
        self.events.publish(event);
    }

    /// The liveness check behind [`LeaderStatus::check`](crate::runner::LeaderStatus::check).
    pub(crate) fn check(&self, max_tolerable_expired: Duration) -> Result<()> {
        let Some(last) = self.last_renew() else {
            return Ok(());
        };
        let age = Instant::now().saturating_duration_since(last);
        let limit = self
            .timing
            .lease_duration
            .saturating_add(max_tolerable_expired);
        if age > limit {
            return Err(Error::Unhealthy(format!(
                "{}: leading, but the last successful renew was {age:?} ago (more than lease duration + {max_tolerable_expired:?} = {limit:?}): the renew thread is stuck",
                self.context
            )));
        }
        Ok(())
    }

    /// Send `StartedLeading` (and its Kubernetes Event), unless stopped meanwhile.
    fn announce_started(&self, transitions: i32, object: Option<ObjectReference>) {
        let _announcing = lock(&self.announcing);
        if self.is_stopped() {
            return;
        }
        self.announced.store(true, Ordering::Release);
        lock(&self.stats).acquisitions += 1;
        log::info!(
            "{}: started leading (lease transitions {transitions})",
            self.context
        );
        self.events
            .publish(LeaderEvent::StartedLeading { transitions });
        if let Some(r) = lock(&self.recorder).as_ref() {
            *lock(&self.lock_ref) = object.clone().map(Box::new);
            r.record(object, format!("{} became leader", self.identity));
        }
    }

    /// Send `StoppedLeading` (and its Kubernetes Event) if, and only if, `StartedLeading` is outstanding.
    pub(crate) fn announce_stopped(&self, reason: StopReason) {
        let _announcing = lock(&self.announcing);
        if self.announced.swap(false, Ordering::AcqRel) {
            log::info!("{}: stopped leading: {reason}", self.context);
            self.events.publish(LeaderEvent::StoppedLeading { reason });
            if let Some(r) = lock(&self.recorder).as_ref() {
                let object = lock(&self.lock_ref).as_deref().cloned();
                r.record(object, format!("{} stopped leading", self.identity));
            }
        }
    }
}
