//! The rules a set's run must keep, checked as it goes: one owner per shard at any instant, no early
//! takeover of any object, fencing tokens that grow with each new owner, events in order; and after a
//! quiet spell, every shard owned and every member holding between `floor` and `ceil` of its share.

use super::super::Invariant;
use super::{Life, MS, SEC, World};
use crate::events::LeaderEvent;
use crate::record::VersionedRecord;

impl World {
    /// Whether member `m` leads shard `i` now, by its own clock: what `is_leader(i)` answers.
    fn leads(&self, m: usize, i: usize) -> bool {
        let mb = &self.members[m];
        if mb.life == Life::Down {
            return false;
        }
        let now = mb.clock.instant(self.base, self.now);
        mb.states
            .get(i)
            .and_then(|s| s.deadline_instant())
            .is_some_and(|d| now < d)
    }

    /// How many shards each running member leads, for messages.
    fn holdings(&self, running: &[usize]) -> String {
        running
            .iter()
            .map(|&m| {
                let held = (0..self.shards).filter(|&i| self.leads(m, i)).count();
                format!("{} {held}", self.members[m].identity)
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// One owner per shard: no other live member leads a shard `m` leads.
    pub(super) fn check_owners(&mut self, m: usize) {
        for i in 0..self.shards {
            if !self.leads(m, i) {
                continue;
            }
            if let Some(o) = (0..self.members.len()).find(|&o| o != m && self.leads(o, i)) {
                let (a, b) = (
                    self.members[m].identity.clone(),
                    self.members[o].identity.clone(),
                );
                self.violation(
                    Invariant::OneLeader,
                    format!("shard {i}: {a} and {b} both lead it"),
                );
                return;
            }
        }
    }

    /// The events member `m` has sent: each `StartedLeading` after a `StoppedLeading` (or none), and a
    /// new owner's term above the last owner's.
    pub(super) fn check_events(&mut self, m: usize) {
        let Some(rx) = self.members[m].events.clone() else {
            return;
        };
        let inc = self.members[m].inc;
        while let Ok(e) = rx.try_recv() {
            let i = e.shard;
            let id = self.members[m].identity.clone();
            match e.event {
                LeaderEvent::StartedLeading { transitions } => {
                    self.report.terms += 1;
                    self.trace(|| format!("{id} leads shard {i}, term {transitions}"));
                    if std::mem::replace(&mut self.members[m].announced[i], true) {
                        self.violation(
                            Invariant::EventOrder,
                            format!("{id}: StartedLeading of shard {i} twice"),
                        );
                    }
                    if let Some((pm, pinc, term)) = self.last_started[i] {
                        if (pm, pinc) != (m, inc) && transitions <= term {
                            let prev = self.members[pm].identity.clone();
                            self.violation(
                                Invariant::FencingToken,
                                format!("{id} leads shard {i} with term {transitions} after {prev} had {term}"),
                            );
                        }
                    }
                    self.last_started[i] = Some((m, inc, transitions));
                }
                LeaderEvent::StoppedLeading { reason } => {
                    self.trace(|| format!("{id} stops leading shard {i}: {reason}"));
                    if !std::mem::replace(&mut self.members[m].announced[i], false) {
                        self.violation(
                            Invariant::EventOrder,
                            format!("{id}: StoppedLeading of shard {i} without StartedLeading"),
                        );
                    }
                }
                _ => {}
            }
        }
    }

    /// A write changed object `name`: no one takes it from another holder before that holder's lease,
    /// counted from its last write, ran out (by real time, allowing for the drift bound).
    pub(super) fn written(&mut self, name: &str, v: &VersionedRecord, writer: &str) {
        let r = &v.record;
        let key = (r.holder_identity.clone(), r.incarnation.clone());
        if let Some((holder, incarnation, at, secs)) = self.last_write.get(name).cloned() {
            let taken = !r.holder_identity.is_empty()
                && !holder.is_empty()
                && r.holder_identity == writer
                && (holder, incarnation) != key;
            let lease = u64::from(secs.unsigned_abs()) * SEC;
            let earliest = at + (lease as f64 / (1.0 + self.cfg.drift)) as u64;
            if taken && self.now + MS < earliest {
                let held = format!("{:?}", self.last_write.get(name).map(|w| &w.0));
                self.violation(
                    Invariant::NoEarlyTakeover,
                    format!(
                        "{writer} took {name} from {held} {:.3} s after its last write (lease {secs} s)",
                        (self.now - at) as f64 / SEC as f64
                    ),
                );
            }
        }
        self.last_write.insert(
            name.to_string(),
            (key.0, key.1, self.now, r.lease_duration_seconds),
        );
    }

    /// After a quiet spell: every shard owned (within a lease and a few retries of the last disturbance)
    /// and every running member holding between `floor` and `ceil` of its share (a while later: members
    /// give shards up one at a time).
    pub(super) fn check_quiet(&mut self) {
        let running: Vec<usize> = (0..self.members.len())
            .filter(|&m| self.members[m].life == Life::Running)
            .collect();
        if running.is_empty() {
            return;
        }
        let lease = self.timing.lease_duration.as_nanos() as u64;
        let retry = self.timing.retry_period.as_nanos() as u64;
        let drift = 1.0 + 2.0 * self.cfg.drift;
        // A crashed member's leases run out (seen up to a poll late), then its member lease does, and
        // the others with room take its shards at their next step; with hashing a free shard waits a
        // lease for the member it is meant for.
        let hashing_grace = 0;
        let owned_bound = (lease as f64 * drift) as u64 + 22 * retry / 10 + 50 * MS + hashing_grace;
        let quiet = self.now.saturating_sub(self.quiet_from);
        // A shard moving between members is unowned for a moment: only one unowned for the whole bound
        // (since it was last seen owned, the world quiet throughout) breaks the rule.
        for i in 0..self.shards {
            if running.iter().any(|&m| self.leads(m, i)) {
                self.unowned_since[i] = None;
                continue;
            }
            let since = *self.unowned_since[i].get_or_insert(self.now);
            let gap = self.now.saturating_sub(since.max(self.quiet_from));
            if gap >= owned_bound {
                let held = self.holdings(&running);
                self.violation(
                    Invariant::Liveness,
                    format!(
                        "shard {i} has had no owner for {:.3} s, the world quiet throughout; held: {held}",
                        gap as f64 / SEC as f64
                    ),
                );
                return;
            }
        }
        let (floor, ceil) = (
            self.shards / running.len(),
            self.shards.div_ceil(running.len()),
        );
        let rounds = ceil as u64 + 3;
        let balance_bound = owned_bound + lease + rounds * 3 * retry;
        if quiet < balance_bound || self.unowned_since.iter().any(Option::is_some) {
            return;
        }
        self.report.balance_checks += 1;
        for &m in &running {
            let held = (0..self.shards).filter(|&i| self.leads(m, i)).count();
            if held < floor || held > ceil {
                let id = self.members[m].identity.clone();
                self.violation(
                    Invariant::Balance,
                    format!(
                        "{id} holds {held} shards of {}, {} members: not within {floor}..={ceil}, {:.3} s after the last disturbance",
                        self.shards,
                        running.len(),
                        quiet as f64 / SEC as f64
                    ),
                );
                return;
            }
        }
    }
}
