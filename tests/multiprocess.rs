//! Three `examples/leader.rs` processes on one lease against the embedded API server (loopback, started
//! here): SIGKILL the leader and another leads within the liveness bound; SIGTERM the next one (it
//! releases) and the last one leads within about two retry periods.
#![cfg(unix)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, unbounded};

mod common;

use common::leader_bin;

const LEASE: Duration = Duration::from_secs(2);
const RETRY: Duration = Duration::from_millis(200);
const SLACK: Duration = Duration::from_millis(1500);

struct Proc {
    id: String,
    child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(p: &Proc, sig: &str) {
    assert!(
        Command::new("kill")
            .args([sig, &p.child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
}

/// The next `started_leading` line from any process.
fn next_leader(rx: &Receiver<(String, serde_json::Value)>, within: Duration) -> Option<String> {
    let end = Instant::now() + within;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let (id, v) = rx.recv_timeout(left).ok()?;
        if v["event"] == "started_leading" {
            return Some(id);
        }
    }
}

#[test]
fn sigkill_fails_over_after_the_lease_and_sigterm_hands_off_at_once() {
    let server = common::tls_server(&["mp"]);
    let dir = std::env::temp_dir().join(format!("kube-elector-mp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("config");
    std::fs::write(&kubeconfig, server.kubeconfig()).unwrap();
    let (tx, rx) = unbounded();
    let mut procs: Vec<Proc> = (0..3)
        .map(|i| {
            let id = format!("p{i}");
            let mut child = Command::new(leader_bin())
                .args([
                    "--kubeconfig",
                    kubeconfig.to_str().unwrap(),
                    "--name",
                    "mp",
                    "--id",
                    &id,
                ])
                .args(common::FAST_TIMING)
                .args(["--release-on-cancel", "--run-for", "60s"])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("cargo test builds the leader example");
            let out = child.stdout.take().unwrap();
            let (tx, pid) = (tx.clone(), id.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                        let _ = tx.send((pid.clone(), v));
                    }
                }
            });
            Proc { id, child }
        })
        .collect();

    let first = next_leader(&rx, Duration::from_secs(10)).expect("a first leader");
    assert_eq!(
        server.lease_holder("default", "mp").as_deref(),
        Some(first.as_str())
    );

    // SIGKILL: no release; another process leads once the lease expires.
    let i = procs.iter().position(|p| p.id == first).unwrap();
    let killed = procs.remove(i);
    signal(&killed, "-KILL");
    let t = Instant::now();
    let second = next_leader(&rx, LEASE + RETRY.mul_f64(2.2) + SLACK)
        .expect("failover within the liveness bound");
    let failover = t.elapsed();
    assert_ne!(second, first);
    assert!(
        failover >= LEASE - Duration::from_millis(300),
        "not before the lease expired: {failover:?}"
    );
    eprintln!("SIGKILL failover: {failover:?}");

    // SIGTERM with --release-on-cancel: the last process takes over within about two retry periods.
    let i = procs.iter().position(|p| p.id == second).unwrap();
    let mut stopped = procs.remove(i);
    signal(&stopped, "-TERM");
    let t = Instant::now();
    let third = next_leader(&rx, RETRY.mul_f64(2.2) + SLACK).expect("handoff after the release");
    let handoff = t.elapsed();
    eprintln!("SIGTERM handoff: {handoff:?}");
    assert_eq!(
        stopped.child.wait().unwrap().code(),
        Some(0),
        "a graceful exit"
    );
    assert_ne!(third, second);
    assert_eq!(
        server.lease_holder("default", "mp").as_deref(),
        Some(third.as_str())
    );
    drop(killed);
}
