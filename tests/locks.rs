//! Every lock kind: records round-trip with what client-go and the Python client write, elections work on
//! each kind, a renew stays one PUT per object, and a migration from ConfigMap locks to Leases never has two
//! leaders.

mod common;

use std::time::{Duration, Instant};

use common::{ManualClock, assert_well_formed};
use kube_elector::election::Elector;
use kube_elector::lock::{ConfigMapLock, EndpointsLock, LEADER_ANNOTATION, Lock};
use kube_elector::testing::ApiServer;
use kube_elector::{LeaderElector, LeaderEvent, LeaderHandle, LockKind, Timing};
use serde_json::{Value, json};

fn fixture_body(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path).unwrap().replace("\r\n", "\n");
    let start = text.find('{').unwrap();
    let body = match text.find("\n\n{") {
        Some(i) => &text[i + 2..],
        None => &text[start..],
    };
    serde_json::from_str(body.trim()).unwrap()
}

/// Lease 10 s, renew deadline 5 s, retry 1 s: room for a step-by-step test.
fn timing() -> Timing {
    common::timing(10, 5000, 1000)
}

#[test]
fn client_go_and_python_annotation_records_are_read_and_ours_match_client_gos() {
    let server = ApiServer::start().unwrap();
    let cm = fixture_body("apiserver/22-http-post-configmap-lock-201.txt");
    let ep = fixture_body("apiserver/23-http-post-endpoints-lock-201.txt");
    server.put_object_raw("configmaps", "default", "example-cm-lock", cm.clone());
    server.put_object_raw("endpoints", "default", "example-ep-lock", ep);
    let mut lock =
        ConfigMapLock::new(&server.config(), "default", "example-cm-lock", "me").unwrap();
    let v = lock.get(Duration::from_secs(5)).unwrap().unwrap();
    assert_eq!(
        (
            v.record.holder_identity.as_str(),
            v.record.lease_duration_seconds
        ),
        ("holder-a", 15)
    );
    // Writing the same record back gives byte-for-byte client-go's annotation.
    let written = lock
        .update(&v.record, &v.resource_version, Duration::from_secs(5))
        .unwrap();
    assert_eq!(written.record, v.record);
    let stored = server
        .object("configmaps", "default", "example-cm-lock")
        .unwrap();
    assert_eq!(
        stored["metadata"]["annotations"][LEADER_ANNOTATION],
        cm["metadata"]["annotations"][LEADER_ANNOTATION]
    );
    let mut lock =
        EndpointsLock::new(&server.config(), "default", "example-ep-lock", "me").unwrap();
    assert_eq!(
        lock.get(Duration::from_secs(5))
            .unwrap()
            .unwrap()
            .record
            .holder_identity,
        "holder-a"
    );

    // The Python client's ConfigMapLock: a string duration, naive times, no counter.
    let mut py: Value = serde_json::from_str(include_str!(
        "fixtures/peers/python-client-configmap-lock.json"
    ))
    .unwrap();
    py["metadata"]["name"] = json!("py");
    server.put_object_raw("configmaps", "default", "py", py);
    let clock = ManualClock::new();
    let lock = ConfigMapLock::new(&server.config(), "default", "py", "me").unwrap();
    let mut e = Elector::with_clock(lock, timing(), clock.clone()).unwrap();
    assert!(!e.try_acquire_or_renew().unwrap());
    assert_eq!(e.election().holder(), Some("acc-crash-1795741501-c0"));
    clock.advance(Duration::from_secs(6));
    assert!(e.try_acquire_or_renew().unwrap(), "its \"6\" seconds count");
    let stored = server.object("configmaps", "default", "py").unwrap();
    let record: Value = serde_json::from_str(
        stored["metadata"]["annotations"][LEADER_ANNOTATION]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(record["leaderTransitions"], 1);
    assert_eq!(
        record["leaseDurationSeconds"], 10,
        "written in client-go's form: a number"
    );
    assert!(
        record["renewTime"].as_str().unwrap().ends_with('Z')
            && record["renewTime"].as_str().unwrap().len() == 20
    );
}

#[test]
fn other_annotations_labels_and_data_are_kept() {
    let server = ApiServer::start().unwrap();
    server.put_object_raw(
        "configmaps",
        "default",
        "shared",
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "shared", "labels": {"app": "x"}, "annotations": {"team": "blue"}},
               "data": {"config.yaml": "a: 1"}}),
    );
    let lock = ConfigMapLock::new(&server.config(), "default", "shared", "me").unwrap();
    let mut e = Elector::new(lock, timing()).unwrap();
    assert!(e.try_acquire_or_renew().unwrap());
    assert!(e.release().unwrap());
    let o = server.object("configmaps", "default", "shared").unwrap();
    assert_eq!(
        (
            o["metadata"]["labels"]["app"].as_str(),
            o["metadata"]["annotations"]["team"].as_str()
        ),
        (Some("x"), Some("blue"))
    );
    assert_eq!(o["data"]["config.yaml"], "a: 1");
}

