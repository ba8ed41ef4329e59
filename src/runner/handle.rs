//! The handle of a running elector, and the view of it that other threads get.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::candidate::CandidateKeeper;
use super::state::{ElectorStats, State};
use super::term::Term;
use super::worker::{Command, Finish, StopMode};
use crate::client::Interrupter;
use crate::election::later;
use crate::error::{DrainTimeout, Error, Result};
use crate::events::LeaderEvent;
use crate::sync::lock;

/// A running elector. Dropping it stops the elector (and releases the lock if so configured), so keep
/// it for as long as you campaign. Every method takes `&self`: share it (`Arc<LeaderHandle>`) between,
/// say, a signal thread that calls [`stop`](LeaderHandle::stop) and an HTTP thread that serves
/// [`check`](LeaderHandle::check); or hand worker threads a [`LeaderStatus`].
#[derive(Debug)]
#[must_use = "dropping the handle stops the elector at once: keep it for as long as you campaign"]
pub struct LeaderHandle {
    status: LeaderStatus,
    commands: Sender<Command>,
    /// How long a graceful stop waits for leader work to end before it releases (never past the
    /// term's deadline), and whether it releases at all.
    drain_timeout: Duration,
    release_on_stop: bool,
    /// The renew thread, until joined. Held locked for the whole of a stop, so a second `stop()`
    /// returns only once the first has finished.
    thread: Mutex<Option<JoinHandle<Result<()>>>>,
    /// Interrupt the renew thread's request in flight when stopping.
    interrupters: Vec<Interrupter>,
    /// Coordinated election: our LeaseCandidate's upkeep thread, stopped after the renew thread.
    candidate: Mutex<Option<CandidateKeeper>>,
}

impl LeaderHandle {
    pub(crate) fn new(
        state: Arc<State>,
        commands: Sender<Command>,
        (drain_timeout, release_on_stop): (Duration, bool),
        thread: JoinHandle<Result<()>>,
        interrupters: Vec<Interrupter>,
        candidate: Option<CandidateKeeper>,
    ) -> Self {
        LeaderHandle {
            status: LeaderStatus { state },
            commands,
            drain_timeout,
            release_on_stop,
            thread: Mutex::new(Some(thread)),
            interrupters,
            candidate: Mutex::new(candidate),
        }
    }

    /// Whether we lead right now. Cheap (one atomic load and one monotonic clock read) and bounded by the
    /// leadership deadline: false from `start of the last successful renew + renew_deadline` on, even if
    /// the renew thread is stuck in a request. Stop leader work as soon as this turns false.
    #[inline]
    pub fn is_leader(&self) -> bool {
        self.status.is_leader()
    }

    /// The holder we observed last (`None` before the first observation or while the lock is free).
    pub fn leader(&self) -> Option<String> {
        self.status.leader()
    }

    /// This candidate's identity.
    pub fn identity(&self) -> &str {
        self.status.identity()
    }

    /// A cheap, cloneable, `Send` view of this elector for other threads: everything but stopping.
    pub fn status(&self) -> LeaderStatus {
        self.status.clone()
    }

    /// A new subscription to the leadership events (see [`LeaderStatus::events`]).
    pub fn events(&self) -> Receiver<LeaderEvent> {
        self.status.events()
    }

    /// The current term, while we lead (see [`LeaderStatus::term`]).
    pub fn term(&self) -> Option<Term> {
        self.status.term()
    }

    /// Wait until we lead (see [`LeaderStatus::wait_until_leader`]).
    pub fn wait_until_leader(&self, timeout: Option<Duration>) -> Option<Term> {
        self.status.wait_until_leader(timeout)
    }

    /// A snapshot of the counters (see [`LeaderStatus::stats`]).
    pub fn stats(&self) -> ElectorStats {
        self.status.stats()
    }

    /// The liveness check (see [`LeaderStatus::check`]).
    pub fn check(&self, max_tolerable_expired: Duration) -> Result<()> {
        self.status.check(max_tolerable_expired)
    }

    /// The readiness check (see [`LeaderStatus::ready`]).
    pub fn ready(&self, max_silence: Duration) -> Result<()> {
        self.status.ready(max_silence)
    }

