//! The API server's lock semantics, in memory and without sockets: resource versions, conditional
//! writes (409 Conflict), creates that find the object (409 AlreadyExists), 404, an identical write that
//! keeps the version, deletes, and records stored as their codecs write them (seconds precision in
//! annotations). A PUT to a deleted object fails: a ConfigMap with 404, a Lease or Endpoints with 409,
//! since our locks send the object's `uid` back and the API server checks it as a precondition before
//! it would create the object.

use std::collections::BTreeMap;

use chrono::SubsecRound;

use crate::error::{ApiError, Error, StatusReason};
use crate::record::{LeaderElectionRecord, VersionedRecord};

/// The kinds of lock object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectKind {
    /// `coordination.k8s.io/v1` Lease.
    Lease,
    /// ConfigMap with the leader annotation.
    ConfigMap,
    /// Endpoints with the leader annotation.
    Endpoints,
}

impl ObjectKind {
    fn plural(self) -> &'static str {
        match self {
            ObjectKind::Lease => "leases",
            ObjectKind::ConfigMap => "configmaps",
            ObjectKind::Endpoints => "endpoints",
        }
    }

    /// The record as the kind's codec stores it: MicroTime on a Lease, whole seconds and no
    /// coordinated-election fields in an annotation.
    pub fn stored_form(self, record: &LeaderElectionRecord) -> LeaderElectionRecord {
        let mut r = record.clone();
        match self {
            ObjectKind::Lease => {
                r.acquire_time = r.acquire_time.map(|t| t.trunc_subsecs(6));
                r.renew_time = r.renew_time.map(|t| t.trunc_subsecs(6));
            }
            ObjectKind::ConfigMap | ObjectKind::Endpoints => {
                r.acquire_time = r.acquire_time.map(|t| t.trunc_subsecs(0));
                r.renew_time = r.renew_time.map(|t| t.trunc_subsecs(0));
                r.strategy = None;
                r.preferred_holder = None;
            }
        }
        r
    }
}

/// One stored object.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The record as stored.
    pub record: LeaderElectionRecord,
    /// Its `resourceVersion`.
    pub rv: u64,
}

/// A change, as a watch reports it.
#[derive(Debug, Clone)]
pub enum Change {
    /// The object is now this.
    Written(ObjectKind, VersionedRecord),
    /// The object was deleted.
    Deleted(ObjectKind),
}

/// The lock objects of one election (one name, up to three kinds).
#[derive(Debug, Default)]
pub struct LockModel {
    objects: BTreeMap<ObjectKind, Stored>,
    last_rv: u64,
}

fn api_error(verb: &str, kind: ObjectKind, code: u16, reason: StatusReason, msg: &str) -> Error {
    Error::from(ApiError {
        context: format!("{verb} {} sim/lock", kind.plural()),
        code,
        reason,
        message: msg.into(),
        retry_after: None,
    })
}

impl LockModel {
    /// The stored object of a kind.
    pub fn stored(&self, kind: ObjectKind) -> Option<&Stored> {
        self.objects.get(&kind)
    }

    fn versioned(s: &Stored) -> VersionedRecord {
        VersionedRecord {
            record: s.record.clone(),
            resource_version: s.rv.to_string(),
        }
    }

    /// GET.
    pub fn get(&self, kind: ObjectKind) -> Result<VersionedRecord, Error> {
        self.objects
            .get(&kind)
            .map(Self::versioned)
            .ok_or_else(|| api_error("get", kind, 404, StatusReason::NotFound, "not found"))
    }

    fn insert(
        &mut self,
        kind: ObjectKind,
        record: LeaderElectionRecord,
    ) -> (VersionedRecord, Change) {
        self.last_rv += 1;
        let s = Stored {
            record: kind.stored_form(&record),
            rv: self.last_rv,
        };
        let v = Self::versioned(&s);
        self.objects.insert(kind, s);
        (v.clone(), Change::Written(kind, v))
    }

    /// POST.
    pub fn create(
        &mut self,
        kind: ObjectKind,
        record: &LeaderElectionRecord,
    ) -> Result<(VersionedRecord, Option<Change>), Error> {
        if self.objects.contains_key(&kind) {
            return Err(api_error(
                "create",
                kind,
                409,
                StatusReason::AlreadyExists,
                "already exists",
            ));
        }
        let (v, c) = self.insert(kind, record.clone());
        Ok((v, Some(c)))
    }

