//! The set's one driver thread: it runs the set's state machine on the real clocks, hands its requests
//! to the pool (each with its lock object), and brings it the pool's answers, the watch's changes and
//! the handle's stop.

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::machine::{Out, SetMachine};
use super::pool::{Done, Job, Pool};
use crate::client::{Interrupter, RestClient};
use crate::election::{Watched, later};
use crate::lock::Lock;
use crate::runner::watch::Watcher;

/// What the handle tells the driver.
pub(crate) enum SetCommand {
    /// The handle has ended every term and drained: release the shards marked `true` (and our member
    /// lease with `member`), then end.
    Stop { release: Vec<bool>, member: bool },
}

/// The driver's parts.
pub(crate) struct Driver {
    pub(crate) machine: SetMachine,
    /// Each lock's object, `None` while its request is in the pool.
    pub(crate) locks: Vec<Option<Box<dyn Lock>>>,
    pub(crate) pool: Pool,
    pub(crate) done: Receiver<Done>,
    pub(crate) commands: Receiver<SetCommand>,
    pub(crate) watcher: Option<Watcher>,
    pub(crate) client: Arc<RestClient>,
    pub(crate) interrupter: Interrupter,
    /// The label-selected listing of member leases.
    pub(crate) members_path: String,
}

impl Driver {
    /// The thread's body.
    pub(crate) fn run(mut self) {
        loop {
            let now = Instant::now();
            self.pool.adjust(now);
            self.note_watch();
            self.machine.tick(now, Utc::now());
            self.carry_out();
            let until = self.machine.next_wake(now);
            if let Some((release, member)) = self.wait(until) {
                self.stop(&release, member);
                break;
            }
        }
        self.machine.close();
    }

    fn note_watch(&mut self) {
        let (healthy, last) = self
            .watcher
            .as_ref()
            .map_or((false, None), |w| (w.healthy(), w.last_activity()));
        self.machine.set_watch(healthy, last);
    }

    /// Do what the machine asked.
    fn carry_out(&mut self) {
        for out in self.machine.take_out() {
            match out {
                Out::Send {
                    shard,
                    request,
                    until,
                } => {
                    let Some(lock) = self.locks[shard].take() else {
                        continue;
                    };
                    self.pool.submit(Job::Lock {
                        shard,
                        lock,
                        request,
                        until,
                    });
                }
                Out::ListMembers => self.pool.submit(Job::List {
                    client: self.client.clone(),
                    path: self.members_path.clone(),
                    timeout: self.machine.request_timeout(),
                }),
            }
        }
    }

    /// Wait for a reply, a watched change, a command or `until`. `Some(what to release)` to stop.
    fn wait(&mut self, until: Instant) -> Option<(Vec<bool>, bool)> {
        let timeout = until.saturating_duration_since(Instant::now());
        let never = crossbeam_channel::never();
        let wake = self.watcher.as_ref().map_or(&never, |w| w.wake());
        crossbeam_channel::select! {
            recv(self.done) -> done => {
                if let Ok(done) = done {
                    self.take_in(done);
                }
                // Take in whatever else is done without waiting.
                while let Ok(done) = self.done.try_recv() {
                    self.take_in(done);
                }
            }
            recv(wake) -> _ => self.take_watched(),
            recv(self.commands) -> c => match c {
                Ok(SetCommand::Stop { release, member }) => return Some((release, member)),
                Err(_) => return Some((vec![true; self.locks.len()], true)),
            },
            default(timeout) => {}
        }
        None
    }

    fn take_in(&mut self, done: Done) {
        let now = Instant::now();
        match done {
            Done::Lock { shard, lock, reply } => {
                self.locks[shard] = Some(lock);
                self.note_watch();
                self.machine.answered(shard, reply, now, Utc::now());
            }
            Done::Listed(result) => self.machine.listed(result, now),
        }
        self.carry_out();
    }

    fn take_watched(&mut self) {
        let Some(watcher) = self.watcher.as_ref() else {
            return;
        };
        let mut changes: Vec<(String, Watched)> = Vec::new();
        while let Some(change) = watcher.take_named() {
            changes.push(change);
        }
        let now = Instant::now();
        self.note_watch();
        for (name, change) in changes {
            self.machine.watched(&name, change, now);
        }
        self.carry_out();
    }

    /// The handle has ended every term and waited for the work: release what it marked, our member
    /// lease too, through the pool, and wait for the releases to end (at most one request timeout).
    fn stop(&mut self, release: &[bool], member: bool) {
        self.watcher = None;
        let cap = self.machine.request_timeout() * 2;
        let give_up = later(Instant::now(), cap);
        // The handle interrupted the requests in flight: take their (failed) answers first.
        while self.locks.iter().any(Option::is_none) {
            let left = give_up.saturating_duration_since(Instant::now());
            match self.done.recv_timeout(left) {
                Ok(done) => self.take_in(done),
                Err(_) => break,
            }
        }
        self.interrupter.resume();
        let now = Instant::now();
        let mut pending = self.machine.stop(release, member, now, Utc::now());
        self.carry_out();
        let give_up = later(now, cap);
        while pending > 0 {
            let left = give_up.saturating_duration_since(Instant::now());
            match self.done.recv_timeout(left) {
                Ok(done) => {
                    let shard = match &done {
                        Done::Lock { shard, .. } => Some(*shard),
                        Done::Listed(_) => None,
                    };
                    self.take_in(done);
                    if shard.is_some_and(|i| !self.machine.releasing(i)) {
                        pending -= 1;
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
    }
}
