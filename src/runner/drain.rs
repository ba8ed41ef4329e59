//! Leader work in flight, counted so that a handoff waits for it: `run_while_leading` calls and
//! [`WorkGuard`](super::WorkGuard)s. A stop, a step-down or a loss first ends the term (every token is
//! cancelled at once), then waits for the count to reach zero, bounded, before the lock is released.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use crate::sync::{lock, wait};

/// The count of leader work in flight.
#[derive(Debug, Default)]
pub(crate) struct Drain {
    running: AtomicU32,
    lock: Mutex<()>,
    done: Condvar,
}

impl Drain {
    /// Register one unit of work. Sequentially consistent with the end of a term, so that of a work
    /// that begins and a term that ends at the same moment, either the drain sees the work or the work
    /// sees the term over (see `State::begin_work`).
    pub(crate) fn enter(&self) {
        self.running.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn leave(&self) {
        if self.running.fetch_sub(1, Ordering::SeqCst) == 1 {
            drop(lock(&self.lock));
            self.done.notify_all();
        }
    }

    /// How much work is in flight.
    pub(crate) fn running(&self) -> u32 {
        self.running.load(Ordering::SeqCst)
    }

    /// Wait until no work is in flight (true) or `until` passes (false).
    pub(crate) fn wait(&self, until: Instant) -> bool {
        let mut guard = lock(&self.lock);
        loop {
            if self.running() == 0 {
                return true;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            guard = wait(&self.done, guard, Some(left));
        }
    }
}
