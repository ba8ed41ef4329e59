//! The renew thread: drives the election over the lock(s), acts on each step's outcome, paces itself, and
//! on stop resigns and releases.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::failures::{Failures, server_answered};
use super::pacing::{Situation, next_attempt};
use super::state::State;
use super::watch::Watcher;
use crate::client::Interrupter;
use crate::election::{Elector, Outcome, Status, Watched, later};
use crate::error::{Error, Result};
use crate::events::LeaderEvent;
use crate::events::StopReason;
use crate::random::Rng;

/// How the handle asks the thread to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopMode {
    /// Stop and release the lock if configured.
    Stop,
    /// Stop without releasing, as a crash would.
    Abandon,
}

/// How the renew thread finishes, once the handle has drained the leader work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finish {
    /// Release the lock if configured: no leader work runs any more.
    Release,
    /// Leader work still runs: keep the lock, it expires on its own.
    Keep,
    /// Stop as a crash would.
    Abandon,
}

/// What the handle asks of the renew thread.
pub(crate) enum Command {
    /// End, and how.
    Stop(Finish),
    /// Give up leadership, release once the leader work has drained, and campaign again after the
    /// cool-down; the reply says whether the lock was released.
    StepDown {
        cooldown: Duration,
        reply: Sender<Result<bool>>,
    },
}

/// What ended a wait.
enum Wake {
    Stop(Finish),
    StepDown(Duration, Sender<Result<bool>>),
    Attempt,
    Watched(Watched),
    /// The watch came up or went down: pace again.
    Repace,
}

pub(crate) struct Worker {
    pub(crate) elector: Elector,
    /// The lock and our identity, for log lines.
    pub(crate) context: String,
    /// The streak of failed steps we are in, for the log.
    pub(crate) failures: Failures,
    /// Where the last step, or a change seen on the watch since, left us: what the pacing goes by.
    pub(crate) standing: Status,
    pub(crate) state: Arc<State>,
    pub(crate) commands: Receiver<Command>,
    pub(crate) release_on_stop: bool,
    pub(crate) keep_campaigning: bool,
    pub(crate) rng: Rng,
    /// Watch-based following, when enabled and possible for the lock kind.
    pub(crate) watcher: Option<Watcher>,
    /// How long the watch may bring nothing while a holder is live before it counts as stalled.
    pub(crate) watch_silence: Duration,
    /// The lock clients' interrupters: `stop()` interrupts them; the release resumes them.
    pub(crate) interrupters: Vec<Interrupter>,
    /// How long a loss or a step-down waits for leader work to end (never past the term's deadline).
    pub(crate) drain_timeout: Duration,
    /// After a step-down: no attempt to lead before this.
    pub(crate) hold_off: Option<Instant>,
}

impl Worker {
    /// The thread's body: the campaign, with a panic turned into a `StoppedLeading` and an error.
    pub(crate) fn run(mut self) -> Result<()> {
        let state = self.state.clone();
        let result = self.campaign_catching_panics();
        // The last event has been sent: every subscription ends once read.
        state.close();
        result
    }

