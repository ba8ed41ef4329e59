//! The annotation locks: the record as JSON in the `control-plane.alpha.kubernetes.io/leader`
//! annotation of a ConfigMap or an Endpoints object, times in RFC 3339 seconds, field names as client-go
//! writes them. Older clusters and other clients (client-go before 1.24, the Python client) still use
//! them. Every other annotation, label and data key of the object is left untouched.

use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};

use super::object::{LockObject, ObjectLock};
use crate::record::{LeaderElectionRecord, format_seconds_time};

/// The annotation that holds the record.
pub const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";

/// A core/v1 ConfigMap used as a lock.
#[derive(Debug)]
pub struct ConfigMap;

/// A core/v1 Endpoints object used as a lock.
#[derive(Debug)]
pub struct Endpoints;

/// A ConfigMap lock.
pub type ConfigMapLock = ObjectLock<ConfigMap>;

/// An Endpoints lock.
pub type EndpointsLock = ObjectLock<Endpoints>;

/// client-go's `LeaderElectionRecord` JSON, in its field order.
#[derive(Serialize)]
struct AnnotationRecord<'a> {
    #[serde(rename = "holderIdentity")]
    holder_identity: &'a str,
    #[serde(rename = "leaseDurationSeconds")]
    lease_duration_seconds: i32,
    #[serde(rename = "acquireTime")]
    acquire_time: Option<String>,
    #[serde(rename = "renewTime")]
    renew_time: Option<String>,
    #[serde(rename = "leaderTransitions")]
    leader_transitions: i32,
}

/// The annotation value client-go would write for `record`.
pub fn encode_annotation(record: &LeaderElectionRecord) -> String {
    let r = AnnotationRecord {
        holder_identity: &record.holder_identity,
        lease_duration_seconds: record.lease_duration_seconds,
        acquire_time: record.acquire_time.as_ref().map(format_seconds_time),
        renew_time: record.renew_time.as_ref().map(format_seconds_time),
        leader_transitions: record.leader_transitions,
    };
    serde_json::to_string(&r).expect("a record always serializes")
}

/// Read the record out of an object's leader annotation, leniently (the Python client writes the duration
/// as a string, naive times and no counter). No annotation: a free lock.
pub fn decode_annotation(object: &Value) -> Result<LeaderElectionRecord, String> {
    let value = match object
        .get("metadata")
        .and_then(|m| m.get("annotations"))
        .and_then(|a| a.get(LEADER_ANNOTATION))
    {
        None | Some(Value::Null) => return Ok(LeaderElectionRecord::default()),
        Some(Value::String(s)) => s,
        Some(_) => return Err(format!("annotation {LEADER_ANNOTATION} is not a string")),
    };
    if value.trim().is_empty() {
        return Ok(LeaderElectionRecord::default());
    }
    let parsed: Value = serde_json::from_str(value)
        .map_err(|e| format!("annotation {LEADER_ANNOTATION} is not JSON: {e}"))?;
    let map = parsed
        .as_object()
        .ok_or_else(|| format!("annotation {LEADER_ANNOTATION} is not a JSON object"))?;
    LeaderElectionRecord::from_json_object(map, "leaderTransitions")
        .map_err(|e| format!("annotation {LEADER_ANNOTATION}: {}: {}", e.field, e.message))
}

fn write_annotation(object: &mut Value, record: &LeaderElectionRecord) {
    if !object["metadata"].is_object() {
        object["metadata"] = Value::Object(Map::new());
    }
    let meta = &mut object["metadata"];
    if !meta["annotations"].is_object() {
        meta["annotations"] = Value::Object(Map::new());
    }
    meta["annotations"][LEADER_ANNOTATION] = Value::String(encode_annotation(record));
}

impl LockObject for ConfigMap {
    const KIND: &'static str = "ConfigMap";
    /// The annotation's record carries RFC 3339 times in whole seconds.
    const TIME_RESOLUTION: Duration = Duration::from_secs(1);
    const API_VERSION: &'static str = "v1";
    const PLURAL: &'static str = "configmaps";
    fn read(object: &Value) -> Result<LeaderElectionRecord, String> {
        decode_annotation(object)
    }
    fn write(object: &mut Value, record: &LeaderElectionRecord) {
        write_annotation(object, record)
    }
}

