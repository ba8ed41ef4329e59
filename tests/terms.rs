//! Terms keep their promises at the edges: a term that ran out never comes back, the fencing token never
//! stops growing (or the elector refuses to lead), and a successor under our identity is never taken for
//! ourselves.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{ManualClock, no_overlap, timing, wait_event, wait_until};
use kube_elector::election::Elector;
use kube_elector::lock::{LeaseLock, Lock};
use kube_elector::record::{LeaderElectionRecord, VersionedRecord};
use kube_elector::testing::{ApiServer, Fault};
use kube_elector::{LeaderElector, LeaderEvent, LockKind, StopReason};
use serde_json::json;

/// A Lease lock whose next update, when asked, takes `delay` before it is sent, whatever its timeout:
/// an answer that comes back after the time the elector gave it (a descheduled thread, a late timer).
struct Late {
    inner: LeaseLock,
    next_is_late: Arc<AtomicBool>,
    delay: Duration,
    before: Option<Box<dyn Fn() + Send>>,
}

impl Lock for Late {
    fn get(&mut self, timeout: Duration) -> kube_elector::Result<Option<VersionedRecord>> {
        self.inner.get(timeout)
    }
    fn create(
        &mut self,
        record: &LeaderElectionRecord,
        timeout: Duration,
    ) -> kube_elector::Result<VersionedRecord> {
        self.inner.create(record, timeout)
    }
    fn update(
        &mut self,
        record: &LeaderElectionRecord,
        resource_version: &str,
        timeout: Duration,
    ) -> kube_elector::Result<VersionedRecord> {
        if self.next_is_late.swap(false, Ordering::AcqRel) {
            match &self.before {
                Some(f) => f(),
                None => std::thread::sleep(self.delay),
            }
        }
        self.inner.update(record, resource_version, timeout)
    }
    fn identity(&self) -> &str {
        self.inner.identity()
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

#[test]
fn a_renew_answered_after_the_deadline_begins_a_new_term() {
    let server = ApiServer::start().unwrap();
    let clock = ManualClock::new();
    let late = Arc::new(AtomicBool::new(false));
    let advance = clock.clone();
    let lock = Late {
        inner: LeaseLock::new(&server.config(), "default", "late-renew", "a").unwrap(),
        next_is_late: late.clone(),
        delay: Duration::ZERO,
        // The renew's answer is taken in 1.4 s after it was sent: past the deadline (1.5 s after the
        // previous renew began, 200 ms earlier), within the renew's own 1.5 s.
        before: Some(Box::new(move || {
            advance.advance(Duration::from_millis(1400))
        })),
    };
    let mut e = Elector::with_clock(lock, timing(2, 1500, 200), clock.clone()).unwrap();
    let first = e.step();
    assert!(first.is_leading());
    clock.advance(Duration::from_millis(200));
    late.store(true, Ordering::Release);
    let o = e.step();
    assert!(
        matches!(
            &o.events[..],
            [
                LeaderEvent::StoppedLeading {
                    reason: StopReason::RenewDeadlineExceeded { .. }
                },
                LeaderEvent::StartedLeading { .. }
            ]
        ),
        "the old term ended, a new one began: {o:?}"
    );
    assert!(o.is_leading() && e.is_leader());
}

#[test]
fn a_term_that_ran_out_never_comes_back() {
    let server = ApiServer::start().unwrap();
    let late = Arc::new(AtomicBool::new(false));
    let lock = Late {
        inner: LeaseLock::new(&server.config(), "default", "late-term", "a").unwrap(),
        next_is_late: late.clone(),
        // Sent 200 ms after the last renew began, answered 1.38 s later: 80 ms past the deadline.
        delay: Duration::from_millis(1380),
        before: None,
    };
    let builder = LeaderElector::with_lock(lock).timing(timing(2, 1500, 200));
    let events = builder.events();
    let handle = builder.start().unwrap();
    let term = handle
        .wait_until_leader(Some(Duration::from_secs(5)))
        .expect("leads");
    let status = handle.status();
    // Watch the term and is_leader() every few hundred microseconds from another thread.
    let stop = Arc::new(AtomicBool::new(false));
    let (revived, flips) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let watcher = {
        let (stop, revived, flips, term) =
            (stop.clone(), revived.clone(), flips.clone(), term.clone());
        let status = status.clone();
        std::thread::spawn(move || {
            let (mut was_cancelled, mut was_leading) = (false, true);
            while !stop.load(Ordering::Acquire) {
                let cancelled = term.is_cancelled();
                if was_cancelled && !cancelled {
                    revived.fetch_add(1, Ordering::Relaxed);
                }
                was_cancelled |= cancelled;
                let leading = status.is_leader();
                if leading && !was_leading {
                    flips.fetch_add(1, Ordering::Relaxed);
                }
                was_leading = leading;
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    };
    // Let one renew go through, then make the next one late.
    std::thread::sleep(Duration::from_millis(250));
    late.store(true, Ordering::Release);
    assert!(
        wait_until(Duration::from_secs(4), || term.is_cancelled()),
        "the late renew's term ran out"
    );
    assert!(
        wait_until(Duration::from_secs(4), || handle.is_leader()),
        "and the elector leads again"
    );
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Release);
    watcher.join().unwrap();
    assert_eq!(
        revived.load(Ordering::Relaxed),
        0,
        "a cancelled term came back"
    );
    assert!(term.is_cancelled(), "the old term stays over");
    let now = handle.term().expect("a new term");
    assert!(!now.is_cancelled());
    assert!(flips.load(Ordering::Relaxed) >= 1);
    // The events say so: the term ended and a new one began.
    assert!(
        wait_event(&events, Duration::from_secs(1), |e| matches!(
            e,
            LeaderEvent::StoppedLeading {
                reason: StopReason::RenewDeadlineExceeded { .. }
            }
        ))
        .is_some()
    );
    assert!(
        wait_event(&events, Duration::from_secs(1), |e| matches!(
            e,
            LeaderEvent::StartedLeading { .. }
        ))
        .is_some()
    );
    let _ = Instant::now();
}

// ---- the fencing token at its limit ----

fn plant_at_limit(server: &ApiServer, name: &str, holder: &str) {
    let t = "2026-01-02T03:04:05.123456Z";
    server.put_lease_raw(
        "default",
        name,
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
               "metadata": {"name": name, "namespace": "default"},
               "spec": {"holderIdentity": holder, "leaseDurationSeconds": 1, "acquireTime": t,
                        "renewTime": t, "leaseTransitions": i32::MAX}}),
    );
}

#[test]
fn a_counter_at_its_limit_is_never_led_on_with_a_token_that_cannot_grow() {
    let server = ApiServer::start().unwrap();
    // Released at the limit: a new term would have to be numbered 2147483648.
    plant_at_limit(&server, "at-limit", "");
    let builder = LeaderElector::builder(server.config(), "at-limit")
        .identity("b")
        .timing(timing(2, 1500, 200));
    let events = builder.events();
    let handle = builder.start().unwrap();
    assert_eq!(
        wait_event(&events, Duration::from_secs(5), |e| matches!(
            e,
            LeaderEvent::TermLimitReached { .. }
        )),
        Some(LeaderEvent::TermLimitReached {
            transitions: i32::MAX
        })
    );
    std::thread::sleep(Duration::from_millis(800));
    assert!(!handle.is_leader());
    assert_eq!(
        server.lease_holder("default", "at-limit").as_deref(),
        Some(""),
        "not taken"
    );
    let err = handle.stats().last_error.expect("the step says why");
    assert!(
        err.contains("2147483647") && err.contains("leaseTransitions"),
        "the error says what to fix: {err}"
    );
    assert!(
        wait_event(&events, Duration::from_millis(600), |e| matches!(
            e,
            LeaderEvent::TermLimitReached { .. }
        ))
        .is_none(),
        "said once, not every retry"
    );
    // An administrator resets the counter: the next attempt leads, on term 1.
    let mut lease = server.lease("default", "at-limit").unwrap();
    lease["spec"]["leaseTransitions"] = json!(0);
    server.put_lease_raw("default", "at-limit", lease);
    assert_eq!(
        wait_event(&events, Duration::from_secs(5), |e| matches!(
            e,
            LeaderEvent::StartedLeading { .. }
        )),
        Some(LeaderEvent::StartedLeading { transitions: 1 })
    );
}

#[test]
fn a_holder_at_the_limit_keeps_its_term_and_an_annotation_lock_refuses_too() {
    let server = ApiServer::start().unwrap();
    // a takes the lock at 2147483646 + 1: its own term renews at the limit.
    let t = "2026-01-02T03:04:05.123456Z";
    server.put_lease_raw(
        "default",
        "holder-at-limit",
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
               "metadata": {"name": "holder-at-limit", "namespace": "default"},
               "spec": {"holderIdentity": "", "leaseDurationSeconds": 1, "acquireTime": t,
                        "renewTime": t, "leaseTransitions": i32::MAX - 1}}),
    );
    let lock = LeaseLock::new(&server.config(), "default", "holder-at-limit", "a").unwrap();
    let mut a = Elector::new(lock, timing(2, 1500, 200)).unwrap();
    let o = a.step();
    assert!(o.status.leader_deadline().is_some(), "{o:?}");
    for _ in 0..3 {
        assert!(a.try_acquire_or_renew().unwrap(), "renews at the limit");
    }
    assert!(a.release().unwrap());
    let lock = LeaseLock::new(&server.config(), "default", "holder-at-limit", "b").unwrap();
    let mut b = Elector::new(lock, timing(2, 1500, 200)).unwrap();
    let err = b.try_acquire_or_renew().unwrap_err();
    assert!(
        matches!(err, kube_elector::Error::TermLimit { .. }),
        "{err}"
    );

