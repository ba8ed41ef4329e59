//! The handle of a running elector, and the view of it that worker threads get.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::state::{ElectorStats, State};
use super::worker::StopMode;
use crate::candidate::CandidateKeeper;
use crate::client::Interrupter;
use crate::error::{Error, Result};
use crate::events::LeaderEvent;

/// A running elector. Dropping it stops the elector (and releases the lock if so configured).
#[derive(Debug)]
pub struct LeaderHandle {
    pub(crate) state: Arc<State>,
    pub(crate) stop_tx: Sender<StopMode>,
    pub(crate) thread: Option<JoinHandle<Result<()>>>,
    /// Interrupt the renew thread's request in flight when stopping.
    pub(crate) interrupters: Vec<Interrupter>,
    /// Coordinated election: our LeaseCandidate's upkeep thread, stopped after the renew thread.
    pub(crate) candidate: Option<CandidateKeeper>,
}

impl LeaderHandle {
    /// Whether we lead right now. Cheap (one atomic load and one monotonic clock read) and bounded by the
    /// leadership deadline: false from `start of the last successful renew + renew_deadline` on, even if
    /// the renew thread is stuck in a request. Stop leader work as soon as this turns false.
    #[inline]
    pub fn is_leader(&self) -> bool {
        self.state.is_leader()
    }

    /// The holder we observed last (`None` before the first observation or while the lock is free).
    pub fn leader(&self) -> Option<String> {
        self.state.leader()
    }

    /// This candidate's identity.
    pub fn identity(&self) -> &str {
        &self.state.identity
    }

    /// A cheap, cloneable, `Send` view of this elector for worker threads: `is_leader()` and `leader()`
    /// without access to `stop()`.
    pub fn status(&self) -> LeaderStatus {
        LeaderStatus {
            state: self.state.clone(),
        }
    }

    /// A new subscription: it starts with the state so far (`NewLeader` for the holder last observed,
    /// then `StartedLeading` if we lead now), then receives every event sent from now on, so its stream
    /// is well formed however late it subscribes. Sending never blocks the renew thread; drop the
    /// receiver to unsubscribe.
    pub fn events(&self) -> Receiver<LeaderEvent> {
        self.state.events.subscribe()
    }

    /// A snapshot of the counters: renews ok and failed, slow-path renews, acquisitions, holder changes
    /// seen, the last step's latency and error. Export them to your metrics system as you like.
    pub fn stats(&self) -> ElectorStats {
        self.state.stats()
    }

    /// A liveness check with client-go's healthz semantics: unhealthy when we believe we lead but the last
    /// successful renew is older than `lease_duration + max_tolerable_expired` (the renew thread is stuck).
    /// kube-controller-manager uses 20 s. Wire it to a liveness probe so a wedged process is restarted.
    pub fn check(&self, max_tolerable_expired: Duration) -> Result<()> {
        let Some(last) = self.state.last_renew() else {
            return Ok(());
        };
        let age = Instant::now().saturating_duration_since(last);
        let limit = self.state.timing.lease_duration + max_tolerable_expired;
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

    /// Stop: `is_leader()` turns false at once, `StoppedLeading` is sent if we led, the request in flight
    /// is interrupted, the lock is released if configured (only if the freshly fetched record still names
    /// us), and the thread is joined. Returns the release error, if any. Blocks at most about one request
    /// timeout (`max(1 s, renew_deadline / 2)`) for the release. Calling it again does nothing.
    pub fn stop(&mut self) -> Result<()> {
        self.end(StopMode::Stop)
    }

    /// Stop without releasing the lock, as if the process had crashed: `is_leader()` turns false at once
    /// and followers take over only after the lease expires. For failover tests and demos; services
    /// should use [`stop`](LeaderHandle::stop).
    pub fn abandon(&mut self) {
        if let Err(e) = self.end(StopMode::Abandon) {
            log::warn!("abandoning leader elector {}: {e}", self.state.identity);
        }
    }

    fn end(&mut self, mode: StopMode) -> Result<()> {
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        // Leadership ends now; the request in flight is cut; then the thread is told how to finish (it
        // resumes the clients for the release only after this message, so no interrupt can hit it).
        self.state.stop();
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
        self.candidate = None;
        result
    }
}

impl Drop for LeaderHandle {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            log::warn!("stopping leader elector {}: {e}", self.state.identity);
        }
    }
}

/// A view of a running elector for other threads (see [`LeaderHandle::status`]).
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
}

impl std::fmt::Debug for LeaderStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderStatus")
            .field("identity", &self.state.identity)
            .field("is_leader", &self.is_leader())
            .finish()
    }
}
