//! Health check, stats, and a renew thread that panics or gets stuck: never a false `is_leader()`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{assert_well_formed, wait_event, wait_until};
use kube_elector::lock::{LeaseLock, Lock};
use kube_elector::record::{LeaderElectionRecord, VersionedRecord};
use kube_elector::testing::{ApiServer, Fault};
use kube_elector::{Error, LeaderElector, LeaderEvent, StopReason};

/// A Lease lock that a test can make panic or hang (ignoring its timeout, as a wedged thread would).
struct Sabotaged {
    inner: LeaseLock,
    panic: Arc<AtomicBool>,
    stuck: Arc<AtomicBool>,
}

impl Sabotaged {
    fn trap(&self) {
        if self.panic.load(Ordering::SeqCst) {
            panic!("sabotaged lock");
        }
        while self.stuck.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Lock for Sabotaged {
    fn get(&mut self, timeout: Duration) -> kube_elector::Result<Option<VersionedRecord>> {
        self.trap();
        self.inner.get(timeout)
    }
    fn create(
        &mut self,
        r: &LeaderElectionRecord,
        timeout: Duration,
    ) -> kube_elector::Result<VersionedRecord> {
        self.trap();
        self.inner.create(r, timeout)
    }
    fn update(
        &mut self,
        r: &LeaderElectionRecord,
        resource_version: &str,
        timeout: Duration,
    ) -> kube_elector::Result<VersionedRecord> {
        self.trap();
        self.inner.update(r, resource_version, timeout)
    }
    fn identity(&self) -> &str {
        self.inner.identity()
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

fn sabotaged(server: &ApiServer, name: &str) -> (Sabotaged, Arc<AtomicBool>, Arc<AtomicBool>) {
    let panic = Arc::new(AtomicBool::new(false));
    let stuck = Arc::new(AtomicBool::new(false));
    let lock = Sabotaged {
        inner: LeaseLock::new(&server.config(), "default", name, "a").unwrap(),
        panic: panic.clone(),
        stuck: stuck.clone(),
    };
    (lock, panic, stuck)
}

fn start(lock: Sabotaged) -> kube_elector::LeaderHandle {
    LeaderElector::with_lock(lock)
        .timing(common::timing(2, 1000, 100))
        .start()
        .unwrap()
}

#[test]
fn a_panic_in_the_renew_thread_is_reported_and_ends_leadership() {
    let server = ApiServer::start().unwrap();
    let (lock, panic, _) = sabotaged(&server, "panics");
    let h = start(lock);
    let rx = h.events();
    assert!(wait_until(Duration::from_secs(5), || h.is_leader()));
    panic.store(true, Ordering::SeqCst);
    let e = wait_event(&rx, Duration::from_secs(5), |e| {
        matches!(e, LeaderEvent::StoppedLeading { .. })
    })
    .expect("the panic is reported as an event");
    assert!(
        matches!(&e, LeaderEvent::StoppedLeading { reason: StopReason::Panicked(m) } if m.contains("sabotaged")),
        "{e:?}"
    );
    assert!(!h.is_leader());
    assert!(wait_until(Duration::from_secs(2), || !h.is_running()));
    assert!(matches!(h.stop(), Err(Error::RenewThreadPanicked(_))));
    assert!(!h.is_leader());
}

#[test]
fn a_stuck_renew_thread_fails_the_health_check_but_never_claims_leadership() {
    let server = ApiServer::start().unwrap();
    let (lock, _, stuck) = sabotaged(&server, "stuck");
    let h = start(lock);
    assert!(wait_until(Duration::from_secs(5), || h.is_leader()));
    assert!(h.check(Duration::from_millis(500)).is_ok());
    stuck.store(true, Ordering::SeqCst);
    // is_leader() turns false by the renew deadline even though the thread never comes back...
    assert!(wait_until(Duration::from_millis(1500), || !h.is_leader()));
    // ...and after lease_duration + tolerance the health check says the thread is wedged.
    assert!(wait_until(Duration::from_secs(5), || h
        .check(Duration::from_millis(500))
        .is_err()));
    let err = h.check(Duration::from_millis(500)).unwrap_err();
    assert!(
        matches!(err, Error::Unhealthy(_)) && err.to_string().contains("stuck"),
        "{err}"
    );
    stuck.store(false, Ordering::SeqCst);
    assert!(wait_until(Duration::from_secs(5), || h.is_leader()
        && h.check(Duration::ZERO).is_ok()));
    h.stop().unwrap();
    assert!(h.check(Duration::ZERO).is_ok(), "not leading: healthy");
}

#[test]
fn stats_count_renews_failures_and_slow_paths() {
    let server = ApiServer::start().unwrap();
    let h = common::start(server.config(), "stats", "a", common::timing(3, 2000, 100));
    let rx = h.events();
    assert!(wait_until(Duration::from_secs(5), || h.stats().renews_ok >= 3));
    let st = h.stats();
    assert!(
        st.is_leader && st.acquisitions == 1 && st.leader_changes_seen == 1,
        "{st:?}"
    );
    assert!(
        st.last_latency.is_some() && st.last_error.is_none(),
        "{st:?}"
    );
    // Two failed renews (fast path then slow path each fail), then recovery.
    server.inject(Fault::status(500).times(4));
    assert!(wait_until(Duration::from_secs(5), || h
        .stats()
        .renews_failed
        >= 2));
    assert!(h.stats().slow_path_renews >= 2);
    let failed = h.stats();
    assert!(
        failed.last_error.is_some() || failed.renews_ok > 3,
        "{failed:?}"
    );
    assert!(wait_until(Duration::from_secs(5), || h
        .stats()
        .last_error
        .is_none()));
    assert!(
        h.is_leader(),
        "short failures within the deadline keep leadership"
    );
    h.stop().unwrap();
    let events: Vec<_> = rx.try_iter().collect();
    assert_well_formed(&events);
    assert!(!h.stats().is_leader);
}

#[test]
fn a_custom_lock_is_checked_before_its_thread_starts() {
    let server = ApiServer::start().unwrap();
    let lock = LeaseLock::new(&server.config(), "default", "custom-bad", "").unwrap();
    let err = LeaderElector::with_lock(lock).start().unwrap_err();
    assert!(matches!(err, Error::InvalidElectionConfig(_)), "{err:?}");
    assert!(err.to_string().contains("identity"), "{err}");

    let lock = LeaseLock::new(&server.config(), "default", "custom-bad", "a").unwrap();
    let err = LeaderElector::with_lock(lock)
        .lease_duration(Duration::from_secs(2))
        .renew_deadline(Duration::from_secs(2))
        .start()
        .unwrap_err();
    assert!(matches!(err, Error::InvalidElectionConfig(_)), "{err:?}");
    assert!(err.to_string().contains("renew_deadline"), "{err}");
    // Nothing was written: a rejected elector never reached the server.
    assert!(server.lease("default", "custom-bad").is_none());
}
