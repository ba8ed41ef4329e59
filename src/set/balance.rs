//! Balance, as pure functions: each member's fair share of the shards, the member a shard prefers
//! (rendezvous hashing, so that a member joining or leaving moves few shards), the member each shard is
//! meant for when every member holds at most its share, and which shards a member over its share gives
//! up.

/// Each member's share: `ceil(shards / members)`, so the shares cover every shard.
pub(crate) fn share(shards: usize, members: usize) -> usize {
    shards.div_ceil(members.max(1))
}

/// A stable 64-bit hash (FNV-1a, then splitmix64's finalizer to spread it): the same in every process
/// and every version, as preferences must be.
fn stable_hash(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes().chain(std::iter::once(0)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// A stable hash of a shard for one member: members with room for a few of many free shards order them
/// by it, so they go for different ones.
pub(crate) fn spread(shard: &str, member: &str) -> u64 {
    stable_hash(&[member, shard])
}

/// The member `shard` prefers among `members`: the one with the highest weight for it (rendezvous
/// hashing). When a member leaves only its shards move; when one joins, only the shards it now wins.
#[cfg(test)]
pub(crate) fn preferred<'a>(shard: &str, members: &'a [String]) -> Option<&'a str> {
    members
        .iter()
        .max_by_key(|m| (stable_hash(&[shard, m]), m.as_str()))
        .map(String::as_str)
}

/// The member each shard is meant for (an index into `members`), every member meant for
/// `floor(shards / members)` or `ceil(shards / members)` of them: rendezvous hashing with bounded load.
/// Every (shard, member) pair is weighed and the heaviest are taken first, a shard going to the first
/// member of its pairs with room: first with room for `floor` each, then the shards left over (fewer
/// than the members) with room for one more. The same live members give every member the same answer,
/// and a member that comes back among the same peers is meant for exactly the shards it had; without
/// the bound a member many shards prefer would be left to pick among them at random.
pub(crate) fn targets(names: &[&str], members: &[String]) -> Vec<Option<usize>> {
    let mut pairs: Vec<(u64, usize, usize)> = Vec::with_capacity(names.len() * members.len());
    for (s, name) in names.iter().enumerate() {
        for (m, member) in members.iter().enumerate() {
            pairs.push((stable_hash(&[name, member]), s, m));
        }
    }
    // Heaviest first; ties (never in practice) by shard, then member name, so the order is total.
    pairs.sort_unstable_by(|a, b| {
        b.0.cmp(&a.0)
            .then(a.1.cmp(&b.1))
            .then(members[a.2].cmp(&members[b.2]))
    });
    let mut target = vec![None; names.len()];
    let mut load = vec![0usize; members.len()];
    let floor = names.len() / members.len().max(1);
    for cap in [floor, floor + 1] {
        for &(_, s, m) in &pairs {
            if target[s].is_none() && load[m] < cap {
                target[s] = Some(m);
                load[m] += 1;
            }
        }
    }
    target
}

/// Which of `owned` (our shards, by index) to give up to come down to `cap`: with `mine` (whether a
/// shard is meant for us), first those that are not; then the highest-numbered.
pub(crate) fn to_shed(owned: &[usize], cap: usize, mine: impl Fn(usize) -> bool) -> Vec<usize> {
    let excess = owned.len().saturating_sub(cap);
    let mut order: Vec<usize> = owned.to_vec();
    order.sort_by_key(|&i| (mine(i), std::cmp::Reverse(i)));
    order.truncate(excess);
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("shard-{i}")).collect()
    }

    #[test]
    fn shares_cover_every_shard() {
        assert_eq!(share(32, 3), 11);
        assert_eq!(share(32, 4), 8);
        assert_eq!(share(32, 0), 32);
        for n in 1..50 {
            for m in 1..10 {
                assert!(share(n, m) * m >= n);
                assert!(share(n, m) * m < n + m);
            }
        }
    }

    #[test]
    fn a_member_leaving_moves_only_its_shards() {
        let shards = names(1000);
        let all: Vec<String> = (0..5).map(|i| format!("m{i}")).collect();
        let without: Vec<String> = all.iter().filter(|m| *m != "m2").cloned().collect();
        let mut moved = 0;
        for s in &shards {
            let before = preferred(s, &all).unwrap();
            let after = preferred(s, &without).unwrap();
            if before != after {
                assert_eq!(before, "m2", "only the leaver's shards move");
                moved += 1;
            }
        }
        // About a fifth of the shards were m2's.
        assert!((120..280).contains(&moved), "{moved}");
        // Stable: the same answer every time, in any order of members.
        let mut reversed = all.clone();
        reversed.reverse();
        assert!(
            shards
                .iter()
                .all(|s| preferred(s, &all) == preferred(s, &reversed))
        );
    }

    #[test]
    fn targets_give_every_member_its_floor_or_ceiling_and_come_back_the_same() {
        let n = names(24);
        let n: Vec<&str> = n.iter().map(String::as_str).collect();
        let abc: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let t = targets(&n, &abc);
        for m in 0..3 {
            assert_eq!(t.iter().filter(|x| **x == Some(m)).count(), 8);
        }
        // Another order of the same members: the same member for every shard.
        let cba: Vec<String> = ["c", "b", "a"].map(String::from).to_vec();
        let u = targets(&n, &cba);
        for (x, y) in t.iter().zip(&u) {
            assert_eq!(x.map(|m| &abc[m]), y.map(|m| &cba[m]));
        }
        // Uneven: 16 shards, 5 members: one meant for 4, four for 3; every shard meant for someone.
        for count in [16usize, 17, 31, 2] {
            let n16 = names(count);
            let n16: Vec<&str> = n16.iter().map(String::as_str).collect();
            let five: Vec<String> = (0..5).map(|i| format!("m{i}")).collect();
            let t16 = targets(&n16, &five);
            assert!(t16.iter().all(Option::is_some));
            for m in 0..5 {
                let c = t16.iter().filter(|x| **x == Some(m)).count();
                assert!((count / 5..=count.div_ceil(5)).contains(&c), "{count}: {c}");
            }
        }
        // A member leaving: most of the others' shards stay theirs (a few move between them as the
        // bound changes; here 14 of 16).
        let ab: Vec<String> = ["a", "b"].map(String::from).to_vec();
        let after = targets(&n, &ab);
        let stayed = (0..24)
            .filter(|&s| t[s].is_some_and(|m| m < 2) && t[s] == after[s])
            .count();
        assert!(
            stayed >= 12,
            "a's and b's shards mostly stay theirs: {stayed} of 16"
        );
    }

    #[test]
    fn shedding_gives_up_the_shards_meant_for_others_first() {
        let owned: Vec<usize> = (0..8).collect();
        let mine = |i: usize| i % 2 == 0;
        let shed = to_shed(&owned, 4, mine);
        assert_eq!(shed, vec![7, 5, 3, 1]);
        assert_eq!(to_shed(&owned, 6, mine), vec![7, 5]);
        assert_eq!(to_shed(&owned, 8, mine), Vec::<usize>::new());
        assert_eq!(to_shed(&[1, 5, 3], 1, |_| true), vec![5, 3]);
    }
}
