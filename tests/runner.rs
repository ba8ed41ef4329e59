//! The threaded runner against the embedded API server, in real time with short timings. Timing bounds
//! are generous: these machines are shared. Safety checks (never two leaders) are exact.

mod common;

use std::time::{Duration, Instant};

use common::{assert_well_formed, wait_event, wait_until};
use crossbeam_channel::Receiver;
use kube_elector::testing::{ApiServer, Fault};
use kube_elector::{Config, LeaderElector, LeaderEvent, LeaderHandle, StopReason};
use serde_json::json;

const NS: &str = "default";

fn start(config: Config, name: &str, id: &str, lease_secs: u64) -> LeaderHandle {
    common::start(config, name, id, common::timing(lease_secs, 1000, 200))
}

fn drain(rx: &Receiver<LeaderEvent>) -> Vec<LeaderEvent> {
    rx.try_iter().collect()
}

#[test]
fn a_single_elector_leads_reports_events_and_releases_on_stop() {
    let server = ApiServer::start().unwrap();
    let a = common::start(server.config(), "solo", "a", common::timing(2, 1000, 200));
    let events = a.events();
    assert!(wait_until(Duration::from_secs(5), || a.is_leader()));
    assert_eq!(a.leader().as_deref(), Some("a"));
    assert_eq!(a.identity(), "a");
    assert!(a.is_running());
    // It keeps renewing: still leader well past the renew deadline.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(a.is_leader());
    a.stop().unwrap();
    assert!(!a.is_leader());
    assert!(!a.is_running());
    a.stop().unwrap(); // idempotent
    assert_eq!(
        server.lease_holder(NS, "solo").as_deref(),
        Some(""),
        "released on stop"
    );
    let events = drain(&events);
    assert_eq!(
        events,
        vec![
            LeaderEvent::NewLeader {
                identity: Some("a".into())
            },
            LeaderEvent::StartedLeading { transitions: 0 },
            LeaderEvent::StoppedLeading {
                reason: StopReason::Stopped
            },
        ]
    );
}

#[test]
fn stop_releases_so_a_follower_takes_over_within_about_a_retry_period() {
    let server = ApiServer::start().unwrap();
    // A long lease: a takeover by expiry would take 5 s, by release about one retry period.
    let a = start(server.config(), "handoff", "a", 5);
    assert!(wait_until(Duration::from_secs(5), || a.is_leader()));
    let b = start(server.config(), "handoff", "b", 5);
    let b_events = b.events();
    assert!(wait_until(Duration::from_secs(5), || b.leader().as_deref()
        == Some("a")));
    assert!(!b.is_leader());
    let stopped = Instant::now();
    a.stop().unwrap();
    assert!(
        wait_until(Duration::from_secs(4), || b.is_leader()),
        "b must take over after the release"
    );
    let handoff = stopped.elapsed();
    assert!(
        handoff < Duration::from_millis(2500),
        "handoff took {handoff:?}"
    );
    assert_eq!(
        server.lease(NS, "handoff").unwrap()["spec"]["leaseTransitions"],
        1,
        "a release keeps the count"
    );
    b.stop().unwrap();
    let events = drain(&b_events);
    assert_well_formed(&events);
    assert!(
        events.contains(&LeaderEvent::StartedLeading { transitions: 1 }),
        "{events:?}"
    );
}

#[test]
fn a_follower_that_never_led_sends_no_stopped_leading() {
    let server = ApiServer::start().unwrap();
    let a = start(server.config(), "quiet", "a", 5);
    assert!(wait_until(Duration::from_secs(5), || a.is_leader()));
    let b = start(server.config(), "quiet", "b", 5);
    let rx = b.events();
    assert!(wait_until(Duration::from_secs(5), || b.leader().is_some()));
    server.reset_counters();
    b.stop().unwrap();
    assert_eq!(
        server.requests("PUT"),
        0,
        "a follower has nothing to release"
    );
    let events = drain(&rx);
    assert_eq!(
        events,
        vec![LeaderEvent::NewLeader {
            identity: Some("a".into())
        }]
    );
    a.stop().unwrap();
}

