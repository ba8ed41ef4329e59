//! Balance, as pure functions: each member's fair share of the shards, the member a shard prefers
//! (rendezvous hashing, so that a member joining or leaving moves few shards), and which shards a member
//! over its share gives up.

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

/// The member `shard` prefers among `members`: the one with the highest weight for it (rendezvous
/// hashing). When a member leaves only its shards move; when one joins, only the shards it now wins.
pub(crate) fn preferred<'a>(shard: &str, members: &'a [String]) -> Option<&'a str> {
    members
        .iter()
        .max_by_key(|m| (stable_hash(&[shard, m]), m.as_str()))
        .map(String::as_str)
}

/// Which of `owned` (our shards, by index) to give up to come down to `cap`: with `hashing`, first
/// those another member prefers; then the highest-numbered.
pub(crate) fn to_shed(
    owned: &[usize],
    names: &[&str],
    cap: usize,
    me: &str,
    members: &[String],
    hashing: bool,
) -> Vec<usize> {
    let excess = owned.len().saturating_sub(cap);
    let mut order: Vec<usize> = owned.to_vec();
    order.sort_by_key(|&i| {
        let ours = !hashing || preferred(names[i], members) == Some(me);
        (ours, std::cmp::Reverse(i))
    });
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
    fn shedding_gives_up_the_shards_others_prefer_first() {
        let n = names(8);
        let n: Vec<&str> = n.iter().map(String::as_str).collect();
        let members = vec!["a".to_string(), "b".to_string()];
        let owned: Vec<usize> = (0..8).collect();
        let shed = to_shed(&owned, &n, 4, "a", &members, true);
        assert_eq!(shed.len(), 4);
        let others_first = shed
            .iter()
            .take_while(|&&i| preferred(n[i], &members) != Some("a"))
            .count();
        let others = owned
            .iter()
            .filter(|&&i| preferred(n[i], &members) != Some("a"))
            .count();
        assert_eq!(others_first, others.min(4));
        assert_eq!(
            to_shed(&owned, &n, 8, "a", &members, true),
            Vec::<usize>::new()
        );
        assert_eq!(to_shed(&[1, 5, 3], &n, 1, "a", &members, false), vec![5, 3]);
    }
}
