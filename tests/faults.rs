//! Fault injection against the embedded API server: for each fault, what the leader and the followers
//! must do. The rules: a leader keeps leading through failures shorter than its renew deadline, steps down
//! by the deadline otherwise (reporting why), a follower takes over only after expiry, never two leaders,
//! and bad data never yields leadership. Timings: lease 3 s, renew deadline 2 s, retry 200 ms, so each
//! request may take at most 1 s.

mod common;

use std::time::{Duration, Instant};

use common::{assert_well_formed, wait_event, wait_until};
use crossbeam_channel::Receiver;
use kube_elector::election::Elector;
use kube_elector::lock::LeaseLock;
use kube_elector::testing::{ApiServer, Fault};
use kube_elector::{LeaderElector, LeaderEvent, LeaderHandle, StopReason, Timing};
use serde_json::json;

const LEASE: Duration = Duration::from_secs(3);
const RENEW_DEADLINE: Duration = Duration::from_secs(2);
const RETRY: Duration = Duration::from_millis(200);

struct Cluster {
    server: ApiServer,
    name: String,
}

impl Cluster {
    fn new(name: &str) -> Self {
        let server = common::tls_server(&["a", "b"]);
        Cluster {
            server,
            name: name.to_string(),
        }
    }

    fn candidate(&self, id: &str) -> (LeaderHandle, Receiver<LeaderEvent>) {
        let h = LeaderElector::builder(self.server.config_for(id), &self.name)
            .identity(id)
            .lease_duration(LEASE)
            .renew_deadline(RENEW_DEADLINE)
            .retry_period(RETRY)
            .start()
            .unwrap();
        let rx = h.events();
        (h, rx)
    }

    /// `a` leads, `b` follows and has seen `a`.
    fn leader_and_follower(
        &self,
    ) -> (
        (LeaderHandle, Receiver<LeaderEvent>),
        (LeaderHandle, Receiver<LeaderEvent>),
    ) {
        let a = self.candidate("a");
        assert!(
            wait_until(Duration::from_secs(5), || a.0.is_leader()),
            "a leads"
        );
        let b = self.candidate("b");
        assert!(wait_until(Duration::from_secs(5), || b
            .0
            .leader()
            .as_deref()
            == Some("a")));
        (a, b)
    }
}

/// Sample both for `d`; panic on an overlap. Returns whether `a` led at every sample.
fn watch(a: &LeaderHandle, b: &LeaderHandle, d: Duration) -> bool {
    let end = Instant::now() + d;
    let mut a_always = true;
    while Instant::now() < end {
        let (la, lb) = (a.is_leader(), b.is_leader());
        assert!(!(la && lb), "two leaders at once");
        a_always &= la;
        std::thread::sleep(Duration::from_millis(2));
    }
    a_always
}

