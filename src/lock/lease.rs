//! The `coordination.k8s.io/v1` Lease lock (SPEC §2).

use std::time::Duration;

use serde_json::{Map, Value, json};

use super::Lock;
use crate::client::RestClient;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::record::{LeaderElectionRecord, VersionedRecord, format_micro_time};

/// A Lease in `coordination.k8s.io/v1`. It keeps the last object it saw so a renew is one PUT.
#[derive(Debug)]
pub struct LeaseLock {
    client: RestClient,
    namespace: String,
    name: String,
    identity: String,
    /// `/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}`, built once: renews are hot.
    item_path: String,
    /// The whole object last read or written: sent back on update, unknown fields included.
    cached: Option<Value>,
}

impl LeaseLock {
    /// A Lease lock `namespace/name` on the API server of `config`, written as `identity`. The lock gets
    /// its own HTTP agent, so its requests reuse one pooled connection.
    pub fn new(
        config: &Config,
        namespace: impl Into<String>,
        name: impl Into<String>,
        identity: impl Into<String>,
    ) -> Result<Self> {
        let (namespace, name) = (namespace.into(), name.into());
        Ok(LeaseLock {
            client: RestClient::new(config)?,
            item_path: format!("/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}"),
            namespace,
            name,
            identity: identity.into(),
            cached: None,
        })
    }

    fn context(&self, verb: &str) -> String {
        format!("{verb} lease {}/{}", self.namespace, self.name)
    }

    /// Decode a Lease body, cache it and return its record.
    fn accept(&mut self, body: &[u8]) -> Result<VersionedRecord> {
        let context = format!("Lease {}/{}", self.namespace, self.name);
        let object: Value = serde_json::from_slice(body).map_err(|e| Error::Decode {
            context: context.clone(),
            message: format!("not JSON: {e}"),
        })?;
        let versioned =
            decode_lease(&object).map_err(|message| Error::Decode { context, message })?;
        self.cached = Some(object);
        Ok(versioned)
    }
}

/// Read the record and `resourceVersion` out of a Lease object.
pub(crate) fn decode_lease(object: &Value) -> std::result::Result<VersionedRecord, String> {
    let obj = object.as_object().ok_or("expected a JSON object")?;
    if let Some(kind) = obj.get("kind").and_then(Value::as_str) {
        if kind != "Lease" {
            return Err(format!("expected kind Lease, found {kind:?}"));
        }
    }
    let resource_version = obj
        .get("metadata")
        .and_then(|m| m.get("resourceVersion"))
        .and_then(Value::as_str)
        .filter(|rv| !rv.is_empty())
        .ok_or("metadata.resourceVersion is missing")?
        .to_string();
    let empty = Map::new();
    let spec = match obj.get("spec") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(m)) => m,
        Some(_) => return Err("spec is not an object".into()),
    };
    let record = LeaderElectionRecord::from_json_object(spec, "leaseTransitions")
        .map_err(|e| format!("spec.{}: {}", e.field, e.message))?;
    Ok(VersionedRecord {
        record,
        resource_version,
    })
}

/// The Lease spec for a record: always the five core fields, times as MicroTime.
pub(crate) fn encode_spec(record: &LeaderElectionRecord) -> Value {
    let time = |t: &Option<chrono::DateTime<chrono::Utc>>| match t {
        Some(t) => Value::String(format_micro_time(t)),
        None => Value::Null,
    };
    json!({
        "holderIdentity": record.holder_identity,
        "leaseDurationSeconds": record.lease_duration_seconds,
        "acquireTime": time(&record.acquire_time),
        "renewTime": time(&record.renew_time),
        "leaseTransitions": record.leader_transitions,
    })
}

impl Lock for LeaseLock {
    fn get(&mut self, timeout: Duration) -> Result<Option<VersionedRecord>> {
        match self
            .client
            .get(&self.item_path, timeout, &self.context("get"))
        {
            Ok(body) => self.accept(&body).map(Some),
            Err(e) if e.is_not_found() => {
                self.cached = None;
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn create(
        &mut self,
        record: &LeaderElectionRecord,
        timeout: Duration,
    ) -> Result<VersionedRecord> {
        let body = json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": encode_spec(record),
        });
        let path = format!(
            "/apis/coordination.k8s.io/v1/namespaces/{}/leases",
            self.namespace
        );
        let bytes = serde_json::to_vec(&body).expect("a JSON value always serializes");
        let answer = self
            .client
            .post(&path, &bytes, timeout, &self.context("create"))?;
        self.accept(&answer)
    }

    fn update(
        &mut self,
        record: &LeaderElectionRecord,
        timeout: Duration,
    ) -> Result<VersionedRecord> {
        // Taken, not cloned (renews are hot), and put back if the write fails.
        let mut object = self.cached.take().ok_or_else(|| Error::Decode {
            context: self.context("update"),
            message: "no cached object to update: get or create the lease first".into(),
        })?;
        object["spec"] = encode_spec(record);
        let bytes = serde_json::to_vec(&object).expect("a JSON value always serializes");
        match self
            .client
            .put(&self.item_path, &bytes, timeout, &self.context("update"))
        {
            Ok(answer) => self.accept(&answer),
            Err(e) => {
                self.cached = Some(object);
                Err(e)
            }
        }
    }

    fn identity(&self) -> &str {
        &self.identity
    }

    fn describe(&self) -> String {
        format!("leases {}/{}", self.namespace, self.name)
    }
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
}
