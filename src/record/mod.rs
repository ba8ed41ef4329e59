//! The leader election record and the two time formats it is written in.
//!
//! Read leniently, write exactly: a missing field reads as empty, a duration may be a number or a numeric
//! string (the Python client writes `"15"`), an unparsable time reads as absent. Expiry never depends on
//! these remote times anyway.

pub mod time;

use chrono::{DateTime, Utc};
use serde_json::Value;

pub(crate) use time::{format_micro_time, format_seconds_time, parse_time_lenient};

/// What a lock object says about its leader: the five core fields client-go writes, and which process
/// wrote it.
#[derive(Debug, PartialEq, Eq, Default)]
pub struct LeaderElectionRecord {
    /// The identity of the holder; empty when the lock was released.
    pub holder_identity: String,
    /// The holder's lease duration in whole seconds, as the holder advertises it.
    pub lease_duration_seconds: i32,
    /// When the current holder acquired the lock (as written by the holder's clock).
    pub acquire_time: Option<DateTime<Utc>>,
    /// When the holder last renewed (as written by the holder's clock; never used to judge expiry).
    pub renew_time: Option<DateTime<Utc>>,
    /// How many times the lock changed hands (`leaseTransitions` on a Lease).
    pub leader_transitions: i32,
    /// Coordinated leader election: the strategy the API server elects by (Leases only).
    pub strategy: Option<String>,
    /// Coordinated leader election: the candidate the API server wants next; the holder stops renewing
    /// and lets its term end (Leases only).
    pub preferred_holder: Option<String>,
    /// Which process wrote the record: a random token each elector picks when it starts, kept beside
    /// the record (the lock object's [`INCARNATION_ANNOTATION`]). Identities are meant to be unique per
    /// process, but a pod re-created under the same name while the old process still runs shares its
    /// identity; the incarnation tells the two apart. `None` when the writer did not say (client-go,
    /// other clients, custom locks).
    pub incarnation: Option<String>,
}

/// The annotation on a lock object that names the process (the incarnation) that wrote its record.
pub const INCARNATION_ANNOTATION: &str = "kube-elector/incarnation";

impl Clone for LeaderElectionRecord {
    fn clone(&self) -> Self {
        LeaderElectionRecord {
            holder_identity: self.holder_identity.clone(),
            lease_duration_seconds: self.lease_duration_seconds,
            acquire_time: self.acquire_time,
            renew_time: self.renew_time,
            leader_transitions: self.leader_transitions,
            strategy: self.strategy.clone(),
            preferred_holder: self.preferred_holder.clone(),
            incarnation: self.incarnation.clone(),
        }
    }

    /// Reuses the string buffers already there: a renew observes its own record on every step.
    fn clone_from(&mut self, source: &Self) {
        self.holder_identity.clone_from(&source.holder_identity);
        self.lease_duration_seconds = source.lease_duration_seconds;
        self.acquire_time = source.acquire_time;
        self.renew_time = source.renew_time;
        self.leader_transitions = source.leader_transitions;
        self.strategy.clone_from(&source.strategy);
        self.preferred_holder.clone_from(&source.preferred_holder);
        self.incarnation.clone_from(&source.incarnation);
    }
}

/// A record together with the `resourceVersion` of the object it was read from or written to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionedRecord {
    /// The record.
    pub record: LeaderElectionRecord,
    /// `metadata.resourceVersion` of the object: it changes on every write, so it detects renews.
    pub resource_version: String,
}

/// Errors in a record field: which field and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The JSON field name.
    pub field: &'static str,
    /// What is wrong with it.
    pub message: String,
}

fn read_string(
    obj: &serde_json::Map<String, Value>,
    field: &'static str,
) -> Result<String, FieldError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(FieldError {
            field,
            message: format!("expected a string, found {}", short(other)),
        }),
    }
}

fn read_int(obj: &serde_json::Map<String, Value>, field: &'static str) -> Result<i32, FieldError> {
    let bad = |v: &Value| FieldError {
        field,
        message: format!("expected a 32-bit integer, found {}", short(v)),
    };
    match obj.get(field) {
        None | Some(Value::Null) => Ok(0),
        Some(v @ Value::Number(n)) => n
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .ok_or_else(|| bad(v)),
        Some(v @ Value::String(s)) => s.trim().parse::<i32>().map_err(|_| bad(v)),
        Some(other) => Err(bad(other)),
    }
}

