//! Mutexes that outlive a panic: every value the crate keeps behind a mutex is consistent between
//! statements, so a panic on another thread while it held the lock (a user's callback, a test's assert)
//! leaves nothing half-written, and the lock is taken as if it had not been poisoned. The same for the
//! waits on a condition variable, which take the lock again when they wake.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// Lock `m`, poisoned or not.
pub(crate) fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Wait on `cv` until woken, or until `timeout` passes (`None`: no limit), and hold the lock again.
pub(crate) fn wait<'a, T>(
    cv: &Condvar,
    guard: MutexGuard<'a, T>,
    timeout: Option<Duration>,
) -> MutexGuard<'a, T> {
    match timeout {
        None => cv.wait(guard).unwrap_or_else(|p| p.into_inner()),
        Some(t) => {
            cv.wait_timeout(guard, t)
                .unwrap_or_else(|p| p.into_inner())
                .0
        }
    }
}
