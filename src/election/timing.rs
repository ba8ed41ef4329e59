//! The three durations of an election and the rules that make them safe.

use std::time::Duration;

use super::ElectionError;

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

/// Which durations of a [`Timing`] were left at their defaults, for messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Defaulted {
    pub(crate) lease: bool,
    pub(crate) renew: bool,
    pub(crate) retry: bool,
}

/// `renew_deadline (10s, the default)` or `renew_deadline (3s)`.
fn named(name: &str, value: Duration, defaulted: bool) -> String {
    if defaulted {
        format!("{name} ({value:?}, the default)")
    } else {
        format!("{name} ({value:?})")
    }
}

impl Timing {
    /// The rules [`validate`](Self::validate) states, in the election's own error (the core's
    /// entry points check them; `validate` is the public face, in the crate's error).
    pub(crate) fn check(&self) -> Result<(), ElectionError> {
        self.check_with(Defaulted::default())
    }

    /// [`check`](Self::check), with messages that say which values were left at their defaults
    /// (`renew_deadline (10s, the default)`), for settings a builder collected.
    pub(crate) fn check_with(&self, defaulted: Defaulted) -> Result<(), ElectionError> {
        let bad = |m: String| Err(ElectionError::InvalidSettings(m));
        let lease = named("lease_duration", self.lease_duration, defaulted.lease);
        let renew = named("renew_deadline", self.renew_deadline, defaulted.renew);
        let retry = named("retry_period", self.retry_period, defaulted.retry);
        for (name, d) in [
            (&lease, self.lease_duration),
            (&renew, self.renew_deadline),
            (&retry, self.retry_period),
        ] {
            if d.is_zero() {
                return bad(format!("{name} must be greater than zero"));
            }
        }
        if self.lease_duration < Duration::from_secs(1) || self.lease_duration.subsec_nanos() != 0 {
            return bad(format!(
                "{lease} must be a whole number of seconds, at least 1 s (leaseDurationSeconds is an integer)"
            ));
        }
        if self.lease_duration.as_secs() > i32::MAX as u64 {
            return bad(format!("{lease} is too long"));
        }
        if self.lease_duration <= self.renew_deadline {
            return bad(format!("{lease} must be greater than {renew}"));
        }
        let jittered = self.retry_period.as_secs_f64() * JITTER_FACTOR;
        if self.renew_deadline.as_secs_f64() <= jittered {
            // As one number, the way it is compared (a duration when it is one).
            let product = Duration::try_from_secs_f64(jittered)
                .map_or_else(|_| format!("{jittered:e} s"), |d| format!("{d:?}"));
            return bad(format!(
                "{renew} must be greater than {JITTER_FACTOR} × {retry} = {product}"
            ));
        }
        Ok(())
    }

    /// The rule [`validate_resolution`](Self::validate_resolution) states, in the election's own
    /// error.
    pub(crate) fn check_resolution(
        &self,
        resolution: Duration,
        lock: &str,
    ) -> Result<(), ElectionError> {
        if self.renew_deadline <= self.retry_period + resolution {
            let once = if resolution == Duration::from_secs(1) {
                "a second".to_string()
            } else {
                format!("every {resolution:?}")
            };
            return Err(ElectionError::InvalidSettings(format!(
                "{lock} keeps its record's times to {resolution:?}, so a renew shows at most once {once}: renew_deadline ({:?}) must be longer than {resolution:?} + retry_period ({:?})",
                self.renew_deadline, self.retry_period
            )));
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
