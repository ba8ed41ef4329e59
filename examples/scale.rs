//! Scale harness: N followers (default 1, 10 and 100) on one lock against the embedded API server, polling
//! and watching side by side. For each it reports the API requests per second the server sees, the
//! process's CPU time per second and RSS, the library's threads per elector, and handoff (graceful stop)
//! and failover (crash) times, median and max, timed from the moment the leader is told to go. The server
//! runs in the same process, so CPU and RSS include it.
//!
//!     cargo run --release --example scale
//!     cargo run --release --example scale -- --followers 1,10,100 --seconds 10 --repeats 5

use std::time::{Duration, Instant};

#[path = "common/proc_stats.rs"]
mod proc_stats;

use kube_elector::testing::ApiServer;
use kube_elector::{LeaderElector, LeaderHandle, LeaderStatus};
use proc_stats::{cpu_time, rss_mib, threads_named};

const LEASE: Duration = Duration::from_secs(2);
const RENEW_DEADLINE: Duration = Duration::from_secs(1);
const RETRY: Duration = Duration::from_millis(200);

fn candidate(server: &ApiServer, n: usize, watch: bool) -> LeaderHandle {
    LeaderElector::builder(server.config(), "scale")
        .identity(format!("c{n}"))
        .lease_duration(LEASE)
        .renew_deadline(RENEW_DEADLINE)
        .retry_period(RETRY)
        .watch(watch)
        .start()
        .expect("valid settings")
}

fn time_to_leader(statuses: &[LeaderStatus], bound: Duration) -> Option<Duration> {
    let t = Instant::now();
    while t.elapsed() < bound {
        if statuses.iter().any(LeaderStatus::is_leader) {
            return Some(t.elapsed());
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    None
}

fn median_max(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (
        v.get(v.len() / 2).copied().unwrap_or_default(),
        v.last().copied().unwrap_or_default(),
    )
}

struct Row {
    mode: &'static str,
    followers: usize,
    requests_per_sec: f64,
    cpu_per_sec: f64,
    rss_mib: f64,
    threads_per_elector: f64,
    handoff: (Duration, Duration),
    failover: (Duration, Duration),
}

fn run(followers: usize, watch: bool, seconds: u64, repeats: usize) -> Row {
    let server = ApiServer::start().expect("embedded API server");
    let mut next = 0;
    let mut spawn = |server: &ApiServer| {
        next += 1;
        candidate(server, next, watch)
    };
    let mut handles: Vec<LeaderHandle> = (0..=followers).map(|_| spawn(&server)).collect();
    let statuses = |hs: &[LeaderHandle]| hs.iter().map(LeaderHandle::status).collect::<Vec<_>>();
    time_to_leader(&statuses(&handles), Duration::from_secs(10)).expect("a first leader");
    std::thread::sleep(Duration::from_secs(1));
    // The library's own threads (the embedded server's per-connection threads are not the client's).
    let threads = threads_named("kube-elector");

    server.reset_counters();
    let cpu0 = cpu_time();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    let window = t0.elapsed().as_secs_f64();
    let requests_per_sec = server.total_requests() as f64 / window;
    let cpu1 = cpu_time();
    let cpu_per_sec = cpu1.saturating_sub(cpu0).as_secs_f64() / window;
    let rss_mib = rss_mib();

    let mut measure = |graceful: bool| {
        let mut times = Vec::new();
        for _ in 0..repeats {
            let Some(i) = handles.iter().position(LeaderHandle::is_leader) else {
                break;
            };
            let leader = handles.remove(i);
            let t = Instant::now();
            if graceful {
                let _ = leader.stop();
            } else {
                leader.abandon();
            }
            let rest = statuses(&handles);
            // From the moment the leader was told to go, until a follower leads.
            if time_to_leader(&rest, LEASE * 3).is_some() {
                times.push(t.elapsed());
            }
            handles.push(spawn(&server));
            std::thread::sleep(Duration::from_millis(300));
        }
        median_max(times)
    };
    let handoff = measure(true);
    let failover = measure(false);
    for h in handles {
        h.stop().ok();
    }
    Row {
        mode: if watch { "watch" } else { "poll" },
        followers,
        requests_per_sec,
        cpu_per_sec,
        rss_mib,
        threads_per_elector: threads as f64 / (followers + 1) as f64,
        handoff,
        failover,
    }
}

fn main() {
    // The library's log lines under the output: `RUST_LOG=info` (or `debug`) to see them.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let mut followers = vec![1usize, 10, 100];
    let mut seconds = 5u64;
    let mut repeats = 3usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().unwrap_or_default();
        match a.as_str() {
            "--followers" => {
                followers = v.split(',').filter_map(|n| n.trim().parse().ok()).collect()
            }
            "--seconds" => seconds = v.parse().unwrap_or(seconds),
            "--repeats" => repeats = v.parse().unwrap_or(repeats),
            other => {
                eprintln!(
                    "scale: unknown flag {other:?} (use --followers 1,10,100 --seconds 5 --repeats 3)"
                );
                std::process::exit(2);
            }
        }
    }
    println!(
        "lease {LEASE:?}, renew deadline {RENEW_DEADLINE:?}, retry {RETRY:?}; {seconds} s windows; {repeats} handoffs and failovers each"
    );
    println!(
        "{:<6} {:>9} {:>12} {:>10} {:>9} {:>20} {:>22} {:>22}",
        "mode",
        "followers",
        "requests/s",
        "cpu s/s",
        "rss MiB",
        "lib threads/elector",
        "handoff median/max",
        "failover median/max"
    );
    for &n in &followers {
        for watch in [false, true] {
            let r = run(n, watch, seconds, repeats);
            println!(
                "{:<6} {:>9} {:>12.1} {:>10.3} {:>9.1} {:>20.2} {:>10.1?}/{:<11.1?} {:>10.2?}/{:<11.2?}",
                r.mode,
                r.followers,
                r.requests_per_sec,
                r.cpu_per_sec,
                r.rss_mib,
                r.threads_per_elector,
                r.handoff.0,
                r.handoff.1,
                r.failover.0,
                r.failover.1
            );
        }
    }
}