#[test]
fn three_electors_never_lead_at_once_through_stops_and_crashes() {
    let server = ApiServer::start().unwrap();
    let lease = 2;
    let mut next_id = 0;
    let mut spawn = |server: &ApiServer| {
        next_id += 1;
        let id = format!("cand-{next_id}");
        let crashable = common::candidate(
            server.config(),
            "chaos",
            &id,
            common::timing(lease, 1000, 200),
        )
        // Every other candidate "crashes": stopping it does not release (its thread just ends).
        .release_on_stop(next_id % 2 == 0)
        .start()
        .unwrap();
        let rx = crashable.events();
        (crashable, rx)
    };
    let mut slots: Vec<(LeaderHandle, Receiver<LeaderEvent>)> =
        (0..3).map(|_| spawn(&server)).collect();
    let mut all_events = Vec::new();
    let mut samples = 0u64;
    let mut cycles = 0;
    let mut leaderless_since = Some(Instant::now());
    let mut leader_since: Option<(usize, Instant)> = None;
    let bound = Duration::from_secs(lease) + Duration::from_secs(4); // liveness, generous
    while cycles < 8 {
        let leaders: Vec<usize> = (0..slots.len())
            .filter(|&i| slots[i].0.is_leader())
            .collect();
        samples += 1;
        assert!(
            leaders.len() <= 1,
            "two leaders at once: {leaders:?} after {cycles} cycles"
        );
        match (leaders.first(), leader_since) {
            (Some(&i), Some((j, since))) if i == j => {
                if since.elapsed() > Duration::from_millis(300) {
                    // Stop (release) or crash (no release) the leader, then replace it.
                    let (h, rx) = slots.remove(i);
                    h.stop().unwrap();
                    all_events.push(drain(&rx));
                    slots.push(spawn(&server));
                    cycles += 1;
                    leader_since = None;
                    leaderless_since = Some(Instant::now());
                }
            }
            (Some(&i), _) => {
                leader_since = Some((i, Instant::now()));
                leaderless_since = None;
            }
            (None, _) => {
                leader_since = None;
                let since = *leaderless_since.get_or_insert_with(Instant::now);
                assert!(
                    since.elapsed() < bound,
                    "no leader for {:?}",
                    since.elapsed()
                );
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    for (h, rx) in slots {
        h.stop().unwrap();
        all_events.push(drain(&rx));
    }
    for events in &all_events {
        assert_well_formed(events);
    }
    let started = all_events
        .iter()
        .flatten()
        .filter(|e| matches!(e, LeaderEvent::StartedLeading { .. }))
        .count();
    assert!(started >= 8, "every cycle had a leader: {started}");
    assert!(samples > 100);
    // The fencing token only grows.
    let terms: Vec<i32> = all_events
        .iter()
        .flatten()
        .filter_map(|e| match e {
            LeaderEvent::StartedLeading { transitions } => Some(*transitions),
            _ => None,
        })
        .collect();
    let mut sorted = terms.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        terms.len(),
        "each term is used once: {terms:?}"
    );
}

#[test]
fn a_hung_api_server_ends_leadership_by_the_renew_deadline() {
    let server = common::tls_server(&["a"]);
    let handle = start(server.config_for("a"), "hung", "a", 3);
    let rx = handle.events();
    assert!(wait_until(Duration::from_secs(5), || handle.is_leader()));
    server.inject(Fault::hang().for_token("a"));
    // Every renew that can still succeed started before this instant (later ones hang), so the
    // leadership deadline is at most hung_at + renew_deadline (1 s).
    let hung_at = Instant::now();
    let deadline = hung_at + Duration::from_secs(1);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(
        !handle.is_leader(),
        "is_leader() must be false once the renew deadline has passed"
    );
    let lost = wait_event(&rx, Duration::from_secs(5), |e| {
        matches!(e, LeaderEvent::StoppedLeading { .. })
    })
    .expect("StoppedLeading is reported");
    assert!(
        matches!(
            &lost,
            LeaderEvent::StoppedLeading {
                reason: StopReason::RenewDeadlineExceeded { .. }
            }
        ),
        "{lost:?}"
    );
    for _ in 0..100 {
        assert!(!handle.is_leader());
        std::thread::sleep(Duration::from_millis(5));
    }
    server.clear_faults();
}

#[test]
fn a_partitioned_leader_steps_down_and_its_late_writes_never_touch_the_new_leaders_lease() {
    let server = common::tls_server(&["a", "b", "c"]);
    let a = start(server.config_for("a"), "partition", "a", 2);
    let a_events = a.events();
    assert!(wait_until(Duration::from_secs(5), || a.is_leader()));
    let b = start(server.config_for("b"), "partition", "b", 2);
    let c = start(server.config_for("c"), "partition", "c", 2);
    assert!(wait_until(Duration::from_secs(5), || b.leader().is_some()
        && c.leader().is_some()));

    let cut = server.inject(Fault::hang().for_token("a"));
    let check = |a: &LeaderHandle, b: &LeaderHandle, c: &LeaderHandle| {
        let n = [a, b, c].iter().filter(|h| h.is_leader()).count();
        assert!(n <= 1, "two leaders at once");
        n
    };
    let end = Instant::now() + Duration::from_secs(10);
    while !(b.is_leader() || c.is_leader()) {
        check(&a, &b, &c);
        assert!(
            Instant::now() < end,
            "a follower must take over after expiry"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(!a.is_leader());
    let new_leader = if b.is_leader() { "b" } else { "c" };

    // Heal: a's held requests now reach the server, late.
    server.remove_fault(cut);
    let settle = Instant::now() + Duration::from_secs(2);
    while Instant::now() < settle {
        check(&a, &b, &c);
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(check(&a, &b, &c), 1, "exactly one leader after the heal");
    assert!(!a.is_leader());
    assert_eq!(
        server.lease_holder(NS, "partition").as_deref(),
        Some(new_leader)
    );
    // a's release must check the holder it fetches, not its stale cache.
    a.stop().unwrap();
    assert_eq!(
        server.lease_holder(NS, "partition").as_deref(),
        Some(new_leader)
    );
    let events: Vec<LeaderEvent> = drain(&a_events);
    assert_well_formed(&events);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, LeaderEvent::StoppedLeading { .. })),
        "a reports its loss: {events:?}"
    );
    b.stop().unwrap();
    c.stop().unwrap();
}

#[test]
fn without_keep_campaigning_the_thread_ends_after_a_loss() {
    let server = ApiServer::start().unwrap();
    let handle = common::candidate(server.config(), "once", "a", common::timing(2, 1000, 100))
        .keep_campaigning(false)
        .start()
        .unwrap();
    let rx = handle.events();
    assert!(wait_until(Duration::from_secs(5), || handle.is_leader()));
    let mut lease = server.lease(NS, "once").unwrap();
    lease["spec"]["holderIdentity"] = json!("usurper");
    server.put_lease_raw(NS, "once", lease);
    assert!(wait_until(Duration::from_secs(5), || !handle.is_running()));
    assert!(!handle.is_leader());
    let events = drain(&rx);
    assert_well_formed(&events);
    assert!(
        events.contains(&LeaderEvent::StoppedLeading {
            reason: StopReason::LeaseLost {
                holder: Some("usurper".into())
            }
        }),
        "{events:?}"
    );
    assert_eq!(handle.leader().as_deref(), Some("usurper"));
}

#[test]
fn dropping_the_handle_stops_and_releases() {
    let server = ApiServer::start().unwrap();
    let a = start(server.config(), "dropped", "a", 5);
    assert!(wait_until(Duration::from_secs(5), || a.is_leader()));
    drop(a);
    assert_eq!(server.lease_holder(NS, "dropped").as_deref(), Some(""));
}

#[test]
fn the_default_identity_and_namespace_come_from_the_host_and_config() {
    let server = ApiServer::start().unwrap();
    let h = LeaderElector::builder(server.config().with_namespace("team-a"), "defaults")
        .timing(common::timing(2, 1000, 200))
        .start()
        .unwrap();
    assert!(wait_until(Duration::from_secs(5), || h.is_leader()));
    let holder = server.lease_holder("team-a", "defaults").unwrap();
    assert_eq!(holder, h.identity());
    assert!(holder.contains('_'), "{holder}");
    h.stop().unwrap();
}

#[test]
fn bad_settings_fail_at_start_not_in_the_thread() {
    let server = ApiServer::start().unwrap();
    let err = LeaderElector::builder(server.config(), "x")
        .lease_duration(Duration::from_secs(1))
        .renew_deadline(Duration::from_secs(2))
        .start()
        .unwrap_err();
    assert!(
        err.to_string().contains("greater than renew_deadline"),
        "{err}"
    );
    assert!(LeaderElector::builder(server.config(), "").start().is_err());
    assert!(
        LeaderElector::builder(server.config(), "x")
            .namespace("")
            .start()
            .is_err()
    );
}

#[test]
fn abandon_reports_abandoned_and_leaves_the_lease_held() {
    let server = ApiServer::start().unwrap();
    let a = start(server.config(), "abandoned", "a", 5);
    let rx = a.events();
    assert!(wait_until(Duration::from_secs(5), || a.is_leader()));
    a.abandon();
    assert!(!a.is_leader());
    assert_eq!(
        server.lease_holder(NS, "abandoned").as_deref(),
        Some("a"),
        "no release"
    );
    let events = drain(&rx);
    assert_eq!(
        events.last(),
        Some(&LeaderEvent::StoppedLeading {
            reason: StopReason::Abandoned
        })
    );
}
