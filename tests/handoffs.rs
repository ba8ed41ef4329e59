//! Graceful handoffs never run two leaders' work at once. Three replica processes on the embedded API
//! server do 50 ms leader-only items through `run_while_leading` and write each item's start and end;
//! the leader is stopped with SIGTERM (it drains its items, then releases) or killed, a new replica
//! takes its place, again and again, and afterwards no item of one process may overlap an item of
//! another. Once with `examples/replica.rs` (a 2 s lease, crashes included), once with the README's
//! service snippet copied verbatim (`examples/readme_service.rs`, client-go's default timing).
//!
//! `KUBE_ELECTOR_HANDOFFS=N` sets the number of handoffs of each run (default 100, and 40 with the
//! README's snippet, whose crashes cost client-go's 15 s lease each).
#![cfg(unix)]

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::example_bin;
use common::items::check_no_overlap;
use common::rng::Rng;
use kube_elector::testing::ApiServer;

struct Replica {
    id: String,
    child: Child,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Run<'a> {
    server: &'a ApiServer,
    bin: PathBuf,
    kubeconfig: PathBuf,
    items: PathBuf,
    timing: &'a [(&'a str, &'a str)],
    next_id: usize,
    /// When each process was killed or seen to exit (wall clock, ns): the latest an item it never
    /// finished can have run.
    ended: HashMap<u32, u128>,
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

impl Run<'_> {
    fn spawn(&mut self) -> Replica {
        let id = format!("r{}", self.next_id);
        self.next_id += 1;
        let child = Command::new(&self.bin)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("POD_NAMESPACE", "default")
            .env("POD_NAME", &id)
            .env("ITEMS", &self.items)
            .env("RUST_LOG", "error")
            .envs(self.timing.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cargo test builds the examples");
        Replica { id, child }
    }

    fn holder(&self) -> Option<String> {
        self.server
            .lease_holder("default", "my-service")
            .filter(|h| !h.is_empty())
    }

    /// Wait until one of `live` holds the lease, other than `not`.
    fn wait_holder(&self, live: &[Replica], not: Option<&str>, within: Duration) -> Option<usize> {
        let end = Instant::now() + within;
        while Instant::now() < end {
            if let Some(h) = self.holder() {
                if Some(h.as_str()) != not {
                    if let Some(i) = live.iter().position(|r| r.id == h) {
                        return Some(i);
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        None
    }
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

/// What the handoffs measured.
#[derive(Debug, Default)]
struct Report {
    graceful: Vec<Duration>,
    crashes: Vec<Duration>,
    items: usize,
}

/// `handoffs` handoffs of the lease among three replicas of `bin`, one in `crash_every` by SIGKILL.
fn handoffs(
    bin: &str,
    timing: &[(&str, &str)],
    lease: Duration,
    handoffs: usize,
    crash_every: u64,
) -> Report {
    let server = ApiServer::start().unwrap();
    let dir = common::temp_dir(&format!("handoffs-{bin}"));
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, server.kubeconfig()).unwrap();
    let items = dir.join("items");
    let mut run = Run {
        server: &server,
        bin: example_bin(bin),
        kubeconfig,
        items: items.clone(),
        timing,
        next_id: 0,
        ended: HashMap::new(),
    };
    let mut rng = Rng(0x5eed_u64 ^ handoffs as u64);
    let mut live: Vec<Replica> = (0..3).map(|_| run.spawn()).collect();
    let mut report = Report::default();
    let first = lease + Duration::from_secs(10);
    for n in 0..handoffs {
        let i = run
            .wait_holder(&live, None, first)
            .unwrap_or_else(|| panic!("handoff {n}: no replica leads"));
        // Let the leader get items in flight.
        std::thread::sleep(rng.millis(60, 160));
        let old = live.remove(i);
        let pid = old.child.id();
        let crash = crash_every > 0 && rng.below(crash_every) == 0;
        let at = Instant::now();
        let mut old = old;
        if crash {
            run.ended.insert(pid, now_ns());
            let _ = old.child.kill();
            let _ = old.child.wait();
        } else {
            signal(pid, "-TERM");
        }
        let next = run.wait_holder(&live, Some(&old.id), lease + Duration::from_secs(5));
        assert!(
            next.is_some(),
            "handoff {n}: nobody took over from {}",
            old.id
        );
        let took = at.elapsed();
        if crash {
            report.crashes.push(took);
        } else {
            report.graceful.push(took);
            let status = old.child.wait().unwrap();
            run.ended.insert(pid, now_ns());
            assert!(
                status.success(),
                "{} exited with {status} after SIGTERM",
                old.id
            );
        }
        drop(old);
        live.push(run.spawn());
    }
    for r in &live {
        signal(r.child.id(), "-TERM");
    }
    for mut r in live {
        let _ = r.child.wait();
        run.ended.insert(r.child.id(), now_ns());
    }
    report.items = check_no_overlap(&items, &run.ended, false);
    report
}

fn count(default: usize) -> usize {
    std::env::var("KUBE_ELECTOR_HANDOFFS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

#[test]
fn a_hundred_handoffs_between_replicas_never_overlap_their_work() {
    let timing = [
        ("LEASE_DURATION", "2000"),
        ("RENEW_DEADLINE", "1500"),
        ("RETRY_PERIOD", "200"),
    ];
    let mut r = handoffs("replica", &timing, Duration::from_secs(2), count(100), 10);
    assert!(r.items > 100, "{r:?}");
    println!(
        "{} graceful handoffs (median {:?}), {} crashes (median {:?}), {} items, 0 overlapping",
        r.graceful.len(),
        median(&mut r.graceful),
        r.crashes.len(),
        median(&mut r.crashes),
        r.items
    );
}

#[test]
fn the_readme_service_snippet_hands_off_without_overlap() {
    // Client-go's timing, as the snippet has it: a crash costs a 15 s lease, so about one in forty
    // handoffs (40 by default to keep `cargo test` short; KUBE_ELECTOR_HANDOFFS=100 for the full run).
    let mut r = handoffs(
        "readme_service",
        &[],
        Duration::from_secs(15),
        count(40),
        40,
    );
    assert!(r.items > 40, "{r:?}");
    println!(
        "README snippet: {} graceful handoffs (median {:?}), {} crashes, {} items, 0 overlapping",
        r.graceful.len(),
        median(&mut r.graceful),
        r.crashes.len(),
        r.items
    );
}

#[test]
fn the_readme_service_snippet_is_the_example_verbatim() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = &readme[readme.find("## A service").unwrap()..];
    let block = &section[section.find("```rust,no_run\n").unwrap() + 15..];
    let block = &block[..block.find("```").unwrap()];
    let shown: Vec<&str> = block
        .lines()
        .filter(|l| !l.starts_with("# ") && *l != "#")
        .collect();
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/readme_service.rs"
    ))
    .unwrap();
    let inner = &example[example.find("// README: begin\n").unwrap() + 17..];
    let inner = &inner[..inner.find("    // README: end").unwrap()];
    let copied: Vec<&str> = inner
        .lines()
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect();
    assert_eq!(
        shown, copied,
        "examples/readme_service.rs must hold the README's snippet as it is"
    );
}
