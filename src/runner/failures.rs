//! Logging a streak of failed steps without flooding: one WARN when it begins, another at a slow cadence
//! while it lasts, DEBUG in between, one INFO when the API server answers again.

use std::time::{Duration, Instant};

use crate::error::Error;

/// The streak of failed steps we are in, if any.
#[derive(Debug, Default)]
pub(crate) struct Failures {
    /// When it began, how long it is, and when it was last logged at WARN.
    streak: Option<(Instant, u32, Instant)>,
}

/// How often a streak is logged at WARN again: every 30 retry periods, and at least 5 s apart.
pub(crate) fn repeat_every(retry_period: Duration) -> Duration {
    retry_period.saturating_mul(30).max(Duration::from_secs(5))
}

impl Failures {
    /// Log a step's error (or its success) as part of a streak. A lost write race (another candidate
    /// wrote first) is part of the algorithm, not a failure.
    /// `context` names the lock in the messages (made only when something is logged); `now` is the
    /// caller's clock reading, so a set's state machine, which reads no clock, can use it too.
    pub(crate) fn note(
        &mut self,
        context: impl Fn() -> String,
        error: Option<&Error>,
        retry_period: Duration,
        now: Instant,
    ) {
        match (error, self.streak) {
            (Some(e), _) if e.is_conflict() || e.is_already_exists() => {
                log::debug!("{}: another candidate wrote first: {e}", context());
            }
            (Some(e), None) => {
                log::warn!(
                    "{}: {e} (retrying every {retry_period:?}; logged again every {:?} while it lasts)",
                    context(),
                    repeat_every(retry_period)
                );
                self.streak = Some((now, 1, now));
            }
            (Some(e), Some((since, n, warned))) => {
                if now.saturating_duration_since(warned) >= repeat_every(retry_period) {
                    log::warn!(
                        "{}: still failing, {} attempts over {:?}: {e}",
                        context(),
                        n + 1,
                        now.saturating_duration_since(since)
                    );
                    self.streak = Some((since, n + 1, now));
                } else {
                    log::debug!("{}: still failing ({} in a row): {e}", context(), n + 1);
                    self.streak = Some((since, n + 1, warned));
                }
            }
            (None, Some((since, n, _))) => {
                log::info!(
                    "{}: the API server answers again, after {n} failed attempts over {:?}",
                    context(),
                    now.saturating_duration_since(since)
                );
                self.streak = None;
            }
            (None, None) => {}
        }
    }
}

/// Whether a step's error still means the API server answered us: a lost race (409), a missing object
/// (404), or a refusal of our own (a term limit, coordinated mode).
pub(crate) fn server_answered(error: Option<&Error>) -> bool {
    match error {
        None => true,
        Some(e) => {
            e.is_conflict()
                || e.is_already_exists()
                || e.is_not_found()
                || matches!(e, Error::TermLimit { .. } | Error::Coordinated(_))
        }
    }
}
