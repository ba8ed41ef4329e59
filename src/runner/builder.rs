//! The builder: settings, validated in one place, assembled into locks and helper threads, then the renew
//! thread spawned. A lock the builder makes and a lock you bring take different paths, so no setter is
//! ever ignored.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, unbounded};

use super::candidate::{CandidateInfo, CandidateKeeper};
use super::event_recorder::EventRecorder;
use super::handle::LeaderHandle;
use super::pacing::watch_silence;
use super::state::{Owner, State};
use super::validate;
use super::watch::Watcher;
use super::worker::Worker;
use crate::client::Interrupter;
use crate::config::Config;
use crate::election::{Defaulted, Elector, Status, Timing};
use crate::error::{Error, Result};
use crate::events::{EventHub, LeaderEvent};
use crate::lock::{Lock, LockKind, Locks};
use crate::random::Rng;

/// Entry point of the threaded API: `LeaderElector::builder(config, "my-lock")…start()`.
#[derive(Debug)]
pub struct LeaderElector;

impl LeaderElector {
    /// Campaign for the lock `lock_name` (a Lease unless [`lock_kind`](LeaderElectorBuilder::lock_kind)
    /// says otherwise) on the API server of `config`.
    pub fn builder(config: Config, lock_name: impl Into<String>) -> LeaderElectorBuilder<Managed> {
        LeaderElectorBuilder::new(Managed {
            config: Box::new(config),
            name: lock_name.into(),
            namespace: None,
            identity: None,
            kind: LockKind::Leases,
            labels: BTreeMap::new(),
            record_events: false,
            coordinated: None,
            watch: true,
        })
    }

    /// Campaign on a lock you built yourself (any [`Lock`] implementation). Its identity is the lock's.
    pub fn with_lock(lock: impl Lock + 'static) -> LeaderElectorBuilder<CustomLock> {
        Self::with_locks(Locks::one(Box::new(lock) as Box<dyn Lock>))
    }

    /// Campaign on lock objects you built yourself: one, or a migration pair.
    pub fn with_locks(locks: Locks) -> LeaderElectorBuilder<CustomLock> {
        LeaderElectorBuilder::new(CustomLock { locks })
    }
}

/// The settings of a lock the builder makes (see [`LeaderElector::builder`]).
#[derive(Debug)]
pub struct Managed {
    config: Box<Config>,
    name: String,
    namespace: Option<String>,
    identity: Option<String>,
    kind: LockKind,
    labels: BTreeMap<String, String>,
    record_events: bool,
    coordinated: Option<CandidateInfo>,
    watch: bool,
}

/// A lock you brought (see [`LeaderElector::with_lock`]).
#[derive(Debug)]
pub struct CustomLock {
    locks: Locks,
}

/// Settings of an elector; `start` validates them and starts the renew thread.
#[derive(Debug)]
#[must_use = "a builder does nothing until `start()`; its setters return the builder to use"]
pub struct LeaderElectorBuilder<T> {
    target: T,
    timing: Timing,
    /// Which durations were left at their defaults (for messages).
    defaulted: Defaulted,
    release_on_stop: bool,
    keep_campaigning: bool,
    /// How long a handoff waits for leader work (`None`: the renew deadline).
    drain_timeout: Option<Duration>,
    /// Subscriptions taken before the start see every event from the first.
    events: Arc<EventHub>,
}

impl<T> LeaderElectorBuilder<T> {
    fn new(target: T) -> Self {
        LeaderElectorBuilder {
            target,
            timing: Timing::default(),
            defaulted: Defaulted {
                lease: true,
                renew: true,
                retry: true,
            },
            release_on_stop: true,
            keep_campaigning: true,
            drain_timeout: None,
            events: Arc::default(),
        }
    }

    /// Subscribe to the leadership events before the renew thread starts, so that not even the first
    /// `NewLeader` can be missed. The receiver behaves as one from
    /// [`LeaderStatus::events`](crate::LeaderStatus::events): it ends after the last event once the
    /// elector has stopped (or at once if `start` fails).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use kube_elector::{LeaderElector, LeaderEvent, testing::ApiServer};
    /// # let server = ApiServer::start().unwrap();
    /// let builder = LeaderElector::builder(server.config(), "doc-events").identity("a");
    /// let events = builder.events();
    /// let handle = builder.start()?;
    /// assert_eq!(
    ///     events.recv_timeout(Duration::from_secs(10)).unwrap(),
    ///     LeaderEvent::NewLeader { identity: Some("a".into()) }
    /// );
    /// assert!(matches!(
    ///     events.recv_timeout(Duration::from_secs(10)).unwrap(),
    ///     LeaderEvent::StartedLeading { .. }
    /// ));
    /// # drop(handle);
    /// # Ok::<(), kube_elector::Error>(())
    /// ```
    pub fn events(&self) -> Receiver<LeaderEvent> {
        self.events.subscribe()
    }

    /// How long followers wait after the last renew they saw before taking over (default 15 s; a whole
    /// number of seconds).
    pub fn lease_duration(mut self, d: Duration) -> Self {
        self.timing.lease_duration = d;
        self.defaulted.lease = false;
        self
    }

