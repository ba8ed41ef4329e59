//! Never two leaders on any path: one regression test for each hole an attack through the public API
//! found, against the embedded API server. (The deterministic simulation, tests/simulation.rs, searches
//! for the next ones.)

mod common;

use std::time::{Duration, Instant};

use chrono::Timelike;
use common::{ManualClock, no_overlap, timing, wait_event, wait_until};
use kube_elector::election::{Clock, Elector, Status};
use kube_elector::lock::{ConfigMapLock, LeaseLock, Locks};
use kube_elector::testing::{ApiServer, Fault};
use kube_elector::{LeaderElector, LeaderEvent, LockKind, StopReason};
use serde_json::json;

/// Move the wall clock so its sub-second part reads `millis`.
fn align_wall(clock: &ManualClock, millis: u32) {
    let nanos = i64::from(clock.wall().nanosecond() % 1_000_000_000);
    clock.jump_wall(chrono::Duration::nanoseconds(
        1_000_000_000 - nanos + i64::from(millis) * 1_000_000,
    ));
}

fn rv(server: &ApiServer, plural: &str, name: &str) -> String {
    server.object(plural, "default", name).unwrap()["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string()
}

// ---- 1. annotation records renewed within one wall-clock second ----

#[test]
fn hole1_an_annotation_renew_that_changes_nothing_does_not_move_the_deadline() {
    let server = ApiServer::start().unwrap();
    let clock = ManualClock::new();
    align_wall(&clock, 100);
    let lock = ConfigMapLock::new(&server.config(), "default", "same-second", "a").unwrap();
    let mut e = Elector::with_clock(lock, timing(2, 1500, 200), clock.clone()).unwrap();
    assert!(e.step().is_leading());
    let (d0, rv0) = (
        e.election().deadline().unwrap(),
        rv(&server, "configmaps", "same-second"),
    );
    // 200 ms later, same second: the record reads the same, the server keeps the version.
    clock.advance(Duration::from_millis(200));
    let o = e.step();
    assert!(o.is_leading() && !o.renewed, "{o:?}");
    assert_eq!(
        e.election().deadline(),
        Some(d0),
        "the deadline did not move"
    );
    assert_eq!(rv(&server, "configmaps", "same-second"), rv0);
    // The next second: the record changes, followers see it, the deadline moves.
    clock.advance(Duration::from_millis(900));
    let o = e.step();
    assert!(o.renewed);
    assert_eq!(
        e.election().deadline(),
        Some(d0 + Duration::from_millis(1100))
    );
    assert_ne!(rv(&server, "configmaps", "same-second"), rv0);
}

#[test]
fn hole1_a_follower_never_takes_an_annotation_lock_while_its_leader_leads() {
    // The attack's timing: retry 200 ms, lease 2 s, renew deadline 1.5 s; the leader cut off late in a
    // second, and a polling and a watching follower.
    let server = common::tls_server(&["a", "b", "c"]);
    let elector = |id: &str, watch: bool| {
        LeaderElector::builder(server.config_for(id), "cut-late")
            .lock_kind(LockKind::ConfigMaps)
            .identity(id)
            .timing(timing(2, 1500, 200))
            .watch(watch)
            .start()
            .unwrap()
    };
    let a = elector("a", false);
    assert!(wait_until(Duration::from_secs(5), || a.is_leader()));
    let (b, c) = (elector("b", false), elector("c", true));
    for _ in 0..2 {
        let leader = [&a, &b, &c]
            .into_iter()
            .find(|h| h.is_leader())
            .map(|h| h.identity().to_string());
        let Some(leader) = leader else {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        // Wait until late in a second, then cut the leader off.
        while chrono::Utc::now().nanosecond() < 800_000_000 {
            std::thread::sleep(Duration::from_millis(5));
        }
        let cut = server.inject(Fault::hang().for_token(leader.as_str()));
        no_overlap(&[&a, &b, &c], Duration::from_millis(3500));
        server.remove_fault(cut);
        assert!(
            wait_until(Duration::from_secs(5), || [&a, &b, &c]
                .iter()
                .any(|h| h.is_leader() && h.identity() != leader)),
            "someone else took over"
        );
    }
}

// ---- 2. a migration pair's secondary fallback wrote blind ----

#[test]
fn hole2_a_pair_never_writes_a_record_it_has_not_judged() {
    let server = ApiServer::start().unwrap();
    let clock = ManualClock::new();
    let locks = LockKind::ConfigMapsLeases
        .locks(&server.config(), "default", "pair", "m")
        .unwrap();
    let mut m = Elector::with_clock(locks, timing(2, 1500, 200), clock.clone()).unwrap();
    assert!(m.step().is_leading());
    // A `leases` elector has since taken the Lease (the README's migration step 2).
    let mut lease = server.lease("default", "pair").unwrap();
    lease["spec"]["holderIdentity"] = json!("l");
    lease["spec"]["leaseTransitions"] = json!(1);
    server.put_lease_raw("default", "pair", lease);
    // m's renew of the Lease is lost on a dropped connection.
    server.inject(
        Fault::drop_connection()
            .for_verb("PUT")
            .for_path("/leases/")
            .times(1),
    );
    clock.advance(Duration::from_secs(1));
    server.reset_counters();
    let o = m.step();
    assert!(!o.is_leading(), "{o:?}");
    assert_eq!(
        server.lease_holder("default", "pair").as_deref(),
        Some("l"),
        "the live holder's Lease was not overwritten"
    );
    assert_eq!(
        server.requests("PUT"),
        2,
        "the ConfigMap and the lost Lease PUT"
    );
    assert!(o.events.iter().any(|e| matches!(
        e,
        LeaderEvent::StoppedLeading {
            reason: StopReason::LeaseLost { .. }
        }
    )));
}

// ---- 3. a pair's unknown holder judged by the primary's duration ----

#[test]
fn hole3_records_that_disagree_are_held_for_the_longest_duration_either_advertises() {
    let server = ApiServer::start().unwrap();
    let clock = ManualClock::new();
    // Both released (duration 1) by a pair elector, then a `leases` elector took the Lease for 4 s.
    let mut cm = ConfigMapLock::new(&server.config(), "default", "split", "old").unwrap();
    let mut lease = LeaseLock::new(&server.config(), "default", "split", "l").unwrap();
    use kube_elector::lock::Lock;
    use kube_elector::record::LeaderElectionRecord;
    let t = Some(chrono::Utc::now());
    let released = LeaderElectionRecord {
        lease_duration_seconds: 1,
        acquire_time: t,
        renew_time: t,
        ..Default::default()
    };
    cm.create(&released, Duration::from_secs(5)).unwrap();
    let held = LeaderElectionRecord {
        holder_identity: "l".into(),
        lease_duration_seconds: 4,
        ..released.clone()
    };
    lease.create(&held, Duration::from_secs(5)).unwrap();
    let locks = LockKind::ConfigMapsLeases
        .locks(&server.config(), "default", "split", "m")
        .unwrap();
    let mut m = Elector::with_clock(locks, timing(2, 1500, 200), clock.clone()).unwrap();
    let o = m.step();
    assert!(matches!(
        &o.status,
        Status::Following { holder: Some(h), .. } if h == kube_elector::election::UNKNOWN_LEADER
    ));
    for _ in 0..3 {
        clock.advance(Duration::from_millis(1300));
        assert!(!m.step().is_leading(), "not before 4 s");
    }
    assert_eq!(
        server.lease_holder("default", "split").as_deref(),
        Some("l")
    );
    clock.advance(Duration::from_millis(200));
    assert!(m.step().is_leading(), "after the longest duration, 4 s");
}

#[test]
fn hole3_a_migrating_runner_never_overlaps_a_lease_runner_after_a_release() {
    let server = ApiServer::start().unwrap();
    let start = |id: &str, kind: LockKind| {
        LeaderElector::builder(server.config(), "migrate")
            .identity(id)
            .lock_kind(kind)
            .timing(timing(4, 3000, 300))
            .start()
            .unwrap()
    };
    let old = start("old", LockKind::ConfigMapsLeases);
    assert!(wait_until(Duration::from_secs(5), || old.is_leader()));
    old.stop().unwrap(); // both records released (duration 1)
    let l = start("l", LockKind::Leases);
    assert!(wait_until(Duration::from_secs(5), || l.is_leader()));
    let m = start("m", LockKind::ConfigMapsLeases);
    no_overlap(&[&l, &m], Duration::from_secs(6));
    assert!(l.is_leader(), "the Lease holder keeps leading");
}

// ---- 4. the lock object deleted while held ----

#[test]
fn hole4_deleting_a_held_lease_never_makes_a_second_leader() {
    let server = ApiServer::start().unwrap();
    let start = |id: &str, watch: bool| {
        common::candidate(server.config(), "deleted", id, timing(2, 1500, 200))
            .watch(watch)
            .start()
            .unwrap()
    };
    let a = start("a", false);
    assert!(wait_until(Duration::from_secs(5), || a.is_leader()));
    let (b, c) = (start("b", false), start("c", true));
    assert!(wait_until(Duration::from_secs(5), || b.leader().is_some()
        && c.leader().is_some()));
    for _ in 0..3 {
        assert!(server.delete_lease("default", "deleted"));
        no_overlap(&[&a, &b, &c], Duration::from_millis(2500));
    }
    assert!(
        wait_until(Duration::from_secs(6), || [&a, &b, &c]
            .iter()
            .any(|h| h.is_leader())),
        "a leader again once the deletes stop"
    );
}

// ---- 5. a hostile Retry-After ----

#[test]
fn hole5_a_hostile_retry_after_neither_panics_nor_parks_a_follower() {
    for retry_after in [u64::MAX, 10_000_000_000_000_000_000, 3600] {
        let server = common::tls_server(&["a", "b"]);
        let start =
            |id: &str| common::start(server.config_for(id), "hostile", id, timing(2, 1500, 200));
        let a = start("a");
        assert!(wait_until(Duration::from_secs(5), || a.is_leader()));
        let b = start("b");
        assert!(wait_until(Duration::from_secs(5), || b.leader().is_some()));
        let throttle = server.inject(Fault::status_retry_after(429, retry_after).for_token("b"));
        std::thread::sleep(Duration::from_millis(500));
        server.remove_fault(throttle);
        let crashed = Instant::now();
        a.abandon();
        assert!(
            wait_until(Duration::from_secs(5), || b.is_leader()),
            "Retry-After {retry_after}: no new leader"
        );
        assert!(
            crashed.elapsed() < Duration::from_millis(4500),
            "Retry-After {retry_after}: took {:?} (lease 2 s)",
            crashed.elapsed()
        );
        assert!(b.stop().is_ok(), "the renew thread did not panic");
    }
}

// ---- 6. coordinated mode ----

#[test]
fn hole6a_a_coordinated_holder_writes_renew_times_on_the_servers_clock() {
    let server = ApiServer::start().unwrap();
    let clock = ManualClock::new();
    // Our wall clock runs 1.5 s slow: a server judging renewTime on its own clock would depose us early.
    clock.jump_wall(chrono::Duration::milliseconds(-1500));
    let t = chrono::Utc::now();
    server.put_lease_raw(
        "default",
        "cle",
        json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "cle", "namespace": "default"},
            "spec": {"holderIdentity": "me", "leaseDurationSeconds": 3, "strategy": "OldestEmulationVersion",
                     "acquireTime": kube_elector::record::time::format_micro_time(&t),
                     "renewTime": kube_elector::record::time::format_micro_time(&t), "leaseTransitions": 1}
        }),
    );
    let lock = LeaseLock::new(&server.config(), "default", "cle", "me").unwrap();
    let mut e = Elector::with_clock(lock, timing(3, 2000, 200), clock.clone())
        .unwrap()
        .coordinated(true)
        .unwrap();
    let before = chrono::Utc::now();
    assert!(e.step().is_leading(), "the server gave us the lease");
    let spec = server.lease("default", "cle").unwrap()["spec"].clone();
    let renew = kube_elector::record::time::parse_time_lenient(spec["renewTime"].as_str().unwrap())
        .unwrap();
    assert!(
        renew >= before - chrono::Duration::milliseconds(100),
        "renewTime {renew} is on the server's clock (now {before}), not our slow wall clock"
    );
}

