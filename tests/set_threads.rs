//! An elector set's threads do not grow with its locks, and its request threads follow the server's
//! latency instead (alone in its test binary, so that no other test's threads come and go while it
//! counts; one test, so that its phases do not overlap).
#![cfg(target_os = "linux")]

mod common;

use std::time::Duration;

use common::{threads_named, timing, wait_until};
use kube_elector::set::ElectorSet;
use kube_elector::testing::{ApiServer, Fault};

#[test]
fn a_sets_threads_follow_the_servers_latency_not_its_locks() {
    let server = ApiServer::start().unwrap();
    let before = threads_named("kube-elector");
    let threads = || threads_named("kube-elector") - before;
    let start = |set: &str, n: usize, t| {
        ElectorSet::builder(server.config(), set)
            .shards(n)
            .identity("a")
            .timing(t)
            .start()
            .unwrap()
    };
    // Ten locks and five hundred, renewed every three seconds: light work for two request threads
    // either way (the burst of taking them all may add a thread for a moment; it is given back).
    let relaxed = timing(20, 10000, 3000);
    let small = start("threads-a", 10, relaxed);
    assert!(wait_until(Duration::from_secs(5), || small.owned().len() == 10));
    // The driver, two request threads and the watch.
    assert!(
        wait_until(Duration::from_secs(15), || threads() == 4),
        "{} threads for 10 locks",
        threads()
    );
    let big = start("threads-b", 500, relaxed);
    assert!(wait_until(Duration::from_secs(30), || big.owned().len() == 500));
    assert!(
        wait_until(Duration::from_secs(20), || threads() == 8),
        "{} threads for two sets of 10 and 500 locks: the threads do not grow with the locks",
        threads()
    );
    small.stop().unwrap();
    big.stop().unwrap();
    assert!(wait_until(Duration::from_secs(5), || threads() == 0));

    // Forty locks renewed every 400 ms, each write taking 30 ms: three threads' worth of waiting.
    let busy = start("threads-c", 40, timing(4, 3000, 400));
    assert!(wait_until(Duration::from_secs(10), || busy.owned().len() == 40));
    let slow = server.inject(Fault::latency(Duration::from_millis(30)).for_verb("PUT"));
    assert!(
        wait_until(Duration::from_secs(15), || threads() >= 6),
        "{} threads: the pool grows when the server is slow",
        threads()
    );
    // Keeping up: every lock still held, and renewed several times in two seconds.
    let renews = |i: usize| busy.status(i).stats().renews_ok;
    let counts: Vec<u64> = (0..40).map(renews).collect();
    std::thread::sleep(Duration::from_secs(2));
    for (i, before) in counts.iter().enumerate() {
        assert!(busy.is_leader(i), "lock {i} held");
        assert!(
            renews(i) >= before + 3,
            "lock {i} renewed {} times in 2 s",
            renews(i) - before
        );
    }
    assert!(threads() <= 2 + kube_elector::set::MAX_IO_THREADS);
    // The server is fast again: the threads go back to two.
    server.remove_fault(slow);
    assert!(
        wait_until(Duration::from_secs(20), || threads() == 4),
        "{} threads after the server sped up",
        threads()
    );
    busy.stop().unwrap();
}
