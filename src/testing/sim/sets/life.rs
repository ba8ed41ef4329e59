//! What happens to the members and the server: crashes, graceful stops, restarts (under the same
//! identity or a new one), joins, members cut off from the server, watches that stall, error storms and
//! clock rates that change. Each disturbance moves `quiet_from`, from which the balance checks count.

use super::{Ev, Life, MS, SEC, World};
use crate::events::StopReason;

impl World {
    fn running(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|&m| self.members[m].life == Life::Running)
            .collect()
    }

    fn disturbed(&mut self, until: u64) {
        self.quiet_from = self.quiet_from.max(until);
    }

    pub(super) fn life_tick(&mut self) {
        let running = self.running();
        let r = self.rng.next_f64();
        let pick = |w: &mut World, of: &[usize]| of[(w.rng.next_u64() % of.len() as u64) as usize];
        if r < 0.2 && running.len() > 1 {
            let m = pick(self, &running);
            self.crash(m);
        } else if r < 0.35 && running.len() > 1 {
            let m = pick(self, &running);
            self.stop(m);
        } else if r < 0.45 && self.members.len() < self.max_members {
            let n = self.members.len();
            let start = self.now;
            self.add_member(format!("m{n}"), start);
            self.trace(|| format!("m{n} joins"));
            self.disturbed(start);
        } else if r < 0.6 && !running.is_empty() {
            let m = pick(self, &running);
            let lease = self.timing.lease_duration.as_nanos() as u64;
            let d = 200 * MS + self.rng.next_u64() % (2 * lease);
            let mb = &mut self.members[m];
            mb.cut_until = self.now + d;
            mb.watch_up = false;
            let (inc, id) = (mb.inc, mb.identity.clone());
            self.trace(|| format!("{id} cut off for {} ms", d / MS));
            self.schedule(self.now + d, Ev::WatchResume { m, inc });
            let until = self.now + d + self.request_timeout();
            self.disturbed(until);
        }
        // Members down for good so far come back now and then.
        let down: Vec<usize> = (0..self.members.len())
            .filter(|&m| self.members[m].life == Life::Down)
            .collect();
        if !down.is_empty() && self.rng.next_f64() < 0.3 {
            let m = pick(self, &down);
            self.schedule(self.now, Ev::Restart { m });
        }
        let next = self.now + 2 * SEC + self.rng.next_u64() % (20 * SEC);
        self.schedule(next, Ev::LifeTick);
    }

    /// The process dies: nothing of it runs any more; its leases run out on their own.
    fn crash(&mut self, m: usize) {
        let mb = &mut self.members[m];
        mb.life = Life::Down;
        mb.machine = None;
        mb.events = None;
        let id = mb.identity.clone();
        self.trace(|| format!("{id} crashes"));
        self.disturbed(self.now);
        self.maybe_restart(m);
    }

    /// A graceful stop, as the handle does it: every term ends at once (its work drained: there is
    /// none here), the requests under way are interrupted, then every lock is released.
    fn stop(&mut self, m: usize) {
        let mb = &mut self.members[m];
        mb.life = Life::Stopping;
        mb.releasing = 0;
        for s in &mb.states {
            s.stop();
            s.announce_stopped(StopReason::Stopped);
        }
        let id = mb.identity.clone();
        self.trace(|| format!("{id} stops"));
        self.disturbed(self.now);
        self.check_events(m);
        self.interrupt(m);
    }

    /// Member `m` is stopping: its requests under way fail at once; once none is left, the releases
    /// begin.
    fn interrupt(&mut self, m: usize) {
        let ids: Vec<u64> = self.requests_of(m);
        for id in ids {
            self.fail_now(id);
        }
        self.stopping_progress(m, None);
    }

    /// How a stopping member gets on: after the last interrupted request, it releases everything; after
    /// the last release, it is down.
    pub(super) fn stopping_progress(&mut self, m: usize, answered: Option<usize>) {
        if self.members[m].life != Life::Stopping {
            return;
        }
        if self.members[m].releasing == 0 {
            if !self.requests_of(m).is_empty() {
                return;
            }
            let (now, wall) = self.local_now(m);
            let Some(machine) = self.members[m].machine.as_mut() else {
                return;
            };
            let n = machine.states().len();
            let pending = machine.stop(&vec![true; n], true, now, wall);
            // One more than the releases under way marks the release phase begun.
            self.members[m].releasing = pending + 1;
            self.after(m);
        } else if let Some(i) = answered {
            let releasing = self.members[m]
                .machine
                .as_ref()
                .is_some_and(|mc| mc.releasing(i));
            if !releasing {
                self.members[m].releasing -= 1;
            }
        }
        if self.members[m].releasing == 1 {
            let mb = &mut self.members[m];
            mb.life = Life::Down;
            mb.machine = None;
            mb.events = None;
            let id = mb.identity.clone();
            self.trace(|| format!("{id} stopped"));
            self.maybe_restart(m);
        }
    }

    fn maybe_restart(&mut self, m: usize) {
        if self.rng.next_f64() < 0.7 {
            let at = self.now + 100 * MS + self.rng.next_u64() % (10 * SEC);
            self.schedule(at, Ev::Restart { m });
        }
    }

    /// A member down comes back: most often under the same identity, sometimes as a new one.
    pub(super) fn restart(&mut self, m: usize) {
        if self.members[m].life != Life::Down {
            return;
        }
        if self.rng.next_f64() < 0.3 {
            let inc = self.members[m].inc;
            self.members[m].identity = format!("m{m}r{inc}");
        }
        let id = self.members[m].identity.clone();
        self.trace(|| format!("{id} starts"));
        self.disturbed(self.now);
        self.boot(m, self.now);
    }

    pub(super) fn fault_tick(&mut self) {
        let r = self.rng.next_f64();
        if r < 0.3 {
            let d = SEC + self.rng.next_u64() % (5 * SEC);
            self.storm_until = self.now + d;
            self.trace(|| format!("error storm for {} ms", d / MS));
            let until = self.now + d + self.request_timeout() * 2;
            self.disturbed(until);
        } else if r < 0.45 {
            let running = self.running();
            if !running.is_empty() {
                let m = running[(self.rng.next_u64() % running.len() as u64) as usize];
                let d = 500 * MS + self.rng.next_u64() % (8 * SEC);
                let mb = &mut self.members[m];
                if mb.watching && mb.watch_up {
                    mb.watch_up = false;
                    let (inc, id) = (mb.inc, mb.identity.clone());
                    self.trace(|| format!("{id}'s watch stalls for {} ms", d / MS));
                    self.schedule(self.now + d, Ev::WatchResume { m, inc });
                    self.disturbed(self.now + d);
                }
            }
        }
        let next = self.now + 5 * SEC + self.rng.next_u64() % (40 * SEC);
        self.schedule(next, Ev::FaultTick);
    }

    pub(super) fn clock_tick(&mut self) {
        let m = (self.rng.next_u64() % self.members.len() as u64) as usize;
        let rate = 1.0 + self.cfg.drift * (2.0 * self.rng.next_f64() - 1.0);
        let now = self.now;
        self.members[m].clock.set_rate(now, rate);
        let next = self.now + SEC + self.rng.next_u64() % (10 * SEC);
        self.schedule(next, Ev::ClockTick);
    }
}
