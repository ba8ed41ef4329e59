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
        if el.alive && !el.stopping {
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
                if let Some(m) = self.meta.get(&kind).cloned() {
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
