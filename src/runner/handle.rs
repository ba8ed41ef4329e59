//! The handle of a running elector, and the view of it that other threads get.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use super::state::{ElectorStats, State, lock};
use super::term::Term;
use super::worker::StopMode;
use crate::candidate::CandidateKeeper;
use crate::client::Interrupter;
use crate::error::{Error, Result};
use crate::events::LeaderEvent;

/// A running elector. Dropping it stops the elector (and releases the lock if so configured), so keep
/// it for as long as you campaign. Every method takes `&self`: share it (`Arc<LeaderHandle>`) between,
/// say, a signal thread that calls [`stop`](LeaderHandle::stop) and an HTTP thread that serves
/// [`check`](LeaderHandle::check); or hand worker threads a [`LeaderStatus`].
#[derive(Debug)]
#[must_use = "dropping the handle stops the elector at once: keep it for as long as you campaign"]
pub struct LeaderHandle {
    status: LeaderStatus,
    stop_tx: Sender<StopMode>,
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
        stop_tx: Sender<StopMode>,
        thread: JoinHandle<Result<()>>,
        interrupters: Vec<Interrupter>,
        candidate: Option<CandidateKeeper>,
    ) -> Self {
        LeaderHandle {
            status: LeaderStatus { state },
            stop_tx,
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

    /// Whether the renew thread is still running (it ends after `stop()`, or after a loss when
    /// `keep_campaigning(false)`).
    pub fn is_running(&self) -> bool {
        lock(&self.thread)
            .as_ref()
            .is_some_and(|t| !t.is_finished())
    }

    /// Stop: `is_leader()` turns false and the current [`Term`] is cancelled at once, `StoppedLeading`
    /// is sent if we led, the request in flight is interrupted, the lock is released if configured
    /// (only if the freshly fetched record still names us), the thread is joined and every event
    /// receiver ends after its last event. Returns the release error, if any. Blocks at most about one
    /// request timeout (`max(1 s, renew_deadline / 2)`) for the release. Finish (or abandon) in-flight
    /// leader work before calling it: once the lock is released another candidate may start at once.
    /// Calling it again, from any thread, waits for the first call to finish and returns `Ok`.
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
        // plugin) cannot hold StoppedLeading back. The request in flight is cut; then the thread is told
        // how to finish (it resumes the clients for the release only after this message, so no
        // interrupt can hit it).
        state.stop();
        state.announce_stopped(match mode {
            StopMode::Stop => crate::events::StopReason::Stopped,
            StopMode::Abandon => crate::events::StopReason::Abandoned,
        });
        for i in &self.interrupters {
            i.interrupt();
        }
        let _ = self.stop_tx.try_send(mode);
        let result = match thread.join() {
            Ok(result) => result,
            Err(_) => Err(Error::RenewThreadPanicked(
                "the renew thread could not be joined".into(),
            )),
        };
        // The thread closes the events when it ends; a thread that could not be joined did not.
        state.close();
        lock(&self.candidate).take();
        result
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

    /// Run `work` on a thread of its own once per term, as client-go's `OnStartedLeading` does: the
    /// thread waits until we lead, calls `work` with the term, and when `work` returns waits for that
    /// term to end before waiting for the next. `work` should return soon after
    /// [`Term::is_cancelled`] turns true. The thread ends when the elector stops; join it after
    /// [`LeaderHandle::stop`] to know the work has finished.
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
                    work(term.clone());
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
