//! A small coordinated-leader-election controller, as kube-apiserver runs it with the
//! `CoordinatedLeaderElection` gate (KEP-4355), strategy `OldestEmulationVersion`: it pings candidates,
//! picks the live one with the oldest emulation version (then binary version, then name), writes it into
//! an expired or free Lease, and marks a better candidate as `preferredHolder` on a held Lease so the
//! holder ends its term.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::Inner;
use super::store::{Resource, Store};
use crate::record::{format_micro_time, parse_time_lenient};
use crate::sync::lock;

/// How often candidates are pinged, and how recently they must have answered to be eligible.
const PING_EVERY: Duration = Duration::from_millis(500);
const ANSWER_WITHIN: Duration = Duration::from_secs(3);

pub(crate) fn run(inner: Arc<Inner>, lease_seconds: i64) {
    while !inner.stopped.load(Ordering::Acquire) {
        if !inner.is_down() {
            tick(&inner, lease_seconds, Utc::now());
            inner.store_changed.notify_all();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `1.33.2` → [1, 33, 2]; anything unparsable sorts last.
fn version(v: &str) -> Vec<u64> {
    let parsed: Option<Vec<u64>> = v
        .trim_start_matches('v')
        .split('.')
        .map(|p| p.parse().ok())
        .collect();
    parsed.unwrap_or_else(|| vec![u64::MAX])
}

fn time(v: &Value, field: &str) -> Option<DateTime<Utc>> {
    v["spec"][field].as_str().and_then(parse_time_lenient)
}

fn tick(inner: &Inner, lease_seconds: i64, now: DateTime<Utc>) {
    let mut store = lock(&inner.store);
    let mut groups: BTreeMap<(String, String), Vec<(String, Value)>> = BTreeMap::new();
    for (ns, name, c) in store.entries(Resource::LeaseCandidates) {
        let lease = c["spec"]["leaseName"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        groups.entry((ns, lease)).or_default().push((name, c));
    }
    for ((ns, lease_name), candidates) in groups {
        if let Some(best) = ping_and_pick(&mut store, &ns, candidates, now) {
            assign(&mut store, &ns, &lease_name, &best, lease_seconds, now);
        }
    }
}

/// Ping the candidates whose last answer is getting old, and pick the best of those that answered
/// lately: the oldest emulation version, then the oldest binary version, then the name.
fn ping_and_pick(
    store: &mut Store,
    ns: &str,
    candidates: Vec<(String, Value)>,
    now: DateTime<Utc>,
) -> Option<String> {
    let mut eligible = Vec::new();
    for (name, mut c) in candidates {
        let renew = time(&c, "renewTime");
        let ping = time(&c, "pingTime");
        let answered =
            renew.is_some_and(|r| now - r < chrono::Duration::from_std(ANSWER_WITHIN).unwrap());
        if answered && c["spec"]["strategy"] == "OldestEmulationVersion" {
            eligible.push((name.clone(), c.clone()));
        }
        // Ping a candidate whose last answer is getting old and that has no ping outstanding.
        let stale = renew.is_none_or(|r| now - r > chrono::Duration::from_std(PING_EVERY).unwrap());
        let outstanding = ping.is_some_and(|p| renew.is_none_or(|r| p > r));
        if stale && !outstanding {
            c["spec"]["pingTime"] = json!(format_micro_time(&now));
            store.put_raw(Resource::LeaseCandidates, ns, &name, c);
        }
    }
    let key = |c: &Value| {
        (
            version(c["spec"]["emulationVersion"].as_str().unwrap_or("")),
            version(c["spec"]["binaryVersion"].as_str().unwrap_or("")),
        )
    };
    eligible
        .into_iter()
        .min_by(|(an, a), (bn, b)| key(a).cmp(&key(b)).then(an.cmp(bn)))
        .map(|(name, _)| name)
}

/// Give the Lease to `best` if it is free or expired; else name `best` as the preferred holder, so the
/// current one steps down.
fn assign(
    store: &mut Store,
    ns: &str,
    lease_name: &str,
    best: &str,
    lease_seconds: i64,
    now: DateTime<Utc>,
) {
    let now_s = format_micro_time(&now);
    let current = store.get(Resource::Leases, ns, lease_name).cloned();
    let holder = current
        .as_ref()
        .and_then(|l| l["spec"]["holderIdentity"].as_str())
        .unwrap_or("")
        .to_string();
    let expired = match &current {
        None => true,
        Some(l) => {
            let renew = l["spec"]["renewTime"].as_str().and_then(parse_time_lenient);
            let secs = l["spec"]["leaseDurationSeconds"].as_i64().unwrap_or(0);
            holder.is_empty() || renew.is_none_or(|r| r + chrono::Duration::seconds(secs) < now)
        }
    };
    if expired {
        let transitions = current
            .as_ref()
            .and_then(|l| l["spec"]["leaseTransitions"].as_i64())
            .unwrap_or(-1)
            + 1;
        let mut lease = current.unwrap_or_else(|| {
            json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": lease_name, "namespace": ns}})
        });
        lease["spec"] = json!({
            "holderIdentity": best,
            "leaseDurationSeconds": lease_seconds,
            "acquireTime": now_s,
            "renewTime": now_s,
            "leaseTransitions": transitions,
            "strategy": "OldestEmulationVersion",
        });
        store.put_raw(Resource::Leases, ns, lease_name, lease);
    } else if holder != best {
        let Some(mut lease) = current else { return };
        if lease["spec"]["preferredHolder"].as_str() != Some(best) {
            lease["spec"]["preferredHolder"] = json!(best);
            lease["spec"]["strategy"] = json!("OldestEmulationVersion");
            store.put_raw(Resource::Leases, ns, lease_name, lease);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn versions_order_numerically() {
        assert!(super::version("1.9.0") < super::version("1.10.0"));
        assert!(super::version("v1.31") < super::version("1.31.1"));
        assert!(super::version("garbage") > super::version("99.0"));
    }
}