    /// How long the leader keeps leading without a successful renew (default 10 s).
    pub fn renew_deadline(mut self, d: Duration) -> Self {
        self.timing.renew_deadline = d;
        self.defaulted.renew = false;
        self
    }

    /// How often the leader renews and candidates retry (default 2 s; candidates add jitter).
    pub fn retry_period(mut self, d: Duration) -> Self {
        self.timing.retry_period = d;
        self.defaulted.retry = false;
        self
    }

    /// All three durations at once.
    pub fn timing(mut self, timing: Timing) -> Self {
        self.timing = timing;
        self.defaulted = Defaulted::default();
        self
    }

    /// Release the lock on `stop()`/drop so a follower takes over within about one retry period instead of
    /// a lease duration (default true). The release is a conditional write of a freshly read record
    /// that still names us, so it can never clear another candidate's hold. Unlike client-go's
    /// `ReleaseOnCancel` (default false) it is on by default, because `stop()` ends `is_leader()` and
    /// cancels the [`Term`](crate::runner::Term) before it releases; turn it off if your leader work can
    /// outlive `stop()` (the next leader would then start while it still runs).
    pub fn release_on_stop(mut self, release: bool) -> Self {
        self.release_on_stop = release;
        self
    }

    /// How long a graceful handoff ([`stop`](crate::LeaderHandle::stop), a
    /// [`step_down`](crate::LeaderHandle::step_down), a drop of the handle) waits for the term's leader
    /// work ([`run_while_leading`](crate::LeaderStatus::run_while_leading) calls and
    /// [`WorkGuard`](crate::runner::WorkGuard)s) to end before it releases the lock (default: the renew
    /// deadline). The wait never goes past the term's deadline, whatever this says: until then the lock
    /// is surely still ours. Work still running then keeps the lock unreleased, so no follower starts
    /// before the lease expires on its own. After a loss, the elector waits as long before it campaigns
    /// again.
    pub fn drain_timeout(mut self, d: Duration) -> Self {
        self.drain_timeout = Some(d);
        self
    }

    /// After losing leadership, campaign again (default true). When false, the thread ends after the
    /// first loss.
    pub fn keep_campaigning(mut self, keep: bool) -> Self {
        self.keep_campaigning = keep;
        self
    }
}

impl LeaderElectorBuilder<Managed> {
    /// The lock's namespace (default: the config's namespace, else `default`).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.target.namespace = Some(namespace.into());
        self
    }

    /// The kind of lock object (default [`LockKind::Leases`]; the others are for clusters and clients that
    /// still use annotation locks, and for migrating off them).
    pub fn lock_kind(mut self, kind: LockKind) -> Self {
        self.target.kind = kind;
        self
    }

    /// This candidate's identity (default `<hostname>_<random hex>`); must be unique per process.
    pub fn identity(mut self, identity: impl Into<String>) -> Self {
        self.target.identity = Some(identity.into());
        self
    }

    /// A label the holder puts on the lock object whenever it writes it (client-go's `NewWithLabels`).
    /// Other labels on the object are kept.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.target.labels.insert(key.into(), value.into());
        self
    }

    /// Post Kubernetes Events on the lock object when we start and stop leading (reason
    /// `LeaderElection`, as client-go's recorder does; default false). Needs `events` `create` in RBAC.
    /// Posting never blocks or fails the election.
    pub fn record_events(mut self, record: bool) -> Self {
        self.target.record_events = record;
        self
    }

    /// Coordinated leader election (Kubernetes 1.31+, feature gate `CoordinatedLeaderElection`): keep a
    /// `LeaseCandidate` with these versions and let the API server choose the holder; never create or take
    /// the Lease; stop renewing when the server prefers another candidate. The identity becomes the
    /// candidate's name, so it must be a DNS subdomain (the default identity is one in this mode). Leases
    /// only. RBAC: `leasecandidates` get/create/update in `coordination.k8s.io` as well.
    pub fn coordinated(mut self, candidate: CandidateInfo) -> Self {
        self.target.coordinated = Some(candidate);
        self
    }

    /// Follow by watching the lock object (default true): a follower observes every change the moment it
    /// happens, takes a released lock within a round trip, wakes exactly when the holder's lease expires,
    /// and makes no periodic GETs while it waits. It costs one more thread and one long-lived watch
    /// connection per elector, and `list` and `watch` on the lock's resource in RBAC. It falls back to
    /// polling while the watch is down, refused or silent for longer than two renew intervals, and opens
    /// a new watch when a poll finds a change the old one never delivered (a half-open connection).
    /// Migration pairs always poll. Turn it off (`false`) where RBAC cannot grant `watch`, or where a
    /// proxy or load balancer cuts long-lived connections.
    pub fn watch(mut self, watch: bool) -> Self {
        self.target.watch = watch;
        self
    }

    /// Validate the settings and start the renew thread.
    pub fn start(self) -> Result<LeaderHandle> {
        let events = self.events.clone();
        self.start_managed().inspect_err(|_| events.close())
    }

    fn start_managed(self) -> Result<LeaderHandle> {
        let t = self.target;
        let namespace = t
            .namespace
            .clone()
            .unwrap_or_else(|| t.config.namespace().to_string());
        let identity = t.identity.clone().unwrap_or_else(|| {
            let id = crate::identity::default_identity();
            if t.coordinated.is_some() {
                id.to_ascii_lowercase().replace('_', "-")
            } else {
                id
            }
        });
        validate::managed(
            &self.timing,
            self.defaulted,
            &validate::Names {
                lock: &t.name,
                namespace: &namespace,
                identity: &identity,
            },
            t.kind,
            t.coordinated.is_some(),
        )?;
        let (locks, interrupters) = t
            .kind
            .build(&t.config, &namespace, &t.name, &identity, &t.labels)?;
        // Before any thread starts (the elector checks it again as it is built).
        self.timing
            .validate_resolution(locks.record_time_resolution(), &locks.describe())?;
        let recorder = if t.record_events {
            Some(EventRecorder::start(&t.config, identity.clone())?)
        } else {
            None
        };
        let watcher = if t.watch {
            Watcher::start(
                &t.config,
                t.kind,
                &namespace,
                &t.name,
                &identity,
                self.timing.retry_period,
            )?
        } else {
            None
        };
        let candidate = match &t.coordinated {
            Some(info) => Some(CandidateKeeper::start(
                &t.config,
                &namespace,
                &t.name,
                &identity,
                info.clone(),
                self.timing.request_timeout_cap(),
                self.timing.retry_period,
            )?),
            None => None,
        };
        let server = t.config.url().ok().map(|u| u.base().to_string());
        spawn(Parts {
            locks,
            name: t.name.clone(),
            server,
            events: self.events,
            timing: self.timing,
            drain_timeout: self.drain_timeout,
            release_on_stop: self.release_on_stop,
            keep_campaigning: self.keep_campaigning,
            coordinated: candidate.is_some(),
            recorder,
            watcher,
            candidate,
            interrupters,
            watch_silence: watch_silence(&self.timing, t.kind != LockKind::Leases),
        })
    }
}

