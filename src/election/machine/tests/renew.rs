//! The leader's fast path: one conditional write of what it holds, and the fall-back to a read.

use std::time::Duration;

use super::scenario::{Failure, ME, Scenario, send, stepped, written};
use crate::election::protocol::{Reply, Request, Status};

fn timeout() -> Failure {
    Failure::Request("timeout")
}

#[test]
fn a_leaders_step_is_one_write_of_what_it_holds_and_renews_from_the_step_start() {
    let mut s = Scenario::new();
    let first = s.lead();
    let Status::Leading { term, .. } = first.status else {
        panic!("{first:?}")
    };
    s.advance(Duration::from_secs(1));
    let start = s.now;
    let update = send(s.begin());
    let Request::Update {
        record,
        resource_version,
        ..
    } = &update
    else {
        panic!("a renew is an update: {update:?}")
    };
    assert_eq!(resource_version, "1", "conditional on the version we wrote");
    assert_eq!(record.holder_identity, ME);
    assert_eq!(record.leader_transitions, term, "the same term");
    assert!(record.renew_time > record.acquire_time, "renewed now");
    s.advance(Duration::from_millis(300));
    let reply = s.confirm(&update);
    let outcome = stepped(s.feed(reply));
    assert!(outcome.renewed && !outcome.slow_path && outcome.error.is_none());
    assert_eq!(
        outcome.status.leader_deadline(),
        Some(start + Duration::from_secs(5))
    );
    assert!(
        outcome.events.is_empty(),
        "a renew changes nothing: {:?}",
        outcome.events
    );
}

#[test]
fn a_conflict_on_the_fast_path_reads_the_lock_and_judges_it_again() {
    let mut s = Scenario::new();
    s.lead();
    s.advance(Duration::from_secs(1));
    let update = send(s.begin());
    let ours = written(&update).clone();
    let get = send(s.feed(Reply::Conflict(timeout())));
    assert!(
        matches!(get, Request::Get { .. }),
        "the slow path reads: {get:?}"
    );
    // Someone wrote the object (a label, say) but left our record alone: still ours, renewed at the new
    // version.
    let relabelled = s.object(ours);
    let again = send(s.feed(relabelled));
    let Request::Update {
        resource_version, ..
    } = &again
    else {
        panic!("{again:?}")
    };
    assert_eq!(resource_version, "2");
    let reply = s.confirm(&again);
    let outcome = stepped(s.feed(reply));
    assert!(outcome.is_leading() && outcome.renewed && outcome.slow_path);
}

#[test]
fn when_the_write_and_the_read_fail_the_term_lasts_until_its_deadline_and_no_longer() {
    let mut s = Scenario::new();
    let first = s.lead();
    let deadline = first.status.leader_deadline().unwrap();
    s.advance(Duration::from_secs(1));
    send(s.begin());
    let get = send(s.feed(Reply::Failed(timeout())));
    assert!(matches!(get, Request::Get { .. }));
    let outcome = stepped(s.feed(Reply::Failed(timeout())));
    assert!(outcome.is_leading() && !outcome.renewed && outcome.error.is_some());
    assert_eq!(
        outcome.status.leader_deadline(),
        Some(deadline),
        "not moved"
    );
    assert!(s.e.is_leader(deadline - Duration::from_millis(1)));
    assert!(!s.e.is_leader(deadline), "the term ends at its deadline");
}

#[test]
fn a_lock_deleted_under_its_leader_is_read_and_created_again_by_it() {
    let mut s = Scenario::new();
    let first = s.lead();
    let Status::Leading { term, .. } = first.status else {
        panic!()
    };
    s.advance(Duration::from_secs(1));
    send(s.begin());
    let get = send(s.feed(Reply::NotFound));
    assert!(matches!(get, Request::Get { .. }));
    let create = send(s.feed(Reply::NotFound));
    let Request::Create { record, .. } = &create else {
        panic!("the leader re-creates it: {create:?}")
    };
    assert_eq!(record.holder_identity, ME);
    assert!(
        record.leader_transitions >= term,
        "fencing tokens never go back"
    );
}
