//! What the renew thread shares with the handle and other threads: leadership as one atomic deadline
//! (read by `is_leader()` without locks), the holder, the counters and the event fan-out.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::election::{Outcome, Timing};
use crate::event_recorder::EventRecorder;
use crate::events::{EventHub, LeaderEvent, StopReason};
use crate::lock::ObjectReference;

const NOT_LEADING: u64 = 0;
/// Terminal: set by `stop()`, never left.
const STOPPED: u64 = 1;

/// A snapshot of an elector's counters (see [`LeaderHandle::stats`](crate::runner::LeaderHandle::stats)). Cheap to
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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every value here is consistent between statements: a panic elsewhere cannot leave it half-written.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The state of one running elector.
#[derive(Debug)]
pub(crate) struct State {
    base: Instant,
    /// Leadership deadline in nanoseconds since `base`; `NOT_LEADING` or `STOPPED` otherwise.
    deadline: AtomicU64,
    /// `StartedLeading` was sent and its `StoppedLeading` not yet.
    announced: AtomicBool,
    leader: Mutex<Option<String>>,
    pub(crate) events: EventHub,
    pub(crate) timing: Timing,
    stats: Mutex<ElectorStats>,
    /// Posts Kubernetes Events, when enabled.
    recorder: Option<EventRecorder>,
    pub(crate) identity: String,
    /// The lock object, for Events.
    lock_ref: Mutex<Option<ObjectReference>>,
}

impl State {
    pub(crate) fn new(timing: Timing, identity: String, recorder: Option<EventRecorder>) -> Self {
        State {
            base: Instant::now(),
            deadline: AtomicU64::new(NOT_LEADING),
            announced: AtomicBool::new(false),
            leader: Mutex::new(None),
            events: EventHub::default(),
            timing,
            stats: Mutex::new(ElectorStats::default()),
            recorder,
            identity,
            lock_ref: Mutex::new(None),
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
    pub(crate) fn stop(&self) {
        self.deadline.store(STOPPED, Ordering::Release);
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

    fn clear_deadline(&self) {
        let _ = self
            .deadline
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                (cur != STOPPED).then_some(NOT_LEADING)
            });
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
    /// move the deadline after a renew. Returns whether leadership was lost.
    pub(crate) fn apply(
        &self,
        outcome: &Outcome,
        was_leading: bool,
        latency: Duration,
        lock_ref: Option<ObjectReference>,
    ) -> bool {
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
        let mut lost = false;
        for event in &outcome.events {
            match event {
                LeaderEvent::StartedLeading { transitions } => {
                    if let Some(d) = deadline {
                        if self.set_deadline(d) {
                            self.announce_started(*transitions, lock_ref.clone());
                        }
                    }
                }
                LeaderEvent::StoppedLeading { reason } => {
                    lost = true;
                    self.clear_deadline();
                    self.announce_stopped(reason.clone());
                }
                other => self.publish(other.clone()),
            }
        }
        if let Some(d) = deadline.filter(|_| outcome.renewed) {
            self.set_deadline(d);
        }
        lost
    }

    /// Publish events that are not about our leadership (holder changes seen on a watch).
    pub(crate) fn publish(&self, event: LeaderEvent) {
        if let LeaderEvent::NewLeader { identity } = &event {
            *lock(&self.leader) = identity.clone();
            lock(&self.stats).leader_changes_seen += 1;
        }
        self.events.publish(event);
    }

    /// Send `StartedLeading` (and its Kubernetes Event).
    fn announce_started(&self, transitions: i32, object: Option<ObjectReference>) {
        self.announced.store(true, Ordering::Release);
        lock(&self.stats).acquisitions += 1;
        self.events
            .publish(LeaderEvent::StartedLeading { transitions });
        if let Some(r) = &self.recorder {
            *lock(&self.lock_ref) = object.clone();
            r.record(object, format!("{} became leader", self.identity));
        }
    }

    /// Send `StoppedLeading` (and its Kubernetes Event) if, and only if, `StartedLeading` is outstanding.
    pub(crate) fn announce_stopped(&self, reason: StopReason) {
        if self.announced.swap(false, Ordering::AcqRel) {
            self.events.publish(LeaderEvent::StoppedLeading { reason });
            if let Some(r) = &self.recorder {
                let object = lock(&self.lock_ref).clone();
                r.record(object, format!("{} stopped leading", self.identity));
            }
        }
    }
}
