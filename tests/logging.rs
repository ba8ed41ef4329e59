//! What the library logs, as an operator reads it at 3 a.m.: every line names the lock and the
//! identity; a failing API server gives one WARN when the streak begins and one INFO when it ends; a
//! lost create race is not a warning.

mod common;

use std::time::Duration;

use common::logs::{capture, lines_with};
use common::wait_until;
use kube_elector::testing::{ApiServer, Fault};

/// The lines about one lock (the tests run side by side), each checked to name lock and identity.
fn lines_of(lock: &str) -> Vec<(log::Level, String)> {
    lines_with(&format!("default/{lock} "))
}

fn dump(lock: &str) -> String {
    format!("{:#?}", lines_of(lock))
}

fn count(lines: &[(log::Level, String)], level: log::Level, needle: &str) -> usize {
    lines
        .iter()
        .filter(|(l, m)| *l == level && m.contains(needle))
        .count()
}

const LONG: Duration = Duration::from_secs(20);

#[test]
fn a_failing_server_gives_one_warn_per_streak_and_one_info_when_it_ends() {
    capture();
    let server = ApiServer::start().unwrap();
    let h = common::candidate(server.config(), "streak", "a", common::timing(2, 1000, 100))
        .watch(false)
        .start()
        .unwrap();
    assert!(h.wait_until_leader(Some(LONG)).is_some());
    let fault = server.inject(Fault::status(503));
    // Many failed attempts: the renews, then the campaign's GETs.
    assert!(wait_until(LONG, || h.stats().renews_failed >= 3));
    let failed_before = h.stats().attempts;
    std::thread::sleep(Duration::from_millis(1000));
    assert!(h.stats().attempts >= failed_before + 5, "still retrying");
    server.remove_fault(fault);
    assert!(h.wait_until_leader(Some(LONG)).is_some());
    assert!(
        wait_until(LONG, || count(
            &lines_of("streak"),
            log::Level::Info,
            "answers again"
        ) == 1),
        "{}",
        dump("streak")
    );
    h.stop().unwrap();

    let lines = lines_of("streak");
    for (_, l) in &lines {
        assert!(l.contains("leases default/streak as a"), "{l}");
    }
    let warns: Vec<_> = lines
        .iter()
        .filter(|(l, _)| *l == log::Level::Warn)
        .collect();
    assert_eq!(warns.len(), 1, "one WARN for the streak: {warns:#?}");
    assert!(warns[0].1.contains("503"), "{warns:?}");
    assert!(count(&lines, log::Level::Debug, "still failing") >= 5);
    assert_eq!(count(&lines, log::Level::Info, "started leading"), 2);
    assert_eq!(count(&lines, log::Level::Info, "stopped leading"), 2);
}

#[test]
fn a_lost_create_race_is_not_a_warning() {
    capture();
    let server = ApiServer::start().unwrap();
    // Both candidates find no lock and POST; the slow POSTs make the race certain.
    server.inject(
        Fault::latency(Duration::from_millis(300))
            .for_verb("POST")
            .times(2),
    );
    let start = |id: &str| common::start(server.config(), "race", id, common::timing(2, 1000, 100));
    let (a, b) = (start("a"), start("b"));
    assert!(wait_until(LONG, || a.is_leader() || b.is_leader()));
    // Both POSTed: the race happened, and the loser read the lock and follows.
    assert!(wait_until(LONG, || server.requests("POST") >= 2));
    assert!(wait_until(LONG, || a.leader().is_some() && a.leader() == b.leader()));
    assert!(!(a.is_leader() && b.is_leader()));
    drop((a, b));
    let lines = lines_of("race");
    let warns: Vec<_> = lines
        .iter()
        .filter(|(l, _)| *l <= log::Level::Warn)
        .collect();
    assert!(warns.is_empty(), "{warns:#?}");
}
