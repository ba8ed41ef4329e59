//! A term of leadership as a token for worker threads: the fencing number of the term, and a
//! cancellation that fires the moment `is_leader()` turns false.

use std::sync::Arc;
use std::time::Duration;

use super::state::{State, TermSlot};

/// One term of leadership, handed to worker threads (see
/// [`LeaderStatus::wait_until_leader`](crate::runner::LeaderStatus::wait_until_leader)).
///
/// The term is *cancelled* the moment leadership ends: at the leadership deadline when renews stop
/// succeeding (even while the renew thread is stuck on a hung server), when another candidate takes
/// the lock, or when the elector stops. A later term of the same elector is a different token, so work
/// begun in one term never continues in the next by mistake.
///
/// [`is_cancelled`](Term::is_cancelled) is two atomic loads and a clock read, cheap enough for every
/// iteration of a loop; [`wait_cancelled`](Term::wait_cancelled) blocks until the end of the term
/// without polling.
///
/// ```
/// # use std::time::Duration;
/// # use kube_elector::{LeaderElector, testing::ApiServer};
/// # let server = ApiServer::start().unwrap();
/// # let handle = LeaderElector::builder(server.config(), "doc-term").identity("a")
/// #     .lease_duration(Duration::from_secs(2)).renew_deadline(Duration::from_secs(1))
/// #     .retry_period(Duration::from_millis(200)).start().unwrap();
/// let status = handle.status();
/// if let Some(term) = status.wait_until_leader(Some(Duration::from_secs(10))) {
///     // Pass term.transitions() to the systems you write to, as a fencing token.
///     let mut done = 0;
///     while !term.is_cancelled() && done < 3 {
///         done += 1; // one unit of leader-only work
///     }
/// }
/// ```
#[derive(Clone)]
pub struct Term {
    state: Arc<State>,
    slot: TermSlot,
}

impl Term {
    pub(crate) fn new(state: Arc<State>, slot: TermSlot) -> Self {
        Term { state, slot }
    }

    /// The lock's transition counter (`leaseTransitions`) in this term: it grows with every change of
    /// holder, so it serves as a fencing token for writes made as leader. Two terms of the same holder
    /// with no other holder between them share it.
    pub fn transitions(&self) -> i32 {
        self.slot.transitions
    }

    /// Whether the term is over. Exact: it turns true at the instant `is_leader()` turns false for
    /// this term.
    #[inline]
    pub fn is_cancelled(&self) -> bool {
        !self.state.holds_term(self.slot.seq)
    }

    /// Block until the term ends (true) or `timeout` passes while it lasts (false). It wakes at the
    /// leadership deadline by itself, so a renew thread stuck on a hung server does not delay it.
    pub fn wait_cancelled(&self, timeout: Duration) -> bool {
        self.state.wait_term_end(self.slot.seq, Some(timeout))
    }

    /// Block until the term ends.
    pub fn wait(&self) {
        self.state.wait_term_end(self.slot.seq, None);
    }

    /// Begin a unit of leader work in this term: `None` if the term is already over (then do not start
    /// it), else a guard to keep until the unit is done. A graceful handoff ([`stop`], a step-down, a drop
    /// of the handle) cancels the term at once and then waits, bounded by the drain timeout, until every
    /// guard is dropped before it releases the lock, so the next leader never starts while this work
    /// runs. Work run by [`run_while_leading`] is registered this way already; use it for work on threads
    /// of your own.
    ///
    /// [`stop`]: crate::LeaderHandle::stop
    /// [`run_while_leading`]: crate::LeaderStatus::run_while_leading
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use kube_elector::{LeaderElector, testing::ApiServer};
    /// # let server = ApiServer::start().unwrap();
    /// # let handle = LeaderElector::builder(server.config(), "doc-begin-work").identity("a")
    /// #     .lease_duration(Duration::from_secs(2)).renew_deadline(Duration::from_secs(1))
    /// #     .retry_period(Duration::from_millis(200)).start().unwrap();
    /// let term = handle.wait_until_leader(Some(Duration::from_secs(10))).expect("leads");
    /// for _ in 0..3 {
    ///     let Some(_work) = term.begin_work() else { break }; // the term is over
    ///     // one item of leader-only work, fenced with term.transitions()
    /// } // each item's guard is dropped at the end of its iteration
    /// handle.stop()?; // waits for any guard still alive, then releases
    /// # Ok::<(), kube_elector::Error>(())
    /// ```
    pub fn begin_work(&self) -> Option<WorkGuard> {
        self.state.begin_work(self.slot.seq).then(|| WorkGuard {
            state: self.state.clone(),
        })
    }
}

impl std::fmt::Debug for Term {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Term")
            .field("identity", &self.state.identity)
            .field("transitions", &self.slot.transitions)
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

/// One unit of leader work in flight, registered with its term (see
/// [`Term::begin_work`](crate::Term::begin_work)): while it lives, a graceful handoff waits before it
/// releases the lock. Drop it when the unit is done.
#[must_use = "the work counts as running only while the guard lives"]
pub struct WorkGuard {
    pub(crate) state: Arc<State>,
}

impl Drop for WorkGuard {
    fn drop(&mut self) {
        self.state.drain.leave();
    }
}

impl std::fmt::Debug for WorkGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkGuard")
            .field("identity", &self.state.identity)
            .finish()
    }
}
