//! What the election itself finds wrong, in its own words: a rule its settings break, or a step it
//! could not finish for a reason of its own (the renew deadline passed, the lock was deleted under a
//! write, the term counter is at its limit, the API server chose another holder).
//!
//! A failed request is not one of these: the driver's error for it travels in the [`Reply`] and comes
//! back in the [`Outcome`] untouched, so the election never looks inside a transport's errors. The
//! driver's error type wraps these (`From<ElectionError>`), which is how they reach the same
//! [`Outcome::error`] field.
//!
//! [`Reply`]: super::Reply
//! [`Outcome`]: super::Outcome
//! [`Outcome::error`]: super::Outcome::error

use std::fmt;

/// A failure the election reports of its own accord (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ElectionError {
    /// The settings break a rule: which one, with the values.
    InvalidSettings(String),
    /// A write found the lock object gone (404): someone deleted it.
    LockGone {
        /// The lock, e.g. `leases default/my-app`.
        lock: String,
    },
    /// The renew deadline passed before the step could renew.
    DeadlineExceeded {
        /// The lock, e.g. `leases default/my-app`.
        lock: String,
    },
    /// The lock's transition counter is at `i32::MAX`: a new term could not be numbered above the last.
    TermLimit {
        /// The lock, e.g. `leases default/my-app`.
        lock: String,
    },
    /// Coordinated election: the API server has not given us the lease, or wants another holder.
    Coordinated(String),
}

impl fmt::Display for ElectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElectionError::InvalidSettings(m) => write!(f, "invalid leader election config: {m}"),
            ElectionError::LockGone { lock } => {
                write!(f, "{lock}: the lock object does not exist (deleted?)")
            }
            ElectionError::DeadlineExceeded { lock } => write!(
                f,
                "{lock}: the renew deadline passed before the lease could be renewed"
            ),
            ElectionError::TermLimit { lock } => write!(
                f,
                "{lock}: the transition counter is at its limit (2147483647): not taking the lock"
            ),
            ElectionError::Coordinated(m) => write!(f, "coordinated leader election: {m}"),
        }
    }
}

impl std::error::Error for ElectionError {}

/// What the election needs of a driver's error type: it can carry the election's own failures, and it
/// reads as a reason (a lapse says why the renews before it failed). The crate's
/// [`Error`](crate::Error) is one.
pub trait StepError: From<ElectionError> + fmt::Display {}

impl<E: From<ElectionError> + fmt::Display> StepError for E {}