/// A coordinated-election server with our candidate `cand-a` leading the Lease `cle`.
fn coordinated_leader() -> (
    ApiServer,
    kube_elector::LeaderHandle,
    crossbeam_channel::Receiver<LeaderEvent>,
) {
    let server = ApiServer::builder()
        .coordinated_election(3)
        .start()
        .unwrap();
    let h = common::candidate(server.config(), "cle", "cand-a", timing(3, 2000, 200))
        .coordinated(kube_elector::CandidateInfo::new("1.34.0", "1.33.0"))
        .start()
        .unwrap();
    let events = h.events();
    assert!(wait_until(Duration::from_secs(10), || h.is_leader()));
    (server, h, events)
}

#[test]
fn hole6a_a_deposed_coordinated_holder_notices_within_one_retry() {
    // The handle stays bound: dropping it would stop the elector.
    let (server, _h, events) = coordinated_leader();
    // Someone (the server, judging by a clock we cannot see) hands the lease to another candidate.
    let mut lease = server.lease("default", "cle").unwrap();
    lease["spec"]["holderIdentity"] = json!("cand-z");
    server.put_lease_raw("default", "cle", lease);
    let deposed = Instant::now();
    let stopped = wait_event(&events, Duration::from_secs(2), |e| {
        matches!(e, LeaderEvent::StoppedLeading { .. })
    });
    assert!(
        matches!(
            stopped,
            Some(LeaderEvent::StoppedLeading {
                reason: StopReason::LeaseLost { holder: Some(ref h) }
            }) if h == "cand-z"
        ),
        "{stopped:?}"
    );
    assert!(
        deposed.elapsed() < Duration::from_millis(600),
        "noticed within a retry"
    );
}

