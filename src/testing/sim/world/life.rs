//! Faults and life: fault windows, crashes, stops and restarts, clock jumps, deletes, watch stalls.

use super::super::model::ObjectKind;
use crate::events::StopReason;

use super::{Busy, Ev, FaultKind, FaultWindow, MS, SEC, World};

impl World {
    pub(super) fn fault_tick(&mut self) {
        let kinds = [
            FaultKind::Errors,
            FaultKind::Throttle,
            FaultKind::Drops,
            FaultKind::Latency,
            FaultKind::Conflicts,
            FaultKind::Partition,
        ];
        let kind = kinds[(self.rng.next_u64() % kinds.len() as u64) as usize];
        let length = 200 * MS + (self.rng.next_f64() * 4.0 * SEC as f64) as u64;
        let target = (self.rng.next_f64() < 0.5)
            .then(|| (self.rng.next_u64() % self.electors.len() as u64) as usize);
        let window = FaultWindow {
            until: self.now + length,
            kind,
            target,
            probability: 0.3 + 0.7 * self.rng.next_f64(),
        };
        self.trace(|| {
            format!(
                "fault {kind:?} on {target:?} for {:.3} s",
                length as f64 / SEC as f64
            )
        });
        self.disturb(self.now + length);
        self.windows.push(window);
        let next = self.now + length + 2 * SEC + self.rng.next_u64() % (8 * SEC);
        self.schedule(next, Ev::FaultTick);
    }

    /// The server counts as disturbed until `until`, plus what a disturbance leaves behind: requests
    /// that time out (one request timeout) and a `Retry-After` or a deletion honoured for a lease.
    pub(super) fn disturb(&mut self, until: u64) {
        let longest = self
            .electors
            .iter()
            .map(|e| e.timing.request_timeout_cap() + e.timing.lease_duration)
            .max()
            .unwrap_or_default();
        let after = until + longest.as_nanos() as u64;
        self.disturbed_until = self.disturbed_until.max(after);
    }

    pub(super) fn life_tick(&mut self) {
        let e = (self.rng.next_u64() % self.electors.len() as u64) as usize;
        let r = self.rng.next_f64();
        let el = &self.electors[e];
        if el.alive && !el.stopping && r < 0.05 && self.successors < 2 {
            self.start_successor(e);
        } else if el.alive && !el.stopping {
            let restart = self.now + 500 * MS + self.rng.next_u64() % (6 * SEC);
            if r < 0.5 {
                self.crash(e);
            } else {
                self.stop(e);
            }
            self.schedule(restart, Ev::Restart { e });
        }
        let next = self.now + 3 * SEC + self.rng.next_u64() % (12 * SEC);
        self.schedule(next, Ev::LifeTick);
    }

    /// A crash: the process is gone; requests already sent may still take effect.
    pub(super) fn crash(&mut self, e: usize) {
        let el = &mut self.electors[e];
        el.alive = false;
        el.published = None;
        el.announced = false;
        el.busy = Busy::Idle;
        let id = el.identity.clone();
        self.trace(|| format!("{id} CRASHED"));
    }

    /// A graceful stop, as `LeaderHandle::stop` does it: leadership ends at once, the request in flight
    /// is cut, then the lock is released.
    pub(super) fn stop(&mut self, e: usize) {
        let (now, wall) = self.local_now(e);
        let el = &mut self.electors[e];
        el.stopping = true;
        el.published = None;
        let name = el.identity.clone();
        self.resigned.insert(name, self.now);
        let el = &mut self.electors[e];
        if let Busy::Step(id) = el.busy {
            if let Some(r) = self.requests.get_mut(&id) {
                r.done = true;
            }
        }
        el.busy = Busy::Idle;
        let resigned = el.election.resign(StopReason::Stopped);
        let was = el.announced;
        el.announced = false;
        let id = el.identity.clone();
        if was {
            self.trace(|| format!("{id} StoppedLeading Stopped"));
        }
        let _ = resigned;
        let action = self.electors[e].election.begin_release(now, wall);
        self.electors[e].busy = Busy::Release(u64::MAX);
        self.act(e, action);
    }

