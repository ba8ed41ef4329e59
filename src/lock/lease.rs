//! The `coordination.k8s.io/v1` Lease lock: the record is the Lease's spec, times as MicroTime.

use serde_json::{Map, Value, json};

use super::object::{LockObject, ObjectLock};
#[cfg(test)]
use crate::record::VersionedRecord;
use crate::record::time::write_micro_time;
use crate::record::{LeaderElectionRecord, format_micro_time};

/// A `coordination.k8s.io/v1` Lease (the lock every current client uses).
#[derive(Debug)]
pub struct Lease;

/// A Lease lock. It keeps the last object it saw, so a renew is one PUT.
pub type LeaseLock = ObjectLock<Lease>;

impl LockObject for Lease {
    const KIND: &'static str = "Lease";
    const API_VERSION: &'static str = "coordination.k8s.io/v1";
    const PLURAL: &'static str = "leases";

    fn read(object: &Value) -> Result<LeaderElectionRecord, String> {
        let empty = Map::new();
        let spec = match object.get("spec") {
            None | Some(Value::Null) => &empty,
            Some(Value::Object(m)) => m,
            Some(_) => return Err("spec is not an object".into()),
        };
        LeaderElectionRecord::from_json_object(spec, "leaseTransitions")
            .map_err(|e| format!("spec.{}: {}", e.field, e.message))
    }

    fn write(object: &mut Value, record: &LeaderElectionRecord) {
        match object.get_mut("spec").and_then(Value::as_object_mut) {
            Some(spec) => update_spec(spec, record),
            None => object["spec"] = encode_spec(record),
        }
    }
}

#[cfg(test)]
fn decode_lease(object: &Value) -> Result<VersionedRecord, String> {
    super::object::decode::<Lease>(object)
}

/// The fields of a Lease spec the record owns; any other is dropped on write, as client-go's rebuild of
/// the whole spec drops it.
const LEASE_FIELDS: [&str; 7] = [
    "holderIdentity",
    "leaseDurationSeconds",
    "acquireTime",
    "renewTime",
    "leaseTransitions",
    "strategy",
    "preferredHolder",
];

/// Write `record` into an existing spec in place, with the same result as [`encode_spec`]: a renew
/// changes one time and reuses every other key and string it finds.
fn update_spec(spec: &mut Map<String, Value>, record: &LeaderElectionRecord) {
    spec.retain(|k, _| LEASE_FIELDS.contains(&k.as_str()));
    set_str(spec, "holderIdentity", Some(&record.holder_identity));
    set_value(
        spec,
        "leaseDurationSeconds",
        record.lease_duration_seconds.into(),
    );
    set_time(spec, "acquireTime", record.acquire_time.as_ref());
    set_time(spec, "renewTime", record.renew_time.as_ref());
    set_value(spec, "leaseTransitions", record.leader_transitions.into());
    set_str(spec, "strategy", record.strategy.as_deref());
    set_str(spec, "preferredHolder", record.preferred_holder.as_deref());
}

/// `spec[key] = value` (or no key for `None`), keeping the string buffer already there.
fn set_str(spec: &mut Map<String, Value>, key: &str, value: Option<&str>) {
    match (spec.get_mut(key), value) {
        (Some(Value::String(s)), Some(v)) => {
            if s != v {
                s.clear();
                s.push_str(v);
            }
        }
        (Some(old), Some(v)) => *old = Value::String(v.to_string()),
        (None, Some(v)) => {
            spec.insert(key.to_string(), Value::String(v.to_string()));
        }
        (_, None) => {
            spec.remove(key);
        }
    }
}

fn set_value(spec: &mut Map<String, Value>, key: &str, value: Value) {
    match spec.get_mut(key) {
        Some(old) => *old = value,
        None => {
            spec.insert(key.to_string(), value);
        }
    }
}

/// A MicroTime written into the string already there, or `null`.
fn set_time(spec: &mut Map<String, Value>, key: &str, t: Option<&chrono::DateTime<chrono::Utc>>) {
    let Some(t) = t else {
        set_value(spec, key, Value::Null);
        return;
    };
    match spec.get_mut(key) {
        Some(Value::String(s)) => write_micro_time(t, s),
        _ => set_value(spec, key, Value::String(format_micro_time(t))),
    }
}

