//! Many elections in one process: an elector set campaigns for many Leases (`shard-0` … `shard-31`, or
//! any list) with a fixed handful of threads however many there are: one driver thread runs every
//! lock's election (the same core and the same safety rules as a single elector: every write
//! conditional, deadlines on the local monotonic clock, terms as fencing tokens), a small pool of
//! threads makes the requests over one shared connection pool, and one watch of the namespace, selected
//! by the set's label, follows every lock at once.
//!
//! **Balance.** Each member keeps a Lease of its own (`<set>-member-<hash>`) so the others know who
//! campaigns, and holds at most its share, `ceil(locks / members)`. A member over its share gives locks
//! up the graceful way (the term ends, its leader work drains, then the lock is released), so a lock
//! never has two owners' work at once; a member under its share campaigns for as many free or expired
//! locks as it has room for, and no more (else it could win several at once and have to hand them
//! back); a member short of its floor, `locks / members`, is given locks by those above theirs, one at
//! a time. When a member leaves (a stop or a crash) its locks are taken once their leases run out. With
//! [`consistent_hashing`](ElectorSetBuilder::consistent_hashing), each lock is meant for one member
//! (rendezvous hashing with bounded load: every member meant for its floor or ceiling): a free lock
//! waits a lease duration for the member it is meant for (while that member has room), a member over
//! its share gives up first the locks meant for others, and one above its floor hands such locks home,
//! so a restart moves few locks.
//!
//! ```
//! use std::time::Duration;
//! use kube_elector::set::ElectorSet;
//!
//! # let server = kube_elector::testing::ApiServer::start()?;
//! # let config = server.config();
//! let set = ElectorSet::builder(config, "shard")
//!     .shards(8) // Leases shard-0 … shard-7
//!     .identity("pod-1")
//! #   .timing(kube_elector::Timing { lease_duration: Duration::from_secs(2),
//! #       renew_deadline: Duration::from_millis(1500), retry_period: Duration::from_millis(200) })
//!     .start()?;
//! // Leader-only work per shard, each on a thread of its own for as long as its term lasts.
//! for shard in 0..set.len() {
//!     set.status(shard).run_while_leading(move |term| {
//!         while !term.is_cancelled() {
//!             // work for this shard, fenced with term.transitions()
//! #           std::thread::sleep(Duration::from_millis(20));
//!         }
//!     })?;
//! }
//! # let end = std::time::Instant::now() + Duration::from_secs(10);
//! # while set.owned().len() < 8 && std::time::Instant::now() < end {
//! #     std::thread::sleep(Duration::from_millis(20));
//! # }
//! assert_eq!(set.owned().len(), 8, "alone, a member takes every shard");
//! set.stop()?; // every term ends, the work drains, then every shard is released
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod balance;
mod driver;
pub(crate) mod machine;
mod members;
mod pool;
mod schedule;
mod slots;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, unbounded};

use self::driver::{Driver, SetCommand};
use self::machine::{SetMachine, SetSettings};
pub(crate) use self::members::member_lease;
use self::members::{MEMBER_LABEL, SET_LABEL};
use self::pool::Pool;
use crate::client::RestClient;
use crate::config::Config;
use crate::election::{Defaulted, Timing, later};
use crate::error::{Error, Result};
use crate::events::{LeaderEvent, StopReason};
use crate::lock::{LeaseLock, LockKind};
use crate::runner::watch::Watcher;
use crate::runner::{LeaderStatus, State};

/// The most request threads a set gives itself by default (see
/// [`ElectorSetBuilder::io_threads`]).
pub const MAX_IO_THREADS: usize = 16;

/// An event of one lock of a set.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShardEvent {
    /// The lock's index in the set.
    pub shard: usize,
    /// The lock's name.
    pub lock: String,
    /// What happened.
    pub event: LeaderEvent,
}

/// The entry point: `ElectorSet::builder(config, "shard").shards(32)…start()`.
#[derive(Debug)]
pub struct ElectorSet;

impl ElectorSet {
    /// A set named `name` on the API server of `config`. Its locks are `<name>-0` … `<name>-N-1` with
    /// [`shards`](ElectorSetBuilder::shards), or the names given to [`locks`](ElectorSetBuilder::locks).
    pub fn builder(config: Config, name: impl Into<String>) -> ElectorSetBuilder {
        ElectorSetBuilder {
            config: Box::new(config),
            name: name.into(),
            locks: Vec::new(),
            namespace: None,
            identity: None,
            timing: Timing::default(),
            defaulted: Defaulted {
                lease: true,
                renew: true,
                retry: true,
            },
            balance: true,
            hashing: false,
            watch: true,
            io_threads: None,
            drain_timeout: None,
            events: Arc::default(),
        }
    }
}

