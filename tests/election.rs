//! The election state machine against the embedded API server, step by step with a driven clock: the
//! scenario table of client-go's own leader-election tests, plus our stricter rules.

mod common;

use std::time::Duration;

use common::ManualClock;
use kube_elector::election::{Elector, Status};
use kube_elector::lock::{ConfigMapLock, LeaseLock};
use kube_elector::testing::ApiServer;
use kube_elector::{Config, Error, LeaderEvent, StopReason, Timing};
use serde_json::json;

const NS: &str = "default";
const NAME: &str = "my-lock";

/// Lease 10 s, renew deadline 5 s, retry 1 s: room for a step-by-step test.
fn timing() -> Timing {
    common::timing(10, 5000, 1000)
}

fn elector(server: &ApiServer, id: &str, clock: &ManualClock) -> Elector<LeaseLock, ManualClock> {
    let lock = LeaseLock::new(&server.config(), NS, NAME, id).unwrap();
    Elector::with_clock(lock, timing(), clock.clone()).unwrap()
}

fn plant(server: &ApiServer, holder: &str, duration: i64, transitions: i64) {
    plant_renewed_at(
        server,
        holder,
        duration,
        transitions,
        "2026-01-02T03:04:05.123456Z",
    );
}

fn plant_renewed_at(
    server: &ApiServer,
    holder: &str,
    duration: i64,
    transitions: i64,
    renew: &str,
) {
    server.put_lease_raw(
        NS,
        NAME,
        json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": NAME, "namespace": NS},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": duration,
                     "acquireTime": "2026-01-02T03:04:05.123456Z", "renewTime": renew,
                     "leaseTransitions": transitions}
        }),
    );
}

fn spec(server: &ApiServer) -> serde_json::Value {
    server.lease(NS, NAME).expect("lease exists")["spec"].clone()
}

#[test]
fn acquires_a_missing_lock_by_creating_it() {
    let server = ApiServer::start().unwrap();
    let clock = ManualClock::new();
    let mut e = elector(&server, "a", &clock);
    assert!(e.try_acquire_or_renew().unwrap());
    assert!(e.is_leader());
    assert_eq!(server.requests("GET"), 1);
    assert_eq!(server.requests("POST"), 1);
    let s = spec(&server);
    assert_eq!(s["holderIdentity"], "a");
    assert_eq!(s["leaseDurationSeconds"], 10);
    assert_eq!(s["leaseTransitions"], 0);
    assert_eq!(s["acquireTime"], s["renewTime"]);
    assert_eq!(
        s["renewTime"].as_str().unwrap().len(),
        "2026-01-02T03:04:05.123456Z".len()
    );
}

#[test]
fn acquires_an_empty_holder_lock_at_once() {
    let server = ApiServer::start().unwrap();
    plant(&server, "", 1, 4);
    let clock = ManualClock::new();
    let mut e = elector(&server, "a", &clock);
    assert!(e.try_acquire_or_renew().unwrap());
    assert_eq!(spec(&server)["holderIdentity"], "a");
    assert_eq!(
        spec(&server)["leaseTransitions"],
        5,
        "a change of holder counts a transition"
    );
}

