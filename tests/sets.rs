//! Elector sets on the embedded API server: many locks on a few threads, balanced between members,
//! never two owners of one lock, and every lock owned again after a member leaves.

mod common;

use std::time::{Duration, Instant};

use common::{timing, wait_until};
use kube_elector::set::{ElectorSet, ElectorSetHandle};
use kube_elector::testing::ApiServer;

fn member(
    server: &ApiServer,
    set: &str,
    id: &str,
    shards: usize,
    hashing: bool,
) -> ElectorSetHandle {
    ElectorSet::builder(server.config(), set)
        .shards(shards)
        .identity(id)
        .timing(timing(2, 1500, 200))
        .consistent_hashing(hashing)
        .start()
        .unwrap()
}

/// For each shard, at most one member leads it, sampled every millisecond for `d`.
fn one_owner_each(members: &[&ElectorSetHandle], d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        for shard in 0..members[0].len() {
            let owners: Vec<&str> = members
                .iter()
                .filter(|m| m.is_leader(shard))
                .map(|m| m.identity())
                .collect();
            assert!(
                owners.len() <= 1,
                "shard {shard} has two owners: {owners:?}"
            );
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Every shard owned by exactly one member, each within one of its share, within `within`.
fn balanced(members: &[&ElectorSetHandle], within: Duration) -> bool {
    let n = members[0].len();
    let share = n.div_ceil(members.len());
    wait_until(within, || {
        let counts: Vec<usize> = members.iter().map(|m| m.owned().len()).collect();
        counts.iter().sum::<usize>() == n && counts.iter().all(|c| *c <= share && *c + 1 >= share)
    })
}

/// Balanced, and then no shard changing hands for `quiet` (with hashing, members hand shards meant for
/// others over one at a time after the counts are even), within `within`.
fn settled(members: &[&ElectorSetHandle], quiet: Duration, within: Duration) -> bool {
    let end = Instant::now() + within;
    let mut last: Option<(Vec<Vec<usize>>, Instant)> = None;
    while Instant::now() < end {
        let owned: Vec<Vec<usize>> = members.iter().map(|m| m.owned()).collect();
        let n = members[0].len();
        let share = n.div_ceil(members.len());
        let even = owned.iter().map(Vec::len).sum::<usize>() == n
            && owned
                .iter()
                .all(|o| o.len() <= share && o.len() + 1 >= share);
        match &last {
            Some((prev, since)) if even && *prev == owned => {
                if since.elapsed() >= quiet {
                    return true;
                }
            }
            _ => last = even.then(|| (owned, Instant::now())),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn one_member_takes_every_shard_and_releases_them_on_stop() {
    let server = ApiServer::start().unwrap();
    let a = member(&server, "solo", "a", 10, false);
    assert!(wait_until(Duration::from_secs(5), || a.owned().len() == 10));
    a.stop().unwrap();
    for i in 0..10 {
        assert_eq!(
            server
                .lease_holder("default", &format!("solo-{i}"))
                .as_deref(),
            Some(""),
            "shard {i} released"
        );
    }
}

#[test]
fn members_share_the_shards_and_take_over_from_one_that_leaves() {
    let server = ApiServer::start().unwrap();
    let a = member(&server, "shared", "a", 12, false);
    assert!(wait_until(Duration::from_secs(5), || a.owned().len() == 12));
    let b = member(&server, "shared", "b", 12, false);
    assert!(
        balanced(&[&a, &b], Duration::from_secs(10)),
        "two members: 6 each"
    );
    let c = member(&server, "shared", "c", 12, false);
    assert!(
        balanced(&[&a, &b, &c], Duration::from_secs(10)),
        "three: 4 each"
    );
    one_owner_each(&[&a, &b, &c], Duration::from_secs(1));
    // A graceful leave: its shards are released and taken within moments.
    let left = Instant::now();
    c.stop().unwrap();
    assert!(
        balanced(&[&a, &b], Duration::from_secs(6)),
        "back to 6 each"
    );
    assert!(left.elapsed() < Duration::from_secs(6));
    one_owner_each(&[&a, &b], Duration::from_millis(500));
    // A crash: its shards are taken once their leases run out.
    let crashed = Instant::now();
    b.abandon();
    assert!(wait_until(Duration::from_secs(8), || a.owned().len() == 12));
    assert!(
        crashed.elapsed() >= Duration::from_millis(1800),
        "not before the leases ran out: {:?}",
        crashed.elapsed()
    );
}

#[test]
fn with_consistent_hashing_a_restarted_member_gets_much_the_same_shards_back() {
    let server = ApiServer::start().unwrap();
    let a = member(&server, "hashed", "a", 24, true);
    let b = member(&server, "hashed", "b", 24, true);
    let c = member(&server, "hashed", "c", 24, true);
    let quiet = Duration::from_secs(2);
    assert!(settled(&[&a, &b, &c], quiet, Duration::from_secs(30)));
    // Members that start together settle on whatever each won first (a member at its floor keeps a
    // shard meant for another rather than go short). A member that restarts comes back to the shards
    // meant for it, which the others give up first: restart it once to get there, then again.
    let restart = |c: ElectorSetHandle| {
        c.stop().unwrap();
        assert!(balanced(&[&a, &b], Duration::from_secs(10)));
        let c = member(&server, "hashed", "c", 24, true);
        assert!(settled(&[&a, &b, &c], quiet, Duration::from_secs(30)));
        c
    };
    let c = restart(c);
    let before: Vec<usize> = c.owned();
    let c = restart(c);
    let after = c.owned();
    let kept = after.iter().filter(|s| before.contains(s)).count();
    assert!(
        kept * 4 >= after.len() * 3,
        "most of its shards came back: {before:?} then {after:?}"
    );
    one_owner_each(&[&a, &b, &c], Duration::from_millis(500));
}
