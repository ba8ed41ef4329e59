//! Writing: a write the server confirms starts the term (from the step's start); one that lost a race
//! is read again and judged, and leads nothing.

use std::time::Duration;

use super::scenario::{Failure, ME, Scenario, held_by, released, send, stepped, written};
use crate::election::ElectionError;
use crate::election::protocol::{Reply, Request, Status};
use crate::events::LeaderEvent;

fn raced() -> Failure {
    Failure::Request("the reply's error is only reported")
}

#[test]
fn a_confirmed_write_starts_the_term_at_the_start_of_the_step() {
    let mut s = Scenario::new();
    let start = s.now;
    send(s.begin());
    s.advance(Duration::from_millis(200));
    let create = send(s.feed(Reply::NotFound));
    assert_eq!(written(&create).holder_identity, ME);
    s.advance(Duration::from_millis(200));
    let reply = s.confirm(&create);
    let outcome = stepped(s.feed(reply));
    assert_eq!(
        outcome.status.leader_deadline(),
        Some(start + Duration::from_secs(5)),
        "the deadline counts from before the write, never from its answer"
    );
    assert!(matches!(
        outcome.events.last(),
        Some(LeaderEvent::StartedLeading { .. })
    ));
}

#[test]
fn a_create_that_lost_the_race_reads_again_and_follows_the_winner() {
    let mut s = Scenario::new();
    send(s.begin());
    let create = send(s.feed(Reply::NotFound));
    assert!(matches!(create, Request::Create { .. }));
    let get = send(s.feed(Reply::Conflict(raced())));
    assert!(matches!(get, Request::Get { .. }), "read again: {get:?}");
    let reply = s.object(held_by("other", 0));
    let outcome = stepped(s.feed(reply));
    assert!(!outcome.is_leading());
    assert_eq!(outcome.holder(), Some("other"));
    assert!(
        !outcome
            .events
            .iter()
            .any(|e| matches!(e, LeaderEvent::StartedLeading { .. })),
        "{:?}",
        outcome.events
    );
}

#[test]
fn a_takeover_that_lost_the_race_leads_nothing() {
    let mut s = Scenario::new();
    let update = s.find_released(3);
    assert_eq!(written(&update).leader_transitions, 4);
    send(s.feed(Reply::Conflict(raced())));
    let reply = s.object(held_by("other", 4));
    let outcome = stepped(s.feed(reply));
    assert!(
        matches!(outcome.status, Status::Following { .. }),
        "{outcome:?}"
    );
    assert!(!s.e.is_leader(s.now));
}

#[test]
fn a_lock_deleted_under_each_write_ends_the_step_with_the_elections_own_failure() {
    let mut s = Scenario::new();
    assert!(matches!(s.find_released(3), Request::Update { .. }));
    let get = send(s.feed(Reply::NotFound));
    assert!(matches!(get, Request::Get { .. }), "read again: {get:?}");
    let reply = s.object(released(3));
    assert!(matches!(send(s.feed(reply)), Request::Update { .. }));
    let outcome = stepped(s.feed(Reply::NotFound));
    assert!(!outcome.is_leading());
    assert!(
        matches!(
            &outcome.error,
            Some(Failure::Election(ElectionError::LockGone { lock })) if lock == "leases default/test"
        ),
        "{outcome:?}"
    );
}