/// The settings of an elector set; [`start`](Self::start) validates them and starts its threads.
#[derive(Debug)]
#[must_use = "a builder does nothing until `start()`"]
pub struct ElectorSetBuilder {
    config: Box<Config>,
    name: String,
    locks: Vec<String>,
    namespace: Option<String>,
    identity: Option<String>,
    timing: Timing,
    defaulted: Defaulted,
    balance: bool,
    hashing: bool,
    watch: bool,
    io_threads: Option<usize>,
    drain_timeout: Option<Duration>,
    events: Arc<SetEvents>,
}

impl ElectorSetBuilder {
    /// `n` locks named `<set>-0` … `<set>-{n-1}`.
    pub fn shards(mut self, n: usize) -> Self {
        self.locks = (0..n).map(|i| format!("{}-{i}", self.name)).collect();
        self
    }

    /// The locks by name (Leases in the set's namespace).
    pub fn locks<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.locks = names.into_iter().map(Into::into).collect();
        self
    }

    /// The locks' namespace (default: the config's, else `default`).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// This member's identity (default `<hostname>_<random hex>`); unique per process.
    pub fn identity(mut self, identity: impl Into<String>) -> Self {
        self.identity = Some(identity.into());
        self
    }

    /// The three durations, for every lock and for the member leases.
    pub fn timing(mut self, timing: Timing) -> Self {
        self.timing = timing;
        self.defaulted = Defaulted::default();
        self
    }

    /// Hold at most `ceil(locks / members)` (default true). Without it a member takes every free lock.
    pub fn balance(mut self, balance: bool) -> Self {
        self.balance = balance;
        self
    }

    /// Give each lock a stable preferred member (rendezvous hashing over the live members, default
    /// false), so that a member that restarts gets much the same locks back and few locks move.
    pub fn consistent_hashing(mut self, hashing: bool) -> Self {
        self.hashing = hashing;
        self
    }

    /// Follow the locks by one watch of the namespace (default true), or by polling each.
    pub fn watch(mut self, watch: bool) -> Self {
        self.watch = watch;
        self
    }

    /// Exactly `n` threads making the requests (at least one). By default the set starts with two (so
    /// that one slow request does not hold up every other lock's renew) and follows its load: it adds a
    /// thread when they were busy all the time (over 95%) for three windows in a row (a window is a
    /// retry period, or a second if shorter), and gives one back when they were under 45% busy as
    /// long, up to [`MAX_IO_THREADS`]. The load is renews per second times the server's time per
    /// write: 1,000 locks on a 2 s retry period need two threads at 3 ms a write and five at 10 ms. A
    /// server that hangs keeps the threads waiting too, so they grow towards the bound while it hangs
    /// (each request still ends at its timeout) and come back down once it answers again.
    pub fn io_threads(mut self, n: usize) -> Self {
        self.io_threads = Some(n.max(1));
        self
    }

    /// How long a lock given up, or the whole set when it stops, waits for its leader work before the
    /// release (default: the renew deadline; never past the term's deadline). See
    /// [`LeaderElectorBuilder::drain_timeout`](crate::LeaderElectorBuilder::drain_timeout).
    pub fn drain_timeout(mut self, d: Duration) -> Self {
        self.drain_timeout = Some(d);
        self
    }

    /// Subscribe to every lock's events before the set starts.
    pub fn events(&self) -> Receiver<ShardEvent> {
        self.events.subscribe()
    }

    /// Validate the settings and start the set's threads.
    pub fn start(self) -> Result<ElectorSetHandle> {
        let events = self.events.clone();
        self.start_set().inspect_err(|_| events.close())
    }

    fn start_set(self) -> Result<ElectorSetHandle> {
        self.timing.check_with(self.defaulted)?;
        let bad = |m: String| Err(Error::InvalidElectionConfig(m));
        if self.locks.is_empty() {
            return bad(
                "an elector set needs at least one lock: use shards(n) or locks(names)".into(),
            );
        }
        let namespace = self
            .namespace
            .clone()
            .unwrap_or_else(|| self.config.namespace().to_string());
        let identity = self
            .identity
            .clone()
            .unwrap_or_else(crate::identity::default_identity);
        if identity.is_empty() {
            return bad("identity must not be empty".into());
        }
        let member = member_lease(&self.name, &identity);
        let member_prefix = format!("{}-member-", self.name);
        let mut by_name = HashMap::new();
        for (i, name) in self
            .locks
            .iter()
            .chain(std::iter::once(&member))
            .enumerate()
        {
            if !crate::lock::valid_object_name(name) {
                return bad(format!(
                    "lock name {name:?} is not a valid object name (at most 253 lowercase letters, digits, '-' and '.')"
                ));
            }
            if by_name.insert(name.clone(), i).is_some()
                || (i < self.locks.len() && name.starts_with(&member_prefix))
            {
                return bad(format!(
                    "lock name {name:?} is given twice or collides with the set's member leases"
                ));
            }
        }
        let client = Arc::new(RestClient::new(&self.config)?);
        let interrupter = client.interrupter();
        // One label map for every lock (a thousand locks share it), another for our member lease.
        let labels = Arc::new(BTreeMap::from([(SET_LABEL.to_string(), self.name.clone())]));
        let mut member_labels = (*labels).clone();
        member_labels.insert(MEMBER_LABEL.to_string(), "true".into());
        let member_labels = Arc::new(member_labels);
        let (shared_namespace, shared_identity) = (
            Arc::<str>::from(namespace.as_str()),
            Arc::<str>::from(identity.as_str()),
        );
        // Each name once, shared by its lock, its election and state, and the handle.
        let names: Vec<Arc<str>> = self.locks.iter().map(|n| Arc::from(n.as_str())).collect();
        let member_name: Arc<str> = member.as_str().into();
        let locks: Vec<Option<Box<dyn crate::lock::Lock>>> = names
            .iter()
            .chain(std::iter::once(&member_name))
            .enumerate()
            .map(|(i, name)| {
                let labels = if i == self.locks.len() {
                    &member_labels
                } else {
                    &labels
                };
                let lock = LeaseLock::with_client(
                    client.clone(),
                    shared_namespace.clone(),
                    name.clone(),
                    shared_identity.clone(),
                )
                .with_shared_labels(labels.clone());
                Some(Box::new(lock) as Box<dyn crate::lock::Lock>)
            })
            .collect();
        let drain_timeout = self.drain_timeout.unwrap_or(self.timing.renew_deadline);
        let machine = SetMachine::new(
            SetSettings {
                identity: identity.clone(),
                locks: names.clone(),
                member,
                member_prefix,
                namespace: namespace.clone(),
                timing: self.timing,
                balance: self.balance,
                hashing: self.hashing,
                drain_timeout,
                watch_silence: crate::runner::pacing::watch_silence(&self.timing, false),
                server: self.config.url().ok().map(|u| u.base().to_string()),
                events: self.events.clone(),
            },
            Instant::now(),
            None,
        )?;
        let states = machine.states();
        let watcher = if self.watch {
            Watcher::start_labelled(
                &self.config,
                LockKind::Leases,
                &namespace,
                (SET_LABEL, &self.name),
                format!(
                    "watch leases {namespace} of set {} as {identity}",
                    self.name
                ),
                self.timing.retry_period,
            )?
        } else {
            None
        };
        let (done_tx, done) = unbounded();
        // Renews are spread over the retry period, so a window of it (or of a second, when that is
        // longer) sees the load as it is.
        let window = self.timing.retry_period.min(Duration::from_secs(1));
        let (min, max) = self.io_threads.map_or((2, MAX_IO_THREADS), |n| (n, n));
        let sizing = pool::Sizing { min, max, window };
        let pool = Pool::start(sizing, done_tx, Instant::now())?;
        let (commands, commands_rx) = unbounded();
        let members_path = format!(
            "{}?labelSelector={}%3D{}%2C{}%3Dtrue",
            crate::lock::object::collection_path::<crate::lock::Lease>(&namespace),
            SET_LABEL.replace('/', "%2F"),
            self.name,
            MEMBER_LABEL.replace('/', "%2F"),
        );
        let driver = Driver {
            machine,
            locks,
            pool,
            done,
            commands: commands_rx,
            watcher,
            client,
            interrupter: interrupter.clone(),
            members_path,
        };
        let thread = std::thread::Builder::new()
            .name("kube-elector-set".into())
            .spawn(move || driver.run())
            .map_err(|e| Error::spawn("elector set driver", e))?;
        let events = self.events.clone();
        Ok(ElectorSetHandle {
            states,
            names,
            identity,
            commands,
            thread: Mutex::new(Some(thread)),
            interrupter,
            drain_timeout,
            events,
        })
    }
}

