//! Multi-locks for migrating between lock kinds (client-go's `configmapsleases` and `endpointsleases`):
//! the primary (the old kind) is written first, then the secondary (the Lease), so electors of either
//! generation see each other. When the two disagree, the holder reads as `leaderelection.k8s.io/unknown`
//! and nobody takes over until it has expired.

use std::time::Duration;

use super::Lock;
use crate::error::Result;
use crate::record::{LeaderElectionRecord, VersionedRecord};

/// The holder a multi-lock reports when its two records name different holders.
pub const UNKNOWN_LEADER: &str = "leaderelection.k8s.io/unknown";

/// A primary and a secondary lock, written in that order.
pub struct MultiLock {
    primary: Box<dyn Lock>,
    secondary: Box<dyn Lock>,
}

impl std::fmt::Debug for MultiLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MultiLock")
            .field("primary", &self.primary.describe())
            .field("secondary", &self.secondary.describe())
            .finish()
    }
}

impl MultiLock {
    /// Combine two locks with the same identity.
    pub fn new(primary: Box<dyn Lock>, secondary: Box<dyn Lock>) -> Self {
        MultiLock { primary, secondary }
    }
}

/// Both objects' versions: a change in either is a change.
fn combined(primary: &str, secondary: &str) -> String {
    format!("{primary}+{secondary}")
}

impl Lock for MultiLock {
    fn get(&mut self, timeout: Duration) -> Result<Option<VersionedRecord>> {
        let Some(mut primary) = self.primary.get(timeout)? else {
            return Ok(None);
        };
        match self.secondary.get(timeout)? {
            // Only the old kind exists: held by an old client, or ours to complete with a create.
            None if primary.record.holder_identity != self.identity() => Ok(Some(primary)),
            None => Ok(None),
            Some(secondary) => {
                if primary.record.holder_identity != secondary.record.holder_identity {
                    primary.record.holder_identity = UNKNOWN_LEADER.to_string();
                }
                primary.resource_version =
                    combined(&primary.resource_version, &secondary.resource_version);
                Ok(Some(primary))
            }
        }
    }

    fn create(
        &mut self,
        record: &LeaderElectionRecord,
        timeout: Duration,
    ) -> Result<VersionedRecord> {
        let primary_version = match self.primary.create(record, timeout) {
            Ok(v) => v.resource_version,
            // The old kind already exists (we hold it): complete the pair with the secondary.
            Err(e) if e.is_already_exists() => "?".to_string(),
            Err(e) => return Err(e),
        };
        let secondary = self.secondary.create(record, timeout)?;
        Ok(VersionedRecord {
            record: record.clone(),
            resource_version: combined(&primary_version, &secondary.resource_version),
        })
    }

    fn update(
        &mut self,
        record: &LeaderElectionRecord,
        timeout: Duration,
    ) -> Result<VersionedRecord> {
        let primary = self.primary.update(record, timeout)?;
        // The secondary from its cache first (two PUTs, no GET); if that fails, as client-go does: read it,
        // create it if it is missing.
        let secondary = match self.secondary.update(record, timeout) {
            Ok(v) => v,
            Err(e) if e.is_conflict() => return Err(e),
            Err(_) => match self.secondary.get(timeout)? {
                None => self.secondary.create(record, timeout)?,
                Some(_) => self.secondary.update(record, timeout)?,
            },
        };
        Ok(VersionedRecord {
            record: record.clone(),
            resource_version: combined(&primary.resource_version, &secondary.resource_version),
        })
    }

    fn identity(&self) -> &str {
        self.primary.identity()
    }

    fn describe(&self) -> String {
        format!(
            "{} + {}",
            self.primary.describe(),
            self.secondary.describe()
        )
    }
}
