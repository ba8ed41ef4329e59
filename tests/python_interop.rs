//! Taking turns on one Lease with the official Python client's leader election
//! (`kubernetes.leaderelection`, `LeaseLock`), on a real kube-apiserver (see `common::real`): neither
//! side leads while the other does, a crashed Python leader is replaced once its lease has run out
//! by our clock, and our release hands the lock to a Python candidate at its next try.
//!
//! Needs the real-server assets and `python3` with the `kubernetes` package; without them the test
//! says so and passes, unless `KUBE_ELECTOR_REQUIRE_PYTHON_CLIENT=1` (CI sets it when it could install
//! the package) makes a missing package a failure.
//!
//! ```sh
//! pip install kubernetes && KUBEBUILDER_ASSETS=/path/to/assets cargo test --test python_interop
//! ```

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::wait_until;
use kube_elector::LeaderEvent;

/// A Python candidate: it prints `<unix time> <event>` lines (`candidate`, then `START` when it leads,
/// then `LEADING` every 50 ms while its leader work runs).
const CANDIDATE: &str = r#"
import sys, time
from kubernetes import config
from kubernetes.leaderelection import leaderelection, electionconfig
from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock

kubeconfig, namespace, name, identity = sys.argv[1:5]
config.load_kube_config(config_file=kubeconfig)

def say(event):
    print("%.6f %s" % (time.time(), event), flush=True)

def lead():
    say("START")
    while True:
        say("LEADING")
        time.sleep(0.05)

say("candidate")
# Lease 6 s, renew deadline 4 s, retry 1 s: the Python client takes whole seconds of at least 1.
leaderelection.LeaderElection(electionconfig.Config(
    LeaseLock(name, namespace, identity), lease_duration=6, renew_deadline=4, retry_period=1,
    onstarted_leading=lead, onstopped_leading=lambda: say("STOP"))).run()
"#;

fn python_client() -> bool {
    let present = Command::new("python3")
        .args([
            "-c",
            "import kubernetes.leaderelection.resourcelock.leaselock",
        ])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !present {
        assert!(
            std::env::var_os("KUBE_ELECTOR_REQUIRE_PYTHON_CLIENT").is_none(),
            "the Python client is required here but `import kubernetes` failed"
        );
        eprintln!("skipped: python3 with the `kubernetes` package is not available");
    }
    present
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A Python candidate's process, printing into `log`. Killed (SIGKILL, a crash) when dropped.
struct Candidate {
    child: Child,
    log: std::path::PathBuf,
}

impl Candidate {
    fn start(dir: &Path, namespace: &str, lock: &str, id: &str) -> Candidate {
        let log = dir.join(format!("{id}.log"));
        let child = Command::new("python3")
            .arg("-u")
            .arg(dir.join("candidate.py"))
            .arg(dir.join("kubeconfig"))
            .args([namespace, lock, id])
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.join(format!("{id}.err"))).unwrap())
            .spawn()
            .expect("python3 runs");
        Candidate { child, log }
    }

    /// The times at which it printed `event`.
    fn times(&self, event: &str) -> Vec<f64> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once(' '))
            .filter(|(_, e)| *e == event)
            .filter_map(|(t, _)| t.parse().ok())
            .collect()
    }

    fn leads(&self) -> bool {
        !self.times("START").is_empty()
    }

    /// Kill it as a crash does; the instant it was gone.
    fn crash(&mut self) -> f64 {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        now()
    }
}

impl Drop for Candidate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn python_and_rust_candidates_take_turns_on_one_lease_without_overlap() {
    let Some(cp) = common::real::control_plane() else {
        return;
    };
    if !python_client() {
        return;
    }
    let dir = common::temp_dir("python");
    std::fs::write(dir.join("candidate.py"), CANDIDATE).unwrap();
    std::fs::write(dir.join("kubeconfig"), cp.kubeconfig()).unwrap();
    let (ns, lock) = (cp.namespace(), "python-turns");

    // 1. The Python candidate leads; ours follows and stays out while it renews.
    let mut py = Candidate::start(&dir, ns, lock, "py-1");
    assert!(
        wait_until(Duration::from_secs(30), || py.leads()),
        "the Python candidate never led: {}",
        std::fs::read_to_string(dir.join("py-1.err")).unwrap_or_default()
    );
    let rs = common::candidate(cp.user(), lock, "rs-1", common::timing(6, 4000, 1000))
        .namespace(ns)
        .start()
        .unwrap();
    let events = rs.events();
    std::thread::sleep(Duration::from_secs(8));
    assert!(!rs.is_leader(), "took the lease from a live Python leader");
    assert_eq!(rs.leader().as_deref(), Some("py-1"));

    // 2. It crashes: ours leads once its lease (6 s) has run out by our clock, not before.
    let crashed = py.crash();
    let last_work = py.times("LEADING").last().copied().unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || rs.is_leader()),
        "never took over from a crashed Python leader"
    );
    let led = now();
    let started = events
        .try_iter()
        .any(|e| matches!(e, LeaderEvent::StartedLeading { .. }));
    assert!(started, "a term began");
    assert!(last_work < crashed);
    eprintln!(
        "took over {:.2} s after the Python leader crashed (lease 6 s)",
        led - crashed
    );
    // Its last renew came about a retry period (1 s) before the crash, and our 6 s count from when we
    // saw it: 5 s here; 3 s leaves room for a Python process that a loaded machine kept from renewing.
    assert!(
        led - crashed > 3.0,
        "led {:.2} s after the crash: before the lease could have run out",
        led - crashed
    );

    // 3. A new Python candidate stays out while we lead...
    let py2 = Candidate::start(&dir, ns, lock, "py-2");
    std::thread::sleep(Duration::from_secs(8));
    assert!(
        !py2.leads(),
        "the Python candidate took the lease from our live leader"
    );
    assert!(rs.is_leader());

    // 4. ...and takes it at its next try once we stop and release it.
    let stopping = now();
    rs.stop().unwrap();
    let released = now();
    assert!(
        wait_until(Duration::from_secs(10), || py2.leads()),
        "the Python candidate did not take the released lease"
    );
    let py2_start = py2.times("START")[0];
    eprintln!(
        "the Python candidate led {:.2} s after our release (its retry: 1 s)",
        py2_start - released
    );
    assert!(
        py2_start > stopping,
        "the Python candidate led before we stopped"
    );
    assert!(
        py2_start - released < 5.0,
        "a release is taken at the next try (1 s), not after a lease: took {:.2} s",
        py2_start - released
    );
}
