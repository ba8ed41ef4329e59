//! Releasing: a conditional write of an empty holder, only over a record that still names us.

use std::time::Duration;

use super::scenario::{Failure, Scenario, held_by, send, written};
use crate::election::ElectionError;
use crate::election::protocol::{Action, Reply, Request};

fn released(action: Action<Failure>) -> bool {
    match action {
        Action::Released(result) => result.expect("no error"),
        other => panic!("expected the release to end, got {other:?}"),
    }
}

#[test]
fn a_leader_releases_with_one_conditional_write_of_an_empty_holder() {
    let mut s = Scenario::new();
    s.lead();
    s.advance(Duration::from_secs(1));
    let write = s.release();
    let Request::Update {
        record,
        resource_version,
        ..
    } = &write
    else {
        panic!("no read first: {write:?}")
    };
    assert_eq!(
        resource_version, "1",
        "over the version we wrote, and only that"
    );
    assert_eq!(record.holder_identity, "");
    assert_eq!(record.lease_duration_seconds, 1);
    assert!(record.is_release());
    let reply = s.confirm(&write);
    assert!(released(s.feed(reply)));
    assert!(!s.e.is_leader(s.now));
}

#[test]
fn a_release_that_met_another_write_reads_and_clears_nothing_of_a_successors() {
    let mut s = Scenario::new();
    s.lead();
    let write = s.release();
    assert!(written(&write).holder_identity.is_empty());
    let conflict = Failure::Request("lost");
    let get = send(s.feed(Reply::Conflict(conflict)));
    assert!(matches!(get, Request::Get { .. }), "look again: {get:?}");
    let reply = s.object(held_by("successor", 1));
    assert!(!released(s.feed(reply)), "not ours: nothing written");
}

#[test]
fn an_elector_that_never_led_has_nothing_to_release() {
    let mut s = Scenario::new();
    send(s.begin());
    let reply = s.object(held_by("other", 1));
    let _ = s.feed(reply);
    assert!(!released(s.e.begin_release(s.now, s.wall)));
}

#[test]
fn a_release_out_of_time_reports_the_elections_own_failure() {
    let mut s = Scenario::new();
    s.lead();
    let write = s.release();
    assert!(matches!(write, Request::Update { .. }));
    // The write met another (409) after the release's time (the request cap, 2.5 s here) ran out.
    s.advance(Duration::from_secs(3));
    let Action::Released(result) = s.feed(Reply::Conflict(Failure::Request("lost"))) else {
        panic!("no time left to read again")
    };
    assert_eq!(
        result,
        Err(Failure::Election(ElectionError::DeadlineExceeded {
            lock: "leases default/test".into()
        }))
    );
}
