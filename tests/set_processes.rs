//! Members of an elector set as processes (`examples/set_replica.rs`) on the embedded API server, 32
//! shards, 50 ms items per shard: balanced within one shard of `ceil(32 / members)` after every join,
//! leave and crash; every shard owned again within a lease duration and 2.2 retries after a crash; no
//! two members ever lead one shard at once (each member samples its terms every 10 ms); and no two
//! members' items ever overlap on one shard.
#![cfg(unix)]

mod common;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::example_bin;
use common::items::check_no_overlap;
use kube_elector::testing::ApiServer;

const SHARDS: usize = 32;
const LEASE: Duration = Duration::from_secs(2);
const RETRY: Duration = Duration::from_millis(200);

struct Member {
    id: String,
    child: Child,
    log: std::path::PathBuf,
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

struct World {
    server: ApiServer,
    kubeconfig: std::path::PathBuf,
    items: std::path::PathBuf,
    owned: std::path::PathBuf,
    dir: std::path::PathBuf,
    members: Vec<Member>,
    next: usize,
    ended: HashMap<u32, u128>,
}

impl World {
    fn join(&mut self) {
        let id = format!("m{}", self.next);
        self.next += 1;
        let log = self.dir.join(format!("{id}.log"));
        let child = Command::new(example_bin("set_replica"))
            .env("KUBECONFIG", &self.kubeconfig)
            .env("POD_NAMESPACE", "default")
            .env("POD_NAME", &id)
            .env("ITEMS", &self.items)
            .env("OWNED", &self.owned)
            .env("SHARDS", SHARDS.to_string())
            .env("LEASE_DURATION", LEASE.as_millis().to_string())
            .env("RENEW_DEADLINE", "1500")
            .env("RETRY_PERIOD", RETRY.as_millis().to_string())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("cargo test builds the examples");
        self.members.push(Member { id, child, log });
    }

    /// Each shard's holder, as the server has it.
    fn holders(&self) -> Vec<Option<String>> {
        (0..SHARDS)
            .map(|i| {
                self.server
                    .lease_holder("default", &format!("shard-{i}"))
                    .filter(|h| !h.is_empty())
            })
            .collect()
    }

    /// Every shard held by a live member, each holding within one of its share.
    fn balanced(&self) -> bool {
        let live: Vec<&str> = self.members.iter().map(|m| m.id.as_str()).collect();
        let share = SHARDS.div_ceil(live.len());
        let holders = self.holders();
        if !holders
            .iter()
            .all(|h| h.as_deref().is_some_and(|h| live.contains(&h)))
        {
            return false;
        }
        live.iter().all(|m| {
            let n = holders.iter().filter(|h| h.as_deref() == Some(*m)).count();
            n <= share && n + 1 >= share
        })
    }

