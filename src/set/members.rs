//! Who else campaigns in the set: every member keeps a Lease of its own (`<set>-member-<hash>`), and the
//! others see it change. A member counts as live while its record names a holder and has changed within
//! that holder's lease duration, by our own monotonic clock (as any holder's lease is judged).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::election::later;
use crate::record::LeaderElectionRecord;

/// The label every object of a set carries: its shard locks and its members' leases.
pub(crate) const SET_LABEL: &str = "kube-elector/set";
/// The label that marks a member's own lease.
pub(crate) const MEMBER_LABEL: &str = "kube-elector/member";

/// The name of a member's lease: the set's name and a stable hash of the identity (identities need not
/// be valid object names).
pub(crate) fn member_lease(set: &str, identity: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in identity.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{set}-member-{h:016x}")
}

#[derive(Debug, Clone)]
struct Seen {
    record: LeaderElectionRecord,
    at: Instant,
}

/// The other members' leases as we saw them last.
#[derive(Debug, Default)]
pub(crate) struct Members {
    seen: HashMap<String, Seen>,
}

impl Members {
    /// A member's lease as it is now (`None`: deleted); `now` restarts its countdown if it changed to a
    /// later record.
    pub(crate) fn observe(
        &mut self,
        lease: &str,
        record: Option<LeaderElectionRecord>,
        now: Instant,
    ) {
        match record {
            None => {
                self.seen.remove(lease);
            }
            Some(record) => match self.seen.get_mut(lease) {
                Some(s) if s.record == record => {}
                // An older record than the one we have (a listing answered just before a renew the
                // watch has shown us already) is a stale read: it must not restart the countdown.
                Some(s) if record.renew_time < s.record.renew_time => {}
                Some(s) => {
                    s.record = record;
                    s.at = now;
                }
                None => {
                    self.seen
                        .insert(lease.to_string(), Seen { record, at: now });
                }
            },
        }
    }

    /// Forget the leases not in `names` (a listing that no longer shows them).
    pub(crate) fn keep_only(&mut self, names: &[String]) {
        self.seen.retain(|k, _| names.contains(k));
    }

    /// The live members' identities, ours included, sorted.
    pub(crate) fn live(&self, me: &str, now: Instant) -> Vec<String> {
        let mut live: Vec<String> = self
            .seen
            .values()
            .filter(|s| !s.record.holder_identity.is_empty())
            .filter(|s| {
                let secs = s.record.lease_duration_seconds.max(1);
                now < later(s.at, Duration::from_secs(u64::from(secs.unsigned_abs())))
            })
            .map(|s| s.record.holder_identity.clone())
            .collect();
        live.push(me.to_string());
        live.sort();
        live.dedup();
        live
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(holder: &str, renew: i64) -> LeaderElectionRecord {
        LeaderElectionRecord {
            holder_identity: holder.into(),
            lease_duration_seconds: 2,
            renew_time: chrono::DateTime::from_timestamp(renew, 0),
            ..Default::default()
        }
    }

    #[test]
    fn a_member_is_live_while_its_lease_changes() {
        let mut m = Members::default();
        let t = Instant::now();
        m.observe("x-member-1", Some(record("b", 1)), t);
        assert_eq!(m.live("a", t), ["a", "b"]);
        // The same record a while later: the countdown runs from the first sight.
        m.observe(
            "x-member-1",
            Some(record("b", 1)),
            t + Duration::from_millis(1500),
        );
        assert_eq!(m.live("a", t + Duration::from_millis(1999)), ["a", "b"]);
        assert_eq!(m.live("a", t + Duration::from_secs(2)), ["a"]);
        // A renew restarts it.
        m.observe(
            "x-member-1",
            Some(record("b", 2)),
            t + Duration::from_secs(3),
        );
        assert_eq!(m.live("a", t + Duration::from_secs(4)), ["a", "b"]);
        // A stale read of an older record changes nothing: the countdown runs from the renew.
        m.observe(
            "x-member-1",
            Some(record("b", 1)),
            t + Duration::from_millis(4500),
        );
        assert_eq!(m.live("a", t + Duration::from_millis(4999)), ["a", "b"]);
        assert_eq!(m.live("a", t + Duration::from_secs(5)), ["a"]);
        // Released or deleted: gone at once.
        m.observe(
            "x-member-1",
            Some(record("", 3)),
            t + Duration::from_secs(4),
        );
        assert_eq!(m.live("a", t + Duration::from_secs(4)), ["a"]);
        m.observe("x-member-2", Some(record("c", 1)), t);
        m.observe("x-member-2", None, t);
        assert_eq!(m.live("a", t), ["a"]);
        assert!(member_lease("x", "pod_1").starts_with("x-member-"));
        assert_ne!(member_lease("x", "a"), member_lease("x", "b"));
    }
}
