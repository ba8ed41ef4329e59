//! The threaded runner: [`LeaderElector::builder`] → [`LeaderHandle`], one background renew thread per
//! elector, an `is_leader()` bounded by the leadership deadline, and events on crossbeam channels.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};

use crate::candidate::{CandidateInfo, LeaseCandidate};
use crate::config::Config;
use crate::election::{Elector, JITTER_FACTOR, Timing};
use crate::error::{Error, Result};
use crate::event_recorder::EventRecorder;
use crate::events::{EventHub, LeaderEvent, StopReason};
use crate::lock::{Lock, LockKind, ObjectReference};
use crate::random::Rng;
use crate::watch::{WatchUpdate, Watcher};

/// Entry point of the threaded API: `LeaderElector::builder(config, "my-lock")…start()`.
#[derive(Debug)]
pub struct LeaderElector;

impl LeaderElector {
    /// Campaign for the lock `lock_name` (a Lease unless [`lock_kind`](LeaderElectorBuilder::lock_kind)
    /// says otherwise) on the API server of `config`.
    pub fn builder(config: Config, lock_name: impl Into<String>) -> LeaderElectorBuilder {
        LeaderElectorBuilder {
            target: Target::Lease {
                config: Box::new(config),
                name: lock_name.into(),
                namespace: None,
                identity: None,
                kind: LockKind::Leases,
            },
            timing: Timing::default(),
            release_on_stop: true,
            keep_campaigning: true,
            record_events: false,
            labels: BTreeMap::new(),
            coordinated: None,
            watch: false,
        }
    }

    /// Campaign on a lock you built yourself (any [`Lock`] implementation).
    pub fn with_lock(lock: impl Lock + 'static) -> LeaderElectorBuilder {
        LeaderElectorBuilder {
            target: Target::Custom(Box::new(lock)),
            timing: Timing::default(),
            release_on_stop: true,
            keep_campaigning: true,
            record_events: false,
            labels: BTreeMap::new(),
            coordinated: None,
            watch: false,
        }
    }
}

enum Target {
    Lease {
        config: Box<Config>,
        name: String,
        namespace: Option<String>,
        identity: Option<String>,
        kind: LockKind,
    },
    Custom(Box<dyn Lock>),
}

/// Settings of an elector; [`start`](LeaderElectorBuilder::start) validates them and starts the thread.
pub struct LeaderElectorBuilder {
    target: Target,
    timing: Timing,
    release_on_stop: bool,
    keep_campaigning: bool,
    record_events: bool,
    labels: BTreeMap<String, String>,
    coordinated: Option<CandidateInfo>,
    watch: bool,
}

impl std::fmt::Debug for LeaderElectorBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("LeaderElectorBuilder");
        match &self.target {
            Target::Lease {
                config,
                name,
                namespace,
                identity,
                kind,
            } => {
                d.field("kind", kind)
                    .field("config", config)
                    .field("name", name)
                    .field("namespace", namespace)
                    .field("identity", identity);
            }
            Target::Custom(lock) => {
                d.field("lock", &lock.describe());
            }
        }
        d.field("timing", &self.timing)
            .field("release_on_stop", &self.release_on_stop)
            .field("keep_campaigning", &self.keep_campaigning)
            .finish()
    }
}

