//! Handoff and takeover times, on the embedded API server and on a real kube-apiserver started through
//! `testing::ControlPlane`. Two electors in this process take turns on one Lease:
//!
//! - **handoff**: from the moment the leader is told to `stop()` until the follower leads. The leader does
//!   leader-only work meanwhile (`--item`, default 50 ms items through `run_while_leading`): `stop()`
//!   lets the item in flight finish before it releases, so the handoff is that drain plus the protocol's
//!   own part, both reported;
//! - **takeover**: the leader is abandoned as if it had crashed (no release); measured from the moment its
//!   lease expires (its last `renewTime` plus the lease duration) until the follower leads. A negative
//!   figure would mean the follower took a lease that had not yet expired: the example fails if it sees one.
//!
//! Each figure is the median and max over `--runs` turns (default 10). The real server needs
//! `KUBEBUILDER_ASSETS` pointing at a directory with `kube-apiserver` and `etcd` (envtest's assets):
//!
//!     cargo run --release --example handoff                              # embedded server
//!     KUBEBUILDER_ASSETS=/path/to/assets cargo run --release --example handoff -- --server both
//!     cargo run --release --example handoff -- --server real --mode poll --runs 20

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use kube_elector::lock::{LeaseLock, Lock};
use kube_elector::testing::{ApiServer, ControlPlane};
use kube_elector::{Config, LeaderElector, LeaderHandle};

const LEASE: Duration = Duration::from_secs(4);
const RENEW_DEADLINE: Duration = Duration::from_secs(3);
const RETRY: Duration = Duration::from_millis(500);
const NAME: &str = "handoff";

struct Target {
    label: &'static str,
    config: Config,
    namespace: String,
}

/// When the leader work's last item ended.
type LastItem = Arc<Mutex<Option<Instant>>>;

/// A candidate doing items of `item` while it leads (none when zero).
fn candidate(
    t: &Target,
    identity: &str,
    watch: bool,
    item: Duration,
    last: &LastItem,
) -> LeaderHandle {
    let handle = LeaderElector::builder(t.config.clone(), NAME)
        .namespace(&t.namespace)
        .identity(identity)
        .lease_duration(LEASE)
        .renew_deadline(RENEW_DEADLINE)
        .retry_period(RETRY)
        .watch(watch)
        .start()
        .expect("valid settings");
    if !item.is_zero() {
        let last = last.clone();
        handle
            .status()
            .run_while_leading(move |term| {
                while !term.is_cancelled() {
                    std::thread::sleep(item);
                    *last.lock().unwrap() = Some(Instant::now());
                }
            })
            .expect("a worker thread");
    }
    handle
}

