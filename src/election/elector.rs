//! [`Elector`]: an [`Election`] driven over blocking [`Lock`]s, one step per call, for callers who run
//! the election from their own loop.

use std::time::Instant;

use chrono::{DateTime, Utc};

use super::Timing;
use super::machine::Election;
use super::protocol::{Action, ElectionConfig, Outcome, Reply, Request, Slot};
use crate::error::{Error, Result};
use crate::events::StopReason;
use crate::lock::{Lock, Locks};

/// Where the election reads time. Expiry is judged only on the monotonic clock; the wall clock is only
/// written into records. Tests substitute a clock they drive.
pub trait Clock: Send {
    /// The monotonic now.
    fn now(&self) -> Instant;
    /// The wall-clock now, written as `acquireTime` / `renewTime`.
    fn wall(&self) -> DateTime<Utc>;
}

/// The process clocks: `Instant::now()` and `Utc::now()`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn wall(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The election for one candidate on its lock(s), one blocking step at a time.
///
/// Call [`step`](Elector::step) (or client-go's [`try_acquire_or_renew`](Elector::try_acquire_or_renew))
/// every retry period; [`is_leader`](Elector::is_leader) is true only until the start of the last
/// successful renew plus `renew_deadline`.
///
/// ```
/// use kube_elector::Timing;
/// use kube_elector::election::Elector;
/// use kube_elector::lock::LeaseLock;
/// let server = kube_elector::testing::ApiServer::start()?;
/// let lock = LeaseLock::new(&server.config(), "default", "my-app", "pod-1")?;
/// let mut elector = Elector::new(lock, Timing::default())?;
/// let outcome = elector.step();
/// assert!(outcome.is_leading());
/// assert!(elector.is_leader());
/// assert!(elector.release()?, "released: a follower may take over at once");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Elector<L: Lock = Box<dyn Lock>, C: Clock = SystemClock> {
    election: Election<Error>,
    locks: Locks<L>,
    clock: C,
}

impl<L: Lock> Elector<L, SystemClock> {
    /// An elector on `locks` (one [`Lock`], or a migration pair) with the system clocks. Fails if the
    /// timing or the lock's identity is invalid.
    pub fn new(locks: impl Into<Locks<L>>, timing: Timing) -> Result<Self> {
        Self::with_clock(locks, timing, SystemClock)
    }
}

impl<L: Lock, C: Clock> Elector<L, C> {
    /// An elector reading time from `clock`.
    pub fn with_clock(locks: impl Into<Locks<L>>, timing: Timing, clock: C) -> Result<Self> {
        let locks = locks.into();
        timing.validate_resolution(locks.record_time_resolution(), &locks.describe())?;
        let mut config = ElectionConfig::new(locks.identity(), locks.describe(), timing);
        config.pair = locks.is_pair();
        let election = Election::new(config)?;
        Ok(Elector {
            election,
            locks,
            clock,
        })
    }

    /// Coordinated leader election (Kubernetes 1.31+): the API server chooses the holder among the
    /// `LeaseCandidate`s and writes it into the Lease. We never create or take the Lease; we renew it
    /// only while it names us, and stop renewing (letting our term end by the deadline) once it names
    /// another `preferredHolder`.
    pub fn coordinated(mut self, coordinated: bool) -> Result<Self> {
        let mut config = self.election.config().clone();
        config.coordinated = coordinated;
        self.election = Election::new(config)?;
        Ok(self)
    }

    /// The election's durations.
    pub fn timing(&self) -> Timing {
        self.election.timing()
    }

    /// The lock(s) this elector campaigns on.
    pub fn locks(&self) -> &Locks<L> {
        &self.locks
    }

    /// The state machine, for inspection.
    pub fn election(&self) -> &Election<Error> {
        &self.election
    }

    /// True until the start of the last successful renew plus `renew_deadline`.
    pub fn is_leader(&self) -> bool {
        self.election.is_leader(self.clock.now())
    }

    /// One step: renew if we lead (one write per lock object), else read the lock and take it if it is
    /// free or its holder's lease has expired. The outcome says where we stand and what changed.
    pub fn step(&mut self) -> Outcome<Error> {
        let action = self.election.begin(self.clock.now(), self.clock.wall());
        match self.drive(action, &|| false) {
            Some(Action::Stepped(outcome)) => outcome,
            _ => unreachable_outcome(),
        }
    }