    pub(super) fn restart(&mut self, e: usize) {
        if self.electors[e].alive {
            return;
        }
        let old = &self.electors[e];
        let (kind, timing, watching, inc) = (old.kind, old.timing, old.watching, old.inc + 1);
        let (old_identity, clock) = (old.identity.clone(), old.clock.clone());
        // After a crash a pod may come back under the same name; otherwise a new identity.
        let identity = if self.rng.next_f64() < 0.3 {
            old_identity
        } else {
            format!("e{e}.{inc}")
        };
        let mut fresh = self.new_elector(e, identity, kind, timing, watching, self.now);
        fresh.inc = inc;
        fresh.clock = clock;
        let id = fresh.identity.clone();
        self.electors[e] = fresh;
        self.trace(|| format!("{id} started"));
        self.attempt_now(e);
    }

    pub(super) fn clock_tick(&mut self) {
        let e = (self.rng.next_u64() % self.electors.len() as u64) as usize;
        if self.cfg.faults && self.rng.next_f64() < 0.3 {
            let by = ((self.rng.next_f64() * 2.0 - 1.0) * 3.0 * SEC as f64) as i64;
            self.electors[e].clock.jump_wall(by);
        } else {
            let rate = 1.0 + self.cfg.drift * (2.0 * self.rng.next_f64() - 1.0);
            let now = self.now;
            self.electors[e].clock.set_rate(now, rate);
            // Timers run on the elector's clock: move them to where the new rate puts them.
            let el = &self.electors[e];
            match el.busy {
                Busy::Step(id) | Busy::Release(id) => {
                    if let Some(local) = self.requests.get(&id).map(|r| r.give_up) {
                        let at = el.clock.real_at(local);
                        self.schedule(at, Ev::Timeout { id, local });
                    }
                }
                Busy::Idle => {
                    let (at, generation) = (el.clock.real_at(el.wake_local), el.generation);
                    self.schedule(at, Ev::Wake { e, generation });
                }
            }
        }
        let next = self.now + SEC + self.rng.next_u64() % (4 * SEC);
        self.schedule(next, Ev::ClockTick);
    }

    pub(super) fn delete_tick(&mut self) {
        let kinds = [
            ObjectKind::Lease,
            ObjectKind::ConfigMap,
            ObjectKind::Endpoints,
        ];
        for kind in kinds {
            if self.rng.next_f64() < 0.7 {
                // A cleared record's ghost is who held the object deleted now.
                let ghost = self.cleared.remove(&kind).map(|(g, _)| g);
                if let Some(m) = ghost.or_else(|| self.meta.get(&kind).cloned()) {
                    if let Some(change) = self.model.delete(kind) {
                        self.last_deletion = Some(self.now);
                        self.trace(|| format!("admin deleted {kind:?} (held by {:?})", m.holder));
                        self.deleted.insert(kind, m);
                        self.broadcast(change);
                        self.report.faults += 1;
                        self.disturb(self.now);
                    }
                }
            }
        }
        let next = self.now + 5 * SEC + self.rng.next_u64() % (25 * SEC);
        self.schedule(next, Ev::DeleteTick);
    }

    /// An administrator or a tool clears the record of a held lock object (not a release by its
    /// holder): its holder may still lead, so nobody who saw it held may take it before its lease ends.
    pub(super) fn clear_tick(&mut self) {
        let kinds = [
            ObjectKind::Lease,
            ObjectKind::ConfigMap,
            ObjectKind::Endpoints,
        ];
        for kind in kinds {
            let held = self
                .meta
                .get(&kind)
                .filter(|m| !m.holder.is_empty())
                .cloned();
            let Some(ghost) = held.filter(|_| self.rng.next_f64() < 0.7) else {
                continue;
            };
            let Some(change) = self.model.clear(kind) else {
                continue;
            };
            let informed = (0..self.electors.len())
                .filter(|&e| self.electors[e].saw.contains(&kind))
                .map(|e| (e, self.electors[e].inc))
                .collect();
            self.trace(|| format!("admin cleared {kind:?} (held by {:?})", ghost.holder));
            let record = self
                .model
                .stored(kind)
                .map(|s| s.record.clone())
                .unwrap_or_default();
            self.meta.insert(
                kind,
                super::ObjMeta {
                    holder: String::new(),
                    writer: (usize::MAX, 0),
                    duration: record.lease_duration_seconds,
                    record,
                    at: self.now,
                },
            );
            self.cleared.insert(kind, (ghost, informed));
            self.last_deletion = Some(self.now);
            self.broadcast(change);
            self.report.faults += 1;
            self.disturb(self.now);
        }
        let next = self.now + 5 * SEC + self.rng.next_u64() % (25 * SEC);
        self.schedule(next, Ev::ClearTick);
    }

