//! When each lock of a set steps next, kept as a min-heap so that the driver finds the due locks and its
//! next wake-up without looking at every lock: with a thousand locks renewing evenly through the retry
//! period, the driver wakes hundreds of times a second, and a scan of every lock on each wake-up would
//! cost more than the renews themselves. A lock rescheduled leaves its old entry behind; an entry that no
//! longer matches its lock's time is skipped when it comes up.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

#[derive(Debug)]
pub(crate) struct Schedule {
    /// Each lock's time; `None` once it came due (until it is set again).
    next: Vec<Option<Instant>>,
    heap: BinaryHeap<Reverse<(Instant, usize)>>,
}

impl Schedule {
    /// `count` locks, each due at `now`.
    pub(crate) fn new(count: usize, now: Instant) -> Self {
        Schedule {
            next: vec![Some(now); count],
            heap: (0..count).map(|i| Reverse((now, i))).collect(),
        }
    }

    /// Lock `i` steps next at `at`.
    pub(crate) fn set(&mut self, i: usize, at: Instant) {
        if self.next[i] == Some(at) {
            return;
        }
        self.next[i] = Some(at);
        self.heap.push(Reverse((at, i)));
        // Stale entries pile up when locks are rescheduled often (a follower's, on every renew it
        // watches): rebuild from the current times once they outnumber them.
        if self.heap.len() > 4 * self.next.len() + 64 {
            self.heap = self
                .next
                .iter()
                .enumerate()
                .filter_map(|(i, at)| at.map(|at| Reverse((at, i))))
                .collect();
        }
    }

    /// A lock due at or before `now`, taken off the schedule (its time stays, so that it is due again
    /// only once set again).
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<usize> {
        while let Some(&Reverse((at, i))) = self.heap.peek() {
            if at > now {
                return None;
            }
            self.heap.pop();
            if self.next[i] == Some(at) {
                self.next[i] = None;
                return Some(i);
            }
        }
        None
    }

    /// The earliest time any lock is due, if any is scheduled.
    pub(crate) fn earliest(&mut self) -> Option<Instant> {
        while let Some(&Reverse((at, i))) = self.heap.peek() {
            if self.next[i] == Some(at) {
                return Some(at);
            }
            self.heap.pop();
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn due_locks_come_out_in_time_order_and_once() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut s = Schedule::new(3, t0);
        s.set(0, ms(30));
        s.set(1, ms(10));
        s.set(2, ms(20));
        assert_eq!(s.earliest(), Some(ms(10)));
        assert_eq!(s.pop_due(ms(5)), None);
        assert_eq!(s.pop_due(ms(25)), Some(1));
        assert_eq!(s.pop_due(ms(25)), Some(2));
        assert_eq!(s.pop_due(ms(25)), None);
        assert_eq!(s.earliest(), Some(ms(30)));
        // Taken off the schedule: due again only once set again.
        assert_eq!(s.pop_due(ms(100)), Some(0));
        assert_eq!(s.pop_due(ms(100)), None);
        assert_eq!(s.earliest(), None);
        s.set(0, ms(40));
        assert_eq!(s.pop_due(ms(100)), Some(0));
    }

    #[test]
    fn a_rescheduled_lock_comes_due_at_its_new_time_only() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut s = Schedule::new(2, t0);
        assert_eq!(s.pop_due(t0), Some(0));
        assert_eq!(s.pop_due(t0), Some(1));
        s.set(0, ms(10));
        s.set(0, ms(50)); // later
        s.set(1, ms(40));
        s.set(1, ms(5)); // earlier
        assert_eq!(s.earliest(), Some(ms(5)));
        assert_eq!(s.pop_due(ms(20)), Some(1));
        assert_eq!(s.pop_due(ms(20)), None, "0's old time no longer counts");
        assert_eq!(s.pop_due(ms(60)), Some(0));
        assert_eq!(s.earliest(), None, "both came due");
        s.set(1, ms(70));
        s.set(1, ms(70));
        assert_eq!(s.pop_due(ms(80)), Some(1));
        assert_eq!(s.pop_due(ms(80)), None, "set twice to one time: due once");
    }

    #[test]
    fn stale_entries_do_not_pile_up() {
        let t0 = Instant::now();
        let mut s = Schedule::new(10, t0);
        for k in 0..10_000u64 {
            s.set((k % 10) as usize, t0 + Duration::from_millis(k));
        }
        assert!(s.heap.len() <= 4 * 10 + 64 + 1, "{}", s.heap.len());
        let mut due = Vec::new();
        while let Some(i) = s.pop_due(t0 + Duration::from_secs(60)) {
            due.push(i);
        }
        due.sort();
        assert_eq!(due, (0..10).collect::<Vec<_>>());
    }
}
