//! Stepping down: leadership given up on request (to move it off a pod), the leader work drained, the
//! lock released, and the campaign taken up again after a cool-down.

use std::time::{Duration, Instant};

use super::worker::Worker;
use crate::election::later;
use crate::error::{DrainTimeout, Error, Result};
use crate::events::StopReason;

impl Worker {
    /// End the term now (`StoppedLeading { reason: SteppedDown }`), wait for its leader work to end
    /// (never past the term's deadline), release the lock, and attempt nothing for `cooldown`. `Ok(true)`
    /// when the lock was released, `Ok(false)` when we did not lead.
    pub(crate) fn step_down(&mut self, cooldown: Duration) -> Result<bool> {
        let result = self.give_up_leadership();
        self.hold_off = Some(later(Instant::now(), cooldown));
        self.standing = self.elector.election().status();
        result
    }

    fn give_up_leadership(&mut self) -> Result<bool> {
        let Some(deadline) = self
            .state
            .deadline_instant()
            .filter(|_| self.state.is_leader())
        else {
            return Ok(false);
        };
        log::info!("{}: stepping down", self.context);
        self.state.end_term(StopReason::SteppedDown);
        let _ = self.elector.resign(StopReason::SteppedDown);
        let started = Instant::now();
        let until = deadline.min(later(started, self.drain_timeout));
        if !self.state.drain.wait(until) {
            let e = Error::DrainTimedOut(Box::new(DrainTimeout {
                context: self.context.clone(),
                running: self.state.drain.running(),
                waited: started.elapsed(),
            }));
            log::warn!("{e}");
            return Err(e);
        }
        let state = self.state.clone();
        let released = self.elector.release_until(&|| state.is_stopped());
        if let Ok(true) = released {
            log::info!("{}: released the lock", self.context);
        }
        released
    }
}
