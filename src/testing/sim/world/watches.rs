//! Watches: every change broadcast to watching electors, with stalls and resumes.

use super::super::model::Change;
use crate::election::Watched;

use super::{Busy, Ev, SEC, World};

impl World {
    pub(super) fn broadcast(&mut self, change: Change) {
        let kind = match &change {
            Change::Written(k, _) | Change::Deleted(k) => *k,
        };
        for e in 0..self.electors.len() {
            let el = &mut self.electors[e];
            if !el.alive || !el.watching || el.objects != [kind] {
                continue;
            }
            if el.watch_stalled {
                el.watch_backlog.push(change.clone());
                continue;
            }
            if !el.watch_connected {
                continue;
            }
            let inc = el.inc;
            let at = self.now + self.latency();
            self.schedule(
                at,
                Ev::Watch {
                    e,
                    inc,
                    change: change.clone(),
                },
            );
        }
    }

    /// A watch that lies to one watching elector: the object at its current version, shown released (or
    /// held by someone else). The elector may look again at once, but must never act on the lie.
    pub(super) fn lie_tick(&mut self) {
        let watchers: Vec<usize> = (0..self.electors.len())
            .filter(|&e| {
                let el = &self.electors[e];
                el.alive && el.watching && el.watch_connected && !el.watch_stalled
            })
            .collect();
        if !watchers.is_empty() {
            let e = watchers[(self.rng.next_u64() % watchers.len() as u64) as usize];
            let kind = self.electors[e].objects[0];
            if let Ok(mut v) = self.model.get(kind) {
                let t = self.wall_base + chrono::Duration::nanoseconds(self.now as i64);
                if self.rng.next_f64() < 0.7 {
                    v.record.holder_identity.clear();
                    v.record.lease_duration_seconds = 1;
                    v.record.acquire_time = Some(t);
                    v.record.renew_time = Some(t);
                } else {
                    v.record.holder_identity = "liar".into();
                    v.record.lease_duration_seconds = 1;
                    v.record.renew_time = Some(t);
                }
                let inc = self.electors[e].inc;
                self.trace(|| format!("the watch of e{e} lies: {:?}", v.record));
                self.report.faults += 1;
                // A lie restarts a countdown: a follower may wait longer (never shorter) than it should.
                self.disturb(self.now);
                let at = self.now + self.latency();
                self.schedule(
                    at,
                    Ev::Watch {
                        e,
                        inc,
                        change: Change::Written(kind, v),
                    },
                );
            }
        }
        let next = self.now + 2 * SEC + self.rng.next_u64() % (10 * SEC);
        self.schedule(next, Ev::LieTick);
    }

    pub(super) fn watched(&mut self, e: usize, inc: u32, change: Change) {
        let el = &mut self.electors[e];
        if el.inc != inc || !el.alive || el.stopping || !el.watch_connected {
            return;
        }
        let w = match change {
            Change::Written(_, v) => Watched::Changed(v),
            Change::Deleted(_) => Watched::Deleted,
        };
        el.watch_activity = el.clock.local(self.now);
        el.pending.put(w);
        if el.busy == Busy::Idle {
            self.take_pending(e);
        }
    }

    pub(super) fn watch_resume(&mut self, e: usize, inc: u32, relist: bool) {
        let el = &mut self.electors[e];
        if el.inc != inc || !el.alive {
            return;
        }
        el.watch_stalled = false;
        el.watch_connected = true;
        el.watch_activity = el.clock.local(self.now);
        let backlog = std::mem::take(&mut el.watch_backlog);
        let kind = el.objects[0];
        if relist {
            // A new watch starts with the object as it is now.
            let change = match self.model.get(kind) {
                Ok(v) => Change::Written(kind, v),
                Err(_) => Change::Deleted(kind),
            };
            self.watched(e, inc, change);
        } else {
            for change in backlog {
                self.watched(e, inc, change);
            }
        }
        if self.electors[e].busy == Busy::Idle && self.electors[e].pending.is_empty() {
            self.pace(e);
        }
    }
}