#[test]
fn does_not_acquire_a_held_lock_before_the_holders_duration_has_passed_locally() {
    let server = ApiServer::start().unwrap();
    // The holder advertises 30 s, longer than our 10 s: its duration counts, not ours.
    plant(&server, "other", 30, 2);
    let clock = ManualClock::new();
    let mut e = elector(&server, "a", &clock);
    assert!(!e.try_acquire_or_renew().unwrap());
    assert_eq!(e.election().holder(), Some("other"));
    assert_eq!(server.requests("PUT"), 0, "a held lock is not written");
    clock.advance(Duration::from_secs(29));
    assert!(!e.try_acquire_or_renew().unwrap());
    // A wall-clock jump changes nothing: only the monotonic clock counts.
    clock.jump_wall(chrono::Duration::hours(5));
    assert!(!e.try_acquire_or_renew().unwrap());
    clock.jump_wall(chrono::Duration::hours(-10));
    assert!(!e.try_acquire_or_renew().unwrap());
    assert!(!e.is_leader());
    clock.advance(Duration::from_millis(999));
    assert!(
        !e.try_acquire_or_renew().unwrap(),
        "not before observed + holder's duration"
    );
    clock.advance(Duration::from_millis(2));
    assert!(e.try_acquire_or_renew().unwrap(), "taken once expired");
    let s = spec(&server);
    assert_eq!(s["holderIdentity"], "a");
    assert_eq!(s["leaseTransitions"], 3);
    assert_eq!(s["leaseDurationSeconds"], 10);
}

#[test]
fn every_observed_change_of_the_record_restarts_the_expiry_countdown() {
    let server = ApiServer::start().unwrap();
    plant(&server, "other", 10, 0);
    let clock = ManualClock::new();
    let mut e = elector(&server, "a", &clock);
    assert!(!e.try_acquire_or_renew().unwrap());
    clock.advance(Duration::from_secs(8));
    // The holder renews: a new renew time (and a new resourceVersion).
    plant_renewed_at(&server, "other", 10, 0, "2026-01-02T03:04:13.123456Z");
    assert!(!e.try_acquire_or_renew().unwrap());
    clock.advance(Duration::from_secs(8));
    assert!(
        !e.try_acquire_or_renew().unwrap(),
        "16 s after first sight but only 8 s after the renew"
    );
    clock.advance(Duration::from_secs(3));
    assert!(e.try_acquire_or_renew().unwrap());
}

#[test]
fn a_write_that_leaves_the_record_alone_does_not_restart_the_countdown() {
    let server = ApiServer::start().unwrap();
    plant(&server, "other", 10, 0);
    let clock = ManualClock::new();
    let mut e = elector(&server, "a", &clock);
    assert!(!e.try_acquire_or_renew().unwrap());
    for _ in 0..9 {
        clock.advance(Duration::from_secs(1));
        // Someone else writes the object (a new resourceVersion), the record stays as it was.
        plant(&server, "other", 10, 0);
        assert!(!e.try_acquire_or_renew().unwrap());
    }
    clock.advance(Duration::from_millis(1001));
    assert!(
        e.try_acquire_or_renew().unwrap(),
        "10 s after the record last changed, whatever else changed in the object"
    );
}

#[test]
fn a_renew_as_leader_is_exactly_one_put() {
    let server = ApiServer::start().unwrap();
    let clock = ManualClock::new();
    let mut e = elector(&server, "a", &clock);
    assert!(e.try_acquire_or_renew().unwrap());
    let before = spec(&server);
    for _ in 0..5 {
        clock.advance(Duration::from_secs(1));
        server.reset_counters();
        let outcome = e.step();
        assert!(outcome.is_leading() && outcome.renewed);
        assert!(!outcome.slow_path, "the fast path");
        assert_eq!(server.total_requests(), 1, "a renew is one request");
        assert_eq!(server.requests("PUT"), 1);
    }
    let after = spec(&server);
    assert_eq!(
        after["acquireTime"], before["acquireTime"],
        "a renew keeps acquireTime"
    );
    assert_eq!(after["leaseTransitions"], before["leaseTransitions"]);
    assert_ne!(after["renewTime"], before["renewTime"]);
}

