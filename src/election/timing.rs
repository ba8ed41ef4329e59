//! The three durations of an election and the rules that make them safe.

use std::time::Duration;

use crate::error::{Error, Result};

/// The jitter factor of client-go: candidates retry every `retry_period * (1 + rand[0, 1.2))`.
pub const JITTER_FACTOR: f64 = 1.2;

/// The three durations of an election (client-go's defaults: 15 s, 10 s, 2 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long followers wait after the last change they observed before taking the lock.
    pub lease_duration: Duration,
    /// How long a leader keeps leading without a successful renew.
    pub renew_deadline: Duration,
    /// How often a leader renews and a candidate retries (candidates add jitter).
    pub retry_period: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

impl Timing {
    /// Check the rules that keep an election safe and live: every duration above zero;
    /// `lease_duration` a whole number of seconds (it is written as an integer), at least 1 s;
    /// `lease_duration > renew_deadline` (the margin for scheduling delays and clock-rate drift) and
    /// `renew_deadline > 1.2 × retry_period` (room for a jittered retry before the deadline).
    /// Errors say which rule failed and with what values.
    ///
    /// ```
    /// use std::time::Duration;
    /// use kube_elector::Timing;
    /// assert!(Timing::default().validate().is_ok());
    /// let t = Timing { renew_deadline: Duration::from_secs(20), ..Timing::default() };
    /// assert!(t.validate().unwrap_err().to_string().contains("must be greater than renew_deadline"));
    /// ```
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidElectionConfig(m));
        for (name, d) in [
            ("lease_duration", self.lease_duration),
            ("renew_deadline", self.renew_deadline),
            ("retry_period", self.retry_period),
        ] {
            if d.is_zero() {
                return bad(format!("{name} must be greater than zero"));
            }
        }
        if self.lease_duration < Duration::from_secs(1) || self.lease_duration.subsec_nanos() != 0 {
            return bad(format!(
                "lease_duration must be a whole number of seconds, at least 1 s (leaseDurationSeconds is an integer), got {:?}",
                self.lease_duration
            ));
        }
        if self.lease_duration.as_secs() > i32::MAX as u64 {
            return bad(format!(
                "lease_duration {:?} is too long",
                self.lease_duration
            ));
        }
        if self.lease_duration <= self.renew_deadline {
            return bad(format!(
                "lease_duration ({:?}) must be greater than renew_deadline ({:?})",
                self.lease_duration, self.renew_deadline
            ));
        }
        if self.renew_deadline.as_secs_f64() <= JITTER_FACTOR * self.retry_period.as_secs_f64() {
            return bad(format!(
                "renew_deadline ({:?}) must be greater than {JITTER_FACTOR} × retry_period ({:?})",
                self.renew_deadline, self.retry_period
            ));
        }
        Ok(())
    }

    /// The longest any single request may take: client-go's `max(1 s, renew_deadline / 2)`.
    pub fn request_timeout_cap(&self) -> Duration {
        (self.renew_deadline / 2).max(Duration::from_secs(1))
    }

    /// `leaseDurationSeconds` as written into records (validation bounds it to `1..=i32::MAX`).
    pub(crate) fn lease_seconds(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }
}
