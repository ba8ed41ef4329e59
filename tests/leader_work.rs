//! Leader-only work on worker threads, as a service does it: event loops that end by themselves, no
//! event missed before the start, term tokens that end the moment leadership does, a handle shared
//! between threads. Timing bounds are generous except where the promise is about timing itself.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{assert_well_formed, wait_until};
use kube_elector::testing::{ApiServer, Fault};
use kube_elector::{Config, LeaderEvent, LeaderHandle, StopReason};

fn elector(
    config: Config,
    name: &str,
    id: &str,
) -> kube_elector::LeaderElectorBuilder<kube_elector::runner::Managed> {
    common::candidate(config, name, id, common::timing(2, 1000, 100))
}

fn start(config: Config, name: &str, id: &str) -> LeaderHandle {
    elector(config, name, id).start().unwrap()
}

/// A TLS server (credentials never go over plain http) knowing a token per candidate, so that faults
/// can hit one of them.
fn two_tokens() -> ApiServer {
    common::tls_server(&["token-a", "token-b"])
}

const LONG: Duration = Duration::from_secs(20);

#[test]
fn a_logger_loop_ends_by_itself_after_stop() {
    let server = ApiServer::start().unwrap();
    let builder = elector(server.config(), "logger", "a");
    let early = builder.events();
    let handle = builder.start().unwrap();
    let late = handle.events();
    // A status clone outliving the handle must not keep the streams open.
    let status = handle.status();
    let logger = |rx: crossbeam_channel::Receiver<LeaderEvent>| {
        std::thread::spawn(move || rx.iter().collect::<Vec<_>>())
    };
    let (early_log, late_log) = (logger(early), logger(late));
    assert!(handle.wait_until_leader(Some(LONG)).is_some());
    handle.stop().unwrap();

    let (done_tx, done_rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let logs = (early_log.join().unwrap(), late_log.join().unwrap());
        let _ = done_tx.send(logs);
    });
    let (early, late) = done_rx
        .recv_timeout(LONG)
        .expect("both logger loops end once the elector has stopped");
    for log in [&early, &late] {
        assert_well_formed(log);
        assert_eq!(
            log.last(),
            Some(&LeaderEvent::StoppedLeading {
                reason: StopReason::Stopped
            }),
            "{log:?}"
        );
    }
    // A subscription taken after the stop gets the state so far and ends at once.
    assert!(
        status
            .events()
            .iter()
            .all(|e| matches!(e, LeaderEvent::NewLeader { .. }))
    );
    assert!(status.is_stopped());
}

#[test]
fn subscribing_on_the_builder_sees_every_event_from_the_first() {
    let server = ApiServer::start().unwrap();
    let builder = elector(server.config(), "first-events", "a");
    let events = builder.events();
    let handle = builder.start().unwrap();
    assert_eq!(
        events.recv_timeout(LONG).unwrap(),
        LeaderEvent::NewLeader {
            identity: Some("a".into())
        }
    );
    let started = events.recv_timeout(LONG).unwrap();
    assert!(
        matches!(started, LeaderEvent::StartedLeading { .. }),
        "{started:?}"
    );
    assert!(handle.is_leader());
    drop(handle);
    assert_eq!(
        events.iter().collect::<Vec<_>>(),
        [LeaderEvent::StoppedLeading {
            reason: StopReason::Stopped
        }]
    );
}

#[test]
fn a_failed_start_ends_the_builders_subscription() {
    let server = ApiServer::start().unwrap();
    let builder = elector(server.config(), "Not A Name", "a");
    let events = builder.events();
    assert!(builder.start().is_err());
    assert_eq!(
        events.recv_timeout(LONG),
        Err(crossbeam_channel::RecvTimeoutError::Disconnected)
    );
}

/// The promise: a term token ends within a millisecond of `is_leader()` turning false, even while the
/// renew thread hangs on the server. One core polls `is_leader()`, another sleeps in
/// `wait_cancelled`; their instants are compared. A shared machine can delay one wake-up, so the best
/// of three tries must meet the millisecond, and every try must be in order and within 100 ms.
#[test]
fn a_term_token_ends_within_a_millisecond_of_is_leader_on_a_hung_server() {
    let mut lags = Vec::new();
    for attempt in 0..3 {
        let server = ApiServer::start().unwrap();
        let name = format!("hung-{attempt}");
        let handle = start(server.config(), &name, "a");
        let term = handle.wait_until_leader(Some(LONG)).expect("leads");
        assert!(!term.is_cancelled());
        let fault = server.inject(Fault::hang());
        let waiter = {
            let (term, status) = (term.clone(), handle.status());
            std::thread::spawn(move || {
                let cancelled = term.wait_cancelled(LONG);
                let at = Instant::now();
                (cancelled, at, status.is_leader())
            })
        };
        let false_at = loop {
            if !handle.is_leader() {
                break Instant::now();
            }
            std::hint::spin_loop();
        };
        assert!(term.is_cancelled(), "is_cancelled is exact");
        let (cancelled, woke_at, leader_when_woken) = waiter.join().unwrap();
        assert!(cancelled);
        assert!(
            !leader_when_woken,
            "the token never ends before leadership does"
        );
        let lag = woke_at.saturating_duration_since(false_at);
        assert!(lag < Duration::from_millis(100), "lag {lag:?}");
        lags.push(lag);
        server.remove_fault(fault);
        handle.abandon();
        if lag < Duration::from_millis(1) {
            break;
        }
    }
    eprintln!("term token ended this long after is_leader() turned false: {lags:?}");
    let best = lags.iter().min().unwrap();
    assert!(
        *best < Duration::from_millis(1),
        "the token ended {lags:?} after is_leader() turned false"
    );
}