#[test]
fn a_conflict_on_renew_falls_back_to_the_slow_path_and_rejudges() {
    let server = ApiServer::start().unwrap();
    let clock = ManualClock::new();
    let mut e = elector(&server, "a", &clock);
    assert!(e.try_acquire_or_renew().unwrap());
    // Someone touches the object (new resourceVersion) but we are still the holder: re-read, renew.
    let mut lease = server.lease(NS, NAME).unwrap();
    lease["metadata"]["labels"] = json!({"touched": "yes"});
    server.put_lease_raw(NS, NAME, lease);
    // (Time passes: a renew that writes identical bytes would change nothing and count for nothing.)
    clock.advance(Duration::from_millis(10));
    server.reset_counters();
    let outcome = e.step();
    assert!(
        outcome.is_leading() && outcome.error.is_none(),
        "{outcome:?}"
    );
    assert_eq!((server.requests("PUT"), server.requests("GET")), (2, 1));
    assert!(outcome.slow_path, "one slow-path renew");
    assert_eq!(
        server.lease(NS, NAME).unwrap()["metadata"]["labels"]["touched"],
        "yes",
        "other fields kept"
    );

    // Someone else took the lease: the 409 never means "still leader".
    plant(&server, "thief", 10, 7);
    assert!(!e.try_acquire_or_renew().unwrap());
    assert!(!e.is_leader());
    assert_eq!(e.election().holder(), Some("thief"));
    assert_eq!(spec(&server)["holderIdentity"], "thief");
}

#[test]
fn leadership_ends_at_the_renew_deadline_when_renews_fail() {
    let server = ApiServer::start().unwrap();
    let clock = ManualClock::new();
    let mut e = elector(&server, "a", &clock);
    assert!(e.try_acquire_or_renew().unwrap());
    let deadline = e.election().deadline().unwrap();
    server.inject(kube_elector::testing::Fault::status(500));
    clock.advance(Duration::from_secs(2));
    assert!(e.try_acquire_or_renew().is_err());
    assert!(
        e.is_leader(),
        "a failed renew keeps leadership until the deadline"
    );
    assert_eq!(
        e.election().deadline(),
        Some(deadline),
        "a failure does not extend the deadline"
    );
    clock.advance(Duration::from_secs(3));
    assert!(
        !e.is_leader(),
        "false exactly at start of last renew + renew_deadline"
    );
    // The first step after the deadline reports the lapse at once, before any request.
    let lapse = e.step();
    assert!(
        matches!(
            lapse.events[..],
            [LeaderEvent::StoppedLeading {
                reason: StopReason::RenewDeadlineExceeded { .. }
            }]
        ),
        "{lapse:?}"
    );
    assert!(e.try_acquire_or_renew().is_err());
    assert!(!e.is_leader());
    server.clear_faults();
    // The record still names us and nobody else wrote: we may take it again.
    assert!(e.try_acquire_or_renew().unwrap());
}

#[test]
fn transitions_count_every_change_of_holder() {
    let server = ApiServer::start().unwrap();
    let clock = ManualClock::new();
    let mut a = elector(&server, "a", &clock);
    let mut b = elector(&server, "b", &clock);
    assert!(a.try_acquire_or_renew().unwrap());
    assert!(!b.try_acquire_or_renew().unwrap());
    assert!(a.release().unwrap());
    assert!(b.try_acquire_or_renew().unwrap());
    assert_eq!(spec(&server)["leaseTransitions"], 1);
    assert!(b.release().unwrap());
    assert!(a.try_acquire_or_renew().unwrap());
    assert_eq!(spec(&server)["leaseTransitions"], 2);
    clock.advance(Duration::from_secs(1));
    assert!(matches!(a.step().status, Status::Leading { term: 2, .. }));
}

