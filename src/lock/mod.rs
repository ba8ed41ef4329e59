//! Locks: the objects an election is held on. The election code talks to them only through [`Lock`].

mod lease;

pub use lease::LeaseLock;

use std::time::Duration;

use crate::error::Result;
use crate::record::{LeaderElectionRecord, VersionedRecord};

/// A lock object holding a [`LeaderElectionRecord`].
///
/// Implementations cache the object they last read or wrote, so that [`Lock::update`] can send it back with
/// its `resourceVersion` (optimistic concurrency: a stale version gets 409 Conflict) without a GET first.
/// Every call gets the timeout it must finish within.
pub trait Lock: Send {
    /// Read the lock object. `Ok(None)` when it does not exist.
    fn get(&mut self, timeout: Duration) -> Result<Option<VersionedRecord>>;
    /// Create the lock object carrying `record` (no `resourceVersion` is sent).
    fn create(
        &mut self,
        record: &LeaderElectionRecord,
        timeout: Duration,
    ) -> Result<VersionedRecord>;
    /// Replace the record in the cached object, carrying its `resourceVersion`.
    fn update(
        &mut self,
        record: &LeaderElectionRecord,
        timeout: Duration,
    ) -> Result<VersionedRecord>;
    /// The identity this lock writes as holder.
    fn identity(&self) -> &str;
    /// A human-readable name for logs and errors, such as `leases default/my-app`.
    fn describe(&self) -> String;
}

impl<L: Lock + ?Sized> Lock for Box<L> {
    fn get(&mut self, timeout: Duration) -> Result<Option<VersionedRecord>> {
        (**self).get(timeout)
    }
    fn create(
        &mut self,
        record: &LeaderElectionRecord,
        timeout: Duration,
    ) -> Result<VersionedRecord> {
        (**self).create(record, timeout)
    }
    fn update(
        &mut self,
        record: &LeaderElectionRecord,
        timeout: Duration,
    ) -> Result<VersionedRecord> {
        (**self).update(record, timeout)
    }
    fn identity(&self) -> &str {
        (**self).identity()
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
}
