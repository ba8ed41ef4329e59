//! Property tests over every parser that reads remote or user input: arbitrary input never panics, and
//! what parses obeys the rules.

use std::path::Path;

use kube_elector::Config;
use kube_elector::error::ApiError;
use kube_elector::lock::{LEADER_ANNOTATION, decode_annotation, encode_annotation};
use kube_elector::record::LeaderElectionRecord;
use kube_elector::record::time::{parse_micro_time_strict, parse_time_lenient};
use proptest::prelude::*;
use serde_json::Value;

/// Arbitrary JSON, biased towards the shapes of a Lease spec.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,40}".prop_map(Value::String),
        "[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,12})?(Z|[+-][0-9]{2}:[0-9]{2})?".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("holderIdentity".to_string()),
                    Just("leaseDurationSeconds".to_string()),
                    Just("acquireTime".to_string()),
                    Just("renewTime".to_string()),
                    Just("leaseTransitions".to_string()),
                    Just("leaderTransitions".to_string()),
                    "[a-z]{1,8}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const KUBECONFIG: &str = "apiVersion: v1\ncurrent-context: x\nclusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:6443', insecure-skip-tls-verify: true}\ncontexts:\n- name: x\n  context: {cluster: c, user: u, namespace: n}\nusers:\n- name: u\n  user: {token: t, as: me, as-groups: [g]}\n";

proptest! {
    #[test]
    fn records_decode_or_fail_cleanly(value in json()) {
        if let Value::Object(map) = &value {
            for field in ["leaseTransitions", "leaderTransitions"] {
                match LeaderElectionRecord::from_json_object(map, field) {
                    Ok(r) => {
                        // What decodes is what was there (or empty).
                        match map.get("holderIdentity") {
                            Some(Value::String(h)) => prop_assert_eq!(&r.holder_identity, h),
                            _ => prop_assert!(r.holder_identity.is_empty()),
                        }
                    }
                    Err(e) => prop_assert!(!e.field.is_empty() && !e.message.is_empty()),
                }
            }
        }
    }

    #[test]
    fn times_parse_or_not_without_panicking(s in ".{0,64}") {
        let strict = parse_micro_time_strict(&s);
        let lenient = parse_time_lenient(&s);
        if strict.is_some() {
            prop_assert_eq!(strict, lenient, "strict implies lenient, to the same instant");
        }
        if let Some(t) = strict {
            prop_assert_eq!(parse_micro_time_strict(&kube_elector::record::time::format_micro_time(&t)), Some(t));
        }
    }

    #[test]
    fn micro_times_round_trip(secs in 0i64..4_000_000_000, micros in 0u32..1_000_000) {
        let t = chrono::DateTime::from_timestamp(secs, micros * 1000).unwrap();
        let s = kube_elector::record::time::format_micro_time(&t);
        prop_assert_eq!(s.len(), 27);
        prop_assert_eq!(parse_micro_time_strict(&s), Some(t));
    }

    #[test]
    fn error_bodies_never_panic(code in 100u16..600, body in prop::collection::vec(any::<u8>(), 0..600)) {
        let e = ApiError::from_response("GET x".into(), code, &body, None);
        prop_assert_eq!(e.code, code);
        prop_assert!(!e.to_string().is_empty());
    }

    #[test]
    fn arbitrary_kubeconfig_text_never_panics(text in ".{0,400}") {
        let _ = Config::from_kubeconfig_str(&text, Path::new("/nonexistent"), None);
    }

    #[test]
    fn mutated_kubeconfigs_never_panic(edits in prop::collection::vec((0usize..KUBECONFIG.len(), any::<char>()), 1..8)) {
        let mut chars: Vec<char> = KUBECONFIG.chars().collect();
        for (i, c) in edits {
            let i = i % chars.len();
            chars[i] = c;
        }
        let text: String = chars.into_iter().collect();
        if let Ok(c) = Config::from_kubeconfig_str(&text, Path::new("/nonexistent"), None) {
            prop_assert!(!c.server().is_empty());
        }
    }

    #[test]
    fn annotation_records_never_panic_and_round_trip(value in json(), raw in ".{0,80}") {
        // Whatever JSON sits in the annotation, or any text at all.
        for text in [value.to_string(), raw] {
            let object = serde_json::json!({"metadata": {"annotations": {LEADER_ANNOTATION: text}}});
            if let Ok(record) = decode_annotation(&object) {
                // What we read, we write back in client-go's form and read again the same.
                let again = serde_json::json!({"metadata": {"annotations": {LEADER_ANNOTATION: encode_annotation(&record)}}});
                let back = decode_annotation(&again).unwrap();
                prop_assert_eq!(back.holder_identity, record.holder_identity);
                prop_assert_eq!(back.lease_duration_seconds, record.lease_duration_seconds);
                prop_assert_eq!(back.leader_transitions, record.leader_transitions);
            }
        }
    }
}