#[test]
fn release_writes_an_empty_holder_and_duration_one_only_if_still_ours() {
    let server = ApiServer::start().unwrap();
    let clock = ManualClock::new();
    let mut a = elector(&server, "a", &clock);
    assert!(a.try_acquire_or_renew().unwrap());
    let transitions = spec(&server)["leaseTransitions"].clone();
    server.reset_counters();
    assert!(a.release().unwrap());
    assert!(!a.is_leader());
    assert_eq!(
        (server.requests("GET"), server.requests("PUT")),
        (0, 1),
        "a release is one PUT, conditional on the object being as we last wrote it"
    );
    let s = spec(&server);
    assert_eq!(s["holderIdentity"], "");
    assert_eq!(s["leaseDurationSeconds"], 1);
    assert_eq!(s["leaseTransitions"], transitions);
    assert_eq!(s["acquireTime"], s["renewTime"]);

    // Taken by someone else meanwhile: a release must not touch it.
    let mut b = elector(&server, "b", &clock);
    assert!(a.try_acquire_or_renew().unwrap());
    plant(&server, "b", 10, 9);
    server.reset_counters();
    assert!(!a.release().unwrap());
    assert_eq!(spec(&server)["holderIdentity"], "b");
    assert_eq!(
        (server.requests("PUT"), server.requests("GET")),
        (1, 1),
        "the conditional PUT failed (409), the fresh read shows b: nothing written"
    );
    assert!(
        !b.release().unwrap(),
        "b never observed itself as holder: nothing to release"
    );
}

#[test]
fn a_lease_deleted_by_an_admin_is_recreated() {
    let server = ApiServer::start().unwrap();
    plant(&server, "", 1, 4);
    let clock = ManualClock::new();
    let mut e = elector(&server, "a", &clock);
    assert!(e.try_acquire_or_renew().unwrap());
    assert_eq!(spec(&server)["leaseTransitions"], 5);
    // While leading: the renew finds the Lease gone (its PUT names the old object's uid, a precondition
    // a deleted object fails) and re-creates it. Nobody else led in between, so our term (and fencing
    // token) is unchanged.
    assert!(server.delete_lease(NS, NAME));
    clock.advance(Duration::from_secs(1));
    assert!(
        e.try_acquire_or_renew().unwrap(),
        "re-created and still leading"
    );
    assert_eq!(spec(&server)["holderIdentity"], "a");
    assert_eq!(spec(&server)["leaseTransitions"], 5);

    // A candidate that saw the lock held and then finds it gone does not treat the gap as a free lock:
    // the holder of the deleted object may still be acting on it, so the candidate waits out that
    // holder's lease (counted from when it last saw the record change) before re-creating.
    let mut b = elector(&server, "b", &clock);
    assert!(!b.try_acquire_or_renew().unwrap());
    assert!(server.delete_lease(NS, NAME));
    assert!(!b.try_acquire_or_renew().unwrap(), "a's lease still runs");
    assert!(server.lease(NS, NAME).is_none(), "nobody re-created it yet");
    // A live holder re-creates its lock on its next renew, same term.
    assert!(e.try_acquire_or_renew().unwrap());
    assert_eq!(spec(&server)["holderIdentity"], "a");
    assert_eq!(spec(&server)["leaseTransitions"], 5);
    assert!(!b.try_acquire_or_renew().unwrap());

    // Now the holder dies and its lock is deleted: the candidate re-creates it once the dead holder's
    // lease has run out, with a higher term, and leads only a lease duration after that (by then
    // anyone who took the lock unseen in the gap has stopped too). The holder may have renewed just
    // before the deletion, so its lease counts from when the candidate saw the lock gone.
    assert!(server.delete_lease(NS, NAME));
    clock.advance(Duration::from_secs(5));
    assert!(!b.try_acquire_or_renew().unwrap());
    assert!(server.lease(NS, NAME).is_none());
    clock.advance(Duration::from_secs(6));
    assert!(!b.try_acquire_or_renew().unwrap());
    assert!(
        server.lease(NS, NAME).is_none(),
        "counted from the deletion"
    );
    clock.advance(Duration::from_secs(5));
    assert!(!b.try_acquire_or_renew().unwrap(), "held, not led");
    assert!(!b.is_leader());
    assert_eq!(spec(&server)["holderIdentity"], "b");
    assert_eq!(
        spec(&server)["leaseTransitions"],
        6,
        "fencing tokens keep increasing"
    );
    // The old leader's renew deadline passed long ago, so it no longer says it leads; were it to wake
    // up, its renew finds b's object and does not take it.
    assert!(!e.is_leader());
    assert!(!e.try_acquire_or_renew().unwrap());
    assert_eq!(spec(&server)["holderIdentity"], "b");
    assert!(!e.is_leader());
    clock.advance(Duration::from_secs(5));
    assert!(!b.try_acquire_or_renew().unwrap(), "still waiting");
    clock.advance(Duration::from_secs(6));
    assert!(
        b.try_acquire_or_renew().unwrap(),
        "a lease after re-creating it"
    );
    assert!(b.is_leader());
}