    /// A step that gives up between requests once `stop()` says so (`None` then).
    pub(crate) fn step_until(&mut self, stop: &dyn Fn() -> bool) -> Option<Outcome<Error>> {
        let action = self.election.begin(self.clock.now(), self.clock.wall());
        match self.drive(action, stop)? {
            Action::Stepped(outcome) => Some(outcome),
            _ => None,
        }
    }

    /// client-go's `tryAcquireOrRenew`: `Ok(true)` when we hold the lock after the step, `Ok(false)` when
    /// someone else does, `Err` when the step failed (a leader stays leader until its deadline; call
    /// again after `retry_period`).
    pub fn try_acquire_or_renew(&mut self) -> Result<bool> {
        let outcome = self.step();
        match outcome.error {
            Some(e) => Err(e),
            None => Ok(outcome.is_leading()),
        }
    }

    /// Stop leading and give the lock up: only if the record we fetch still names us, write holder `""`
    /// and duration 1 s. `Ok(true)` when we released it, `Ok(false)` when there was nothing of ours.
    pub fn release(&mut self) -> Result<bool> {
        self.release_until(&|| false)
    }

    pub(crate) fn release_until(&mut self, stop: &dyn Fn() -> bool) -> Result<bool> {
        let _ = self.election.resign(StopReason::Stopped);
        let action = self
            .election
            .begin_release(self.clock.now(), self.clock.wall());
        match self.drive(action, stop) {
            Some(Action::Released(result)) => result,
            _ => Ok(false),
        }
    }

    /// A change seen on a watch of the lock (see [`Election::observe_watched`]).
    pub(crate) fn observe_watched(
        &mut self,
        change: crate::election::Watched,
        now: Instant,
    ) -> crate::election::WatchReaction {
        self.election.observe_watched(change, now)
    }

    /// The term ran out before the runner could publish its last renew: end it here too, so the next
    /// success begins a new term.
    pub(crate) fn lapse(&mut self) -> Option<crate::events::LeaderEvent> {
        self.election.resign(StopReason::RenewDeadlineExceeded {
            last_error: "the renew succeeded only after the renew deadline had passed".into(),
        })
    }

    /// Resign without releasing: leadership ends here (a crash-like stop).
    pub(crate) fn resign(&mut self, reason: StopReason) -> Option<crate::events::LeaderEvent> {
        self.election.resign(reason)
    }

    /// Run requests until the election is done, or `stop()` says to give up.
    fn drive(
        &mut self,
        mut action: Action<Error>,
        stop: &dyn Fn() -> bool,
    ) -> Option<Action<Error>> {
        loop {
            let Action::Send(request) = action else {
                return Some(action);
            };
            if stop() {
                return None;
            }
            let sent = self.clock.now();
            let (reply, server_date) = self.execute(request);
            if let Some(date) = server_date {
                self.election.note_server_time(date, sent);
            }
            action = self
                .election
                .feed(reply, self.clock.now(), self.clock.wall());
        }
    }

    /// Send `request` to its lock object; the reply, and with coordinated election (which writes renew
    /// times on the server's clock) the server's clock in the answer.
    fn execute(&mut self, request: Request) -> (Reply<Error>, Option<DateTime<Utc>>) {
        let coordinated = self.election.is_coordinated();
        let (primary, secondary) = self.locks.both_mut();
        let lock = match request.slot() {
            Slot::Primary => Some(primary),
            Slot::Secondary => secondary,
        };
        let Some(lock) = lock else {
            return (
                Reply::Failed(Error::InvalidElectionConfig(
                    "a migration pair needs two locks".into(),
                )),
                None,
            );
        };
        let reply = match request {
            Request::Get { timeout, .. } => Reply::from_read(lock.get(timeout)),
            Request::Create {
                record, timeout, ..
            } => Reply::from_write(lock.create(&record, timeout)),
            Request::Update {
                record,
                resource_version,
                timeout,
                ..
            } => Reply::from_write(lock.update(&record, &resource_version, timeout)),
        };
        let server_date = if coordinated {
            lock.server_date()
        } else {
            None
        };
        (reply, server_date)
    }
}

/// `begin` always ends in `Stepped` when driven without a stop: this is never reached.
fn unreachable_outcome() -> Outcome<Error> {
    Outcome {
        status: crate::election::Status::Following {
            holder: None,
            expiry: None,
        },
        holder: None,
        events: Vec::new(),
        renewed: false,
        slow_path: false,
        error: None,
    }
}

impl<L: Lock, C: Clock> std::fmt::Debug for Elector<L, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Elector")
            .field("lock", &self.locks.describe())
            .field("identity", &self.locks.identity())
            .field("timing", &self.election.timing())
            .field("leading", &self.is_leader())
            .finish()
    }
}
