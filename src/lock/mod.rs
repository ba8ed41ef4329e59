//! Locks: the objects an election is held on. The election code talks to them only through [`Lock`].

mod annotation;
mod lease;
mod multi;
pub(crate) mod object;

pub use annotation::{
    ConfigMap, ConfigMapLock, Endpoints, EndpointsLock, LEADER_ANNOTATION, decode_annotation,
    encode_annotation,
};
pub use lease::{Lease, LeaseLock};
pub use multi::{MultiLock, UNKNOWN_LEADER};
pub use object::{LockObject, ObjectLock};

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::config::Config;
use crate::error::Error;

/// The lock kinds, by client-go's names.
///
/// ```
/// use kube_elector::LockKind;
/// let kind: LockKind = "configmapsleases".parse().unwrap();
/// assert_eq!(kind, LockKind::ConfigMapsLeases);
/// assert_eq!(kind.to_string(), "configmapsleases");
/// assert!("zookeeper".parse::<LockKind>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LockKind {
    /// A `coordination.k8s.io/v1` Lease: the one to use.
    #[default]
    Leases,
    /// The leader annotation of a ConfigMap (client-go before 1.24, the Python client).
    ConfigMaps,
    /// The leader annotation of an Endpoints object (client-go before 1.24).
    Endpoints,
    /// ConfigMap then Lease: for migrating from ConfigMap locks.
    ConfigMapsLeases,
    /// Endpoints then Lease: for migrating from Endpoints locks.
    EndpointsLeases,
}

impl LockKind {
    /// Every kind, in client-go's names.
    pub const ALL: [LockKind; 5] = [
        Self::Leases,
        Self::ConfigMaps,
        Self::Endpoints,
        Self::ConfigMapsLeases,
        Self::EndpointsLeases,
    ];

    /// client-go's name of the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Leases => "leases",
            Self::ConfigMaps => "configmaps",
            Self::Endpoints => "endpoints",
            Self::ConfigMapsLeases => "configmapsleases",
            Self::EndpointsLeases => "endpointsleases",
        }
    }

    /// Build a lock of this kind on `namespace/name`, written as `identity`.
    pub fn lock(
        self,
        config: &Config,
        namespace: &str,
        name: &str,
        identity: &str,
    ) -> crate::Result<Box<dyn Lock>> {
        self.lock_with_labels(config, namespace, name, identity, &BTreeMap::new())
    }

    /// Like [`lock`](LockKind::lock), with labels the holder puts on the lock object(s) when it writes
    /// (client-go's `NewWithLabels`).
    pub fn lock_with_labels(
        self,
        config: &Config,
        namespace: &str,
        name: &str,
        identity: &str,
        labels: &BTreeMap<String, String>,
    ) -> crate::Result<Box<dyn Lock>> {
        let lease = || {
            Ok::<_, Error>(
                LeaseLock::new(config, namespace, name, identity)?.with_labels(labels.clone()),
            )
        };
        let cm = || {
            Ok::<_, Error>(
                ConfigMapLock::new(config, namespace, name, identity)?.with_labels(labels.clone()),
            )
        };
        let ep = || {
            Ok::<_, Error>(
                EndpointsLock::new(config, namespace, name, identity)?.with_labels(labels.clone()),
            )
        };
        Ok(match self {
            Self::Leases => Box::new(lease()?),
            Self::ConfigMaps => Box::new(cm()?),
            Self::Endpoints => Box::new(ep()?),
            Self::ConfigMapsLeases => Box::new(MultiLock::new(Box::new(cm()?), Box::new(lease()?))),
            Self::EndpointsLeases => Box::new(MultiLock::new(Box::new(ep()?), Box::new(lease()?))),
        })
    }
}

impl fmt::Display for LockKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LockKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| {
            Error::InvalidElectionConfig(format!(
                "unknown lock kind {s:?}: use one of leases, configmaps, endpoints, configmapsleases, endpointsleases"
            ))
        })
    }
}

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
    /// The object to attach Kubernetes Events to, once it is known.
    fn object_ref(&self) -> Option<ObjectReference> {
        None
    }
}

/// A reference to a lock object, as an Event's `involvedObject`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectReference {
    /// `apiVersion`.
    pub api_version: String,
    /// `kind`.
    pub kind: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.uid`, once the object was read.
    pub uid: Option<String>,
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
    fn object_ref(&self) -> Option<ObjectReference> {
        (**self).object_ref()
    }
}