#[test]
fn malformed_records_are_errors_and_never_leadership() {
    let server = ApiServer::start().unwrap();
    let clock = ManualClock::new();
    let mut e = elector(&server, "a", &clock);
    for bad in [
        json!({"metadata": {"name": NAME}, "spec": {"holderIdentity": 12}}),
        json!({"metadata": {"name": NAME}, "spec": {"leaseDurationSeconds": "soon"}}),
        json!({"metadata": {"name": NAME}, "spec": "nope"}),
    ] {
        server.put_lease_raw(NS, NAME, bad);
        let err = e.try_acquire_or_renew().unwrap_err();
        assert!(matches!(err, Error::Decode { .. }), "{err}");
        assert!(err.to_string().contains("my-lock"), "{err}");
        assert!(!e.is_leader());
    }
    // A zero duration from a broken writer: wait our own duration, never take it at once.
    plant(&server, "other", 0, 0);
    assert!(!e.try_acquire_or_renew().unwrap());
    clock.advance(Duration::from_secs(10));
    assert!(e.try_acquire_or_renew().unwrap());
}

#[test]
fn reads_a_lease_written_by_the_python_client() {
    let server = ApiServer::start().unwrap();
    let body: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/peers/python-client-lease-lock.json")).unwrap();
    let mut body = body;
    body["metadata"]["name"] = json!(NAME);
    server.put_lease_raw(NS, NAME, body);
    let clock = ManualClock::new();
    let mut e = elector(&server, "a", &clock);
    assert!(!e.try_acquire_or_renew().unwrap());
    assert_eq!(e.election().holder(), Some("acc-crash-1795741480-c0"));
    clock.advance(Duration::from_secs(6));
    assert!(e.try_acquire_or_renew().unwrap(), "the holder's 6 s count");
}

#[test]
fn validation_errors_say_what_to_fix() {
    let server = ApiServer::start().unwrap();
    let s = Duration::from_secs;
    let ms = Duration::from_millis;
    let cases = [
        (
            Timing {
                lease_duration: s(0),
                ..timing()
            },
            "greater than zero",
        ),
        (
            Timing {
                retry_period: s(0),
                ..timing()
            },
            "greater than zero",
        ),
        (
            Timing {
                lease_duration: ms(1500),
                renew_deadline: ms(1000),
                retry_period: ms(100),
            },
            "whole number of seconds",
        ),
        (
            Timing {
                lease_duration: s(5),
                renew_deadline: s(5),
                ..timing()
            },
            "greater than renew_deadline",
        ),
        (
            Timing {
                renew_deadline: ms(1200),
                retry_period: s(1),
                ..timing()
            },
            "1.2 × retry_period",
        ),
    ];
    for (t, needle) in cases {
        let lock = LeaseLock::new(&server.config(), NS, NAME, "a").unwrap();
        let err = Elector::new(lock, t).unwrap_err();
        assert!(matches!(err, Error::InvalidElectionConfig(_)));
        assert!(
            err.to_string().contains(needle),
            "{err} should mention {needle}"
        );
    }
    let lock = LeaseLock::new(&server.config(), NS, NAME, "").unwrap();
    assert!(
        Elector::new(lock, timing())
            .unwrap_err()
            .to_string()
            .contains("identity")
    );
    let err = LeaseLock::new(&Config::new("ftp://x"), NS, NAME, "a").unwrap_err();
    assert!(err.to_string().contains("https://"), "{err}");
    let err = LeaseLock::new(
        &Config::new("http://127.0.0.1:1").with_token("t"),
        NS,
        NAME,
        "a",
    )
    .unwrap_err();
    assert!(err.to_string().contains("plain http"), "{err}");
    assert!(Timing::default().validate().is_ok());
}