    /// Give up leadership but keep campaigning: what moves leadership off this pod. The term ends at
    /// once (`is_leader()` false, tokens cancelled, `StoppedLeading { reason: SteppedDown }`), the leader
    /// work drains as for [`stop`](LeaderHandle::stop), the lock is released so another candidate takes
    /// over within a round trip, and this elector makes no attempt to lead again for `cooldown`. Returns
    /// once the lock is released: `Ok(true)`, or `Ok(false)` if we did not lead. Leader work still
    /// running when the drain runs out keeps the lock unreleased (`Err(DrainTimedOut)`): it expires on
    /// its own.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use kube_elector::{LeaderElector, testing::ApiServer};
    /// # let server = ApiServer::start().unwrap();
    /// let handle = LeaderElector::builder(server.config(), "doc-step-down")
    ///     .identity("a")
    /// #   .lease_duration(Duration::from_secs(2)).renew_deadline(Duration::from_secs(1))
    /// #   .retry_period(Duration::from_millis(200))
    ///     .start()?;
    /// # handle.wait_until_leader(Some(Duration::from_secs(10)));
    /// if handle.is_leader() {
    ///     assert!(handle.step_down(Duration::from_secs(30))?, "released for another candidate");
    /// }
    /// assert!(!handle.is_leader());
    /// # Ok::<(), kube_elector::Error>(())
    /// ```
    pub fn step_down(&self, cooldown: Duration) -> Result<bool> {
        let (reply, answer) = crossbeam_channel::bounded(1);
        if self.status.is_stopped()
            || self
                .commands
                .send(Command::StepDown { cooldown, reply })
                .is_err()
        {
            return Ok(false);
        }
        // The renew thread answers once released (or when it stops): never later than its drain and
        // one release.
        answer.recv().unwrap_or(Ok(false))
    }

    /// Whether the renew thread is still running (it ends after `stop()`, or after a loss when
    /// `keep_campaigning(false)`).
    pub fn is_running(&self) -> bool {
        lock(&self.thread)
            .as_ref()
            .is_some_and(|t| !t.is_finished())
    }

    /// Stop: `is_leader()` turns false and the current [`Term`] is cancelled at once, `StoppedLeading`
    /// is sent if we led, and the request in flight is interrupted. Then the leader work drains: `stop`
    /// waits until every [`run_while_leading`](LeaderStatus::run_while_leading) call and every
    /// [`WorkGuard`](crate::runner::WorkGuard) of the term has ended, for at most the drain timeout and
    /// never past the term's deadline (until then the lock is surely still ours). Only then is the lock
    /// released (if configured, and only if our record is still there), so the next leader never starts
    /// while this one's work runs. Leader work that outlives the drain keeps the lock unreleased: it
    /// expires on its own a lease duration after the last renew, and `stop` returns
    /// `Err(DrainTimedOut)`, also logged. Finally the thread is joined and every event receiver ends
    /// after its last event. Returns the release error, if any. Blocks at most the drain plus about one
    /// request timeout (`max(1 s, renew_deadline / 2)`) for the release. Calling it again, from any
    /// thread, waits for the first call to finish and returns `Ok`.
    pub fn stop(&self) -> Result<()> {
        self.end(StopMode::Stop)
    }

    /// Stop without releasing the lock, as if the process had crashed: `is_leader()` turns false at once
    /// and followers take over only after the lease expires. For failover tests and demos; services
    /// should use [`stop`](LeaderHandle::stop).
    pub fn abandon(&self) {
        if let Err(e) = self.end(StopMode::Abandon) {
            log::warn!("{}: abandoning: {e}", self.status.state.context);
        }
    }

    fn end(&self, mode: StopMode) -> Result<()> {
        let mut slot = lock(&self.thread);
        let Some(thread) = slot.take() else {
            return Ok(());
        };
        let state = &self.status.state;
        // Leadership ends now, and is announced now: a renew thread stuck in a request (or an exec
        // plugin) cannot hold StoppedLeading back. The request in flight is cut; the leader work
        // drains; then the thread is told how to finish (it resumes the clients for the release only
        // after this message, so no interrupt can hit it).
        state.stop();
        // The deadline of the term the stop ended (or of one a step-down ended a moment ago, whose work
        // may still be draining): until then the lock is surely ours, so the drain may last that long.
        // Read after the stop, so that a term begun just before it counts.
        let deadline = state.drain_deadline();
        state.announce_stopped(match mode {
            StopMode::Stop => crate::events::StopReason::Stopped,
            StopMode::Abandon => crate::events::StopReason::Abandoned,
        });
        for i in &self.interrupters {
            i.interrupt();
        }
        let (finish, drained) = match mode {
            StopMode::Abandon => (Finish::Abandon, Ok(())),
            StopMode::Stop if !self.release_on_stop => (Finish::Keep, Ok(())),
            StopMode::Stop => self.drain(deadline),
        };
        let _ = self.commands.send(Command::Stop(finish));
        let joined = match thread.join() {
            Ok(result) => result,
            Err(_) => Err(Error::RenewThreadPanicked(
                "the renew thread could not be joined".into(),
            )),
        };
        let result = drained.and(joined);
        // The thread closes the events when it ends; a thread that could not be joined did not.
        state.close();
        lock(&self.candidate).take();
        result
    }
}

