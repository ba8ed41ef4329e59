//! Renews spread over the retry period. A set's locks are mostly acquired in one burst (at start, or when
//! a member leaves), and a lock renews a retry period after its last renew: left alone, every renew of
//! the set would keep arriving in that burst, queueing in the request pool and hitting the API server at
//! once. Instead each lock has a slot of its own in the period (lock `i` of `n` renews `i / n` of the
//! way through it), and a renew due at some instant is pulled earlier into the lock's last slot at or
//! before it. A renew is never later than a single elector's would be; after the first one (which may
//! come early, once), a lock renews exactly once per retry period, in its slot.

use std::time::{Duration, Instant};

/// Where lock `index` of `count` renews within each `period`.
pub(crate) fn offset(index: usize, count: usize, period: Duration) -> Duration {
    if count == 0 {
        return Duration::ZERO;
    }
    period.mul_f64(index as f64 / count as f64)
}

/// The latest instant at or before `due` that lies `offset` into a period counted from `epoch`: in
/// `(due - period, due]`. `due` itself when it is before `epoch` or the period is zero.
pub(crate) fn slotted(due: Instant, epoch: Instant, period: Duration, offset: Duration) -> Instant {
    let Some(since_epoch) = due.checked_duration_since(epoch) else {
        return due;
    };
    let period_ns = period.as_nanos();
    if period_ns == 0 {
        return due;
    }
    let phase = since_epoch.as_nanos() % period_ns;
    let offset = offset.as_nanos() % period_ns;
    let back = if phase >= offset {
        phase - offset
    } else {
        phase + period_ns - offset
    };
    // `back` < period, which fits a Duration's nanoseconds.
    due.checked_sub(Duration::from_nanos(back as u64))
        .unwrap_or(due)
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Duration = Duration::from_millis(200);

    #[test]
    fn a_renew_is_pulled_earlier_into_its_slot_never_later() {
        let epoch = Instant::now();
        let ms = Duration::from_millis;
        // 50 ms into the period is this lock's slot.
        assert_eq!(slotted(epoch + ms(430), epoch, P, ms(50)), epoch + ms(250));
        assert_eq!(slotted(epoch + ms(450), epoch, P, ms(50)), epoch + ms(450));
        assert_eq!(slotted(epoch + ms(440), epoch, P, ms(50)), epoch + ms(250));
        assert_eq!(slotted(epoch + ms(460), epoch, P, ms(50)), epoch + ms(450));
        for due_ms in 200..1200u64 {
            let due = epoch + ms(due_ms) + Duration::from_micros(317);
            let t = slotted(due, epoch, P, ms(130));
            assert!(t <= due && due - t < P, "{due_ms}: {:?}", due - t);
            assert_eq!((t - epoch).as_nanos() % P.as_nanos(), ms(130).as_nanos());
        }
    }

    #[test]
    fn renewing_in_the_slot_keeps_exactly_one_period_between_renews() {
        let epoch = Instant::now();
        let off = offset(3, 8, P);
        let first = slotted(epoch + Duration::from_millis(333), epoch, P, off);
        let second = slotted(first + P, epoch, P, off);
        assert_eq!(second - first, P);
    }

    #[test]
    fn the_slots_divide_the_period_evenly_and_odd_inputs_are_safe() {
        assert_eq!(offset(0, 4, P), Duration::ZERO);
        assert_eq!(offset(1, 4, P), Duration::from_millis(50));
        assert_eq!(offset(3, 4, P), Duration::from_millis(150));
        assert_eq!(offset(0, 0, P), Duration::ZERO);
        let epoch = Instant::now();
        let due = epoch + Duration::from_millis(7);
        assert_eq!(slotted(due, epoch, Duration::ZERO, Duration::ZERO), due);
        assert_eq!(
            slotted(epoch, due, P, Duration::ZERO),
            epoch,
            "before the epoch"
        );
    }
}