/// Sample until `b` leads (bounded), checking for overlaps; returns how long it took.
fn until_b_leads(a: &LeaderHandle, b: &LeaderHandle, bound: Duration) -> Duration {
    let start = Instant::now();
    while !b.is_leader() {
        assert!(!a.is_leader() || !b.is_leader(), "two leaders at once");
        assert!(
            start.elapsed() < bound,
            "b did not take over within {bound:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(!a.is_leader(), "two leaders at once");
    start.elapsed()
}

fn stopped_reason(rx: &Receiver<LeaderEvent>, within: Duration) -> StopReason {
    match wait_event(rx, within, |e| {
        matches!(e, LeaderEvent::StoppedLeading { .. })
    }) {
        Some(LeaderEvent::StoppedLeading { reason }) => reason,
        other => panic!("expected StoppedLeading, got {other:?}"),
    }
}

#[test]
fn short_server_errors_do_not_cost_leadership() {
    for (i, fault) in [
        Fault::status(500),
        Fault::status(503),
        Fault::status_retry_after(429, 1),
    ]
    .into_iter()
    .enumerate()
    {
        let c = Cluster::new(&format!("short-{i}"));
        let ((a, a_rx), (b, _)) = c.leader_and_follower();
        // Three failed requests: well under the 2 s renew deadline.
        c.server.inject(fault.for_token("a").times(3));
        assert!(
            watch(&a, &b, Duration::from_secs(2)),
            "a kept leading through the errors"
        );
        assert!(a.stats().renews_failed >= 1, "{:?}", a.stats());
        assert!(
            !a_rx
                .try_iter()
                .any(|e| matches!(e, LeaderEvent::StoppedLeading { .. }))
        );
    }
}

#[test]
fn long_server_errors_end_leadership_by_the_deadline_and_a_follower_takes_over() {
    for (i, code) in [500u16, 503, 429].into_iter().enumerate() {
        let c = Cluster::new(&format!("long-{i}"));
        let ((a, a_rx), (b, _)) = c.leader_and_follower();
        c.server.inject(Fault::status(code).for_token("a"));
        let injected = Instant::now();
        let took = until_b_leads(&a, &b, LEASE + RENEW_DEADLINE + Duration::from_secs(3));
        assert!(
            took >= LEASE - Duration::from_millis(500),
            "b waited for expiry: {took:?}"
        );
        match stopped_reason(&a_rx, Duration::from_secs(3)) {
            StopReason::RenewDeadlineExceeded { last_error } => {
                assert!(last_error.contains(&code.to_string()), "{last_error}")
            }
            other => panic!("{other:?}"),
        }
        assert!(injected.elapsed() >= RENEW_DEADLINE.saturating_sub(RETRY));
        watch(&a, &b, Duration::from_millis(500));
    }
}

#[test]
fn a_conflict_on_renew_is_reread_and_rejudged() {
    let c = Cluster::new("conflict");
    let ((a, a_rx), (b, _)) = c.leader_and_follower();
    c.server
        .inject(Fault::status(409).for_token("a").for_verb("PUT").times(1));
    assert!(watch(&a, &b, Duration::from_secs(1)));
    assert!(a.stats().slow_path_renews >= 1);
    assert!(
        !a_rx
            .try_iter()
            .any(|e| matches!(e, LeaderEvent::StoppedLeading { .. }))
    );
}

#[test]
fn a_lease_deleted_by_an_admin_is_recreated_by_the_leader() {
    let c = Cluster::new("deleted");
    let ((a, _), (b, _)) = c.leader_and_follower();
    assert!(c.server.delete_lease("default", "deleted"));
    assert!(
        watch(&a, &b, Duration::from_secs(1)),
        "the leader keeps leading"
    );
    assert_eq!(
        c.server.lease_holder("default", "deleted").as_deref(),
        Some("a"),
        "re-created by the renew"
    );
}

#[test]
fn revoked_credentials_step_down_and_report_the_error() {
    for (i, revoke) in ["401", "403"].into_iter().enumerate() {
        let c = Cluster::new(&format!("revoked-{i}"));
        let ((a, a_rx), (b, _)) = c.leader_and_follower();
        if revoke == "401" {
            c.server.revoke_token("a");
        } else {
            c.server.inject(Fault::status(403).for_token("a"));
        }
        until_b_leads(&a, &b, LEASE + RENEW_DEADLINE + Duration::from_secs(3));
        match stopped_reason(&a_rx, Duration::from_secs(3)) {
            StopReason::RenewDeadlineExceeded { last_error } => {
                assert!(last_error.contains(revoke), "{last_error}")
            }
            other => panic!("{other:?}"),
        }
        let hint = if revoke == "401" {
            "bearer token"
        } else {
            "RBAC"
        };
        assert!(
            a.stats().last_error.unwrap_or_default().contains(hint),
            "the error says what to fix"
        );
    }
}

#[test]
fn latency_under_the_request_timeout_is_fine_over_it_is_a_failure() {
    let c = Cluster::new("latency");
    let ((a, a_rx), (b, _)) = c.leader_and_follower();
    let slow = c
        .server
        .inject(Fault::latency(Duration::from_millis(300)).for_token("a"));
    assert!(
        watch(&a, &b, Duration::from_secs(2)),
        "300 ms per request is slow but fine"
    );
    c.server.remove_fault(slow);
    // Over the 1 s per-request timeout: every renew times out.
    c.server
        .inject(Fault::latency(Duration::from_millis(2500)).for_token("a"));
    until_b_leads(&a, &b, LEASE + RENEW_DEADLINE + Duration::from_secs(4));
    match stopped_reason(&a_rx, Duration::from_secs(3)) {
        StopReason::RenewDeadlineExceeded { last_error } => {
            assert!(last_error.contains("no answer within"), "{last_error}")
        }
        other => panic!("{other:?}"),
    }
    watch(&a, &b, Duration::from_secs(3));
}

#[test]
fn connections_dropped_or_reset_mid_response() {
    let c = Cluster::new("reset");
    let ((a, a_rx), (b, _)) = c.leader_and_follower();
    c.server
        .inject(Fault::drop_connection().for_token("a").times(2));
    assert!(watch(&a, &b, Duration::from_secs(1)));
    // A reset mid-response: the PUT was applied but its answer lost. The cached version is now stale;
    // the next renew conflicts, re-reads, sees us as holder, and renews.
    c.server.inject(
        Fault::reset_mid_response()
            .for_token("a")
            .for_verb("PUT")
            .times(1),
    );
    assert!(watch(&a, &b, Duration::from_secs(1)));
    assert!(
        !a_rx
            .try_iter()
            .any(|e| matches!(e, LeaderEvent::StoppedLeading { .. }))
    );
    // Permanently reset: leadership ends by the deadline, b takes over.
    c.server.inject(Fault::reset_mid_response().for_token("a"));
    until_b_leads(&a, &b, LEASE + RENEW_DEADLINE + Duration::from_secs(3));
}

#[test]
fn the_server_down_briefly_and_for_longer_than_the_lease() {
    let c = Cluster::new("down");
    let ((a, a_rx), (b, b_rx)) = c.leader_and_follower();
    c.server.go_down();
    std::thread::sleep(Duration::from_millis(600));
    c.server.come_up();
    assert!(
        watch(&a, &b, Duration::from_millis(1500)),
        "down for less than the renew deadline: still leader"
    );

    c.server.go_down();
    let down = Instant::now();
    while down.elapsed() < LEASE + Duration::from_secs(1) {
        assert!(!(a.is_leader() && b.is_leader()));
        if down.elapsed() > RENEW_DEADLINE + Duration::from_millis(10) {
            assert!(
                !a.is_leader(),
                "no leader while the server is down past the deadline"
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    c.server.come_up();
    // Someone leads again, within a lease and a few retries of the server coming back.
    assert!(wait_until(LEASE + Duration::from_secs(3), || {
        assert!(!(a.is_leader() && b.is_leader()));
        a.is_leader() || b.is_leader()
    }));
    watch(&a, &b, Duration::from_millis(500));
    let mut all: Vec<LeaderEvent> = a_rx.try_iter().collect();
    assert_well_formed(&all);
    all = b_rx.try_iter().collect();
    assert_well_formed(&all);
}

fn follower_step(server: &ApiServer, name: &str) -> kube_elector::Result<bool> {
    let timing = Timing {
        lease_duration: LEASE,
        renew_deadline: RENEW_DEADLINE,
        retry_period: RETRY,
    };
    let lock = LeaseLock::new(&server.config_for("b"), "default", name, "b").unwrap();
    Elector::new(lock, timing).unwrap().try_acquire_or_renew()
}

#[test]
fn bad_data_is_an_error_or_safe_never_leadership() {
    let c = Cluster::new("bad");
    // A lease held by someone else, so that a correct reading can never grant us leadership.
    c.server.put_lease_raw(
        "default",
        "bad",
        json!({"metadata": {"name": "bad"}, "spec": {"holderIdentity": "other", "leaseDurationSeconds": 15}}),
    );
    let meta = r#""metadata":{"name":"bad","namespace":"default","resourceVersion":"9"}"#;
    let long = "x".repeat(10_000);
    let bodies = [
        "garbage".to_string(),
        "{\"kind\": \"Lea".to_string(),
        String::new(),
        "[]".to_string(),
        "null".to_string(),
        format!("{{{meta},\"spec\":{{\"holderIdentity\":\"other\",\"leaseDurationSeconds\":-5}}}}"),
        format!("{{{meta},\"spec\":{{\"holderIdentity\":\"other\",\"leaseDurationSeconds\":0}}}}"),
        format!(
            "{{{meta},\"spec\":{{\"holderIdentity\":\"{long}\",\"leaseDurationSeconds\":15}}}}"
        ),
        format!(
            "{{{meta},\"spec\":{{\"holderIdentity\":\"other\",\"renewTime\":\"yesterday\",\"acquireTime\":12}}}}"
        ),
        format!(
            "{{{meta},\"spec\":{{\"holderIdentity\":\"other\",\"leaseDurationSeconds\":\"15\",\"renewTime\":\"2026-11-27 01:05:11.117264\"}}}}"
        ),
        format!("{{{meta},\"spec\":{{\"holderIdentity\":[\"other\"]}}}}"),
        format!("{{{meta},\"spec\":{{\"holderIdentity\":\"other\",\"leaseTransitions\":1e99}}}}"),
        "{\"metadata\":{},\"spec\":{\"holderIdentity\":\"\"}}".to_string(),
        "{\"kind\":\"Status\",\"status\":\"Failure\"}".to_string(),
    ];
    for body in &bodies {
        let f = c.server.inject(
            Fault::body(200, body.clone())
                .for_token("b")
                .for_verb("GET"),
        );
        let result = follower_step(&c.server, "bad");
        assert!(
            !matches!(result, Ok(true)),
            "leadership on bad data: {:.80} → {result:?}",
            body
        );
        c.server.remove_fault(f);
    }
    // Error bodies that are not Status objects still give a clear error with the code.
    c.server.inject(
        Fault::body(503, "<html>upstream down</html>")
            .for_token("b")
            .times(1),
    );
    let err = follower_step(&c.server, "bad").unwrap_err();
    assert_eq!(err.api().map(|e| e.code), Some(503));
    assert!(err.to_string().contains("upstream down"), "{err}");
}