impl LeaderElectorBuilder {
    /// The lock's namespace (default: the config's namespace, else `default`). Ignored with a custom lock.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        if let Target::Lease { namespace: ns, .. } = &mut self.target {
            *ns = Some(namespace.into());
        }
        self
    }

    /// The kind of lock object (default [`LockKind::Leases`]; the others are for clusters and clients that
    /// still use annotation locks, and for migrating off them). Ignored with a custom lock.
    pub fn lock_kind(mut self, lock_kind: LockKind) -> Self {
        if let Target::Lease { kind, .. } = &mut self.target {
            *kind = lock_kind;
        }
        self
    }

    /// This candidate's identity (default `<hostname>_<random hex>`); must be unique per process.
    /// Ignored with a custom lock, which carries its own.
    pub fn identity(mut self, identity: impl Into<String>) -> Self {
        if let Target::Lease { identity: id, .. } = &mut self.target {
            *id = Some(identity.into());
        }
        self
    }

    /// How long followers wait after the last renew they saw before taking over (default 15 s; a whole
    /// number of seconds).
    pub fn lease_duration(mut self, d: Duration) -> Self {
        self.timing.lease_duration = d;
        self
    }

    /// How long the leader keeps leading without a successful renew (default 10 s).
    pub fn renew_deadline(mut self, d: Duration) -> Self {
        self.timing.renew_deadline = d;
        self
    }

    /// How often the leader renews and candidates retry (default 2 s; candidates add jitter).
    pub fn retry_period(mut self, d: Duration) -> Self {
        self.timing.retry_period = d;
        self
    }

    /// All three durations at once.
    pub fn timing(mut self, timing: Timing) -> Self {
        self.timing = timing;
        self
    }

    /// Release the lock on `stop()`/drop so a follower takes over within about one retry period instead of
    /// a lease duration (default true).
    pub fn release_on_stop(mut self, release: bool) -> Self {
        self.release_on_stop = release;
        self
    }

    /// Post Kubernetes Events on the lock object when we start and stop leading (reason
    /// `LeaderElection`, as client-go's recorder does; default false). Needs `events` `create` in RBAC.
    /// Posting never blocks or fails the election.
    pub fn record_events(mut self, record: bool) -> Self {
        self.record_events = record;
        self
    }

    /// A label the holder puts on the lock object whenever it writes it (client-go's `NewWithLabels`).
    /// Other labels on the object are kept. Ignored with a custom lock.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Coordinated leader election (Kubernetes 1.31+, feature gate `CoordinatedLeaderElection`): keep a
    /// `LeaseCandidate` with these versions and let the API server choose the holder; never create or take
    /// the Lease; stop renewing when the server prefers another candidate. The identity becomes the
    /// candidate's name, so it must be a DNS subdomain (the default identity is one in this mode). Leases
    /// only. RBAC: `leasecandidates` get/create/update in `coordination.k8s.io` as well.
    pub fn coordinated(mut self, candidate: CandidateInfo) -> Self {
        self.coordinated = Some(candidate);
        self
    }

    /// Follow by watching the lock object instead of polling it (default false): a follower observes every
    /// change the moment it happens, takes a released lock within a round trip, wakes exactly when the
    /// holder's lease expires, and makes no periodic GETs while it waits. Falls back to polling while the
    /// watch is down or refused. Needs `watch` (and `list`) on the lock's resource in RBAC. Multi-locks
    /// always poll. One extra thread per elector.
    pub fn watch(mut self, watch: bool) -> Self {
        self.watch = watch;
        self
    }

    /// After losing leadership, campaign again (default true). When false, the thread ends after the
    /// first loss.
    pub fn keep_campaigning(mut self, keep: bool) -> Self {
        self.keep_campaigning = keep;
        self
    }

    /// Validate the settings, connect nothing yet, and start the renew thread.
    pub fn start(self) -> Result<LeaderHandle> {
        let mut recorder = None;
        let mut candidate = None;
        let mut watcher = None;
        let lock: Box<dyn Lock> = match self.target {
            Target::Lease {
                config,
                name,
                namespace,
                identity,
                kind,
            } => {
                let namespace = namespace.unwrap_or_else(|| config.namespace().to_string());
                if name.is_empty() {
                    return Err(Error::InvalidElectionConfig(
                        "lock name must not be empty".into(),
                    ));
                }
                if namespace.is_empty() {
                    return Err(Error::InvalidElectionConfig(
                        "namespace must not be empty".into(),
                    ));
                }
                let identity = identity.unwrap_or_else(|| {
                    let id = crate::identity::default_identity();
                    if self.coordinated.is_some() {
                        id.to_ascii_lowercase().replace('_', "-")
                    } else {
                        id
                    }
                });
                if let Some(info) = self.coordinated.clone() {
                    if kind != LockKind::Leases {
                        return Err(Error::InvalidElectionConfig(
                            "coordinated leader election works on Leases only".into(),
                        ));
                    }
                    candidate = Some(LeaseCandidate::new(
                        &config, &namespace, &name, &identity, info,
                    )?);
                }
                if self.record_events {
                    recorder = Some(EventRecorder::start(&config, identity.clone())?);
                }
                if self.watch {
                    self.timing.validate()?;
                    watcher =
                        Watcher::start(&config, kind, &namespace, &name, self.timing.retry_period)?;
                }
                kind.lock_with_labels(&config, &namespace, &name, &identity, &self.labels)?
            }
            Target::Custom(lock) => {
                if self.record_events || self.coordinated.is_some() {
                    return Err(Error::InvalidElectionConfig(
                        "record_events and coordinated need a lock the builder makes (LeaderElector::builder), not a custom lock".into(),
                    ));
                }
                lock
            }
        };
        let identity = lock.identity().to_string();
        let elector = Elector::new(lock, self.timing)?.coordinated(candidate.is_some());
        let shared = Arc::new(Shared {
            base: Instant::now(),
            deadline: AtomicU64::new(NOT_LEADING),
            announced: AtomicBool::new(false),
            skip_release: AtomicBool::new(false),
            leader: Mutex::new(None),
            events: EventHub::default(),
            timing: self.timing,
            stats: Mutex::new(ElectorStats::default()),
            recorder,
            identity: identity.clone(),
            lock_ref: Mutex::new(None),
        });
        let (stop_tx, stop_rx) = bounded(1);
        let worker = Worker {
            elector,
            shared: shared.clone(),
            stop_rx,
            release_on_stop: self.release_on_stop,
            keep_campaigning: self.keep_campaigning,
            rng: Rng::new(),
            candidate,
            watcher,
            last_holder: None,
        };
        let thread = std::thread::Builder::new()
            .name("kube-elector-renew".into())
            .spawn(move || worker.run())
            .map_err(|e| Error::Io {
                context: "spawning the renew thread".into(),
                source: e,
            })?;
        Ok(LeaderHandle {
            shared,
            stop_tx,
            thread: Some(thread),
            identity,
        })
    }
}