impl LockObject for Endpoints {
    const KIND: &'static str = "Endpoints";
    /// The annotation's record carries RFC 3339 times in whole seconds.
    const TIME_RESOLUTION: Duration = Duration::from_secs(1);
    const API_VERSION: &'static str = "v1";
    const PLURAL: &'static str = "endpoints";
    fn read(object: &Value) -> Result<LeaderElectionRecord, String> {
        decode_annotation(object)
    }
    fn write(object: &mut Value, record: &LeaderElectionRecord) {
        write_annotation(object, record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::parse_time_lenient;

    #[test]
    fn writes_exactly_what_client_go_writes() {
        // From a real API server (fixture 22): what client-go's ConfigMapLock wrote.
        let written = r#"{"holderIdentity":"holder-a","leaseDurationSeconds":15,"acquireTime":"2026-01-02T03:04:05Z","renewTime":"2026-01-02T03:04:05Z","leaderTransitions":0}"#;
        let t = parse_time_lenient("2026-01-02T03:04:05.987654Z");
        let record = LeaderElectionRecord {
            holder_identity: "holder-a".into(),
            lease_duration_seconds: 15,
            acquire_time: t,
            renew_time: t,
            leader_transitions: 0,
            ..Default::default()
        };
        assert_eq!(
            encode_annotation(&record),
            written,
            "seconds precision, client-go's field order"
        );
        let object = serde_json::json!({"metadata": {"annotations": {LEADER_ANNOTATION: written}}});
        let back = decode_annotation(&object).unwrap();
        assert_eq!(back.holder_identity, "holder-a");
        assert_eq!(
            back.acquire_time,
            parse_time_lenient("2026-01-02T03:04:05Z")
        );
    }

    #[test]
    fn reads_the_python_clients_variant_and_free_objects() {
        // The Python client's ConfigMapLock as a real API server stored it: a string duration, naive
        // times, no transition counter.
        let fixture = serde_json::json!({"metadata": {"annotations": {LEADER_ANNOTATION:
            "{\"holderIdentity\": \"acc-crash-1795741501-c0\", \"leaseDurationSeconds\": \"6\", \"acquireTime\": \"2026-11-27 01:05:11.105177\", \"renewTime\": \"2026-11-27 01:05:11.117264\"}"
        }}});
        let r = decode_annotation(&fixture).unwrap();
        assert_eq!(r.holder_identity, "acc-crash-1795741501-c0");
        assert_eq!(r.lease_duration_seconds, 6, "a string duration");
        assert!(r.renew_time.is_some(), "a naive time");
        assert_eq!(r.leader_transitions, 0, "a missing counter");
        assert!(
            decode_annotation(&serde_json::json!({"metadata": {}}))
                .unwrap()
                .is_free()
        );
        assert!(
            decode_annotation(
                &serde_json::json!({"metadata": {"annotations": {LEADER_ANNOTATION: "{"}}})
            )
            .is_err()
        );
        assert!(
            decode_annotation(
                &serde_json::json!({"metadata": {"annotations": {LEADER_ANNOTATION: 7}}})
            )
            .is_err()
        );
    }

    #[test]
    fn writing_keeps_other_annotations_labels_and_data() {
        let mut object = serde_json::json!({
            "metadata": {"name": "x", "labels": {"app": "a"}, "annotations": {"other": "kept"}},
            "data": {"key": "value"}
        });
        write_annotation(
            &mut object,
            &LeaderElectionRecord {
                holder_identity: "me".into(),
                ..Default::default()
            },
        );
        assert_eq!(object["metadata"]["annotations"]["other"], "kept");
        assert_eq!(object["metadata"]["labels"]["app"], "a");
        assert_eq!(object["data"]["key"], "value");
        assert_eq!(decode_annotation(&object).unwrap().holder_identity, "me");
    }
}