#[test]
fn a_renew_is_one_put_per_object_for_every_kind() {
    for kind in LockKind::ALL {
        let server = ApiServer::start().unwrap();
        let lock = kind
            .locks(&server.config(), "default", "one-put", "me")
            .unwrap();
        let clock = ManualClock::new();
        let mut e = Elector::with_clock(lock, timing(), clock.clone()).unwrap();
        assert!(e.try_acquire_or_renew().unwrap(), "{kind}");
        for _ in 0..3 {
            // More than a second apart: seconds-precision records change on every renew.
            clock.advance(Duration::from_millis(1100));
            server.reset_counters();
            let outcome = e.step();
            assert!(outcome.is_leading() && outcome.renewed, "{kind}");
            assert!(!outcome.slow_path, "{kind}: the fast path");
            let objects = if kind.as_str().ends_with("leases") && kind != LockKind::Leases {
                2
            } else {
                1
            };
            assert_eq!(
                (server.requests("GET"), server.requests("PUT")),
                (0, objects),
                "{kind}"
            );
        }
    }
}

fn candidate(server: &ApiServer, kind: LockKind, id: &str, release: bool) -> LeaderHandle {
    LeaderElector::builder(server.config(), "kinds")
        .lock_kind(kind)
        .identity(id)
        // Annotation records show a renew at most once a second: over 1 s + the retry period.
        .timing(common::timing(2, 1500, 200))
        .release_on_stop(release)
        .start()
        .unwrap()
}

