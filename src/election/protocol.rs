//! What the election state machine asks for and is told: the [`Request`]s it wants sent, the
//! [`Reply`]s it is fed, the [`Action`] it answers with, and the [`Outcome`] of each step.

use std::time::{Duration, Instant};

use super::Timing;
use crate::events::{LeaderEvent, StopReason};
use crate::record::{LeaderElectionRecord, VersionedRecord};

/// The holder a migration lock pair reports when its two records name different holders.
pub const UNKNOWN_LEADER: &str = "leaderelection.k8s.io/unknown";

/// Which of an election's lock objects: the only one, or during a migration the first (the old kind) or
/// the second (the Lease).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slot {
    /// The lock object (during a migration: the old kind, written first).
    Primary,
    /// During a migration: the Lease, written second.
    Secondary,
}

impl Slot {
    pub(crate) fn index(self) -> usize {
        match self {
            Slot::Primary => 0,
            Slot::Secondary => 1,
        }
    }
}

/// What the election asks the driver to do with a lock object. Every request carries the timeout it must
/// finish within: while we lead, never past our leadership deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Read the object.
    Get {
        /// Which object.
        slot: Slot,
        /// How long the request may take.
        timeout: Duration,
    },
    /// Create the object carrying `record`.
    Create {
        /// Which object.
        slot: Slot,
        /// The record to write.
        record: LeaderElectionRecord,
        /// How long the request may take.
        timeout: Duration,
    },
    /// Replace the record in the object, on condition that the object is still at `resource_version`.
    Update {
        /// Which object.
        slot: Slot,
        /// The record to write.
        record: LeaderElectionRecord,
        /// The version the election judged: the write fails with 409 Conflict if the object moved on.
        resource_version: String,
        /// How long the request may take.
        timeout: Duration,
    },
}

impl Request {
    /// The object the request is for.
    pub fn slot(&self) -> Slot {
        match self {
            Request::Get { slot, .. }
            | Request::Create { slot, .. }
            | Request::Update { slot, .. } => *slot,
        }
    }

    /// How long the request may take.
    pub fn timeout(&self) -> Duration {
        match self {
            Request::Get { timeout, .. }
            | Request::Create { timeout, .. }
            | Request::Update { timeout, .. } => *timeout,
        }
    }
}

/// The answer to a [`Request`], in the terms the election judges it by. `E` is the driver's error type:
/// the election decides by the variant alone and passes the error on in the step's [`Outcome`], so
/// whoever turns an answer into a reply (for the crate's locks, [`from_read`](Reply::from_read) and
/// [`from_write`](Reply::from_write)) is the one place that reads an error's status.
#[derive(Debug)]
pub enum Reply<E> {
    /// The object as the API server holds it now: read, created or updated.
    Object(VersionedRecord),
    /// 404: the object does not exist.
    NotFound,
    /// 409: a write lost a race. An update found the object at another version (`Conflict`), or a
    /// create found it there already (`AlreadyExists`).
    Conflict(E),
    /// Anything else: an error status, a timeout, a transport failure, a malformed body.
    Failed(E),
}

/// What the driver does next.
#[derive(Debug)]
pub enum Action<E> {
    /// Send this request and feed its reply.
    Send(Request),
    /// The step is over.
    Stepped(Outcome<E>),
    /// The release is over: `Ok(true)` when we cleared our record, `Ok(false)` when none was ours.
    Released(Result<bool, E>),
}

/// Where a step left us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// We lead until `deadline` unless a later step renews.
    Leading {
        /// The end of our leadership unless renewed: start of the last renew that followers could see
        /// plus `renew_deadline`.
        deadline: Instant,
        /// Our term: the lock's transition counter, a fencing token.
        term: i32,
    },
    /// We hold the lock but do not lead yet: we re-created it after it was deleted, and whoever held the
    /// deleted object may still be acting on it until `leads_from`. We renew as a leader does meanwhile.
    Holding {
        /// The end of our hold unless renewed, as for a leader.
        deadline: Instant,
        /// When we begin to lead (a step then says `StartedLeading`).
        leads_from: Instant,
        /// The term we will lead in.
        term: i32,
    },
    /// Someone else leads, or nobody does.
    Following {
        /// The holder we observe (`None`: released, missing or not read yet).
        holder: Option<String>,
        /// When that holder's lease expires by our clock, while it is another candidate.
        expiry: Option<Instant>,
    },
}

impl Status {
    /// Our leadership deadline, while we lead.
    pub fn leader_deadline(&self) -> Option<Instant> {
        match self {
            Status::Leading { deadline, .. } => Some(*deadline),
            _ => None,
        }
    }