const NOT_LEADING: u64 = 0;
const STOPPED: u64 = 1;

/// State shared between the handle and the renew thread: atomics and a few locks that the hot path
/// (`is_leader`) never takes.
#[derive(Debug)]
struct Shared {
    base: Instant,
    /// Leadership deadline in nanoseconds since `base`; `NOT_LEADING` or `STOPPED` otherwise.
    deadline: AtomicU64,
    /// Whether `StartedLeading` was sent without its `StoppedLeading` yet.
    announced: AtomicBool,
    /// Set by `abandon()`: end without releasing, as a crashed process would.
    skip_release: AtomicBool,
    leader: Mutex<Option<String>>,
    events: EventHub,
    /// The election's durations (`check()` derives the last renew from the deadline with them).
    timing: Timing,
    stats: Mutex<ElectorStats>,
    /// Posts Kubernetes Events, when enabled.
    recorder: Option<EventRecorder>,
    identity: String,
    /// The lock object, for Events.
    lock_ref: Mutex<Option<ObjectReference>>,
}

/// A snapshot of an elector's counters (see [`LeaderHandle::stats`]). Cheap to take; the renew thread
/// updates it once per attempt.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ElectorStats {
    /// `try_acquire_or_renew` steps taken.
    pub attempts: u64,
    /// Steps taken while leading that renewed the lease.
    pub renews_ok: u64,
    /// Steps taken while leading that failed.
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

impl Shared {
    /// Nanoseconds since `base`, without 128-bit arithmetic: this is on the `is_leader()` path.
    #[inline]
    fn nanos(&self, t: Instant) -> u64 {
        let d = t.saturating_duration_since(self.base);
        d.as_secs()
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(d.subsec_nanos()))
    }

    #[inline]
    fn is_leader(&self) -> bool {
        let d = self.deadline.load(Ordering::Acquire);
        d > STOPPED && self.nanos(Instant::now()) < d
    }

    /// Publish a new deadline unless the handle was stopped. Returns false when stopped.
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

    fn leader(&self) -> Option<String> {
        self.leader
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_leader(&self, holder: Option<String>) {
        *self.leader.lock().unwrap_or_else(|p| p.into_inner()) = holder;
    }

    /// Send `StartedLeading` (and its Kubernetes Event).
    fn announce_started(&self, transitions: i32, object: Option<ObjectReference>) {
        self.announced.store(true, Ordering::Release);
        self.events
            .publish(LeaderEvent::StartedLeading { transitions });
        if let Some(r) = &self.recorder {
            *self.lock_ref.lock().unwrap_or_else(|p| p.into_inner()) = object.clone();
            r.record(object, format!("{} became leader", self.identity));
        }
    }

    /// Send `StoppedLeading` (and its Kubernetes Event) if (and only if) `StartedLeading` is outstanding.
    fn announce_stopped(&self, reason: StopReason) {
        if self.announced.swap(false, Ordering::AcqRel) {
            self.events.publish(LeaderEvent::StoppedLeading { reason });
            if let Some(r) = &self.recorder {
                let object = self
                    .lock_ref
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                r.record(object, format!("{} stopped leading", self.identity));
            }
        }
    }
}