impl LeaderElectorBuilder<CustomLock> {
    /// Start the renew thread. The election core checks the timing and the lock's identity before
    /// anything runs.
    pub fn start(self) -> Result<LeaderHandle> {
        let events = self.events.clone();
        if let Err(e) = self.timing.check_with(self.defaulted) {
            events.close();
            return Err(e.into());
        }
        let locks = self.target.locks;
        // A lock describes itself as `<resource> <namespace>/<name>`: the name is the metrics label.
        let describe = locks.primary().describe();
        let name = describe.rsplit('/').next().unwrap_or(&describe).to_string();
        spawn(Parts {
            locks,
            name,
            server: None,
            events: self.events,
            timing: self.timing,
            drain_timeout: self.drain_timeout,
            release_on_stop: self.release_on_stop,
            keep_campaigning: self.keep_campaigning,
            coordinated: false,
            recorder: None,
            watcher: None,
            candidate: None,
            interrupters: Vec::new(),
            watch_silence: Duration::ZERO,
        })
        .inspect_err(|_| events.close())
    }
}

/// What the renew thread is assembled from.
struct Parts {
    locks: Locks,
    /// The lock's name, for metrics.
    name: String,
    /// The API server's URL, for messages.
    server: Option<String>,
    events: Arc<EventHub>,
    timing: Timing,
    drain_timeout: Option<Duration>,
    release_on_stop: bool,
    keep_campaigning: bool,
    coordinated: bool,
    recorder: Option<EventRecorder>,
    watcher: Option<Watcher>,
    candidate: Option<CandidateKeeper>,
    interrupters: Vec<Interrupter>,
    watch_silence: Duration,
}

fn spawn(p: Parts) -> Result<LeaderHandle> {
    let identity = p.locks.identity().to_string();
    let context = format!("{} as {identity}", p.locks.describe());
    let elector = Elector::new(p.locks, p.timing)?.coordinated(p.coordinated)?;
    let owner = Owner {
        identity: identity.into(),
        context: context.clone(),
        name: p.name.into(),
        server: p.server.map(Into::into),
    };
    let state = Arc::new(State::new(p.timing, owner, p.events, p.recorder));
    let (commands, commands_rx) = unbounded();
    let drain_timeout = p.drain_timeout.unwrap_or(p.timing.renew_deadline);
    let worker = Worker {
        context,
        failures: Default::default(),
        standing: Status::Following {
            holder: None,
            expiry: None,
        },
        elector,
        state: state.clone(),
        commands: commands_rx,
        release_on_stop: p.release_on_stop,
        keep_campaigning: p.keep_campaigning,
        rng: Rng::new(),
        watcher: p.watcher,
        watch_silence: p.watch_silence,
        interrupters: p.interrupters.clone(),
        drain_timeout,
        hold_off: None,
    };
    let thread = std::thread::Builder::new()
        .name("kube-elector-renew".into())
        .spawn(move || worker.run())
        .map_err(|e| Error::spawn("renew", e))?;
    Ok(LeaderHandle::new(
        state,
        commands,
        (drain_timeout, p.release_on_stop),
        thread,
        p.interrupters,
        p.candidate,
    ))
}