    // The same in a ConfigMap's leader annotation.
    let record = LeaderElectionRecord {
        lease_duration_seconds: 1,
        acquire_time: Some(chrono::Utc::now()),
        renew_time: Some(chrono::Utc::now()),
        leader_transitions: i32::MAX,
        ..Default::default()
    };
    let mut cm =
        kube_elector::lock::ConfigMapLock::new(&server.config(), "default", "cm-limit", "x")
            .unwrap();
    cm.create(&record, Duration::from_secs(5)).unwrap();
    let locks = LockKind::ConfigMaps
        .locks(&server.config(), "default", "cm-limit", "c")
        .unwrap();
    let mut c = Elector::new(locks, timing(2, 1500, 200)).unwrap();
    assert!(matches!(
        c.try_acquire_or_renew().unwrap_err(),
        kube_elector::Error::TermLimit { .. }
    ));
    assert!(!c.is_leader());
}

// ---- a successor under our identity ----

#[test]
fn a_successor_under_the_same_identity_is_never_taken_for_ourselves() {
    let server = common::tls_server(&["old", "new", "other"]);
    let start = |token: &str, identity: &str| {
        let builder = common::candidate(
            server.config_for(token),
            "web",
            identity,
            timing(2, 1500, 200),
        )
        .watch(false);
        let events = builder.events();
        (builder.start().unwrap(), events)
    };
    // web-0 leads; the node it runs on is cut off; its pod is re-created under the same name.
    let (old, old_events) = start("old", "web-0");
    assert!(wait_until(Duration::from_secs(5), || old.is_leader()));
    let cut = server.inject(Fault::hang().for_token("old"));
    let (new, _) = start("new", "web-0");
    assert!(
        wait_until(Duration::from_secs(6), || new.is_leader()),
        "the successor takes over once the old lease expires"
    );
    let (other, _) = start("other", "web-1");
    // The cut heals: the old process finds its name on a record another process wrote.
    server.remove_fault(cut);
    no_overlap(&[&old, &new, &other], Duration::from_secs(3));
    assert!(new.is_leader(), "the successor keeps leading");
    assert!(!old.is_leader());
    let stopped = wait_event(&old_events, Duration::from_secs(1), |e| {
        matches!(e, LeaderEvent::StoppedLeading { .. })
    });
    assert!(stopped.is_some(), "the old process stopped leading");
    let mut stops = vec![stopped.unwrap()];
    while let Ok(e) = old_events.try_recv() {
        if matches!(e, LeaderEvent::StoppedLeading { .. }) {
            stops.push(e);
        }
    }
    assert!(
        stops.iter().all(|e| !matches!(
            e,
            LeaderEvent::StoppedLeading {
                reason: StopReason::Stopped
            }
        )),
        "{stops:?}"
    );
    // The successor's record stays its own after the old process stops (its release must not clear it).
    old.stop().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(new.is_leader());
    let lease = server.lease("default", "web").unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "web-0");
    assert!(
        lease["metadata"]["annotations"]["kube-elector/incarnation"].is_string(),
        "{lease}"
    );
}