#[test]
fn a_late_worker_reads_the_current_term_and_an_old_token_stays_cancelled() {
    let server = two_tokens();
    let a = start(server.config_for("token-a"), "late", "a");
    let first = a.wait_until_leader(Some(LONG)).expect("a leads");
    let late = a
        .status()
        .term()
        .expect("a worker starting now gets the term");
    assert_eq!(late.transitions(), first.transitions());
    assert!(!late.is_cancelled());

    let b = start(server.config_for("token-b"), "late", "b");
    // a's server hangs: its term ends at the deadline, and b takes over after the lease.
    let hang = server.inject(Fault::hang().for_token("token-a"));
    assert!(first.wait_cancelled(LONG));
    assert!(late.is_cancelled());
    assert!(a.status().term().is_none());
    let b_term = b.wait_until_leader(Some(LONG)).expect("b takes over");
    assert!(b_term.transitions() > first.transitions());
    server.remove_fault(hang);

    // b hands back; a leads again, in a new term with a new token.
    b.stop().unwrap();
    let second = a.wait_until_leader(Some(LONG)).expect("a leads again");
    assert!(second.transitions() > b_term.transitions());
    assert!(a.is_leader());
    assert!(first.is_cancelled(), "an old term stays over in a new one");
    assert!(first.wait_cancelled(Duration::from_secs(1)));
    assert!(!second.is_cancelled());
}

#[test]
fn run_while_leading_runs_once_per_term_and_ends_with_the_elector() {
    let server = two_tokens();
    let a = start(server.config_for("token-a"), "per-term", "a");
    let terms = Arc::new(std::sync::Mutex::new(Vec::new()));
    let running = Arc::new(AtomicUsize::new(0));
    let worker = {
        let (terms, running) = (terms.clone(), running.clone());
        let status = a.status();
        a.status()
            .run_while_leading(move |term| {
                assert!(status.is_leader() || term.is_cancelled());
                terms.lock().unwrap().push(term.transitions());
                running.fetch_add(1, Ordering::SeqCst);
                while !term.wait_cancelled(Duration::from_millis(20)) {}
                running.fetch_sub(1, Ordering::SeqCst);
            })
            .unwrap()
    };
    assert!(wait_until(LONG, || terms.lock().unwrap().len() == 1));

    // A hand-over and back: a second term.
    let b = start(server.config_for("token-b"), "per-term", "b");
    let hang = server.inject(Fault::hang().for_token("token-a"));
    assert!(b.wait_until_leader(Some(LONG)).is_some());
    assert_eq!(
        running.load(Ordering::SeqCst),
        0,
        "the first term's work ended"
    );
    server.remove_fault(hang);
    b.stop().unwrap();
    assert!(wait_until(LONG, || terms.lock().unwrap().len() == 2));

    a.stop().unwrap();
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let _ = tx.send(worker.join().is_ok());
    });
    assert_eq!(
        rx.recv_timeout(LONG),
        Ok(true),
        "the work thread ends with the elector"
    );
    let terms = terms.lock().unwrap();
    assert!(terms[1] > terms[0], "{terms:?}");
    assert_eq!(running.load(Ordering::SeqCst), 0);
}

#[test]
fn the_handle_is_shared_between_a_signal_thread_and_a_health_thread() {
    let server = ApiServer::start().unwrap();
    let handle = Arc::new(start(server.config(), "shared-handle", "a"));
    assert!(handle.wait_until_leader(Some(LONG)).is_some());
    let status = handle.status();
    let checks = Arc::new(AtomicUsize::new(0));
    let health = {
        let checks = checks.clone();
        std::thread::spawn(move || {
            while !status.is_stopped() {
                assert!(status.check(Duration::from_secs(20)).is_ok());
                let _ = status.stats();
                checks.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    assert!(wait_until(LONG, || checks.load(Ordering::SeqCst) > 0));
    let signal = {
        let handle = handle.clone();
        std::thread::spawn(move || handle.stop())
    };
    signal.join().unwrap().unwrap();
    // A second stop, from another thread, is a no-op.
    handle.stop().unwrap();
    assert!(!handle.is_leader());
    assert!(!handle.is_running());
    health.join().unwrap();
    assert_eq!(
        server
            .lease_holder("default", "shared-handle")
            .unwrap_or_default(),
        "",
        "released"
    );
}

#[test]
fn handles_statuses_and_terms_cross_threads() {
    fn shared_between_threads<T: Send + Sync + 'static>() {}
    shared_between_threads::<LeaderHandle>();
    shared_between_threads::<kube_elector::LeaderStatus>();
    shared_between_threads::<kube_elector::Term>();
    shared_between_threads::<kube_elector::metrics::Metrics>();
}
