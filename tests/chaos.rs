//! Chaos: N electors (threads, each with its own client and token) on one lease while a seeded driver
//! injects faults, stops, crashes (handles abandoned without release) and restarts. A sampler records
//! every `is_leader()` on one monotonic clock and fails on any overlap; after every stop or crash on a
//! healthy server the next leader must appear within the liveness bound.
//!
//! `cargo test` runs a short round. The soak run is opt-in:
//!
//!     KUBE_ELECTOR_SOAK_SECS=600 KUBE_ELECTOR_CHAOS_SEED=42 cargo test --release --test chaos -- --nocapture

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::rng::Rng;
use kube_elector::testing::{ApiServer, Fault};
use kube_elector::{LeaderElector, LeaderHandle, LeaderStatus};

const LEASE: Duration = Duration::from_secs(2);
const RENEW_DEADLINE: Duration = Duration::from_secs(1);
const RETRY: Duration = Duration::from_millis(200);
/// Scheduling slack on a shared 2-core machine.
const SLACK: Duration = Duration::from_millis(1000);

#[derive(Debug, Default)]
struct Report {
    faults: u64,
    stops: u64,
    crashes: u64,
    handoffs_measured: u64,
    longest_graceful_gap: Duration,
    longest_crash_gap: Duration,
    samples: u64,
    overlaps: u64,
}

struct Slot {
    token: String,
    handle: Option<LeaderHandle>,
    generation: u32,
}

fn start(server: &ApiServer, slot: &mut Slot) -> LeaderStatus {
    slot.generation += 1;
    let h = LeaderElector::builder(server.config_for(&slot.token), "chaos")
        .identity(format!("{}-gen{}", slot.token, slot.generation))
        .lease_duration(LEASE)
        .renew_deadline(RENEW_DEADLINE)
        .retry_period(RETRY)
        .start()
        .unwrap();
    let status = h.status();
    slot.handle = Some(h);
    status
}

