//! Chaos on a real kube-apiserver: two groups of five electors, one group following by watch and one by
//! polling, each on its own Lease, every elector behind its own fault-injecting loopback relay. Every
//! 1–3 s a seeded driver picks one fault and deals it to both groups at the same moment, to the elector
//! in the same role in each (the leader, or the same-numbered follower): a crash and restart (no
//! release), a graceful stop and restart, the relay swallowing everything for 1–6 s (the connections
//! that lost bytes stay half-open), the relay delaying each chunk 50–400 ms for 1–6 s, or the relay
//! closing every connection. A sampler reads every elector's `is_leader()` every 2 ms: it fails on two
//! leaders in a group at once, and measures the share of time each group had a leader. Watching must
//! keep a leader at least as much of the time as polling (within a margin for a short run's noise).
//!
//! `cargo test` runs a 40 s round (the real-server suite; skipped without `KUBEBUILDER_ASSETS`). Longer:
//!
//! ```sh
//! KUBEBUILDER_ASSETS=/path/to/assets KUBE_ELECTOR_REAL_CHAOS_SECS=300 KUBE_ELECTOR_CHAOS_SEED=7 \
//!     cargo test --release --test real_chaos -- --nocapture
//! ```

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::relay::Relay;
use common::rng::Rng;
use kube_elector::testing::ControlPlane;
use kube_elector::{Config, LeaderElector, LeaderHandle, LeaderStatus};

const LEASE: Duration = Duration::from_secs(4);
const RENEW_DEADLINE: Duration = Duration::from_secs(3);
const RETRY: Duration = Duration::from_millis(500);
const ELECTORS: usize = 5;
/// How much less of the time a watching group may have a leader than a polling one in a short run.
const NOISE: f64 = 0.05;

#[derive(Debug, Clone, Copy)]
enum Fault {
    Crash,
    Stop,
    Swallow(Duration),
    Slow(Duration),
    Reset,
}

/// One group: its electors, their relays, and what the sampler reads.
struct Group {
    watch: bool,
    lease: String,
    relays: Vec<Relay>,
    handles: Vec<LeaderHandle>,
    statuses: Arc<Mutex<Vec<LeaderStatus>>>,
    config: Box<dyn Fn(u16) -> Config + Send + Sync>,
}

impl Group {
    fn start(&self, i: usize) -> LeaderHandle {
        LeaderElector::builder((self.config)(self.relays[i].port()), &self.lease)
            .identity(format!("{}-{i}", self.lease))
            .lease_duration(LEASE)
            .renew_deadline(RENEW_DEADLINE)
            .retry_period(RETRY)
            .watch(self.watch)
            .start()
            .expect("valid settings")
    }

    fn leader(&self) -> Option<usize> {
        self.handles.iter().position(LeaderHandle::is_leader)
    }

    fn restart(&mut self, i: usize) {
        let h = self.start(i);
        self.statuses.lock().unwrap()[i] = h.status();
        self.handles[i] = h;
    }

    fn deal(&mut self, fault: Fault, i: usize) {
        match fault {
            Fault::Crash => {
                self.handles[i].abandon();
                self.restart(i);
            }
            Fault::Stop => {
                let _ = self.handles[i].stop();
                self.restart(i);
            }
            Fault::Swallow(d) => self.relays[i].swallow(d),
            Fault::Slow(d) => self.relays[i].slow(d, 50, 400),
            Fault::Reset => self.relays[i].reset(),
        }
    }
}

#[derive(Default, Debug, Clone, Copy)]
struct Tally {
    samples: u64,
    led: u64,
    overlaps: u64,
}

fn sample(statuses: &Mutex<Vec<LeaderStatus>>, t: &mut Tally) {
    let leaders = statuses
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.is_leader())
        .count();
    t.samples += 1;
    t.led += u64::from(leaders > 0);
    t.overlaps += u64::from(leaders > 1);
}

