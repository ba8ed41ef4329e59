//! Watches: every change broadcast to watching electors, with stalls and resumes.

use super::super::model::Change;
use crate::election::Watched;

use super::{Busy, Ev, World};

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
