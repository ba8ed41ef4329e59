//! The measured process of `set_scale` (run by it, not by hand): a set of N locks, one single elector, or N
//! single electors, on the API server of `KUBECONFIG`. It is a binary of its own, with nothing in it but
//! the library and a logger, as a user's service would be: the parent's embedded API server and
//! control-plane launcher would otherwise sit in its code pages and count in its RSS.
//!
//! It holds every lock, then prints `window`, sits idle while the parent counts the server's requests,
//! prints `measured`, samples each lock's renew latency for another window, and prints one line of
//! `key=value` figures: threads (all, and the library's), RSS, live heap bytes, CPU seconds per second,
//! renew latency p50/p99.
//!
//! Environment: `SET_SCALE_ROLE` (`set`, `single` or `electors`), `SET_SCALE_LOCKS`, `SET_SCALE_SECONDS`,
//! `SET_SCALE_NAME` (the locks' name prefix), `SET_SCALE_IO_THREADS` (a set's request threads; its default
//! otherwise), `POD_NAMESPACE`, `KUBECONFIG`.

#[path = "common/proc_stats.rs"]
mod proc_stats;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use kube_elector::set::ElectorSet;
use kube_elector::{Config, LeaderElector, LeaderStatus, Timing};
use proc_stats::{cpu_time, rss_mib, threads_named};

/// The system allocator, counting the bytes live: the heap the process holds, whatever its allocator
/// keeps in reserve.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the counter is only arithmetic.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let role = std::env::var("SET_SCALE_ROLE").unwrap_or_default();
    if let Err(e) = run(&role) {
        eprintln!("set_scale_child ({role}): {e}");
        std::process::exit(1);
    }
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Hold every lock, then: an idle window (threads, RSS, heap, CPU; the parent counts the requests),
/// then a window that samples every lock's renews for their latency.
fn run(role: &str) -> Result<(), Box<dyn std::error::Error>> {
    let n = env_num("SET_SCALE_LOCKS", 10) as usize;
    let window = Duration::from_secs(env_num("SET_SCALE_SECONDS", 10));
    let name = std::env::var("SET_SCALE_NAME").unwrap_or_else(|_| "scale".into());
    let namespace = std::env::var("POD_NAMESPACE").unwrap_or_else(|_| "default".into());
    let config = Config::infer()?;
    let timing = Timing::default();
    let mut set = None;
    let mut electors = Vec::new();
    match role {
        "set" => {
            let mut builder = ElectorSet::builder(config, name)
                .shards(n)
                .namespace(namespace)
                .identity("bench")
                .timing(timing);
            if let Some(threads) = std::env::var("SET_SCALE_IO_THREADS")
                .ok()
                .and_then(|v| v.parse().ok())
            {
                builder = builder.io_threads(threads);
            }
            set = Some(builder.start()?);
        }
        "single" | "electors" => {
            let count = if role == "single" { 1 } else { n };
            for i in 0..count {
                electors.push(
                    LeaderElector::builder(config.clone(), format!("{name}-{i}"))
                        .namespace(namespace.clone())
                        .identity("bench")
                        .timing(timing)
                        .start()?,
                );
            }
        }
        other => return Err(format!("unknown role {other:?}").into()),
    }
    let statuses: Vec<LeaderStatus> = match &set {
        Some(s) => (0..s.len()).map(|i| s.status(i)).collect(),
        None => electors.iter().map(|e| e.status()).collect(),
    };
    let held = Instant::now();
    while !statuses.iter().all(LeaderStatus::is_leader) {
        if held.elapsed() > Duration::from_secs(120) {
            return Err(format!(
                "only {} of {} locks held after 2 minutes",
                statuses.iter().filter(|s| s.is_leader()).count(),
                statuses.len()
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Settle: the acquisitions' burst behind, every lock on its renew rhythm.
    std::thread::sleep(timing.retry_period * 2);
    let mut out = std::io::stdout();
    writeln!(out, "window")?;
    out.flush()?;
    let (cpu0, t0) = (cpu_time(), Instant::now());
    std::thread::sleep(window);
    let cpu_per_sec = cpu_time().saturating_sub(cpu0).as_secs_f64() / t0.elapsed().as_secs_f64();
    let threads = threads_named("");
    let lib_threads = threads_named("kube-elector");
    let rss = rss_mib();
    let heap = LIVE.load(Ordering::Relaxed);
    writeln!(out, "measured")?;
    out.flush()?;
    // Latency: each lock's last renew, read whenever its count of renews moves (every quarter retry).
    let mut seen: Vec<u64> = statuses.iter().map(|s| s.stats().renews_ok).collect();
    let mut latencies = Vec::new();
    let t1 = Instant::now();
    while t1.elapsed() < window {
        std::thread::sleep(timing.retry_period / 4);
        for (s, seen) in statuses.iter().zip(seen.iter_mut()) {
            let stats = s.stats();
            if stats.renews_ok > *seen {
                *seen = stats.renews_ok;
                if let Some(l) = stats.last_latency {
                    latencies.push(l);
                }
            }
        }
    }
    if !statuses.iter().all(LeaderStatus::is_leader) {
        return Err("a lock was lost during the windows".into());
    }
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    writeln!(
        out,
        "threads={threads} lib_threads={lib_threads} rss_mib={rss:.2} heap_bytes={heap} cpu_per_sec={cpu_per_sec:.5} p50_ns={} p99_ns={} renews={}",
        pct(0.50).as_nanos(),
        pct(0.99).as_nanos(),
        latencies.len()
    )?;
    out.flush()?;
    if let Some(s) = set {
        s.stop()?;
    }
    for e in electors {
        e.stop()?;
    }
    Ok(())
}