    fn campaign_catching_panics(&mut self) -> Result<()> {
        let state = self.state.clone();
        match catch_unwind(AssertUnwindSafe(|| self.campaign())) {
            Ok(result) => result,
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                state.stop();
                log::error!("{}: the renew thread panicked: {message}", state.context);
                state.announce_stopped(StopReason::Panicked(message.clone()));
                Err(Error::RenewThreadPanicked(message))
            }
        }
    }

    fn campaign(&mut self) -> Result<()> {
        let finish = loop {
            let started = Instant::now();
            let was_leading = self.standing.leader_deadline().is_some();
            let expiry_before = self.standing.holder_expiry();
            let state = self.state.clone();
            let Some(outcome) = self.elector.step_until(&|| state.is_stopped()) else {
                break self.finish_mode();
            };
            self.standing = outcome.status.clone();
            self.restart_a_watch_that_missed_a_change(expiry_before, &outcome, started);
            // A lapse sent nothing: it neither ends nor extends a streak of failures. A request cut by
            // `stop()` is no failure of the server.
            if !outcome.lapsed() && !self.state.is_stopped() {
                let context = &self.context;
                self.failures.note(
                    || context.clone(),
                    outcome.error.as_ref(),
                    self.elector.timing().retry_period,
                    Instant::now(),
                );
                let answered = server_answered(outcome.error.as_ref());
                if answered {
                    self.state.note_answer(Instant::now());
                }
                if let Some(w) = &self.watcher {
                    w.set_requests_ok(answered);
                }
            }
            // A term that begins is announced with the lock object it is held on.
            let lock_ref = outcome
                .events
                .iter()
                .any(|e| matches!(e, LeaderEvent::StartedLeading { .. }))
                .then(|| self.elector.locks().object_ref())
                .flatten();
            let applied = self
                .state
                .apply(&outcome, was_leading, started.elapsed(), lock_ref);
            if applied.lapsed {
                // The term ran out as its renew came back: the election ends it too.
                let _ = self.elector.lapse();
                self.standing = self.elector.election().status();
            }
            if applied.lost && !self.keep_campaigning {
                break self.drained_finish();
            }
            if applied.lost {
                // Campaign again only once this term's leader work has ended (or its drain ran out).
                let until = later(Instant::now(), self.drain_timeout);
                if !self.state.drain.wait(until) {
                    log::warn!(
                        "{}: {} unit(s) of leader work still running {:?} after leadership ended",
                        self.context,
                        self.state.drain.running(),
                        self.drain_timeout
                    );
                }
            }
            if outcome.lapsed() || applied.lapsed {
                // Reported the moment it happened; now campaign again without waiting.
                continue;
            }
            let retry_after = outcome
                .error
                .as_ref()
                .and_then(Error::api)
                .and_then(|a| a.retry_after);
            match self.wait(retry_after) {
                Some(finish) => break finish,
                None => continue,
            }
        };
        self.state.stop();
        let reason = match finish {
            Finish::Abandon => StopReason::Abandoned,
            Finish::Release | Finish::Keep => StopReason::Stopped,
        };
        let _ = self.elector.resign(reason.clone());
        self.state.announce_stopped(reason);
        // The watch has nothing more to tell: end it before the release.
        self.watcher = None;
        if self.release_on_stop && finish == Finish::Release {
            for i in &self.interrupters {
                i.resume();
            }
            match self.elector.release() {
                Ok(true) => log::info!("{}: released the lock", self.context),
                Ok(false) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// A poll that observed a change of the holder's record (its expiry moved) while the watch, open
    /// all along, brought nothing for longer than a live holder's renews allow: the watch has stalled
    /// without an error, so open a new one rather than poll until the server ends the stream.
    fn restart_a_watch_that_missed_a_change(
        &self,
        before: Option<Instant>,
        outcome: &Outcome<Error>,
        step: Instant,
    ) {
        let Some(watcher) = self.watcher.as_ref() else {
            return;
        };
        let moved = match (before, outcome.status.holder_expiry()) {
            (Some(b), Some(a)) => a > b,
            (None, Some(_)) => true,
            _ => false,
        };
        let quiet = step.checked_sub(self.watch_silence);
        if moved && quiet.is_some_and(|q| watcher.quiet_since(q)) {
            log::info!(
                "{}: the watch brought nothing for {:?} while the lock changed: opening a new one",
                self.context,
                self.watch_silence
            );
            watcher.restart();
        }
    }

    /// How to finish, once `stop()` has marked the state stopped: the handle says so after its drain.
    /// (A step-down asked for meanwhile is refused: the elector is stopping.)
    fn finish_mode(&self) -> Finish {
        loop {
            match self.commands.recv() {
                Ok(Command::Stop(finish)) => return finish,
                Ok(Command::StepDown { reply, .. }) => {
                    let _ = reply.send(Ok(false));
                }
                Err(_) => return Finish::Release,
            }
        }
    }

    /// The thread ends by itself after a loss (`keep_campaigning(false)`): release only if no leader
    /// work runs any more.
    fn drained_finish(&self) -> Finish {
        if self
            .state
            .drain
            .wait(later(Instant::now(), self.drain_timeout))
        {
            Finish::Release
        } else {
            Finish::Keep
        }
    }

    /// Wait for the next attempt. Changes seen on the watch are observed on arrival and may call for an
    /// attempt at once (never during a step-down's cool-down). `Some(finish)` when the handle asked to
    /// stop.
    fn wait(&mut self, retry_after: Option<Duration>) -> Option<Finish> {
        let (jitter, spread) = (self.rng.next_f64(), self.rng.next_f64());
        let since = Instant::now();
        loop {
            if let Some(t) = self.watcher.as_ref().and_then(Watcher::last_activity) {
                self.state.note_answer(t);
            }
            // A watch counts while it is open and not quiet for longer than a holder's renews allow.
            let stale_at = self
                .watcher
                .as_ref()
                .filter(|w| w.healthy())
                .and_then(Watcher::last_activity)
                .map(|t| later(t, self.watch_silence));
            let situation =
                Situation::of(&self.standing, since, retry_after, stale_at, Instant::now());
            let timing = self.elector.timing();
            let mut until = next_attempt(&timing, since, situation, jitter, spread);
            let cooling = self.hold_off.filter(|h| *h > Instant::now());
            if let Some(h) = cooling {
                until = until.max(h);
            }
            match self.wake(until) {
                Wake::Stop(finish) => return Some(finish),
                Wake::StepDown(cooldown, reply) => {
                    let _ = reply.send(self.step_down(cooldown));
                }
                Wake::Attempt => return None,
                Wake::Repace => {}
                Wake::Watched(change) => {
                    let reaction = self.elector.observe_watched(change, Instant::now());
                    if let Some(status) = reaction.status {
                        self.standing = status;
                    }
                    for event in reaction.events {
                        self.state.publish(event);
                    }
                    if reaction.attempt_now && cooling.is_none() {
                        return None;
                    }
                }
            }
        }
    }

    fn wake(&self, until: Instant) -> Wake {
        let timeout = until.saturating_duration_since(Instant::now());
        let command = |c: std::result::Result<Command, crossbeam_channel::RecvError>| match c {
            Ok(Command::Stop(finish)) => Wake::Stop(finish),
            Ok(Command::StepDown { cooldown, reply }) => Wake::StepDown(cooldown, reply),
            Err(_) => Wake::Stop(Finish::Release),
        };
        let Some(watcher) = self.watcher.as_ref() else {
            return match self.commands.recv_timeout(timeout) {
                Ok(c) => command(Ok(c)),
                Err(RecvTimeoutError::Disconnected) => Wake::Stop(Finish::Release),
                Err(RecvTimeoutError::Timeout) => Wake::Attempt,
            };
        };
        crossbeam_channel::select! {
            recv(self.commands) -> c => command(c),
            recv(watcher.wake()) -> _ => match watcher.take() {
                Some(change) => Wake::Watched(change),
                None => Wake::Repace,
            },
            default(timeout) => Wake::Attempt,
        }
    }
}