/// Sample until one of `handles` leads (panicking on an overlap).
fn one_leader(handles: &[&LeaderHandle], bound: Duration) -> usize {
    let start = Instant::now();
    loop {
        let leaders: Vec<usize> = (0..handles.len())
            .filter(|&i| handles[i].is_leader())
            .collect();
        assert!(leaders.len() <= 1, "two leaders at once");
        if let Some(&i) = leaders.first() {
            return i;
        }
        assert!(start.elapsed() < bound, "no leader within {bound:?}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn elections_on_every_kind_hand_off_and_fail_over() {
    for kind in LockKind::ALL {
        let server = ApiServer::start().unwrap();
        let mut hs: Vec<LeaderHandle> = (0..3)
            .map(|i| candidate(&server, kind, &format!("{kind}-{i}"), i % 2 == 0))
            .collect();
        let rxs: Vec<_> = hs.iter().map(LeaderHandle::events).collect();
        for round in 0..2 {
            let refs: Vec<&LeaderHandle> = hs.iter().collect();
            let i = one_leader(&refs, Duration::from_secs(8));
            let leader = hs.remove(i);
            if round == 0 {
                leader.stop().unwrap()
            } else {
                leader.abandon()
            }
            let refs: Vec<&LeaderHandle> = hs.iter().collect();
            one_leader(&refs, Duration::from_secs(8));
        }
        for h in hs {
            h.stop().unwrap();
        }
        for rx in rxs {
            let events: Vec<LeaderEvent> = rx.try_iter().collect();
            assert_well_formed(&events);
        }
    }
}

#[test]
fn migrating_from_configmap_locks_to_leases_never_has_two_leaders() {
    let server = ApiServer::start().unwrap();
    // Old generation: configmapsleases (writes the ConfigMap, then the Lease); new generation: leases.
    let mut old: Vec<LeaderHandle> = (0..2)
        .map(|i| {
            candidate(
                &server,
                LockKind::ConfigMapsLeases,
                &format!("old-{i}"),
                true,
            )
        })
        .collect();
    let mut new: Vec<LeaderHandle> = Vec::new();
    let start = Instant::now();
    // A rolling update: every 1.5 s one candidate of the new generation comes up, and (for the first two)
    // one of the old goes, once gracefully and once by crashing.
    let mut next_step = Duration::from_millis(1500);
    while start.elapsed() < Duration::from_secs(10) {
        let all: Vec<&LeaderHandle> = old.iter().chain(new.iter()).collect();
        assert!(
            all.iter().filter(|h| h.is_leader()).count() <= 1,
            "two leaders during the migration"
        );
        if start.elapsed() >= next_step && new.len() < 4 {
            if let Some(h) = old.pop() {
                if new.len() % 2 == 0 {
                    h.stop().ok();
                } else {
                    h.abandon();
                }
            }
            new.push(candidate(
                &server,
                LockKind::Leases,
                &format!("new-{}", new.len()),
                true,
            ));
            next_step += Duration::from_millis(1500);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(old.is_empty(), "the rollout finished");
    let refs: Vec<&LeaderHandle> = new.iter().collect();
    one_leader(&refs, Duration::from_secs(6));
    for h in new {
        h.stop().unwrap();
    }
}

#[test]
fn a_multi_lock_whose_records_disagree_reports_an_unknown_leader() {
    let server = ApiServer::start().unwrap();
    let clock = ManualClock::new();
    // An old client holds the ConfigMap; a new one holds the Lease.
    let mut cm = Elector::with_clock(
        ConfigMapLock::new(&server.config(), "default", "split", "old").unwrap(),
        timing(),
        clock.clone(),
    )
    .unwrap();
    assert!(cm.try_acquire_or_renew().unwrap());
    let mut lease = Elector::with_clock(
        kube_elector::lock::LeaseLock::new(&server.config(), "default", "split", "new").unwrap(),
        timing(),
        clock.clone(),
    )
    .unwrap();
    assert!(lease.try_acquire_or_renew().unwrap());
    let multi = LockKind::ConfigMapsLeases
        .locks(&server.config(), "default", "split", "mid")
        .unwrap();
    let mut e = Elector::with_clock(multi, timing(), clock.clone()).unwrap();
    assert!(!e.try_acquire_or_renew().unwrap());
    assert_eq!(
        e.election().holder(),
        Some(kube_elector::election::UNKNOWN_LEADER)
    );
    // The Lease holder keeps renewing: the pair keeps changing, so it never expires for the multi-lock.
    for _ in 0..15 {
        clock.advance(Duration::from_secs(1));
        assert!(lease.try_acquire_or_renew().unwrap());
        assert!(
            !e.try_acquire_or_renew().unwrap(),
            "never while the Lease is renewed"
        );
    }
    assert!(!e.is_leader());
}

#[test]
fn kubernetes_events_are_posted_and_their_failures_never_touch_the_election() {
    let server = ApiServer::start().unwrap();
    let h = common::candidate(
        server.config(),
        "evented",
        "alice",
        common::timing(2, 1000, 200),
    )
    .record_events(true)
    .label("app.kubernetes.io/name", "my-app")
    .start()
    .unwrap();
    assert!(common::wait_until(Duration::from_secs(5), || h.is_leader()));
    assert!(common::wait_until(Duration::from_secs(5), || server
        .objects("events", "default")
        .len()
        == 1));
    h.stop().unwrap();
    assert!(common::wait_until(Duration::from_secs(5), || server
        .objects("events", "default")
        .len()
        == 2));
    let mut messages: Vec<(String, String, String, String)> = server
        .objects("events", "default")
        .iter()
        .map(|e| {
            let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
            (
                s(&e["reason"]),
                s(&e["message"]),
                s(&e["involvedObject"]["kind"]),
                s(&e["involvedObject"]["name"]),
            )
        })
        .collect();
    messages.sort();
    assert_eq!(
        messages,
        [
            (
                "LeaderElection".into(),
                "alice became leader".into(),
                "Lease".into(),
                "evented".into()
            ),
            (
                "LeaderElection".into(),
                "alice stopped leading".into(),
                "Lease".into(),
                "evented".into()
            ),
        ]
    );
    let event = &server.objects("events", "default")[0];
    assert!(event["involvedObject"]["uid"].is_string(), "{event}");
    assert_eq!(event["type"], "Normal");
    // The label is on the lease.
    let lease = server.lease("default", "evented").unwrap();
    assert_eq!(
        lease["metadata"]["labels"]["app.kubernetes.io/name"],
        "my-app"
    );

    // With the events endpoint failing, the election goes on as if nothing happened.
    server.inject(kube_elector::testing::Fault::status(500).for_path("/events"));
    let h = common::candidate(
        server.config(),
        "evented-broken",
        "bob",
        common::timing(2, 1000, 200),
    )
    .record_events(true)
    .start()
    .unwrap();
    assert!(common::wait_until(Duration::from_secs(5), || h.is_leader()));
    std::thread::sleep(Duration::from_millis(1200));
    assert!(h.is_leader());
    assert!(
        server.requests("POST") >= 2,
        "the lease create and the failed event post"
    );
    h.stop().unwrap();
    assert_eq!(
        server.lease_holder("default", "evented-broken").as_deref(),
        Some("")
    );
}