/// Send `NewLeader` when the holder we observe changed since the last report.
fn report_holder(
    elector: &Elector<Box<dyn Lock>>,
    shared: &Shared,
    last: &mut Option<Option<String>>,
) {
    if elector.observed_record().is_none() {
        return;
    }
    let holder = elector.observed_holder().map(str::to_string);
    if last.as_ref() != Some(&holder) {
        shared.set_leader(holder.clone());
        shared.events.publish(LeaderEvent::NewLeader {
            identity: holder.clone(),
        });
        shared
            .stats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .leader_changes_seen += 1;
        *last = Some(holder);
    }
}

struct Worker {
    elector: Elector<Box<dyn Lock>>,
    shared: Arc<Shared>,
    stop_rx: Receiver<()>,
    release_on_stop: bool,
    keep_campaigning: bool,
    rng: Rng,
    /// Coordinated leader election: our LeaseCandidate.
    candidate: Option<LeaseCandidate>,
    /// Watch-based following, when enabled and possible for the lock kind.
    watcher: Option<Watcher>,
    last_holder: Option<Option<String>>,
}

impl Worker {
    /// Wait before the next attempt: `wait` as a poller would, or, for a follower with a healthy watch,
    /// until the holder's lease expires or a change calls for an attempt (a release, a deletion). Watched
    /// changes are observed the moment they arrive. True when the handle was stopped.
    fn wait(&mut self, wait: Duration, leading: bool) -> bool {
        let polling_until = Instant::now() + wait;
        let spread = self
            .elector
            .timing()
            .retry_period
            .mul_f64(0.1 * self.rng.next_f64());
        let Some(watcher) = self.watcher.as_ref() else {
            return !matches!(
                self.stop_rx.recv_timeout(wait),
                Err(RecvTimeoutError::Timeout)
            );
        };
        if leading {
            // Our own renews come back on the watch: nothing to learn from them.
            watcher.take();
            return !matches!(
                self.stop_rx.recv_timeout(wait),
                Err(RecvTimeoutError::Timeout)
            );
        }
        loop {
            let now = Instant::now();
            let until = match self.elector.holder_expiry() {
                Some(expiry) if watcher.healthy() && expiry > now => expiry + spread,
                _ => polling_until,
            };
            crossbeam_channel::select! {
                recv(self.stop_rx) -> _ => return true,
                recv(watcher.wake()) -> _ => match watcher.take() {
                    Some(WatchUpdate::Changed(v)) => {
                        self.elector.observe_watched(v);
                        report_holder(&self.elector, &self.shared, &mut self.last_holder);
                        // Released, or naming us: try at once. Held by another: wait for its new expiry.
                        if self.elector.holder_expiry().is_none() {
                            return false;
                        }
                    }
                    Some(WatchUpdate::Deleted) => return false,
                    None => {}
                },
                default(until.saturating_duration_since(now)) => return false,
            }
        }
    }

    fn stats(&self) -> std::sync::MutexGuard<'_, ElectorStats> {
        self.shared.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Count one step in the stats.
    fn record(&self, result: &Result<bool>, started: Instant, was_leading: bool, slow_before: u64) {
        let slow_after = self.elector.slow_path_renews();
        let mut st = self.stats();
        st.attempts += 1;
        st.last_latency = Some(started.elapsed());
        st.slow_path_renews += slow_after - slow_before;
        if was_leading {
            match result {
                Ok(true) => st.renews_ok += 1,
                _ => st.renews_failed += 1,
            }
        }
        st.last_error = result.as_ref().err().map(ToString::to_string);
    }

