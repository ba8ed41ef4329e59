//! Coordinated leader election (KEP-4355) against the embedded API server's controller: candidates keep
//! LeaseCandidates, the server picks the oldest emulation version, and a holder yields at the end of its
//! term when a better candidate appears. Candidates never create or take the Lease themselves.

mod common;

use std::time::{Duration, Instant};

use common::{wait_event, wait_until};
use kube_elector::testing::ApiServer;
use kube_elector::{CandidateInfo, LeaderElector, LeaderEvent, LeaderHandle, StopReason};

fn candidate(server: &ApiServer, id: &str, emulation: &str) -> LeaderHandle {
    common::candidate(server.config(), "cle", id, common::timing(3, 2000, 200))
        .coordinated(CandidateInfo::new("1.34.0", emulation))
        .start()
        .unwrap()
}

fn leaders(hs: &[&LeaderHandle]) -> Vec<String> {
    let l: Vec<String> = hs
        .iter()
        .filter(|h| h.is_leader())
        .map(|h| h.identity().to_string())
        .collect();
    assert!(l.len() <= 1, "two leaders at once: {l:?}");
    l
}

#[test]
fn the_server_picks_the_oldest_emulation_version_and_a_better_candidate_takes_over_at_the_end_of_the_term()
 {
    let server = ApiServer::builder()
        .coordinated_election(3)
        .start()
        .unwrap();
    let a = candidate(&server, "cand-a", "1.33.0");
    let b = candidate(&server, "cand-b", "1.32.0");
    let c = candidate(&server, "cand-c", "1.34.0");
    let b_events = b.events();
    let all = [&a, &b, &c];
    assert!(
        wait_until(Duration::from_secs(10), || leaders(&all) == ["cand-b"]),
        "the oldest emulation version leads"
    );
    assert_eq!(
        server.lease_holder("default", "cle").as_deref(),
        Some("cand-b")
    );
    let lease = server.lease("default", "cle").unwrap();
    assert_eq!(lease["spec"]["strategy"], "OldestEmulationVersion");
    for id in ["cand-a", "cand-b", "cand-c"] {
        let cand = server
            .object("leasecandidates", "default", id)
            .expect("a LeaseCandidate per candidate");
        assert_eq!(cand["spec"]["leaseName"], "cle");
        assert_eq!(cand["spec"]["binaryVersion"], "1.34.0");
    }
    // Pings are answered: every renewTime catches up with its pingTime.
    assert!(wait_until(Duration::from_secs(5), || {
        ["cand-a", "cand-b", "cand-c"].iter().all(|id| {
            let c = server.object("leasecandidates", "default", id).unwrap();
            c["spec"]["pingTime"].is_string()
                && c["spec"]["renewTime"].as_str() >= c["spec"]["pingTime"].as_str()
        })
    }));

    // A better candidate arrives: the server marks it preferred; b stops renewing and its term ends.
    let d = candidate(&server, "cand-d", "1.31.0");
    let all = [&a, &b, &c, &d];
    let start = Instant::now();
    while leaders(&all) != ["cand-d"] {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "cand-d takes over"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let stopped = wait_event(&b_events, Duration::from_secs(1), |e| {
        matches!(e, LeaderEvent::StoppedLeading { .. })
    });
    assert_eq!(
        stopped,
        Some(LeaderEvent::StoppedLeading {
            reason: StopReason::EndOfTerm {
                preferred_holder: "cand-d".into()
            }
        })
    );
    let lease = server.lease("default", "cle").unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "cand-d");
    assert!(
        lease["spec"]
            .get("preferredHolder")
            .is_none_or(|p| p.is_null())
    );
    // And it stays put.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        assert_eq!(leaders(&all), ["cand-d"]);
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn without_the_controller_a_coordinated_candidate_never_creates_or_takes_the_lease() {
    let server = ApiServer::start().unwrap();
    let h = candidate(&server, "lonely", "1.33.0");
    std::thread::sleep(Duration::from_secs(2));
    assert!(!h.is_leader());
    assert!(server.lease("default", "cle").is_none(), "no lease created");
    assert_eq!(
        server.requests("PUT") + server.requests("POST"),
        1,
        "only the LeaseCandidate was created"
    );
    // Even a free lease is not taken: only the API server hands it out.
    server.put_lease_raw(
        "default",
        "cle",
        serde_json::json!({"metadata": {"name": "cle"}, "spec": {"holderIdentity": "", "leaseDurationSeconds": 1}}),
    );
    std::thread::sleep(Duration::from_secs(1));
    assert!(!h.is_leader());
    assert_eq!(server.lease_holder("default", "cle").as_deref(), Some(""));
    assert!(
        h.stats()
            .last_error
            .is_none_or(|e| e.contains("coordinated") || e.contains("not")),
        "{:?}",
        h.stats()
    );
}

#[test]
fn coordinated_mode_needs_an_object_name_identity_and_a_lease() {
    let server = ApiServer::start().unwrap();
    let err = LeaderElector::builder(server.config(), "cle")
        .identity("Host_1")
        .coordinated(CandidateInfo::new("1.34.0", "1.33.0"))
        .start()
        .unwrap_err();
    assert!(err.to_string().contains("DNS subdomain"), "{err}");
    let err = LeaderElector::builder(server.config(), "cle")
        .lock_kind(kube_elector::LockKind::ConfigMaps)
        .identity("ok")
        .coordinated(CandidateInfo::new("1.34.0", "1.33.0"))
        .start()
        .unwrap_err();
    assert!(err.to_string().contains("Leases only"), "{err}");
    // The default identity is a valid candidate name in this mode.
    let h = LeaderElector::builder(server.config(), "cle")
        .coordinated(CandidateInfo::new("1.34.0", "1.33.0"))
        .start()
        .unwrap();
    assert!(
        h.identity()
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.'),
        "{}",
        h.identity()
    );
    h.stop().unwrap();
}