fn read_time(obj: &serde_json::Map<String, Value>, field: &'static str) -> Option<DateTime<Utc>> {
    match obj.get(field) {
        Some(Value::String(s)) => parse_time_lenient(s),
        _ => None,
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 40 {
        format!(
            "{}…",
            &s[..s.char_indices().nth(40).map_or(s.len(), |(i, _)| i)]
        )
    } else {
        s
    }
}

impl LeaderElectionRecord {
    /// Read a record from a JSON object with client-go's field names, leniently. `transitions_field` is
    /// `leaseTransitions` for a Lease spec and `leaderTransitions` for the annotation record.
    pub fn from_json_object(
        obj: &serde_json::Map<String, Value>,
        transitions_field: &'static str,
    ) -> Result<Self, FieldError> {
        Ok(LeaderElectionRecord {
            holder_identity: read_string(obj, "holderIdentity")?,
            lease_duration_seconds: read_int(obj, "leaseDurationSeconds")?,
            acquire_time: read_time(obj, "acquireTime"),
            renew_time: read_time(obj, "renewTime"),
            leader_transitions: read_int(obj, transitions_field)?,
            strategy: Some(read_string(obj, "strategy")?).filter(|s| !s.is_empty()),
            preferred_holder: Some(read_string(obj, "preferredHolder")?).filter(|s| !s.is_empty()),
            incarnation: None,
        })
    }

    /// True when no one holds the lock (never acquired, or released).
    pub fn is_free(&self) -> bool {
        self.holder_identity.is_empty()
    }

    /// Whether this is a release as its holder writes one (client-go and kube-elector alike): no holder,
    /// a 1 s lease, and acquire and renew times both set to the moment of the release. A record that
    /// lost its holder any other way (`kubectl edit` removing `holderIdentity`, a ConfigMap re-applied
    /// without the leader annotation) was cleared by someone else while its holder may still lead.
    pub fn is_release(&self) -> bool {
        self.holder_identity.is_empty()
            && self.lease_duration_seconds == 1
            && self.acquire_time.is_some()
            && self.acquire_time == self.renew_time
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use time::parse_micro_time_strict;

    #[test]
    fn micro_time_has_exactly_six_digits() {
        let t = Utc.with_ymd_and_hms(2026, 8, 21, 11, 35, 1).unwrap();
        assert_eq!(format_micro_time(&t), "2026-08-21T11:35:01.000000Z");
        let t = t + chrono::Duration::nanoseconds(654_321_987);
        assert_eq!(format_micro_time(&t), "2026-08-21T11:35:01.654321Z");
        assert_eq!(format_seconds_time(&t), "2026-08-21T11:35:01Z");
    }

    #[test]
    fn strict_micro_time_rejects_other_precisions() {
        assert!(parse_micro_time_strict("2026-08-21T11:35:01.654321Z").is_some());
        assert!(parse_micro_time_strict("2026-08-21T11:35:01.654321+02:00").is_some());
        for bad in [
            "2026-08-21T11:35:01Z",
            "2026-08-21T11:35:01.654Z",
            "2026-08-21T11:35:01.654321987Z",
            "yesterday",
            "",
        ] {
            assert!(parse_micro_time_strict(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn lenient_times() {
        assert!(parse_time_lenient("2026-11-27 01:05:11.117264").is_some());
        assert!(parse_time_lenient("2026-11-27T01:05:11Z").is_some());
        assert!(parse_time_lenient("2026-11-27T01:05:11.123456789Z").is_some());
        assert!(parse_time_lenient("not a time").is_none());
    }

    #[test]
    fn reads_python_client_variant() {
        let v: Value = serde_json::from_str(
            r#"{"holderIdentity": "c0", "leaseDurationSeconds": "6", "acquireTime": "2026-11-27 01:05:11.105177", "renewTime": "garbage"}"#,
        )
        .unwrap();
        let r = LeaderElectionRecord::from_json_object(v.as_object().unwrap(), "leaderTransitions")
            .unwrap();
        assert_eq!(r.holder_identity, "c0");
        assert_eq!(r.lease_duration_seconds, 6);
        assert!(r.acquire_time.is_some());
        assert_eq!(r.renew_time, None);
        assert_eq!(r.leader_transitions, 0);
    }

    #[test]
    fn missing_and_null_fields_read_as_empty() {
        let v: Value = serde_json::from_str(r#"{"holderIdentity": null}"#).unwrap();
        let r = LeaderElectionRecord::from_json_object(v.as_object().unwrap(), "leaseTransitions")
            .unwrap();
        assert_eq!(r, LeaderElectionRecord::default());
        assert!(r.is_free());
    }

    #[test]
    fn wrong_types_are_errors_naming_the_field() {
        let v: Value = serde_json::from_str(r#"{"holderIdentity": 7}"#).unwrap();
        let e = LeaderElectionRecord::from_json_object(v.as_object().unwrap(), "leaseTransitions")
            .unwrap_err();
        assert_eq!(e.field, "holderIdentity");
        let v: Value = serde_json::from_str(r#"{"leaseDurationSeconds": 1e20}"#).unwrap();
        let e = LeaderElectionRecord::from_json_object(v.as_object().unwrap(), "leaseTransitions")
            .unwrap_err();
        assert_eq!(e.field, "leaseDurationSeconds");
    }
}