impl LeaderHandle {
    /// Wait for the leader work to end, for at most the drain timeout and never past `deadline` (the
    /// term's: after it, the lock may be another's): release if it ended, else keep the lock.
    fn drain(&self, deadline: Option<Instant>) -> (Finish, Result<()>) {
        let state = &self.status.state;
        let started = Instant::now();
        let until = deadline.map_or(started, |d| d.min(later(started, self.drain_timeout)));
        if state.drain.wait(until) {
            return (Finish::Release, Ok(()));
        }
        let e = Error::DrainTimedOut(Box::new(DrainTimeout {
            context: state.context.clone(),
            running: state.drain.running(),
            waited: started.elapsed(),
        }));
        log::warn!("{e}");
        (Finish::Keep, Err(e))
    }
}

impl Drop for LeaderHandle {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            log::warn!("{}: stopping: {e}", self.status.state.context);
        }
    }
}

/// A view of a running elector for other threads (see [`LeaderHandle::status`]): cheap to clone, and
/// everything the handle offers except stopping.
#[derive(Clone)]
pub struct LeaderStatus {
    state: Arc<State>,
}

impl LeaderStatus {
    pub(crate) fn new(state: Arc<State>) -> Self {
        LeaderStatus { state }
    }

    /// Same as [`LeaderHandle::is_leader`].
    #[inline]
    pub fn is_leader(&self) -> bool {
        self.state.is_leader()
    }

    /// Same as [`LeaderHandle::leader`].
    pub fn leader(&self) -> Option<String> {
        self.state.leader()
    }

    /// The candidate's identity.
    pub fn identity(&self) -> &str {
        &self.state.identity
    }

    /// The lock's name (the `name` label of the [metrics](crate::metrics)).
    pub fn lock_name(&self) -> &str {
        &self.state.name
    }

    /// Whether the elector has stopped for good (stopped, abandoned, or its thread ended).
    pub fn is_stopped(&self) -> bool {
        self.state.is_stopped()
    }

    /// The current term, while we lead: what a worker that starts in the middle of a term reads to get
    /// its fencing token and its cancellation. `None` while we do not lead.
    pub fn term(&self) -> Option<Term> {
        self.state
            .current_term()
            .map(|slot| Term::new(self.state.clone(), slot))
    }

    /// Block until we lead and return the term, or `None` once the elector stops or `timeout` passes
    /// (`None` timeout: no limit). Sleeps; no polling.
    pub fn wait_until_leader(&self, timeout: Option<Duration>) -> Option<Term> {
        self.state
            .wait_for_term(timeout)
            .map(|slot| Term::new(self.state.clone(), slot))
    }

