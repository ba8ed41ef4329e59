//! The core with the crate's [`Error`] as its driver's error type: the one place where the election's
//! words meet the crate's. A lock's result becomes a [`Reply`] here (the only reading of an error's
//! status for the election), the core's [`ElectionError`]s become [`Error`]s, and the core's checks
//! (`Election::new`, `Timing::validate`) answer in [`Error`], as the rest of the public API does.

use std::time::Duration;

use super::machine::Election;
use super::protocol::{ElectionConfig, Reply};
use super::{ElectionError, Timing};
use crate::error::{Error, Result};
use crate::record::VersionedRecord;

/// The election as [`Elector`](super::Elector) drives it: its requests fail with the crate's [`Error`].
impl Election<Error> {
    /// A new election, driven with the crate's [`Error`] (see
    /// [`with_error_type`](Election::with_error_type) for another). Fails if the timing or the
    /// identity is invalid.
    pub fn new(config: ElectionConfig) -> Result<Self> {
        Ok(Election::with_error_type(config)?)
    }
}

/// The crate's locks answer with [`Result`]s; these make them replies, and are the one place that reads
/// an error's status for the election.
impl Reply<Error> {
    /// The reply to a `Get`, from a lock's result.
    pub fn from_read(result: Result<Option<VersionedRecord>>) -> Self {
        match result {
            Ok(Some(v)) => Reply::Object(v),
            Ok(None) => Reply::NotFound,
            Err(e) => Reply::from_error(e),
        }
    }

    /// The reply to a `Create` or `Update`, from a lock's result.
    pub fn from_write(result: Result<VersionedRecord>) -> Self {
        match result {
            Ok(v) => Reply::Object(v),
            Err(e) => Reply::from_error(e),
        }
    }

    /// The reply a failed request makes, by its status.
    pub fn from_error(e: Error) -> Self {
        if e.is_not_found() {
            Reply::NotFound
        } else if e.is_conflict() || e.is_already_exists() {
            Reply::Conflict(e)
        } else {
            Reply::Failed(e)
        }
    }
}

/// The timing's rules, checked for callers in the crate's error (the election core checks the same
/// rules in its own).
impl Timing {
    /// Check the rules that keep an election safe and live: every duration above zero;
    /// `lease_duration` a whole number of seconds (it is written as an integer), at least 1 s;
    /// `lease_duration > renew_deadline` (the margin for scheduling delays and clock-rate drift) and
    /// `renew_deadline > 1.2 × retry_period` (room for a jittered retry before the deadline).
    /// Errors (`Error::InvalidElectionConfig`) say which rule failed and with what values.
    ///
    /// ```
    /// use std::time::Duration;
    /// use kube_elector::Timing;
    /// assert!(Timing::default().validate().is_ok());
    /// let t = Timing { renew_deadline: Duration::from_secs(20), ..Timing::default() };
    /// let err = t.validate().unwrap_err();
    /// assert!(matches!(err, kube_elector::Error::InvalidElectionConfig(_)));
    /// assert!(err.to_string().contains("must be greater than renew_deadline"));
    /// ```
    pub fn validate(&self) -> Result<()> {
        Ok(self.check()?)
    }

    /// Check that a follower can see each renew of a record whose times are written to `resolution`
    /// (see [`Lock::record_time_resolution`](crate::lock::Lock::record_time_resolution)): two renews
    /// within one tick read the same, so a renew shows at most once a tick, and the renew deadline must
    /// leave room for one tick and a retry. `lock` names the lock for the message.
    pub fn validate_resolution(&self, resolution: Duration, lock: &str) -> Result<()> {
        Ok(self.check_resolution(resolution, lock)?)
    }
}

/// The election's own failures as the crate's errors.
impl From<ElectionError> for Error {
    fn from(e: ElectionError) -> Self {
        match e {
            ElectionError::InvalidSettings(m) => Error::InvalidElectionConfig(m),
            ElectionError::LockGone { lock } => Error::lock_gone(&lock),
            ElectionError::DeadlineExceeded { lock } => Error::DeadlineExceeded { lock },
            ElectionError::TermLimit { lock } => Error::TermLimit { lock },
            ElectionError::Coordinated(m) => Error::Coordinated(m),
        }
    }
}