/// A running elector set. Dropping it stops the set (draining and releasing, as
/// [`stop`](Self::stop) does).
#[must_use = "dropping the handle stops the set at once: keep it for as long as you campaign"]
pub struct ElectorSetHandle {
    /// One per lock, then our member lease's.
    states: Vec<Arc<State>>,
    names: Vec<Arc<str>>,
    identity: String,
    commands: Sender<SetCommand>,
    thread: Mutex<Option<JoinHandle<()>>>,
    interrupter: crate::client::Interrupter,
    drain_timeout: Duration,
    events: Arc<SetEvents>,
}

impl std::fmt::Debug for ElectorSetHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ElectorSetHandle")
            .field("identity", &self.identity)
            .field("locks", &self.names.len())
            .finish_non_exhaustive()
    }
}

impl ElectorSetHandle {
    /// How many locks the set campaigns for.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether the set has no lock (never: `start` refuses an empty set).
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Lock `shard`'s name.
    pub fn lock_name(&self, shard: usize) -> &str {
        &self.names[shard]
    }

    /// This member's identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Whether we lead lock `shard` right now: as cheap, and as bounded by its deadline, as
    /// [`LeaderHandle::is_leader`](crate::LeaderHandle::is_leader). Panics if `shard` is out of range.
    #[inline]
    pub fn is_leader(&self, shard: usize) -> bool {
        self.states[shard].is_leader()
    }