/// An annotation record's times are whole seconds, so a follower sees a renew at most once a second:
/// every way of building an elector refuses a renew deadline without room for that and a retry.
#[test]
fn annotation_records_need_a_renew_deadline_past_a_second_and_a_retry_on_every_path() {
    let server = ApiServer::start().unwrap();
    let tight = Timing {
        lease_duration: Duration::from_secs(3),
        renew_deadline: Duration::from_millis(1500),
        retry_period: Duration::from_millis(500),
    };
    let says_why = |e: Error| {
        let m = e.to_string();
        assert!(matches!(e, Error::InvalidElectionConfig(_)), "{m}");
        assert!(
            m.contains("configmaps default/annotated")
                && m.contains("keeps its record's times to 1s"),
            "{m}"
        );
        assert!(
            m.contains("renew_deadline (1.5s) must be longer than 1s + retry_period (500ms)"),
            "{m}"
        );
    };
    let configmap = || ConfigMapLock::new(&server.config(), NS, "annotated", "a").unwrap();
    // Bare.
    says_why(Elector::new(configmap(), tight).unwrap_err());
    // A custom lock through the builder.
    says_why(
        kube_elector::LeaderElector::with_lock(configmap())
            .timing(tight)
            .start()
            .unwrap_err(),
    );
    // The managed builder.
    says_why(
        kube_elector::LeaderElector::builder(server.config(), "annotated")
            .identity("a")
            .lock_kind(kube_elector::LockKind::ConfigMaps)
            .timing(tight)
            .start()
            .unwrap_err(),
    );
    // A Lease writes microseconds: the same timing is fine there.
    let lease = LeaseLock::new(&server.config(), NS, "annotated", "a").unwrap();
    assert!(Elector::new(lease, tight).is_ok());
    let roomy = Timing {
        renew_deadline: Duration::from_millis(1600),
        ..tight
    };
    assert!(Elector::new(configmap(), roomy).is_ok());
}

#[test]
fn wall_clock_jumps_do_not_move_the_leaders_deadline() {
    let server = ApiServer::start().unwrap();
    let clock = ManualClock::new();
    let mut e = elector(&server, "a", &clock);
    assert!(e.try_acquire_or_renew().unwrap());
    let deadline = e.election().deadline().unwrap();
    let before = spec(&server)["renewTime"].as_str().unwrap().to_string();
    // NTP steps the wall clock back a day, then forward two: renews go on, the deadline moves only with
    // the monotonic clock.
    clock.jump_wall(chrono::Duration::days(-1));
    clock.advance(Duration::from_secs(1));
    assert!(e.try_acquire_or_renew().unwrap());
    assert_eq!(
        e.election().deadline().unwrap(),
        deadline + Duration::from_secs(1)
    );
    // The renew time never goes back within a term (followers tell renews apart by the record, so a
    // record must never read as an earlier one): it moves on by a microsecond instead.
    let written = spec(&server)["renewTime"].as_str().unwrap().to_string();
    assert!(written > before, "{written} after {before}");
    assert!(written.starts_with(&before[..19]), "{written} vs {before}");
    clock.jump_wall(chrono::Duration::days(2));
    assert!(e.is_leader(), "a wall-clock jump does not end leadership");
    clock.advance(timing().renew_deadline);
    assert!(!e.is_leader(), "the monotonic deadline does");
}