    /// Now and then, for a few seconds, another writer touches the lock objects every 50 to 600 ms
    /// without changing the record (labels, another controller's key in a shared ConfigMap). Not a
    /// disturbance: followers must take over from a crashed holder in time all the same.
    pub(super) fn touch_tick(&mut self) {
        if self.now >= self.touching_until && self.rng.next_f64() < 0.3 {
            self.touching_until = self.now + SEC + self.rng.next_u64() % (8 * SEC);
            self.trace(|| "another writer starts touching the lock objects".to_string());
        }
        if self.now < self.touching_until {
            for kind in [
                ObjectKind::Lease,
                ObjectKind::ConfigMap,
                ObjectKind::Endpoints,
            ] {
                if let Some(change) = self.model.touch(kind) {
                    self.broadcast(change);
                }
            }
        }
        let next = if self.now < self.touching_until {
            self.now + 50 * MS + self.rng.next_u64() % (550 * MS)
        } else {
            self.now + 2 * SEC + self.rng.next_u64() % (10 * SEC)
        };
        self.schedule(next, Ev::TouchTick);
    }

    /// A pod re-created under a running elector's name (a StatefulSet's, say) while that elector is cut
    /// off: a second process with the same identity.
    pub(super) fn start_successor(&mut self, e: usize) {
        let old = &self.electors[e];
        let (kind, timing, watching) = (old.kind, old.timing, old.watching);
        let (identity, clock) = (old.identity.clone(), old.clock.clone());
        let cut = 500 * MS + self.rng.next_u64() % (5 * SEC);
        self.windows.push(FaultWindow {
            until: self.now + cut,
            kind: FaultKind::Partition,
            target: Some(e),
            probability: 1.0,
        });
        self.disturb(self.now + cut);
        let n = self.electors.len();
        let mut fresh = self.new_elector(n, identity.clone(), kind, timing, watching, self.now);
        fresh.clock = clock;
        self.electors.push(fresh);
        self.successors += 1;
        self.trace(|| format!("e{e} ({identity}) cut off; a successor e{n} starts under its name"));
        self.attempt_now(n);
    }

    pub(super) fn watch_tick(&mut self) {
        let watchers: Vec<usize> = (0..self.electors.len())
            .filter(|&e| self.electors[e].alive && self.electors[e].watching)
            .collect();
        if !watchers.is_empty() {
            let e = watchers[(self.rng.next_u64() % watchers.len() as u64) as usize];
            let length = 500 * MS + self.rng.next_u64() % (6 * SEC);
            let stall = self.rng.next_f64() < 0.6;
            let relist = !stall || self.rng.next_f64() < 0.5;
            let el = &mut self.electors[e];
            if stall {
                // Silent: the stream still looks open.
                el.watch_stalled = true;
            } else {
                el.watch_connected = false;
            }
            let inc = el.inc;
            self.trace(|| {
                format!(
                    "watch of e{e} {} for {length} ns",
                    if stall { "stalls" } else { "drops" }
                )
            });
            self.report.faults += 1;
            // A stalled stream delivers stale changes late, which restart countdowns: not a healthy time.
            self.disturb(self.now + length);
            self.schedule(self.now + length, Ev::WatchResume { e, inc, relist });
            if !stall && self.electors[e].busy == Busy::Idle {
                self.pace(e);
            }
        }
        let next = self.now + 3 * SEC + self.rng.next_u64() % (9 * SEC);
        self.schedule(next, Ev::WatchTick);
    }
}
