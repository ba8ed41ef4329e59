//! An elector set's threads do not grow with its locks (alone in its test binary, so that no other
//! test's threads come and go while it counts).
#![cfg(target_os = "linux")]

mod common;

use std::time::Duration;

use common::{threads_named, timing, wait_until};
use kube_elector::set::ElectorSet;
use kube_elector::testing::ApiServer;

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