    /// The deadline of the hold we renew: while we lead, or hold before we lead.
    pub fn hold_deadline(&self) -> Option<Instant> {
        match self {
            Status::Leading { deadline, .. } | Status::Holding { deadline, .. } => Some(*deadline),
            Status::Following { .. } => None,
        }
    }

    /// When a hold begins to lead.
    pub fn leads_from(&self) -> Option<Instant> {
        match self {
            Status::Holding { leads_from, .. } => Some(*leads_from),
            _ => None,
        }
    }

    /// When the holder we follow loses its lease by our clock.
    pub fn holder_expiry(&self) -> Option<Instant> {
        match self {
            Status::Following { expiry, .. } => *expiry,
            _ => None,
        }
    }
}

/// What one step did.
#[derive(Debug)]
#[non_exhaustive]
pub struct Outcome<E> {
    /// Where the step left us.
    pub status: Status,
    /// The holder we observe (ourselves while we lead; `None`: released, missing or unknown).
    pub holder: Option<String>,
    /// What changed, in order: `NewLeader` for each holder change observed, `StoppedLeading` when we
    /// lost, `StartedLeading` when a term began.
    pub events: Vec<LeaderEvent>,
    /// The step moved our leadership deadline (we acquired or renewed).
    pub renewed: bool,
    /// The fast path (one write of the cached object) failed and the step read the lock again.
    pub slow_path: bool,
    /// Why the step did not succeed, if it did not: a request's error as the driver gave it, or one of
    /// the election's own ([`ElectionError`](super::ElectionError), wrapped in the driver's type).
    pub error: Option<E>,
}

impl<E> Outcome<E> {
    /// Whether we lead after the step.
    pub fn is_leading(&self) -> bool {
        matches!(self.status, Status::Leading { .. })
    }

    /// The step only reported that our leadership ran out (its deadline passed): it sent nothing, and the
    /// next step should follow at once.
    pub fn lapsed(&self) -> bool {
        matches!(
            self.events[..],
            [LeaderEvent::StoppedLeading {
                reason: StopReason::RenewDeadlineExceeded { .. } | StopReason::EndOfTerm { .. }
            }]
        ) && !self.renewed
            && !self.slow_path
            && self.error.is_none()
    }

    /// The holder we observe: ourselves while leading.
    pub fn holder(&self) -> Option<&str> {
        self.holder.as_deref()
    }
}

/// How a step reacts to a change seen on a watch.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct WatchReaction {
    /// `NewLeader` when the holder changed.
    pub events: Vec<LeaderEvent>,
    /// The change calls for a step now (the lock was released or deleted, or names someone else while we
    /// lead): do not wait for the next retry.
    pub attempt_now: bool,
    /// Where we stand after the change, when it moved anything (a follower's holder and its expiry).
    pub status: Option<Status>,
}

/// A change seen on a watch of the (single) lock object.
#[derive(Debug, Clone)]
pub enum Watched {
    /// The object as it is now.
    Changed(VersionedRecord),
    /// The object was deleted.
    Deleted,
}

/// The settings of an [`Election`](super::Election).
#[derive(Debug, Clone)]
pub struct ElectionConfig {
    /// Our identity, written as holder.
    pub identity: String,
    /// The lock for messages, e.g. `leases default/my-app`.
    pub lock: String,
    /// The durations.
    pub timing: Timing,
    /// Two objects (primary, then secondary) for a migration lock, else one.
    pub pair: bool,
    /// Coordinated leader election: the API server chooses the holder; we never create or take the lock.
    pub coordinated: bool,
    /// This process's token, written beside every record we write (see
    /// [`LeaderElectionRecord::incarnation`]): a record naming our identity counts as ours only if it
    /// carries this token (or none). Unique per election; [`ElectionConfig::new`] picks a random one.
    pub incarnation: String,
}

impl ElectionConfig {
    /// The settings for `identity` on `lock` (a name for messages, e.g. `leases default/my-app`): one
    /// lock object, not coordinated, a random incarnation.
    pub fn new(identity: impl Into<String>, lock: impl Into<String>, timing: Timing) -> Self {
        ElectionConfig {
            identity: identity.into(),
            lock: lock.into(),
            timing,
            pair: false,
            coordinated: false,
            incarnation: new_incarnation(),
        }
    }
}

/// A fresh incarnation token: 16 hex digits.
pub(crate) fn new_incarnation() -> String {
    format!("{:016x}", crate::random::Rng::new().next_u64())
}