    /// The view of lock `shard` for worker threads: its terms, `run_while_leading`, events, checks.
    pub fn status(&self, shard: usize) -> LeaderStatus {
        LeaderStatus::new(self.states[shard].clone())
    }

    /// The locks we lead right now, by index.
    pub fn owned(&self) -> Vec<usize> {
        (0..self.names.len())
            .filter(|&i| self.is_leader(i))
            .collect()
    }

    /// A new subscription to every lock's events, each naming its lock; it ends once the set stops.
    pub fn events(&self) -> Receiver<ShardEvent> {
        self.events.subscribe()
    }

    /// Stop: every term ends at once, the leader work of every lock drains (each for at most the drain
    /// timeout and never past its term's deadline), then the locks whose work ended are released, and so
    /// is our member lease, so the other members take over within moments. A lock whose work outlives
    /// its drain is left to expire on its own (`Err(DrainTimedOut)`).
    pub fn stop(&self) -> Result<()> {
        self.end(true)
    }

    /// Stop without releasing anything, as if the process had crashed: every term ends at once, and
    /// the other members take the locks once their leases run out. For failover tests and demos.
    pub fn abandon(&self) {
        let _ = self.end(false);
    }

    fn end(&self, graceful: bool) -> Result<()> {
        let Some(thread) = crate::sync::lock(&self.thread).take() else {
            return Ok(());
        };
        let now = Instant::now();
        let reason = if graceful {
            StopReason::Stopped
        } else {
            StopReason::Abandoned
        };
        for s in &self.states {
            s.stop();
            s.announce_stopped(reason.clone());
        }
        // Each lock's drain may last until the deadline its term had when it ended (here, or earlier by
        // a give-up whose work still runs): read after the stop, so a term begun a moment before it counts.
        let deadlines: Vec<Option<Instant>> =
            self.states.iter().map(|s| s.drain_deadline()).collect();
        self.interrupter.interrupt();
        if !graceful {
            let _ = self.commands.send(SetCommand::Stop {
                release: Vec::new(),
                member: false,
            });
            let _ = thread.join();
            self.events.close();
            return Ok(());
        }
        let mut release = Vec::with_capacity(self.states.len());
        let mut stuck = 0u32;
        for (s, deadline) in self.states.iter().zip(deadlines) {
            let until = deadline.map_or(now, |d| d.min(later(now, self.drain_timeout)));
            let drained = s.drain.wait(until);
            if !drained {
                stuck += s.drain.running();
            }
            release.push(drained);
        }
        let _ = self.commands.send(SetCommand::Stop {
            release,
            member: true,
        });
        let _ = thread.join();
        self.events.close();
        if stuck > 0 {
            let e = Error::DrainTimedOut(Box::new(crate::error::DrainTimeout {
                context: format!("elector set as {}", self.identity),
                running: stuck,
                waited: now.elapsed(),
            }));
            log::warn!("{e}");
            return Err(e);
        }
        Ok(())
    }
}

impl Drop for ElectorSetHandle {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            log::warn!("elector set as {}: stopping: {e}", self.identity);
        }
    }
}

/// The fan-out of every lock's events, each naming its lock.
#[derive(Debug, Default)]
pub(crate) struct SetEvents {
    subscribers: Mutex<(Vec<Sender<ShardEvent>>, bool)>,
}

impl SetEvents {
    pub(crate) fn subscribe(&self) -> Receiver<ShardEvent> {
        let (tx, rx) = unbounded();
        let mut g = crate::sync::lock(&self.subscribers);
        if !g.1 {
            g.0.push(tx);
        }
        rx
    }

    pub(crate) fn publish(&self, event: ShardEvent) {
        let mut g = crate::sync::lock(&self.subscribers);
        g.0.retain(|tx| tx.send(event.clone()).is_ok());
    }

    fn close(&self) {
        let mut g = crate::sync::lock(&self.subscribers);
        g.1 = true;
        g.0.clear();
    }
}