#[test]
fn watching_keeps_a_leader_as_much_as_polling_under_chaos_and_never_two() {
    if !common::real::available() {
        return;
    }
    let cp = ControlPlane::start().unwrap_or_else(|e| panic!("{e}"));
    let seconds: u64 = std::env::var("KUBE_ELECTOR_REAL_CHAOS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let seed: u64 = std::env::var("KUBE_ELECTOR_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let target: SocketAddr = ([127, 0, 0, 1], cp.port()).into();

    let mut groups: Vec<Group> = [true, false]
        .into_iter()
        .map(|watch| {
            let (ca, token, ns) = (
                cp.ca_pem().to_string(),
                cp.user_token().to_string(),
                cp.namespace().to_string(),
            );
            let mut g = Group {
                watch,
                lease: if watch { "chaos-watch" } else { "chaos-poll" }.into(),
                relays: (0..ELECTORS)
                    .map(|i| Relay::start(target, seed.wrapping_add(i as u64 + 1)).unwrap())
                    .collect(),
                handles: Vec::new(),
                statuses: Arc::new(Mutex::new(Vec::new())),
                config: Box::new(move |port| {
                    Config::new(format!("https://127.0.0.1:{port}"))
                        .with_ca_pem(ca.as_bytes().to_vec())
                        .with_token(&token)
                        .with_namespace(&ns)
                }),
            };
            g.handles = (0..ELECTORS).map(|i| g.start(i)).collect();
            *g.statuses.lock().unwrap() = g.handles.iter().map(LeaderHandle::status).collect();
            g
        })
        .collect();
    let start = Instant::now();
    while groups.iter().any(|g| g.leader().is_none()) {
        assert!(start.elapsed() < Duration::from_secs(30), "no first leader");
        std::thread::sleep(Duration::from_millis(10));
    }

    // The sampler: every 2 ms, both groups.
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let statuses: Vec<_> = groups.iter().map(|g| g.statuses.clone()).collect();
        let done = done.clone();
        std::thread::spawn(move || {
            let mut tallies = [Tally::default(); 2];
            while !done.load(Ordering::Acquire) {
                for (s, t) in statuses.iter().zip(tallies.iter_mut()) {
                    sample(s, t);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            tallies
        })
    };

    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut dealt = Vec::new();
    let end = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < end {
        std::thread::sleep(rng.between(Duration::from_secs(1), Duration::from_secs(3)));
        let fault = match rng.below(5) {
            0 => Fault::Crash,
            1 => Fault::Stop,
            2 => Fault::Swallow(rng.between(Duration::from_secs(1), Duration::from_secs(6))),
            3 => Fault::Slow(rng.between(Duration::from_secs(1), Duration::from_secs(6))),
            _ => Fault::Reset,
        };
        let at_leader = rng.below(2) == 0;
        let any = rng.below(ELECTORS as u64) as usize;
        // Both groups at once, each on its own thread, to the elector in the same role: the leader,
        // or the same-numbered follower.
        std::thread::scope(|s| {
            for g in groups.iter_mut() {
                let i = match g.leader() {
                    Some(l) if at_leader => l,
                    Some(l) => (0..ELECTORS)
                        .filter(|i| *i != l)
                        .nth(any % (ELECTORS - 1))
                        .unwrap(),
                    None => any,
                };
                s.spawn(move || g.deal(fault, i));
            }
        });
        dealt.push((fault, at_leader));
    }
    done.store(true, Ordering::Release);
    let [watch, poll] = sampler.join().unwrap();
    for g in &mut groups {
        for h in &mut g.handles {
            h.abandon();
        }
    }

    let share = |t: &Tally| t.led as f64 / t.samples.max(1) as f64;
    let count = |f: fn(&Fault) -> bool| dealt.iter().filter(|(d, _)| f(d)).count();
    println!(
        "seed {seed}, {seconds} s, {} faults (crash {}, stop {}, swallow {}, slow {}, reset {}; {} at the leader)",
        dealt.len(),
        count(|f| matches!(f, Fault::Crash)),
        count(|f| matches!(f, Fault::Stop)),
        count(|f| matches!(f, Fault::Swallow(_))),
        count(|f| matches!(f, Fault::Slow(_))),
        count(|f| matches!(f, Fault::Reset)),
        dealt.iter().filter(|(_, l)| *l).count(),
    );
    println!(
        "leader present: watch {:.3} ({} samples), poll {:.3} ({} samples); overlaps: watch {}, poll {}",
        share(&watch),
        watch.samples,
        share(&poll),
        poll.samples,
        watch.overlaps,
        poll.overlaps
    );
    assert_eq!(
        watch.overlaps, 0,
        "two watching leaders at once (seed {seed})"
    );
    assert_eq!(
        poll.overlaps, 0,
        "two polling leaders at once (seed {seed})"
    );
    assert!(!dealt.is_empty(), "the driver dealt no fault");
    assert!(
        share(&watch) + NOISE >= share(&poll),
        "watching kept a leader {:.3} of the time, polling {:.3} (seed {seed})",
        share(&watch),
        share(&poll)
    );
}
