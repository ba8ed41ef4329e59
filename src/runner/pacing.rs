//! When to try next: pure functions of the election's state and the time, so they can be tested and
//! simulated without threads.

use std::time::{Duration, Instant};

use crate::election::{JITTER_FACTOR, Status, Timing, later};

/// A follower spreads its wake-up at a holder's expiry over a tenth of a retry period, at most 5 ms: many
/// followers do not all arrive in the same millisecond, and a crashed leader is still replaced within a
/// few milliseconds of its expiry.
const EXPIRY_SPREAD: f64 = 0.1;
const EXPIRY_SPREAD_MAX: Duration = Duration::from_millis(5);

/// What the next attempt depends on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Situation {
    /// Our leadership deadline, while we hold a term.
    pub(crate) deadline: Option<Instant>,
    /// When a term we hold begins to lead (after a re-created lock's quarantine).
    pub(crate) begins: Option<Instant>,
    /// When the other holder's lease expires by our clock, while someone else holds the lock.
    pub(crate) holder_expiry: Option<Instant>,
    /// The API server's `Retry-After` from the last step (429, 503).
    pub(crate) retry_after: Option<Duration>,
    /// A live watch tells us of every change as it happens.
    pub(crate) watching: bool,
    /// When the watch counts as stale if nothing arrives before: a live holder's renews are changes,
    /// so a watch that brings none for much longer than a renew interval has stalled.
    pub(crate) stale_at: Option<Instant>,
}

impl Situation {
    /// The situation a wait that began at `since` is in, by the election's last `status`.
    pub(crate) fn of(
        status: &Status,
        since: Instant,
        retry_after: Option<Duration>,
        stale_at: Option<Instant>,
        now: Instant,
    ) -> Self {
        Situation {
            deadline: status.hold_deadline().filter(|d| *d > since),
            begins: status.leads_from(),
            holder_expiry: status.holder_expiry(),
            retry_after,
            watching: stale_at.is_some_and(|t| t > now),
            stale_at,
        }
    }
}

/// How long a watch may bring nothing, while a holder is live, before it counts as stalled: two renew
/// intervals (annotation records change at most once a second, so for them a second more).
pub(crate) fn watch_silence(timing: &Timing, annotations: bool) -> Duration {
    let interval = if annotations {
        timing.retry_period + Duration::from_secs(1)
    } else {
        timing.retry_period
    };
    interval * 2
}