    fn wait_balanced(&self, what: &str, within: Duration) -> Duration {
        let start = Instant::now();
        while !self.balanced() {
            assert!(
                start.elapsed() < within,
                "not balanced {within:?} after {what}: {:?}",
                self.holders()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        start.elapsed()
    }

    fn leave(&mut self, i: usize) {
        let mut m = self.members.remove(i);
        let pid = m.child.id();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .unwrap()
                .success()
        );
        let status = m.child.wait().unwrap();
        self.ended.insert(pid, now_ns());
        assert!(
            status.success(),
            "{} exited with {status}: {}",
            m.id,
            std::fs::read_to_string(&m.log).unwrap_or_default()
        );
    }

    fn crash(&mut self, i: usize) -> Instant {
        let mut m = self.members.remove(i);
        let pid = m.child.id();
        let at = Instant::now();
        self.ended.insert(pid, now_ns());
        let _ = m.child.kill();
        let _ = m.child.wait();
        at
    }
}

#[test]
fn members_join_leave_and_crash_balanced_and_never_overlapping() {
    let server = ApiServer::start().unwrap();
    let dir = common::temp_dir("set-processes");
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, server.kubeconfig()).unwrap();
    let mut w = World {
        server,
        kubeconfig,
        items: dir.join("items"),
        owned: dir.join("owned"),
        dir: dir.clone(),
        members: Vec::new(),
        next: 0,
        ended: HashMap::new(),
    };
    let long = Duration::from_secs(15);
    for _ in 0..3 {
        w.join();
    }
    w.wait_balanced("3 joined", long);
    w.join();
    let joined = w.wait_balanced("a 4th joined", long);
    w.join();
    w.wait_balanced("a 5th joined", long);
    std::thread::sleep(Duration::from_millis(500));
    w.leave(1);
    let left = w.wait_balanced("one left (SIGTERM)", long);
    std::thread::sleep(Duration::from_millis(500));
    let crashed = w.crash(0);
    // Every shard owned again within a lease and 2.2 retries (and room for a loaded machine).
    let bound = LEASE + RETRY.mul_f64(2.2) + Duration::from_millis(1500);
    while !w.holders().iter().all(|h| {
        h.as_deref()
            .is_some_and(|h| w.members.iter().any(|m| m.id == h))
    }) {
        assert!(
            crashed.elapsed() < bound,
            "shards unowned {:?} after a crash: {:?}",
            crashed.elapsed(),
            w.holders()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let owned_again = crashed.elapsed();
    w.wait_balanced("one crashed", long);
    w.join();
    w.wait_balanced("one joined again", long);
    std::thread::sleep(Duration::from_millis(500));
    while !w.members.is_empty() {
        w.leave(0);
    }
    let items = check_no_overlap(&w.items, &w.ended, true);
    assert!(items > 200, "{items} items");
    let (samples, terms) = check_one_owner(&w.owned);
    assert!(
        samples > 1000 && terms >= SHARDS,
        "{samples} samples, {terms} terms"
    );
    println!(
        "balanced {joined:?} after a join, {left:?} after a leave; every shard owned again {owned_again:?} after a crash; {items} items, 0 overlapping; {terms} terms in {samples} samples, never two owners"
    );
}

/// A member's term of a shard: (shard, pid, term).
type MemberTerm = (u32, u32, i32);
/// The first and last sample time that saw it.
type Span = (u128, u128);

/// From the members' samples (`pid time shard:term ...`), each member's terms of each shard as the span
/// from their first to their last sample (a term, once ended, never comes back): no two members' spans
/// on one shard may overlap. Returns the number of samples and of terms.
fn check_one_owner(owned: &std::path::Path) -> (usize, usize) {
    let text = std::fs::read_to_string(owned).unwrap();
    let mut spans: HashMap<MemberTerm, Span> = HashMap::new();
    let mut samples = 0;
    for line in text.lines() {
        let mut f = line.split(' ');
        let (Some(pid), Some(t)) = (f.next(), f.next()) else {
            panic!("a malformed sample: {line:?}");
        };
        let (pid, t): (u32, u128) = (pid.parse().unwrap(), t.parse().unwrap());
        samples += 1;
        for held in f {
            let (shard, term) = held.split_once(':').unwrap();
            let key = (shard.parse().unwrap(), pid, term.parse().unwrap());
            let span = spans.entry(key).or_insert((t, t));
            span.0 = span.0.min(t);
            span.1 = span.1.max(t);
        }
    }
    let mut by_shard: Vec<(MemberTerm, Span)> = spans.into_iter().collect();
    by_shard.sort_by_key(|((shard, _, _), (first, _))| (*shard, *first));
    for (i, ((shard, pid, term), (_, last))) in by_shard.iter().enumerate() {
        for ((other_shard, other_pid, other_term), (other_first, _)) in &by_shard[i + 1..] {
            if other_shard != shard || other_first > last {
                break;
            }
            assert!(
                other_pid == pid,
                "shard {shard} had two owners: process {pid} (term {term}) was seen leading until {last}, process {other_pid} (term {other_term}) from {other_first}"
            );
        }
    }
    (samples, by_shard.len())
}

#[test]
#[should_panic(expected = "shard 3 had two owners")]
fn the_owner_check_finds_two_members_leading_one_shard() {
    let dir = common::temp_dir("set-owner-check");
    let owned = dir.join("owned");
    // Process 1 leads shard 3 in term 4 from t=100 to t=300; process 2 is seen leading it at t=200.
    std::fs::write(&owned, "1 100 3:4\n2 150\n1 300 3:4 5:1\n2 200 3:5\n").unwrap();
    check_one_owner(&owned);
}

#[test]
fn the_owner_check_accepts_a_handoff() {
    let dir = common::temp_dir("set-owner-check");
    let owned = dir.join("owned");
    std::fs::write(&owned, "1 100 3:4\n1 300 3:4\n2 301 3:5\n2 400 3:5\n").unwrap();
    assert_eq!(check_one_owner(&owned), (4, 2));
}