/// Wait for any live candidate to lead; returns how long it took, or None past `bound`.
fn time_to_leader(statuses: &Mutex<Vec<LeaderStatus>>, bound: Duration) -> Option<Duration> {
    let t = Instant::now();
    while t.elapsed() < bound {
        if statuses.lock().unwrap().iter().any(LeaderStatus::is_leader) {
            return Some(t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}

fn run(seed: u64, duration: Duration, n: usize) -> Report {
    let tokens: Vec<String> = (0..n).map(|i| format!("e{i}")).collect();
    let mut builder = ApiServer::builder().tls(true);
    for t in &tokens {
        builder = builder.token(t.clone());
    }
    let server = builder.start().unwrap();
    let mut rng = Rng(seed | 1);
    let mut slots: Vec<Slot> = tokens
        .iter()
        .map(|t| Slot {
            token: t.clone(),
            handle: None,
            generation: 0,
        })
        .collect();
    let statuses = Arc::new(Mutex::new(Vec::new()));
    for slot in slots.iter_mut() {
        let s = start(&server, slot);
        statuses.lock().unwrap().push(s);
    }

    // The sampler: one pass over every candidate per millisecond, on one monotonic clock.
    let done = Arc::new(AtomicBool::new(false));
    let overlaps = Arc::new(AtomicU64::new(0));
    let samples = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (statuses, done, overlaps, samples) = (
            statuses.clone(),
            done.clone(),
            overlaps.clone(),
            samples.clone(),
        );
        std::thread::spawn(move || {
            while !done.load(Ordering::Acquire) {
                let leaders: Vec<String> = statuses
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|s: &&LeaderStatus| s.is_leader())
                    .map(|s| s.identity().to_string())
                    .collect();
                if leaders.len() > 1 {
                    eprintln!("OVERLAP: {leaders:?}");
                    overlaps.fetch_add(1, Ordering::SeqCst);
                }
                samples.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };

    let mut report = Report::default();
    let recovery = LEASE + RENEW_DEADLINE + RETRY.mul_f64(4.4) + SLACK;
    let crash_bound = LEASE + RETRY.mul_f64(2.2) + SLACK;
    let graceful_bound = RETRY.mul_f64(2.2) + SLACK;
    let end = Instant::now() + duration;
    assert!(
        time_to_leader(&statuses, recovery).is_some(),
        "a first leader"
    );
    while Instant::now() < end {
        let leader = slots
            .iter()
            .position(|s| s.handle.as_ref().is_some_and(LeaderHandle::is_leader));
        match rng.below(10) {
            // A fault, on one client or on all, for a random while; then the server is healthy again
            // and a leader must come back within the recovery bound.
            0..=3 => {
                report.faults += 1;
                let who = rng.below(n as u64 + 1) as usize;
                let scope = |f: Fault| {
                    if who < n {
                        f.for_token(tokens[who].clone())
                    } else {
                        f
                    }
                };
                let hold = rng.millis(100, 2500);
                let id = match rng.below(6) {
                    0 => Some(server.inject(scope(Fault::status(500)))),
                    1 => Some(server.inject(scope(Fault::status_retry_after(429, 1)))),
                    2 => Some(server.inject(scope(Fault::latency(rng.millis(50, 1500))))),
                    3 => Some(server.inject(scope(Fault::hang()))),
                    4 => Some(server.inject(scope(Fault::drop_connection()))),
                    _ => {
                        server.go_down();
                        None
                    }
                };
                std::thread::sleep(hold);
                match id {
                    Some(id) => server.remove_fault(id),
                    None => server.come_up(),
                }
                assert!(
                    time_to_leader(&statuses, recovery).is_some(),
                    "no leader {recovery:?} after a fault healed"
                );
            }
            // Stop the leader gracefully (it releases): the next one follows within about a retry.
            4..=5 if leader.is_some() => {
                let i = leader.unwrap();
                report.stops += 1;
                slots[i].handle.take().unwrap().stop().ok();
                match time_to_leader(&statuses, graceful_bound) {
                    Some(gap) => {
                        report.handoffs_measured += 1;
                        report.longest_graceful_gap = report.longest_graceful_gap.max(gap);
                    }
                    None => panic!(
                        "no leader within {graceful_bound:?} after a graceful stop (seed {seed})"
                    ),
                }
            }
            // Crash the leader (no release): the next one follows after the lease expires.
            6..=7 if leader.is_some() => {
                let i = leader.unwrap();
                report.crashes += 1;
                slots[i].handle.take().unwrap().abandon();
                match time_to_leader(&statuses, crash_bound) {
                    Some(gap) => {
                        report.handoffs_measured += 1;
                        report.longest_crash_gap = report.longest_crash_gap.max(gap);
                    }
                    None => panic!("no leader within {crash_bound:?} after a crash (seed {seed})"),
                }
            }
            _ => std::thread::sleep(rng.millis(50, 500)),
        }
        // Restart stopped candidates so that there are always followers.
        for (i, slot) in slots.iter_mut().enumerate() {
            if slot.handle.is_none() {
                let s = start(&server, slot);
                statuses.lock().unwrap()[i] = s;
            }
        }
    }
    done.store(true, Ordering::Release);
    sampler.join().unwrap();
    for slot in slots.iter_mut() {
        if let Some(h) = slot.handle.take() {
            h.stop().ok();
        }
    }
    report.samples = samples.load(Ordering::Relaxed);
    report.overlaps = overlaps.load(Ordering::SeqCst);
    report
}

#[test]
fn chaos_never_two_leaders_and_always_a_leader_again() {
    let seed = std::env::var("KUBE_ELECTOR_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_c0de);
    let secs = std::env::var("KUBE_ELECTOR_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let n = std::env::var("KUBE_ELECTOR_CHAOS_ELECTORS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let started = Instant::now();
    let report = run(seed, Duration::from_secs(secs), n);
    eprintln!(
        "chaos: seed {seed:#x}, {n} electors, {:?}: {report:?}",
        started.elapsed()
    );
    assert_eq!(report.overlaps, 0, "two leaders at once (seed {seed:#x})");
    assert!(report.samples > 1000, "{report:?}");
    assert!(
        report.faults + report.stops + report.crashes > 0,
        "{report:?}"
    );
}