    /// PUT, conditional on `rv`.
    pub fn update(
        &mut self,
        kind: ObjectKind,
        record: &LeaderElectionRecord,
        rv: &str,
    ) -> Result<(VersionedRecord, Option<Change>), Error> {
        let Some(current) = self.objects.get(&kind) else {
            if kind == ObjectKind::ConfigMap {
                // ConfigMaps are never created by a PUT.
                return Err(api_error(
                    "update",
                    kind,
                    404,
                    StatusReason::NotFound,
                    "not found",
                ));
            }
            // Our locks send the object's uid: a precondition a deleted object fails.
            return Err(api_error(
                "update",
                kind,
                409,
                StatusReason::Conflict,
                "Precondition failed: UID in precondition does not match",
            ));
        };
        if rv.parse::<u64>().ok() != Some(current.rv) {
            return Err(api_error(
                "update",
                kind,
                409,
                StatusReason::Conflict,
                "the object has been modified",
            ));
        }
        let stored = kind.stored_form(record);
        if stored == current.record {
            // Identical bytes: a no-op, the version stays.
            return Ok((Self::versioned(current), None));
        }
        let (v, c) = self.insert(kind, stored);
        Ok((v, Some(c)))
    }

    /// DELETE (an administrator's).
    pub fn delete(&mut self, kind: ObjectKind) -> Option<Change> {
        self.objects.remove(&kind).map(|_| Change::Deleted(kind))
    }

    /// A write by someone else that leaves the record alone (a label, another controller's key in a
    /// shared ConfigMap): a new version, the same record.
    pub fn touch(&mut self, kind: ObjectKind) -> Option<Change> {
        let record = self.objects.get(&kind)?.record.clone();
        Some(self.insert(kind, record).1)
    }

    /// The record cleared by an administrator or a tool, not by its holder: `kubectl edit` removing a
    /// Lease's `holderIdentity` (the rest stays), or a ConfigMap or Endpoints re-applied without the
    /// leader annotation (no record at all, which reads as an empty one).
    pub fn clear(&mut self, kind: ObjectKind) -> Option<Change> {
        let old = self.objects.get(&kind)?.record.clone();
        let record = match kind {
            ObjectKind::Lease => LeaderElectionRecord {
                holder_identity: String::new(),
                ..old
            },
            ObjectKind::ConfigMap | ObjectKind::Endpoints => LeaderElectionRecord::default(),
        };
        Some(self.insert(kind, record).1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn record(holder: &str, millis: i64) -> LeaderElectionRecord {
        let t = chrono::Utc
            .timestamp_millis_opt(1_800_000_000_000 + millis)
            .unwrap();
        LeaderElectionRecord {
            holder_identity: holder.into(),
            lease_duration_seconds: 2,
            acquire_time: Some(t),
            renew_time: Some(t),
            ..Default::default()
        }
    }

    #[test]
    fn conditional_writes_and_their_errors() {
        let mut m = LockModel::default();
        assert!(m.get(ObjectKind::Lease).unwrap_err().is_not_found());
        let (v, c) = m.create(ObjectKind::Lease, &record("a", 0)).unwrap();
        assert!(c.is_some());
        assert!(
            m.create(ObjectKind::Lease, &record("b", 0))
                .unwrap_err()
                .is_already_exists()
        );
        assert!(
            m.update(ObjectKind::Lease, &record("b", 5), "999")
                .unwrap_err()
                .is_conflict()
        );
        let (w, _) = m
            .update(ObjectKind::Lease, &record("a", 5), &v.resource_version)
            .unwrap();
        assert_ne!(w.resource_version, v.resource_version);
    }

    #[test]
    fn identical_annotation_writes_within_a_second_keep_the_version() {
        let mut m = LockModel::default();
        let (v, _) = m.create(ObjectKind::ConfigMap, &record("a", 100)).unwrap();
        let (w, c) = m
            .update(
                ObjectKind::ConfigMap,
                &record("a", 700),
                &v.resource_version,
            )
            .unwrap();
        assert!(c.is_none());
        assert_eq!(
            w.resource_version, v.resource_version,
            "same second: a no-op"
        );
        let (x, _) = m
            .update(
                ObjectKind::ConfigMap,
                &record("a", 1200),
                &v.resource_version,
            )
            .unwrap();
        assert_ne!(x.resource_version, v.resource_version);
        // A Lease keeps microseconds: every renew changes it.
        let (l, _) = m.create(ObjectKind::Lease, &record("a", 100)).unwrap();
        let (l2, _) = m
            .update(ObjectKind::Lease, &record("a", 101), &l.resource_version)
            .unwrap();
        assert_ne!(l.resource_version, l2.resource_version);
    }

    #[test]
    fn a_put_to_a_deleted_object_never_creates_it() {
        let mut m = LockModel::default();
        assert!(
            m.update(ObjectKind::Lease, &record("a", 0), "7")
                .unwrap_err()
                .is_conflict()
        );
        assert!(
            m.update(ObjectKind::Endpoints, &record("a", 0), "7")
                .unwrap_err()
                .is_conflict()
        );
        assert!(
            m.update(ObjectKind::ConfigMap, &record("a", 0), "7")
                .unwrap_err()
                .is_not_found(),
            "a ConfigMap is never created by a PUT"
        );
        assert!(m.create(ObjectKind::Lease, &record("a", 0)).is_ok());
        assert!(m.delete(ObjectKind::Lease).is_some());
        assert!(m.delete(ObjectKind::Lease).is_none());
    }
}
