//! Locks: the objects an election is held on. The election drives them only through [`Lock`].

pub(crate) mod annotation;
mod lease;
pub(crate) mod object;

pub use annotation::{
    ConfigMap, ConfigMapLock, Endpoints, EndpointsLock, LEADER_ANNOTATION, decode_annotation,
    encode_annotation,
};
pub use lease::{Lease, LeaseLock};
pub use object::{LockObject, ObjectLock};

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::client::Interrupter;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::record::{LeaderElectionRecord, VersionedRecord};

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

    /// Whether this kind is a migration pair (the old kind, then a Lease).
    pub fn is_pair(self) -> bool {
        matches!(self, Self::ConfigMapsLeases | Self::EndpointsLeases)
    }

    /// The lock(s) and a way to interrupt their requests in flight (for `stop()`).
    pub(crate) fn build(
        self,
        config: &Config,
        namespace: &str,
        name: &str,
        identity: &str,
        labels: &BTreeMap<String, String>,
    ) -> crate::error::Result<(Locks, Vec<Interrupter>)> {
        let mut interrupters = Vec::new();
        let mut one = |plural: &str| -> crate::error::Result<Box<dyn Lock>> {
            let lock: Box<dyn Lock> = match plural {
                "configmaps" => {
                    let l = ConfigMapLock::new(config, namespace, name, identity)?
                        .with_labels(labels.clone());
                    interrupters.push(l.interrupter());
                    Box::new(l)
                }
                "endpoints" => {
                    let l = EndpointsLock::new(config, namespace, name, identity)?
                        .with_labels(labels.clone());
                    interrupters.push(l.interrupter());
                    Box::new(l)
                }
                _ => {
                    let l = LeaseLock::new(config, namespace, name, identity)?
                        .with_labels(labels.clone());
                    interrupters.push(l.interrupter());
                    Box::new(l)
                }
            };
            Ok(lock)
        };
        let locks = match self {
            Self::Leases => Locks::one(one("leases")?),
            Self::ConfigMaps => Locks::one(one("configmaps")?),
            Self::Endpoints => Locks::one(one("endpoints")?),
            Self::ConfigMapsLeases => Locks::pair(one("configmaps")?, one("leases")?)?,
            Self::EndpointsLeases => Locks::pair(one("endpoints")?, one("leases")?)?,
        };
        Ok((locks, interrupters))
    }

    /// Build the lock(s) of this kind on `namespace/name`, written as `identity`.
    pub fn locks(
        self,
        config: &Config,
        namespace: &str,
        name: &str,
        identity: &str,
    ) -> crate::error::Result<Locks> {
        self.locks_with_labels(config, namespace, name, identity, &BTreeMap::new())
    }

    /// Like [`locks`](LockKind::locks), with labels the holder puts on the lock object(s) when it writes
    /// (client-go's `NewWithLabels`).
    pub fn locks_with_labels(
        self,
        config: &Config,
        namespace: &str,
        name: &str,
        identity: &str,
        labels: &BTreeMap<String, String>,
    ) -> crate::error::Result<Locks> {
        Ok(self.build(config, namespace, name, identity, labels)?.0)
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

/// A lock object holding a [`LeaderElectionRecord`]: the I/O the election asks for.
///
/// Implementations keep the object they last read or wrote, so that [`Lock::update`] can send it back
/// (unknown fields and all) without a GET first. Every call gets the timeout it must finish within.
pub trait Lock: Send {
    /// Read the lock object. `Ok(None)` when it does not exist.
    fn get(&mut self, timeout: Duration) -> Result<Option<VersionedRecord>>;
    /// Create the lock object carrying `record` (no `resourceVersion` is sent).
    fn create(
        &mut self,
        record: &LeaderElectionRecord,
        timeout: Duration,
    ) -> Result<VersionedRecord>;
    /// Replace the record in the object on condition that it is still at `resource_version` (the
    /// version the election judged): a stale version must fail with 409 Conflict.
    fn update(
        &mut self,
        record: &LeaderElectionRecord,
        resource_version: &str,
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
    /// The API server's clock in its answer to this lock's last successful request (the `Date`
    /// header), if known: coordinated election writes renew times on that clock.
    fn server_date(&self) -> Option<DateTime<Utc>> {
        None
    }
    /// How finely the record's times are written: two renews within one tick read the same to a
    /// follower, who then cannot tell that the holder renewed. A Lease writes microseconds (the
    /// default); a record in an annotation, whole seconds. An election checks that its timing leaves a
    /// follower room to see each renew.
    fn record_time_resolution(&self) -> Duration {
        Duration::from_micros(1)
    }
}

/// Whether `name` may name a Kubernetes object (a lock, a `LeaseCandidate`): a DNS subdomain, as the
/// API server requires: at most 253 characters, dot-separated labels of lowercase letters, digits and
/// `-`, each beginning and ending with a letter or digit.
pub(crate) fn valid_object_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            label.starts_with(|c: char| c.is_ascii_alphanumeric())
                && label.ends_with(|c: char| c.is_ascii_alphanumeric())
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
}

/// The lock objects of one election: one [`Lock`], or during a migration a primary (the old kind,
/// written first) and a secondary (the Lease).
pub struct Locks<L = Box<dyn Lock>> {
    primary: L,
    secondary: Option<L>,
}

impl<L: Lock> Locks<L> {
    /// One lock object.
    pub fn one(lock: L) -> Self {
        Locks {
            primary: lock,
            secondary: None,
        }
    }

    /// A migration pair. Both must write the same identity.
    pub fn pair(primary: L, secondary: L) -> Result<Self> {
        if primary.identity() != secondary.identity() {
            return Err(Error::InvalidElectionConfig(format!(
                "the two locks of a pair must write the same identity, not {:?} and {:?}",
                primary.identity(),
                secondary.identity()
            )));
        }
        Ok(Locks {
            primary,
            secondary: Some(secondary),
        })
    }

    /// Whether this is a migration pair.
    pub fn is_pair(&self) -> bool {
        self.secondary.is_some()
    }

    /// The identity the locks write.
    pub fn identity(&self) -> &str {
        self.primary.identity()
    }

    /// The lock(s) for messages, e.g. `configmaps default/x + leases default/x`.
    pub fn describe(&self) -> String {
        match &self.secondary {
            None => self.primary.describe(),
            Some(s) => format!("{} + {}", self.primary.describe(), s.describe()),
        }
    }

    /// The coarsest resolution either lock writes its record's times with (see
    /// [`Lock::record_time_resolution`]).
    pub fn record_time_resolution(&self) -> Duration {
        let primary = self.primary.record_time_resolution();
        self.secondary
            .as_ref()
            .map_or(primary, |s| primary.max(s.record_time_resolution()))
    }

    /// The primary lock.
    pub fn primary(&self) -> &L {
        &self.primary
    }

    /// Both locks, to be written to (the secondary only in a pair).
    pub(crate) fn both_mut(&mut self) -> (&mut L, Option<&mut L>) {
        (&mut self.primary, self.secondary.as_mut())
    }

    /// The object Events are attached to: the Lease of a pair, else the lock.
    pub fn object_ref(&self) -> Option<ObjectReference> {
        self.secondary
            .as_ref()
            .unwrap_or(&self.primary)
            .object_ref()
    }
}

impl<L: Lock> From<L> for Locks<L> {
    fn from(lock: L) -> Self {
        Locks::one(lock)
    }
}

impl<L: Lock> fmt::Debug for Locks<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Locks").field(&self.describe()).finish()
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
        resource_version: &str,
        timeout: Duration,
    ) -> Result<VersionedRecord> {
        (**self).update(record, resource_version, timeout)
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
    fn server_date(&self) -> Option<DateTime<Utc>> {
        (**self).server_date()
    }
    fn record_time_resolution(&self) -> Duration {
        (**self).record_time_resolution()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn object_names() {
        for ok in ["a", "kcm-1", "node-1.example", "a.b-c.d0", &"a".repeat(253)] {
            assert!(super::valid_object_name(ok), "{ok}");
        }
        for bad in [
            "",
            "A",
            "host_abc",
            "-a",
            "a-",
            "a b",
            "a..b",
            "a.-b",
            ".a",
            &"a".repeat(254),
        ] {
            assert!(!super::valid_object_name(bad), "{bad}");
        }
    }
}