/// The instant of the next attempt after a step that ended at `since`. Waking up early in between (a
/// watched change that asks for nothing) must not move it: the pace is counted from the step, not from
/// the wake-up. `jitter` and `spread` are uniform in `[0, 1)`.
///
/// - A leader renews every retry period, and wakes by its deadline to report a lapse.
/// - A follower retries every `retry_period × (1 + 1.2 × jitter)` (client-go's pace), later if the API
///   server asked (`Retry-After`, honoured up to one lease duration: a hostile value cannot park it), and
///   never later than just after the holder's lease expires. A watching follower has nothing to poll for
///   while the holder's lease runs: it wakes at the expiry, or earlier when the watch brings news.
pub(crate) fn next_attempt(
    timing: &Timing,
    since: Instant,
    s: Situation,
    jitter: f64,
    spread: f64,
) -> Instant {
    let now = since;
    if let Some(deadline) = s.deadline {
        let left = deadline
            .saturating_duration_since(now)
            .max(Duration::from_millis(1));
        let renew = later(now, timing.retry_period.min(left));
        return match s.begins.filter(|b| *b > now) {
            Some(begins) => renew.min(begins),
            None => renew,
        };
    }
    let unit = |x: f64| {
        if x.is_finite() {
            x.clamp(0.0, 1.0)
        } else {
            0.0
        }
    };
    let jittered = timing
        .retry_period
        .mul_f64(1.0 + JITTER_FACTOR * unit(jitter));
    let asked = s
        .retry_after
        .map_or(Duration::ZERO, |a| a.min(timing.lease_duration));
    let polled = later(now, jittered.max(asked));
    let spread = timing
        .retry_period
        .mul_f64(EXPIRY_SPREAD)
        .min(EXPIRY_SPREAD_MAX)
        .mul_f64(unit(spread));
    match s.holder_expiry.filter(|e| *e > now) {
        // Nothing to poll for while the holder's lease runs, unless the watch goes quiet first.
        Some(expiry) if s.watching => {
            let at = later(expiry, spread);
            s.stale_at.map_or(at, |stale| at.min(stale.max(now)))
        }
        Some(expiry) => polled.min(later(expiry, spread)),
        None => polled,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing() -> Timing {
        Timing {
            lease_duration: Duration::from_secs(2),
            renew_deadline: Duration::from_millis(1500),
            retry_period: Duration::from_millis(200),
        }
    }

    fn idle() -> Situation {
        Situation {
            deadline: None,
            begins: None,
            holder_expiry: None,
            retry_after: None,
            watching: false,
            stale_at: None,
        }
    }

    #[test]
    fn a_leader_renews_every_retry_period_and_wakes_by_its_deadline() {
        let now = Instant::now();
        let s = Situation {
            deadline: Some(now + Duration::from_secs(1)),
            retry_after: Some(Duration::from_secs(60)),
            ..idle()
        };
        assert_eq!(
            next_attempt(&timing(), now, s, 0.9, 0.9),
            now + Duration::from_millis(200),
            "no jitter, and Retry-After does not delay a renew"
        );
        let s = Situation {
            deadline: Some(now + Duration::from_millis(50)),
            ..idle()
        };
        assert_eq!(
            next_attempt(&timing(), now, s, 0.0, 0.0),
            now + Duration::from_millis(50)
        );
        let s = Situation {
            deadline: Some(now),
            ..idle()
        };
        assert_eq!(
            next_attempt(&timing(), now, s, 0.0, 0.0),
            now + Duration::from_millis(1),
            "never a busy loop"
        );
        let s = Situation {
            deadline: Some(now + Duration::from_secs(1)),
            begins: Some(now + Duration::from_millis(70)),
            ..idle()
        };
        assert_eq!(
            next_attempt(&timing(), now, s, 0.0, 0.0),
            now + Duration::from_millis(70),
            "a held term wakes when it begins to lead"
        );
    }

    #[test]
    fn a_follower_retries_with_client_go_jitter() {
        let now = Instant::now();
        assert_eq!(
            next_attempt(&timing(), now, idle(), 0.0, 0.0),
            now + Duration::from_millis(200)
        );
        let max = next_attempt(&timing(), now, idle(), 0.999_999, 0.0);
        assert!(max > now + Duration::from_millis(439) && max <= now + Duration::from_millis(440));
    }

    #[test]
    fn retry_after_is_honoured_up_to_a_lease_duration_and_never_past_the_expiry() {
        let now = Instant::now();
        let s = Situation {
            retry_after: Some(Duration::from_secs(1)),
            ..idle()
        };
        assert_eq!(
            next_attempt(&timing(), now, s, 0.0, 0.0),
            now + Duration::from_secs(1)
        );
        for hostile in [3600, u64::MAX / 2, u64::MAX] {
            let s = Situation {
                retry_after: Some(Duration::from_secs(hostile)),
                ..idle()
            };
            assert_eq!(
                next_attempt(&timing(), now, s, 0.0, 0.0),
                now + Duration::from_secs(2),
                "clamped to the lease duration: {hostile}"
            );
            let s = Situation {
                retry_after: Some(Duration::MAX),
                holder_expiry: Some(now + Duration::from_millis(700)),
                ..idle()
            };
            assert_eq!(
                next_attempt(&timing(), now, s, 0.0, 0.0),
                now + Duration::from_millis(700),
                "the holder's expiry comes first"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn no_input_panics_or_parks_a_candidate(
            lease in 1u64..100_000,
            retry_ms in 1u64..100_000,
            after_secs in proptest::prelude::any::<u64>(),
            after_nanos in 0u32..1_000_000_000,
            expiry_ms in proptest::option::of(proptest::prelude::any::<u32>()),
            deadline_ms in proptest::option::of(0u32..1_000_000),
            watching in proptest::prelude::any::<bool>(),
            jitter in proptest::prelude::any::<f64>(),
            spread in proptest::prelude::any::<f64>(),
        ) {
            let timing = Timing {
                lease_duration: Duration::from_secs(lease),
                renew_deadline: Duration::from_millis(retry_ms * 2),
                retry_period: Duration::from_millis(retry_ms),
            };
            let now = Instant::now();
            let s = Situation {
                deadline: deadline_ms.map(|m| now + Duration::from_millis(m.into())),
                begins: None,
                holder_expiry: expiry_ms.map(|m| now + Duration::from_millis(m.into())),
                retry_after: Some(Duration::new(after_secs, after_nanos)),
                watching,
                stale_at: None,
            };
            let at = next_attempt(&timing, now, s, jitter, spread);
            // Never later than the holder's expiry (plus spread), or a lease and a jittered retry.
            let bound = match s.holder_expiry {
                Some(e) if e > now && watching && s.deadline.is_none() => e + timing.retry_period,
                _ => now + timing.lease_duration.max(timing.retry_period.mul_f64(2.2)) + timing.retry_period,
            };
            proptest::prop_assert!(at >= now && at <= bound, "{at:?} vs {bound:?}");
        }
    }

    #[test]
    fn a_watch_may_be_quiet_for_two_renew_intervals() {
        assert_eq!(watch_silence(&timing(), false), Duration::from_millis(400));
        assert_eq!(watch_silence(&timing(), true), Duration::from_millis(2400));
    }

    #[test]
    fn a_follower_wakes_at_the_holders_expiry() {
        let now = Instant::now();
        let expiry = now + Duration::from_millis(100);
        let s = Situation {
            holder_expiry: Some(expiry),
            ..idle()
        };
        let at = next_attempt(&timing(), now, s, 0.5, 0.5);
        assert_eq!(
            at,
            expiry + Duration::from_micros(2500),
            "plus half the spread: a tenth of the retry period, at most 5 ms"
        );
        let short = Timing {
            retry_period: Duration::from_millis(20),
            ..timing()
        };
        let watching = Situation {
            watching: true,
            ..s
        };
        let at = next_attempt(&short, now, watching, 0.5, 0.5);
        assert!(
            at > expiry && at <= expiry + Duration::from_millis(1),
            "half of a tenth of a short retry period: {:?}",
            at - expiry
        );
        let far = now + Duration::from_secs(5);
        let s = Situation {
            holder_expiry: Some(far),
            ..idle()
        };
        assert!(
            next_attempt(&timing(), now, s, 0.0, 0.0) < far,
            "a poller still polls"
        );
        let s = Situation {
            holder_expiry: Some(far),
            watching: true,
            ..idle()
        };
        assert_eq!(
            next_attempt(&timing(), now, s, 0.0, 0.0),
            far,
            "a watcher waits for the expiry"
        );
        let s = Situation {
            holder_expiry: Some(far),
            watching: true,
            stale_at: Some(now + Duration::from_millis(400)),
            ..idle()
        };
        assert_eq!(
            next_attempt(&timing(), now, s, 0.0, 0.0),
            now + Duration::from_millis(400),
            "a watch that may go quiet before the expiry is checked on by then"
        );
        let s = Situation {
            holder_expiry: Some(now - Duration::from_millis(1)),
            watching: true,
            ..idle()
        };
        assert_eq!(
            next_attempt(&timing(), now, s, 0.0, 0.0),
            now + Duration::from_millis(200),
            "a passed expiry: back to the normal pace"
        );
    }
}