/// The Lease spec for a record: always the five core fields, times as MicroTime, and the coordinated
/// election fields when set (client-go rebuilds the whole spec from the record the same way).
pub(crate) fn encode_spec(record: &LeaderElectionRecord) -> Value {
    let time = |t: &Option<chrono::DateTime<chrono::Utc>>| match t {
        Some(t) => Value::String(format_micro_time(t)),
        None => Value::Null,
    };
    let mut spec = json!({
        "holderIdentity": record.holder_identity,
        "leaseDurationSeconds": record.lease_duration_seconds,
        "acquireTime": time(&record.acquire_time),
        "renewTime": time(&record.renew_time),
        "leaseTransitions": record.leader_transitions,
    });
    if let Some(s) = &record.strategy {
        spec["strategy"] = json!(s);
    }
    if let Some(p) = &record.preferred_holder {
        spec["preferredHolder"] = json!(p);
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_real_apiserver_lease() {
        let body = r#"{"kind":"Lease","apiVersion":"coordination.k8s.io/v1","metadata":{"name":"example-lease","namespace":"default","resourceVersion":"257"},"spec":{"holderIdentity":"holder-a","leaseDurationSeconds":15,"acquireTime":"2026-01-02T03:04:05.123456Z","renewTime":"2026-01-02T03:04:10.654321Z","leaseTransitions":0}}"#;
        let v = decode_lease(&serde_json::from_str(body).unwrap()).unwrap();
        assert_eq!(v.resource_version, "257");
        assert_eq!(v.record.holder_identity, "holder-a");
        assert_eq!(v.record.lease_duration_seconds, 15);
        assert_eq!(
            format_micro_time(&v.record.renew_time.unwrap()),
            "2026-01-02T03:04:10.654321Z"
        );
        // and it writes back the same five fields
        let spec = encode_spec(&v.record);
        assert_eq!(spec["acquireTime"], "2026-01-02T03:04:05.123456Z");
        assert_eq!(spec["leaseTransitions"], 0);
    }

    #[test]
    fn missing_spec_reads_as_empty_and_bad_objects_are_errors() {
        let v = decode_lease(&json!({"metadata": {"resourceVersion": "1"}})).unwrap();
        assert!(v.record.is_free());
        assert!(
            decode_lease(&json!({"spec": {}}))
                .unwrap_err()
                .contains("resourceVersion")
        );
        assert!(decode_lease(&json!([1, 2])).is_err());
        assert!(
            decode_lease(&json!({"kind": "Status", "metadata": {"resourceVersion": "1"}})).is_err()
        );
        let e = decode_lease(
            &json!({"metadata": {"resourceVersion": "1"}, "spec": {"leaseTransitions": "x"}}),
        )
        .unwrap_err();
        assert!(e.contains("spec.leaseTransitions"), "{e}");
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bodies_never_panic(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                let _ = decode_lease(&v);
            }
        }

        #[test]
        fn lease_shaped_objects_decode_or_fail_cleanly(
            rv in proptest::option::of("[0-9a-z]{0,6}"),
            holder in proptest::option::of(".{0,20}"),
            duration in proptest::option::of(proptest::prelude::any::<i64>()),
            transitions in proptest::option::of(proptest::prelude::any::<i64>()),
        ) {
            let mut spec = serde_json::Map::new();
            if let Some(h) = &holder { spec.insert("holderIdentity".into(), json!(h)); }
            if let Some(d) = duration { spec.insert("leaseDurationSeconds".into(), json!(d)); }
            if let Some(t) = transitions { spec.insert("leaseTransitions".into(), json!(t)); }
            let object = json!({"metadata": {"resourceVersion": rv}, "spec": spec});
            match decode_lease(&object) {
                Ok(v) => {
                    proptest::prop_assert_eq!(Some(v.resource_version), rv);
                    proptest::prop_assert_eq!(v.record.holder_identity, holder.unwrap_or_default());
                }
                Err(m) => proptest::prop_assert!(!m.is_empty()),
            }
        }
    }

    fn record_strategy() -> impl proptest::strategy::Strategy<Value = LeaderElectionRecord> {
        use chrono::TimeZone;
        use proptest::prelude::*;
        let time = proptest::option::of((0i64..4_000_000_000, 0u32..1_000_000_000))
            .prop_map(|t| t.and_then(|(s, n)| chrono::Utc.timestamp_opt(s, n).single()));
        (
            ".{0,8}",
            any::<i32>(),
            time.clone(),
            time,
            any::<i32>(),
            proptest::option::of(".{0,4}"),
            proptest::option::of(".{0,4}"),
        )
            .prop_map(|(h, d, a, r, t, st, p)| LeaderElectionRecord {
                holder_identity: h,
                lease_duration_seconds: d,
                acquire_time: a,
                renew_time: r,
                leader_transitions: t,
                strategy: st,
                preferred_holder: p,
                incarnation: None,
            })
    }

    proptest::proptest! {
        /// Writing a record into whatever spec the object held gives exactly the spec built afresh.
        #[test]
        fn an_in_place_write_is_a_fresh_spec(
            old in record_strategy(),
            new in record_strategy(),
            extra in proptest::option::of(".{0,6}"),
        ) {
            let mut object = json!({"spec": encode_spec(&old)});
            if let Some(x) = extra {
                object["spec"]["somethingElse"] = json!(x);
                object["spec"]["renewTime"] = json!(7);
            }
            Lease::write(&mut object, &new);
            proptest::prop_assert_eq!(&object["spec"], &encode_spec(&new));
        }
    }
}
