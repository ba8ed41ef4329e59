//! Drain, then release: a graceful stop, a step-down and a drop end the term at once, wait for the
//! term's leader work, and only then release the lock; work that outlives the drain keeps the lock, so
//! no follower starts before the lease expires.

mod common;

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{no_overlap, timing, wait_event, wait_until};
use kube_elector::testing::ApiServer;
use kube_elector::{Error, LeaderEvent, LeaderHandle, StopReason};

fn start(server: &ApiServer, lock: &str, id: &str) -> LeaderHandle {
    common::start(server.config(), lock, id, timing(2, 1500, 200))
}

/// When the last item of the leader work ended, set by the work itself.
type Ended = Arc<Mutex<Option<Instant>>>;

#[test]
fn stop_lets_the_item_in_flight_finish_before_it_releases() {
    let server = ApiServer::start().unwrap();
    let a = start(&server, "drain-stop", "a");
    let ended: Ended = Arc::default();
    let in_item = Arc::new(AtomicBool::new(false));
    let (e, busy) = (ended.clone(), in_item.clone());
    a.status()
        .run_while_leading(move |term| {
            while !term.is_cancelled() {
                busy.store(true, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(300)); // one item
                busy.store(false, Ordering::SeqCst);
                *e.lock().unwrap() = Some(Instant::now());
            }
        })
        .unwrap();
    assert!(wait_until(Duration::from_secs(5), || a.is_leader()));
    let b = start(&server, "drain-stop", "b");
    let b_events = b.events();
    assert!(wait_until(Duration::from_secs(5), || in_item.load(Ordering::SeqCst)));
    let stopping = Instant::now();
    a.stop().unwrap();
    let last_item = ended.lock().unwrap().expect("an item ended");
    assert!(
        last_item >= stopping,
        "the item in flight finished during stop()"
    );
    assert!(
        wait_event(&b_events, Duration::from_secs(3), |e| matches!(
            e,
            LeaderEvent::StartedLeading { .. }
        ))
        .is_some()
    );
    assert!(b.is_leader(), "the released lock is taken at once");
    assert!(stopping.elapsed() < Duration::from_secs(2));
}

