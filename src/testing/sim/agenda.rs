//! What a simulated world does next: events in order of time, and events due at the same instant in the
//! order they were scheduled, so a seed replays the same history.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// One event, due at `t` (nanoseconds of real time).
pub(crate) struct Scheduled<E> {
    pub(crate) t: u64,
    seq: u64,
    pub(crate) ev: E,
}

impl<E> PartialEq for Scheduled<E> {
    fn eq(&self, other: &Self) -> bool {
        (self.t, self.seq) == (other.t, other.seq)
    }
}
impl<E> Eq for Scheduled<E> {}
impl<E> PartialOrd for Scheduled<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<E> Ord for Scheduled<E> {
    fn cmp(&self, other: &Self) -> Ordering {
        // A min-heap on (time, sequence).
        (other.t, other.seq).cmp(&(self.t, self.seq))
    }
}

/// The events to come.
pub(crate) struct Agenda<E> {
    heap: BinaryHeap<Scheduled<E>>,
    seq: u64,
}

impl<E> Agenda<E> {
    pub(crate) fn new() -> Self {
        Agenda {
            heap: BinaryHeap::new(),
            seq: 0,
        }
    }

    /// `ev` at `t`, after everything already due then.
    pub(crate) fn push(&mut self, t: u64, ev: E) {
        self.seq += 1;
        self.heap.push(Scheduled {
            t,
            seq: self.seq,
            ev,
        });
    }

    /// The next event.
    pub(crate) fn pop(&mut self) -> Option<Scheduled<E>> {
        self.heap.pop()
    }

    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }
}