    /// [`wait_until_leader`](Self::wait_until_leader), woken early by the caller's own shutdown: `None`
    /// as soon as `shutdown` receives anything or disconnects, the elector stops, or `timeout` passes.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use kube_elector::{LeaderElector, testing::ApiServer};
    /// # let server = ApiServer::start().unwrap();
    /// # let handle = LeaderElector::builder(server.config(), "doc-wait-or").identity("a").start().unwrap();
    /// let (shutdown_tx, shutdown) = crossbeam_channel::bounded::<()>(1);
    /// // Another thread (say, a SIGTERM handler) sends on shutdown_tx to end the wait.
    /// # drop(shutdown_tx);
    /// match handle.status().wait_until_leader_or(&shutdown, None) {
    ///     Some(term) => { /* lead, until term.is_cancelled() */ }
    ///     None => { /* shutting down, or the elector stopped */ }
    /// }
    /// ```
    pub fn wait_until_leader_or<T>(
        &self,
        shutdown: &Receiver<T>,
        timeout: Option<Duration>,
    ) -> Option<Term> {
        // Subscribed first, so that a term that begins after the check below is announced to us.
        let events = self.events();
        let end = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            if let Some(term) = self.term() {
                return Some(term);
            }
            if self.is_stopped() {
                return None;
            }
            let timer = match end {
                Some(e) => crossbeam_channel::at(e),
                None => crossbeam_channel::never(),
            };
            crossbeam_channel::select! {
                recv(shutdown) -> _ => return None,
                recv(events) -> e => if e.is_err() { return self.term() },
                recv(timer) -> _ => return self.term(),
            }
        }
    }

    /// Run `work` on a thread of its own once per term, as client-go's `OnStartedLeading` does: the
    /// thread waits until we lead, calls `work` with the term, and when `work` returns waits for that
    /// term to end before waiting for the next. `work` should return soon after
    /// [`Term::is_cancelled`] turns true: a graceful handoff ([`LeaderHandle::stop`], a step-down, a
    /// drop) waits for it to return before it releases the lock, for at most the drain timeout. The
    /// thread ends when the elector stops.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use kube_elector::{LeaderElector, testing::ApiServer};
    /// # let server = ApiServer::start().unwrap();
    /// let handle = LeaderElector::builder(server.config(), "doc-run-while-leading")
    ///     .identity("a")
    /// #   .lease_duration(Duration::from_secs(2)).renew_deadline(Duration::from_secs(1))
    /// #   .retry_period(Duration::from_millis(200))
    ///     .start()?;
    /// let worker = handle.status().run_while_leading(|term| {
    ///     while !term.wait_cancelled(Duration::from_millis(50)) {
    ///         // leader-only work, fenced with term.transitions()
    ///     }
    /// })?;
    /// # handle.wait_until_leader(Some(Duration::from_secs(10)));
    /// handle.stop()?;
    /// worker.join().unwrap();
    /// # Ok::<(), kube_elector::Error>(())
    /// ```
    pub fn run_while_leading<F>(&self, mut work: F) -> Result<JoinHandle<()>>
    where
        F: FnMut(Term) + Send + 'static,
    {
        let status = self.clone();
        std::thread::Builder::new()
            .name("kube-elector-term".into())
            .spawn(move || {
                while let Some(term) = status.wait_until_leader(None) {
                    // Registered with the term: a graceful handoff waits for it before it releases.
                    if let Some(_work) = term.begin_work() {
                        work(term.clone());
                    }
                    term.wait();
                }
            })
            .map_err(|e| Error::spawn("leader work", e))
    }

    /// A new subscription: it starts with the state so far (`NewLeader` for the holder last observed,
    /// then `StartedLeading` if we lead now), then receives every event sent from now on, so its stream
    /// is well formed however late it subscribes; it ends (disconnects) after the last event once the
    /// elector has stopped, so `for event in status.events()` finishes by itself. Sending never blocks
    /// the renew thread; drop the receiver to unsubscribe. To see every event from the very first,
    /// subscribe on the builder ([`LeaderElectorBuilder::events`](crate::LeaderElectorBuilder::events)).
    pub fn events(&self) -> Receiver<LeaderEvent> {
        self.state.events.subscribe()
    }

    /// A snapshot of the counters: renews ok and failed, slow-path renews, acquisitions, holder changes
    /// seen, the last step's latency and error. The [`metrics`](crate::metrics) module exports them.
    pub fn stats(&self) -> ElectorStats {
        self.state.stats()
    }

    /// A readiness check: `Ok` once the API server has answered a request of ours (a read, a write, a
    /// lost race, the watch) within the last `max_silence`; an error that says since when it has not,
    /// and why, before the first answer and once it has been silent longer. Wire it to a readiness probe
    /// (with `max_silence` of a few retry periods, more than `retry_period × 2.2`) so a replica that
    /// cannot reach the API server (a closed port, a revoked token, missing RBAC, an unknown CA) is not
    /// counted as a working candidate.
    pub fn ready(&self, max_silence: Duration) -> Result<()> {
        self.state.ready(max_silence)
    }

    /// A liveness check with client-go's healthz semantics: unhealthy when we believe we lead but the last
    /// successful renew is older than `lease_duration + max_tolerable_expired` (the renew thread is stuck).
    /// kube-controller-manager uses 20 s. Wire it to a liveness probe so a wedged process is restarted.
    pub fn check(&self, max_tolerable_expired: Duration) -> Result<()> {
        self.state.check(max_tolerable_expired)
    }
}

impl std::fmt::Debug for LeaderStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderStatus")
            .field("identity", &self.state.identity)
            .field("lock", &self.state.context)
            .field("is_leader", &self.is_leader())
            .finish()
    }
}
