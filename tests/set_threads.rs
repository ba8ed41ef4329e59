//! An elector set's threads do not grow with its locks (alone in its test binary, so that no other
//! test's threads come and go while it counts).
#![cfg(target_os = "linux")]

mod common;

use std::time::Duration;

use common::{timing, wait_until};
use kube_elector::set::ElectorSet;
use kube_elector::testing::ApiServer;

/// Threads of this process whose name starts with `prefix` (Linux truncates names to 15 bytes).
fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|t| {
                    std::fs::read_to_string(t.path().join("comm"))
                        .is_ok_and(|c| c.trim().starts_with(prefix))
                })
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn a_set_runs_on_a_fixed_number_of_threads_whatever_its_size() {
    let server = ApiServer::start().unwrap();
    let start = |set: &str, n: usize| {
        ElectorSet::builder(server.config(), set)
            .shards(n)
            .identity("a")
            .timing(timing(2, 1500, 200))
            .start()
            .unwrap()
    };
    let before = threads_named("kube-elector");
    let small = start("threads-a", 10);
    assert!(wait_until(Duration::from_secs(5), || small.owned().len() == 10));
    let with_small = threads_named("kube-elector") - before;
    let big = start("threads-b", 500);
    assert!(wait_until(Duration::from_secs(20), || big.owned().len() == 500));
    let with_big = threads_named("kube-elector") - before - with_small;
    assert_eq!(with_small, with_big, "threads do not grow with the locks");
    // The driver, two request threads and the watch.
    assert_eq!(with_small, 4, "{with_small} threads");
}