#[test]
fn a_worker_stuck_past_the_drain_keeps_the_lock_until_the_lease_expires() {
    let server = ApiServer::start().unwrap();
    let a = common::candidate(server.config(), "drain-stuck", "a", timing(2, 1500, 200))
        .drain_timeout(Duration::from_millis(400))
        .start()
        .unwrap();
    a.status()
        .run_while_leading(|_term| {
            // Ignores its term: runs on for 4 s whatever happens.
            std::thread::sleep(Duration::from_secs(4));
        })
        .unwrap();
    assert!(wait_until(Duration::from_secs(5), || a.is_leader()));
    let b = start(&server, "drain-stuck", "b");
    assert!(wait_until(Duration::from_secs(5), || b.leader().as_deref()
        == Some("a")));
    let stopping = Instant::now();
    let err = a.stop().unwrap_err();
    let waited = stopping.elapsed();
    assert!(
        matches!(&err, Error::DrainTimedOut(d) if d.running == 1),
        "{err}"
    );
    assert!(
        err.to_string().contains("not released") && err.to_string().contains("drain_timeout"),
        "the error says what happened and what to do: {err}"
    );
    assert!(
        waited >= Duration::from_millis(350) && waited < Duration::from_millis(1500),
        "the drain waited its timeout: {waited:?}"
    );
    assert!(!a.is_leader());
    assert_eq!(
        server.lease_holder("default", "drain-stuck").as_deref(),
        Some("a"),
        "not released"
    );
    // The follower waits out the lease (2 s after the last renew it saw, which was before the stop).
    let quiet_until = stopping + Duration::from_millis(1500);
    while Instant::now() < quiet_until {
        assert!(
            !b.is_leader(),
            "b led {:?} after the stop",
            stopping.elapsed()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(wait_until(Duration::from_secs(4), || b.is_leader()));
}

#[test]
fn a_work_guard_on_a_thread_of_our_own_is_drained_too() {
    let server = ApiServer::start().unwrap();
    let a = start(&server, "drain-guard", "a");
    let term = a
        .wait_until_leader(Some(Duration::from_secs(5)))
        .expect("leads");
    let b = start(&server, "drain-guard", "b");
    let ended: Ended = Arc::default();
    let e = ended.clone();
    let worker = std::thread::spawn(move || {
        let guard = term.begin_work().expect("the term holds");
        std::thread::sleep(Duration::from_millis(400));
        *e.lock().unwrap() = Some(Instant::now());
        drop(guard);
        // The term is over now: no new unit may begin.
        assert!(term.begin_work().is_none());
    });
    std::thread::sleep(Duration::from_millis(100));
    let stopping = Instant::now();
    a.stop().unwrap();
    assert!(stopping.elapsed() >= Duration::from_millis(250));
    let done = ended.lock().unwrap().expect("the work ended");
    worker.join().unwrap();
    assert!(wait_until(Duration::from_secs(3), || b.is_leader()));
    assert!(done <= Instant::now());
}

#[test]
fn dropping_the_handle_drains_as_stop_does() {
    let server = ApiServer::start().unwrap();
    let a = start(&server, "drain-drop", "a");
    let ended: Ended = Arc::default();
    let e = ended.clone();
    a.status()
        .run_while_leading(move |term| {
            while !term.is_cancelled() {
                std::thread::sleep(Duration::from_millis(300));
                *e.lock().unwrap() = Some(Instant::now());
            }
        })
        .unwrap();
    assert!(wait_until(Duration::from_secs(5), || a.is_leader()));
    std::thread::sleep(Duration::from_millis(100));
    let dropping = Instant::now();
    drop(a);
    assert!(ended.lock().unwrap().is_some_and(|t| t >= dropping));
    assert_eq!(
        server.lease_holder("default", "drain-drop").as_deref(),
        Some("")
    );
}

#[test]
fn step_down_hands_leadership_on_and_campaigns_again_after_the_cool_down() {
    let server = ApiServer::start().unwrap();
    let a = start(&server, "step-down", "a");
    let a_events = a.events();
    assert!(wait_until(Duration::from_secs(5), || a.is_leader()));
    let b = start(&server, "step-down", "b");
    assert!(wait_until(Duration::from_secs(5), || b.leader().as_deref()
        == Some("a")));
    let stepping = Instant::now();
    assert!(a.step_down(Duration::from_secs(2)).unwrap(), "released");
    assert!(!a.is_leader());
    assert!(
        wait_event(&a_events, Duration::from_secs(1), |e| matches!(
            e,
            LeaderEvent::StoppedLeading {
                reason: StopReason::SteppedDown
            }
        ))
        .is_some()
    );
    assert!(
        wait_until(Duration::from_secs(2), || b.is_leader()),
        "another candidate leads within moments"
    );
    no_overlap(&[&a, &b], Duration::from_millis(300));
    // b stops during a's cool-down: a does not take the released lock before the cool-down ends...
    b.stop().unwrap();
    let released = Instant::now();
    while stepping.elapsed() < Duration::from_millis(1800) {
        assert!(!a.is_leader(), "a led during its cool-down");
        std::thread::sleep(Duration::from_millis(5));
    }
    // ...and then it campaigns again.
    assert!(wait_until(Duration::from_secs(3), || a.is_leader()));
    assert!(released.elapsed() < Duration::from_secs(4));
    assert!(a.is_running());
    // Not leading: nothing to give up.
    let c = start(&server, "step-down", "c");
    assert!(!c.step_down(Duration::from_millis(10)).unwrap());
}

#[test]
fn a_stop_during_a_step_downs_drain_waits_for_the_work_and_releases() {
    let server = ApiServer::start().unwrap();
    let a = Arc::new(start(&server, "step-down-stop", "a"));
    let ended: Ended = Arc::default();
    let in_item = Arc::new(AtomicBool::new(false));
    let (e, busy) = (ended.clone(), in_item.clone());
    a.status()
        .run_while_leading(move |term| {
            while !term.is_cancelled() {
                busy.store(true, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(400)); // one item
                *e.lock().unwrap() = Some(Instant::now());
            }
        })
        .unwrap();
    assert!(wait_until(Duration::from_secs(5), || in_item.load(Ordering::SeqCst)));
    let stepping = {
        let a = a.clone();
        std::thread::spawn(move || a.step_down(Duration::from_secs(5)))
    };
    // The term has ended; its item is still running when the stop comes.
    assert!(wait_until(Duration::from_secs(2), || !a.is_leader()));
    let stopping = Instant::now();
    a.stop().expect(
        "the step-down's drain is the stop's too: the item ends within the term's deadline",
    );
    let last = ended.lock().unwrap().expect("the item in flight ended");
    assert!(last >= stopping, "stop() waited for the item in flight");
    let _ = stepping.join().unwrap();
    assert_eq!(
        server.lease_holder("default", "step-down-stop").as_deref(),
        Some(""),
        "released"
    );
}

#[test]
fn waiting_for_leadership_ends_with_our_own_shutdown() {
    let server = ApiServer::start().unwrap();
    let a = start(&server, "wait-or", "a");
    assert!(wait_until(Duration::from_secs(5), || a.is_leader()));
    let b = start(&server, "wait-or", "b");
    let (tx, shutdown) = crossbeam_channel::bounded::<()>(1);
    let status = b.status();
    let waiter = std::thread::spawn(move || status.wait_until_leader_or(&shutdown, None));
    std::thread::sleep(Duration::from_millis(200));
    let sent = Instant::now();
    tx.send(()).unwrap();
    assert!(waiter.join().unwrap().is_none());
    assert!(sent.elapsed() < Duration::from_millis(500));
    // And it returns the term once we lead.
    let (_tx, never) = crossbeam_channel::bounded::<()>(1);
    let status = b.status();
    let waiter = std::thread::spawn(move || {
        status.wait_until_leader_or(&never, Some(Duration::from_secs(5)))
    });
    a.stop().unwrap();
    let term = waiter.join().unwrap().expect("b leads after a released");
    assert!(!term.is_cancelled());
}

#[test]
fn after_a_loss_the_elector_leads_again_only_once_the_old_terms_work_has_ended() {
    let server = common::tls_server(&["a"]);
    let a = common::candidate(
        server.config_for("a"),
        "drain-loss",
        "a",
        timing(2, 1500, 200),
    )
    .drain_timeout(Duration::from_secs(5))
    .watch(false)
    .start()
    .unwrap();
    let events = a.events();
    let ended: Ended = Arc::default();
    let e = ended.clone();
    a.status()
        .run_while_leading(move |_term| {
            // Ignores its term for 3.5 s, once.
            if e.lock().unwrap().is_none() {
                std::thread::sleep(Duration::from_millis(3500));
                *e.lock().unwrap() = Some(Instant::now());
            }
        })
        .unwrap();
    assert!(wait_until(Duration::from_secs(5), || a.is_leader()));
    // Renews hang: the term lapses at the renew deadline; then the server answers again at once.
    let hang = server.inject(
        kube_elector::testing::Fault::hang()
            .for_token("a")
            .for_verb("PUT"),
    );
    assert!(
        wait_event(&events, Duration::from_secs(4), |e| matches!(
            e,
            LeaderEvent::StoppedLeading { .. }
        ))
        .is_some()
    );
    server.remove_fault(hang);
    // Without the drain it would take its own lock back within a retry or two; it waits for the work.
    let started = wait_event(&events, Duration::from_secs(8), |e| {
        matches!(e, LeaderEvent::StartedLeading { .. })
    });
    assert!(started.is_some(), "leads again");
    let led_again = Instant::now();
    let work_ended = ended
        .lock()
        .unwrap()
        .expect("the old term's work ended first");
    assert!(work_ended <= led_again);
}
