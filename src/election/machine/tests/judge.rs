//! Reading and judging: whose lock it is, and whether its holder's lease has run out by our clock.

use std::time::Duration;

use super::scenario::{ME, Scenario, held_by, send, stepped, written};
use crate::election::protocol::{Request, Status};
use crate::events::LeaderEvent;

#[test]
fn a_released_lock_is_taken_at_once_with_the_next_term() {
    let mut s = Scenario::new();
    let update = s.find_released(3);
    assert_eq!(written(&update).holder_identity, ME);
    assert_eq!(
        written(&update).leader_transitions,
        4,
        "a new holder: the next term"
    );
    let reply = s.confirm(&update);
    let outcome = stepped(s.feed(reply));
    assert!(
        matches!(outcome.status, Status::Leading { term: 4, .. }),
        "{outcome:?}"
    );
    assert!(
        outcome
            .events
            .contains(&LeaderEvent::StartedLeading { transitions: 4 })
    );
}

#[test]
fn a_held_lock_is_taken_only_once_the_holders_lease_has_run_out_by_our_clock() {
    let mut s = Scenario::new();
    let theirs = held_by("other", 1);
    let seen = s.now;
    send(s.begin());
    let reply = s.object(theirs.clone());
    let outcome = stepped(s.feed(reply));
    assert_eq!(outcome.holder(), Some("other"));
    assert_eq!(
        outcome.status.holder_expiry(),
        Some(seen + Duration::from_secs(10)),
        "the holder's duration, from when we saw it"
    );
    // The same record a moment before the lease runs out: still theirs.
    s.advance(Duration::from_millis(9_900));
    send(s.begin());
    let reply = s.object(theirs.clone());
    let outcome = stepped(s.feed(reply));
    assert!(!outcome.is_leading() && outcome.holder() == Some("other"));
    // Past it: ours, in the next term.
    s.advance(Duration::from_millis(200));
    send(s.begin());
    let reply = s.object(theirs);
    let update = send(s.feed(reply));
    assert_eq!(written(&update).holder_identity, ME);
    assert_eq!(written(&update).leader_transitions, 2);
}

#[test]
fn a_renew_seen_restarts_the_countdown() {
    let mut s = Scenario::new();
    let mut theirs = held_by("other", 1);
    send(s.begin());
    let reply = s.object(theirs.clone());
    stepped(s.feed(reply));
    s.advance(Duration::from_secs(9));
    theirs.renew_time = Some(theirs.renew_time.unwrap() + chrono::Duration::seconds(9));
    let renewed_at = s.now;
    send(s.begin());
    let reply = s.object(theirs.clone());
    let outcome = stepped(s.feed(reply));
    assert_eq!(
        outcome.status.holder_expiry(),
        Some(renewed_at + Duration::from_secs(10))
    );
    s.advance(Duration::from_secs(2));
    send(s.begin());
    let reply = s.object(theirs);
    let outcome = stepped(s.feed(reply));
    assert!(
        !outcome.is_leading(),
        "11 s after the first sight, 2 s after the renew: still theirs"
    );
}

#[test]
fn a_record_cleared_without_a_release_stays_its_last_holders_until_that_lease_runs_out() {
    let mut s = Scenario::new();
    let seen = s.now;
    send(s.begin());
    let reply = s.object(held_by("other", 1));
    stepped(s.feed(reply));
    // A tool clears the holder without a release: not a sign the holder stopped.
    s.advance(Duration::from_secs(2));
    let mut cleared = held_by("", 1);
    cleared.acquire_time = None;
    send(s.begin());
    let reply = s.object(cleared.clone());
    let outcome = stepped(s.feed(reply));
    assert!(!outcome.is_leading(), "{outcome:?}");
    assert!(
        outcome
            .status
            .holder_expiry()
            .is_some_and(|e| e >= seen + Duration::from_secs(10)),
        "{outcome:?}"
    );
    // The clearing was a change we saw: the countdown runs from it, as from a renew.
    s.advance(Duration::from_millis(9_900));
    send(s.begin());
    let reply = s.object(cleared.clone());
    let outcome = stepped(s.feed(reply));
    assert!(!outcome.is_leading(), "{outcome:?}");
    s.advance(Duration::from_millis(200));
    send(s.begin());
    let reply = s.object(cleared);
    let update = send(s.feed(reply));
    assert!(
        matches!(update, Request::Update { .. }),
        "taken once a lease has passed since the last change: {update:?}"
    );
}