#[test]
fn hole6b_a_slow_lease_candidate_endpoint_never_delays_a_renew() {
    let (server, h, events) = coordinated_leader();
    let _ = events.try_iter().count();
    server.inject(Fault::latency(Duration::from_millis(950)).for_path("leasecandidates"));
    let (mut samples, mut leading) = (0u32, 0u32);
    let end = Instant::now() + Duration::from_secs(6);
    while Instant::now() < end {
        samples += 1;
        leading += u32::from(h.is_leader());
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(leading, samples, "led the whole window");
    let changes: Vec<LeaderEvent> = events
        .try_iter()
        .filter(|e| !matches!(e, LeaderEvent::NewLeader { .. }))
        .collect();
    assert!(changes.is_empty(), "no lapse: {changes:?}");
}

// ---- 7. secrets in Debug ----

#[test]
fn hole7_no_credential_in_any_debug_output() {
    let dir = common::temp_dir("debug");
    let kubeconfig = dir.join("config");
    std::fs::write(
        &kubeconfig,
        r#"apiVersion: v1
kind: Config
current-context: c
clusters:
- name: c
  cluster: {server: "https://admin:pa55w0rd@127.0.0.1:6443"}
contexts:
- name: c
  context: {cluster: c, user: u}
users:
- name: u
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: kubectl
      interactiveMode: Never
      args: ["oidc-login", "get-token", "--oidc-client-secret=s3cr3t-arg"]
      env: [{name: OIDC_TOKEN, value: s3cr3t-env}]
"#,
    )
    .unwrap();
    let config = kube_elector::Config::from_kubeconfig(&kubeconfig).unwrap();
    let builder = LeaderElector::builder(config.clone(), "debug");
    for text in [
        format!("{config:?}"),
        format!("{builder:?}"),
        format!("{config:#?}"),
    ] {
        for secret in ["pa55w0rd", "s3cr3t-arg", "s3cr3t-env"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(text.contains("127.0.0.1:6443"), "{text}");
    }
    let basic = kube_elector::Config::new("http://127.0.0.1:1").with_basic_auth("u", "hunter2");
    assert!(!format!("{basic:?}").contains("hunter2"));
    let token = kube_elector::Config::new("http://127.0.0.1:1").with_token("t0ken-value");
    assert!(!format!("{token:?}").contains("t0ken-value"));
}

// ---- the rest: stopping, races, terms ----

#[test]
fn stop_with_every_request_hanging_returns_within_about_one_request_timeout() {
    let server = ApiServer::start().unwrap();
    let h = LeaderElector::builder(server.config(), "hang-stop")
        .timing(timing(2, 1000, 200))
        .start()
        .unwrap();
    assert!(wait_until(Duration::from_secs(5), || h.is_leader()));
    server.inject(Fault::hang());
    std::thread::sleep(Duration::from_millis(300)); // a renew is now stuck in flight
    let t = Instant::now();
    let _ = h.stop();
    assert!(!h.is_leader());
    assert!(
        t.elapsed() < Duration::from_millis(1900),
        "stop took {:?}: the request in flight is interrupted, the release gets one timeout (1 s)",
        t.elapsed()
    );
}

#[test]
fn a_stop_at_any_moment_reports_stopped_and_releases() {
    let server = ApiServer::start().unwrap();
    for i in 0..15u64 {
        let name = format!("race-{i}");
        let h = common::candidate(server.config(), &name, "me", timing(2, 1000, 50))
            .keep_campaigning(i % 2 == 0)
            .start()
            .unwrap();
        let events = h.events();
        assert!(wait_until(Duration::from_secs(5), || h.is_leader()));
        std::thread::sleep(Duration::from_millis(i * 7 % 60));
        h.stop().unwrap();
        let all: Vec<LeaderEvent> = events.try_iter().collect();
        assert!(
            matches!(
                all.last(),
                Some(LeaderEvent::StoppedLeading {
                    reason: StopReason::Stopped
                })
            ),
            "{all:?}"
        );
        assert_eq!(
            server.lease_holder("default", &name).as_deref(),
            Some(""),
            "released ({i})"
        );
    }
}

#[test]
fn a_lease_lost_and_retaken_in_one_step_is_two_events_and_a_new_term() {
    let server = ApiServer::start().unwrap();
    let clock = ManualClock::new();
    let lock = LeaseLock::new(&server.config(), "default", "retaken", "a").unwrap();
    let mut a = Elector::with_clock(lock, timing(2, 1500, 200), clock.clone()).unwrap();
    let o = a.step();
    assert!(matches!(o.status, Status::Leading { term: 0, .. }));
    // b took over (term 1) and released it, all between two of a's renews.
    let mut lease = server.lease("default", "retaken").unwrap();
    lease["spec"]["holderIdentity"] = json!("");
    lease["spec"]["leaseTransitions"] = json!(1);
    lease["spec"]["leaseDurationSeconds"] = json!(1);
    server.put_lease_raw("default", "retaken", lease);
    clock.advance(Duration::from_millis(200));
    let o = a.step();
    let terms: Vec<String> = o
        .events
        .iter()
        .filter_map(|e| match e {
            LeaderEvent::StartedLeading { transitions } => Some(format!("started {transitions}")),
            LeaderEvent::StoppedLeading { reason } => Some(format!("stopped {reason:?}")),
            _ => None,
        })
        .collect();
    assert_eq!(
        terms,
        ["stopped LeaseLost { holder: None }", "started 2"],
        "{o:?}"
    );
    assert!(matches!(o.status, Status::Leading { term: 2, .. }));
}

#[test]
fn a_new_process_under_the_holders_identity_waits_like_anyone_else() {
    let server = ApiServer::start().unwrap();
    let clock = ManualClock::new();
    let lock = || LeaseLock::new(&server.config(), "default", "same-id", "pod-0").unwrap();
    let mut first = Elector::with_clock(lock(), timing(2, 1500, 200), clock.clone()).unwrap();
    assert!(first.step().is_leading());
    // The process dies; a new one comes up under the same name before the lease runs out.
    drop(first);
    clock.advance(Duration::from_millis(300));
    let mut second = Elector::with_clock(lock(), timing(2, 1500, 200), clock.clone()).unwrap();
    assert!(
        !second.step().is_leading(),
        "it cannot know what the old one did"
    );
    clock.advance(Duration::from_millis(2001));
    let o = second.step();
    assert!(matches!(o.status, Status::Leading { term: 1, .. }), "{o:?}");
    let _ = Locks::one(lock());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
    /// Any status, body and Retry-After the server sends, through the whole HTTP stack: an error or a
    /// safe answer, never a panic and never leadership on a failed step.
    #[test]
    fn hostile_statuses_bodies_and_retry_after_through_http(
        code in proptest::prop_oneof![proptest::prelude::Just(200u16), proptest::prelude::Just(201), 400u16..600],
        body in proptest::prop_oneof![
            ".{0,200}",
            proptest::prelude::Just(r#"{"kind":"Lease","metadata":{"resourceVersion":"9"},"spec":{"holderIdentity":"me","leaseDurationSeconds":-5}}"#.to_string()),
            proptest::prelude::Just(r#"{"kind":"Status","code":409,"reason":"Conflict"}"#.to_string()),
        ],
        retry_after in proptest::prelude::any::<u64>(),
        leader_first in proptest::prelude::any::<bool>(),
    ) {
        let server = ApiServer::start().unwrap();
        let lock = LeaseLock::new(&server.config(), "default", "hostile-http", "me").unwrap();
        let mut e = Elector::new(lock, timing(2, 1500, 200)).unwrap();
        if leader_first {
            proptest::prop_assert!(e.step().is_leading());
        }
        server.inject(Fault::body(code, body).times(1));
        server.inject(Fault::status_retry_after(429, retry_after).times(1));
        for _ in 0..3 {
            let o = e.step();
            if o.is_leading() {
                proptest::prop_assert!(o.renewed || o.error.is_some() || leader_first);
            }
        }
    }
}

#[test]
fn annotation_locks_need_a_renew_deadline_over_a_second_plus_the_retry_period() {
    let server = ApiServer::start().unwrap();
    for kind in [LockKind::ConfigMaps, LockKind::EndpointsLeases] {
        let err = LeaderElector::builder(server.config(), "too-fast")
            .lock_kind(kind)
            .timing(timing(2, 1000, 200))
            .start()
            .unwrap_err();
        assert!(err.to_string().contains("once a second"), "{err}");
    }
    let ok = LeaderElector::builder(server.config(), "fast-lease")
        .timing(timing(2, 1000, 200))
        .start();
    assert!(ok.is_ok(), "a Lease keeps microseconds: no such limit");
}