/// Spins (100 µs steps) until `h` leads; returns when it was seen leading.
fn wait_leading(h: &LeaderHandle, bound: Duration) -> Option<(Instant, DateTime<Utc>)> {
    let start = Instant::now();
    while start.elapsed() < bound {
        if h.is_leader() {
            return Some((Instant::now(), Utc::now()));
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    None
}

/// When the current holder's lease runs out, by the lock's own record.
fn expiry(t: &Target) -> DateTime<Utc> {
    let mut lock = LeaseLock::new(&t.config, &t.namespace, NAME, "observer").expect("lock");
    let current = lock
        .get(Duration::from_secs(5))
        .expect("read the lease")
        .expect("the lease exists");
    let renewed = current.record.renew_time.expect("a renewTime");
    renewed + chrono::Duration::seconds(i64::from(current.record.lease_duration_seconds))
}

fn median_max(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[v.len() - 1])
}

/// Samples in milliseconds: handoffs, the drain part of each, and crash takeovers.
struct Samples {
    handoffs: Vec<f64>,
    drains: Vec<f64>,
    takeovers: Vec<f64>,
}

fn measure(t: &Target, watch: bool, runs: usize, item: Duration) -> Samples {
    let last: LastItem = Arc::default();
    let mut leader = candidate(t, "a", watch, item, &last);
    wait_leading(&leader, LEASE * 4).expect("a first leader");
    let mut follower = candidate(t, "b", watch, item, &last);
    // Let the follower see the lock before the first turn.
    std::thread::sleep(RETRY * 2);

    let (mut handoffs, mut drains) = (Vec::new(), Vec::new());
    for n in 0..runs {
        // Stop at a different point of an item each time.
        std::thread::sleep(item.mul_f64(n as f64 / runs as f64));
        let told = Instant::now();
        leader.stop().expect("release");
        let (led, _) =
            wait_leading(&follower, LEASE * 3).expect("the follower leads after a handoff");
        handoffs.push(led.duration_since(told).as_secs_f64() * 1e3);
        let drained = last
            .lock()
            .unwrap()
            .filter(|t| *t >= told)
            .map_or(0.0, |t| t.duration_since(told).as_secs_f64() * 1e3);
        drains.push(drained);
        let identity = leader.identity().to_string();
        leader = std::mem::replace(&mut follower, candidate(t, &identity, watch, item, &last));
        std::thread::sleep(RETRY * 2);
    }

    let mut takeovers = Vec::new();
    for _ in 0..runs {
        leader.abandon();
        // A renew cut short by the crash may still land: read the record once it has settled.
        std::thread::sleep(Duration::from_millis(100));
        let expires = expiry(t);
        let (_, led_at) =
            wait_leading(&follower, LEASE * 3).expect("the follower leads after a crash");
        let after = (led_at - expires).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e3;
        assert!(
            after >= 0.0,
            "{}: the follower led {:.1} ms before the crashed leader's lease expired",
            t.label,
            -after
        );
        takeovers.push(after);
        let identity = leader.identity().to_string();
        leader = std::mem::replace(&mut follower, candidate(t, &identity, watch, item, &last));
        std::thread::sleep(RETRY * 2);
    }
    leader.stop().ok();
    follower.stop().ok();
    Samples {
        handoffs,
        drains,
        takeovers,
    }
}

fn usage() -> ! {
    eprintln!(
        "handoff: use --server embedded|real|both --mode watch|poll|both --runs N --item MS (the real server needs KUBEBUILDER_ASSETS)"
    );
    std::process::exit(2);
}

fn main() {
    // The library's log lines under the output: `RUST_LOG=info` (or `debug`) to see them.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let mut server = if ControlPlane::assets_from_env().is_some() {
        "both".to_string()
    } else {
        "embedded".to_string()
    };
    let mut mode = "watch".to_string();
    let mut runs = 10usize;
    let mut item = Duration::from_millis(50);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--server" => server = v,
            "--mode" => mode = v,
            "--runs" => runs = v.parse().ok().filter(|n| *n > 0).unwrap_or_else(|| usage()),
            "--item" => item = Duration::from_millis(v.parse().unwrap_or_else(|_| usage())),
            _ => usage(),
        }
    }
    let modes: Vec<bool> = match mode.as_str() {
        "watch" => vec![true],
        "poll" => vec![false],
        "both" => vec![true, false],
        _ => usage(),
    };

    // Both servers live for the whole run; each target borrows one.
    let embedded = matches!(server.as_str(), "embedded" | "both")
        .then(|| ApiServer::start().expect("embedded API server"));
    let real = matches!(server.as_str(), "real" | "both").then(|| {
        ControlPlane::start().unwrap_or_else(|e| {
            eprintln!("handoff: {e}");
            std::process::exit(1);
        })
    });
    if embedded.is_none() && real.is_none() {
        usage();
    }
    let mut targets = Vec::new();
    if let Some(s) = &embedded {
        targets.push(Target {
            label: "embedded",
            config: s.config(),
            namespace: "default".into(),
        });
    }
    if let Some(cp) = &real {
        targets.push(Target {
            label: "kube-apiserver",
            config: cp.admin(),
            namespace: cp.namespace().to_string(),
        });
    }

    println!(
        "lease {LEASE:?}, renew deadline {RENEW_DEADLINE:?}, retry {RETRY:?}, leader work in items of {item:?}; {runs} handoffs and {runs} crash takeovers per row"
    );
    println!(
        "{:<15} {:<6} {:>26} {:>14} {:>24} {:>38}",
        "server",
        "mode",
        "handoff median / max (ms)",
        "drain median",
        "handoff - drain median",
        "takeover after expiry median / max (ms)"
    );
    for t in &targets {
        for &watch in &modes {
            let s = measure(t, watch, runs, item);
            let protocol: Vec<f64> = s
                .handoffs
                .iter()
                .zip(&s.drains)
                .map(|(h, d)| h - d)
                .collect();
            let (hm, hx) = median_max(s.handoffs);
            let (dm, _) = median_max(s.drains);
            let (pm, _) = median_max(protocol);
            let (tm, tx) = median_max(s.takeovers.clone());
            let min = s.takeovers.iter().copied().fold(f64::INFINITY, f64::min);
            println!(
                "{:<15} {:<6} {:>14.1} / {:>8.1} {:>14.1} {:>24.1} {:>24.1} / {:>8.1}   (earliest {:.1} ms after expiry)",
                t.label,
                if watch { "watch" } else { "poll" },
                hm,
                hx,
                dm,
                pm,
                tm,
                tx,
                min
            );
        }
    }
}