    fn run(mut self) -> Result<()> {
        let shared = self.shared.clone();
        match catch_unwind(AssertUnwindSafe(|| self.campaign())) {
            Ok(result) => result,
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                shared.deadline.store(STOPPED, Ordering::Release);
                log::error!("kube-elector renew thread panicked: {message}");
                shared.announce_stopped(StopReason::Panicked(message.clone()));
                Err(Error::RenewThreadPanicked(message))
            }
        }
    }

    fn campaign(&mut self) -> Result<()> {
        let timing = self.elector.timing();
        let describe = self.elector.lock().describe();
        let mut leading = false;
        let mut last_error: Option<String> = None;
        loop {
            if let Some(c) = self.candidate.as_mut() {
                if let Err(e) = c.maintain(timing.request_timeout_cap()) {
                    log::warn!("{describe}: keeping our LeaseCandidate: {e}");
                }
            }
            let started = Instant::now();
            let slow_before = self.elector.slow_path_renews();
            let result = self.elector.try_acquire_or_renew();
            if self.shared.deadline.load(Ordering::Acquire) == STOPPED {
                break;
            }
            self.record(&result, started, leading, slow_before);
            if let Err(e) = &result {
                log::warn!("{describe}: {e}");
                if !matches!(e, Error::DeadlineExceeded { .. }) {
                    last_error = Some(e.to_string());
                }
            }
            report_holder(&self.elector, &self.shared, &mut self.last_holder);
            let deadline = self
                .elector
                .leader_deadline()
                .filter(|_| self.elector.is_leader());
            let now_leading = match deadline {
                Some(d) => self.shared.set_deadline(d),
                None => false,
            };
            if now_leading && !leading {
                last_error = None;
                self.stats().acquisitions += 1;
                let transitions = self
                    .elector
                    .observed_record()
                    .map_or(0, |r| r.record.leader_transitions);
                self.shared
                    .announce_started(transitions, self.elector.lock().object_ref());
            }
            if leading && !now_leading {
                self.shared.clear_deadline();
                let preferred = self
                    .elector
                    .preferred_holder()
                    .filter(|p| *p != self.elector.lock().identity());
                let reason = match &result {
                    _ if preferred.is_some() => StopReason::EndOfTerm {
                        preferred_holder: preferred.unwrap_or_default().to_string(),
                    },
                    Err(e) if !e.is_conflict() => StopReason::RenewDeadlineExceeded {
                        last_error: last_error.clone().unwrap_or_else(|| e.to_string()),
                    },
                    _ => StopReason::LeaseLost {
                        holder: self.elector.observed_holder().map(str::to_string),
                    },
                };
                self.shared.announce_stopped(reason);
                if !self.keep_campaigning {
                    return Ok(());
                }
            }
            leading = now_leading;

            let wait = match deadline {
                // Renew every retry period; after a failure, wake by the deadline to report the loss.
                Some(d) if leading => timing
                    .retry_period
                    .min(d.saturating_duration_since(Instant::now()))
                    .max(Duration::from_millis(1)),
                // A follower also honours the API server's Retry-After (429, 503), and wakes exactly when
                // the holder's lease expires rather than up to a jittered period later.
                _ => {
                    let jittered = timing
                        .retry_period
                        .mul_f64(1.0 + JITTER_FACTOR * self.rng.next_f64());
                    let asked = result
                        .as_ref()
                        .err()
                        .and_then(|e| e.api())
                        .and_then(|a| a.retry_after);
                    let now = Instant::now();
                    match (asked, self.elector.holder_expiry()) {
                        (Some(a), _) => a.max(jittered),
                        // Only a future expiry: once it has passed, retry at the normal pace. A little
                        // spread keeps many followers from arriving in the same millisecond.
                        (None, Some(expiry)) if expiry > now => {
                            let spread = timing.retry_period.mul_f64(0.1 * self.rng.next_f64());
                            jittered.min(expiry - now + spread)
                        }
                        _ => jittered,
                    }
                }
            };
            if self.wait(wait, leading) {
                break;
            }
        }
        self.shared.deadline.store(STOPPED, Ordering::Release);
        let abandoned = self.shared.skip_release.load(Ordering::Acquire);
        self.shared.announce_stopped(if abandoned {
            StopReason::Abandoned
        } else {
            StopReason::Stopped
        });
        if self.release_on_stop && !self.shared.skip_release.load(Ordering::Acquire) {
            match self.elector.release() {
                Ok(true) => log::info!("{describe}: released"),
                Ok(false) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// A running elector. Dropping it stops the elector (and releases the lock if so configured).
#[derive(Debug)]
pub struct LeaderHandle {
    shared: Arc<Shared>,
    stop_tx: Sender<()>,
    thread: Option<JoinHandle<Result<()>>>,
    identity: String,
}

impl LeaderHandle {
    /// Whether we lead right now. Cheap (one atomic load and one monotonic clock read) and bounded by the
    /// leadership deadline: false from `start of the last successful renew + renew_deadline` on, even if
    /// the renew thread is stuck in a request. Stop leader work as soon as this turns false.
    #[inline]
    pub fn is_leader(&self) -> bool {
        self.shared.is_leader()
    }

    /// The holder we observed last (`None` before the first observation or while the lock is free).
    pub fn leader(&self) -> Option<String> {
        self.shared.leader()
    }

    /// This candidate's identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// A cheap, cloneable, `Send` view of this elector for worker threads: `is_leader()` and `leader()`
    /// without access to `stop()`.
    pub fn status(&self) -> LeaderStatus {
        LeaderStatus {
            shared: self.shared.clone(),
            identity: Arc::from(self.identity.as_str()),
        }
    }

    /// A new subscription: it receives every event sent from now on. Sending never blocks the renew
    /// thread; drop the receiver to unsubscribe.
    pub fn events(&self) -> Receiver<LeaderEvent> {
        self.shared.events.subscribe()
    }

    /// A snapshot of the counters: renews ok and failed, slow-path renews, acquisitions, holder changes
    /// seen, the last step's latency and error. Export them to your metrics system as you like.
    pub fn stats(&self) -> ElectorStats {
        let mut st = self
            .shared
            .stats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        st.is_leader = self.is_leader();
        st
    }

    /// A liveness check with client-go's healthz semantics: unhealthy when we believe we lead but the last
    /// successful renew is older than `lease_duration + max_tolerable_expired` (the renew thread is stuck).
    /// kube-controller-manager uses 20 s. Wire it to a liveness probe so a wedged process is restarted.
    pub fn check(&self, max_tolerable_expired: Duration) -> Result<()> {
        if !self.shared.announced.load(Ordering::Acquire) {
            return Ok(());
        }
        // The deadline is the start of the last successful renew + renew_deadline; it stays put while
        // the renew thread is stuck, and is cleared when leadership ends.
        let deadline = self.shared.deadline.load(Ordering::Acquire);
        if deadline <= STOPPED {
            return Ok(());
        }
        let timing = self.shared.timing;
        let renew_deadline = u64::try_from(timing.renew_deadline.as_nanos()).unwrap_or(u64::MAX);
        let last = deadline.saturating_sub(renew_deadline);
        let now = self.shared.nanos(Instant::now());
        let age = Duration::from_nanos(now.saturating_sub(last));
        let limit = timing.lease_duration + max_tolerable_expired;
        if age > limit {
            return Err(Error::Unhealthy(format!(
                "leading, but the last successful renew was {age:?} ago (more than lease duration + {max_tolerable_expired:?} = {limit:?}): the renew thread is stuck"
            )));
        }
        Ok(())
    }

    /// Whether the renew thread is still running (it ends after `stop()`, or after a loss when
    /// `keep_campaigning(false)`).
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Stop: `is_leader()` turns false at once, `StoppedLeading` is sent if we led, the lock is released if
    /// configured (only if the freshly fetched record still names us), and the thread is joined. Returns
    /// the release error, if any. Blocks at most about one request timeout plus the release. Calling it
    /// again does nothing.
    pub fn stop(&mut self) -> Result<()> {
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        self.shared.deadline.store(STOPPED, Ordering::Release);
        let _ = self.stop_tx.try_send(());
        match thread.join() {
            Ok(result) => result,
            Err(_) => Err(Error::RenewThreadPanicked(
                "the renew thread could not be joined".into(),
            )),
        }
    }
}

/// A view of a running elector for other threads (see [`LeaderHandle::status`]).
#[derive(Clone)]
pub struct LeaderStatus {
    shared: Arc<Shared>,
    identity: Arc<str>,
}

impl LeaderStatus {
    /// Same as [`LeaderHandle::is_leader`].
    #[inline]
    pub fn is_leader(&self) -> bool {
        self.shared.is_leader()
    }

    /// Same as [`LeaderHandle::leader`].
    pub fn leader(&self) -> Option<String> {
        self.shared.leader()
    }

    /// The candidate's identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }
}

impl std::fmt::Debug for LeaderStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderStatus")
            .field("identity", &self.identity)
            .field("is_leader", &self.is_leader())
            .finish()
    }
}

impl LeaderHandle {
    /// Stop without releasing the lock, as if the process had crashed: `is_leader()` turns false at once
    /// and followers take over only after the lease expires. For failover tests and demos; services
    /// should use [`stop`](LeaderHandle::stop).
    pub fn abandon(&mut self) {
        self.shared.skip_release.store(true, Ordering::Release);
        if let Err(e) = self.stop() {
            log::warn!("abandoning leader elector {}: {e}", self.identity);
        }
    }
}

impl Drop for LeaderHandle {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            log::warn!("stopping leader elector {}: {e}", self.identity);
        }
    }
}
