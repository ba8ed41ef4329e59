//! Leadership events and their fan-out: every subscriber gets every event published after it subscribed.

use std::sync::Mutex;

use crate::sync::lock;
use crossbeam_channel::{Receiver, Sender, unbounded};

/// What the renew thread reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaderEvent {
    /// We took the lock. `transitions` is the lock's `leaseTransitions` after we took it: it increases with
    /// every change of holder, so it serves as a fencing token (a term number) for work done as leader.
    StartedLeading {
        /// The lock's transition counter for our term.
        transitions: i32,
    },
    /// We no longer lead. Only ever sent after a `StartedLeading`.
    StoppedLeading {
        /// Why.
        reason: StopReason,
    },
    /// The holder we observe changed (also sent for the first holder observed). `None`: released.
    NewLeader {
        /// The new holder's identity.
        identity: Option<String>,
    },
    /// We would take the lock, but its transition counter is at its limit: a new term could not carry a
    /// larger fencing token than the last, so we do not lead on it (see
    /// [`Error::TermLimit`](crate::Error::TermLimit) for how to reset it). Sent once each time the
    /// counter is found at its limit.
    TermLimitReached {
        /// The counter's value.
        transitions: i32,
    },
}

/// Why leadership ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopReason {
    /// The handle was stopped or dropped.
    Stopped,
    /// [`LeaderHandle::step_down`](crate::runner::LeaderHandle::step_down): leadership was given up on
    /// request; the elector campaigns again after its cool-down.
    SteppedDown,
    /// The handle was abandoned ([`LeaderHandle::abandon`](crate::runner::LeaderHandle::abandon)): stopped without
    /// releasing, as a crash would.
    Abandoned,
    /// Another candidate holds the lock now (or wrote it first).
    LeaseLost {
        /// The holder we saw last, if any.
        holder: Option<String>,
    },
    /// No renew succeeded within `renew_deadline`.
    RenewDeadlineExceeded {
        /// The last error seen while renewing.
        last_error: String,
    },
    /// The renew thread panicked (a bug); `is_leader()` is false from then on.
    Panicked(String),
    /// The lock names our identity, but another process wrote it: a successor running under the same
    /// identity (a pod re-created under its old name while this process was cut off). Identities must be
    /// unique per process; this one steps down and follows like any candidate.
    IdentityConflict,
    /// Coordinated leader election: the API server named a better candidate, so we stopped renewing
    /// and our term ended.
    EndOfTerm {
        /// The candidate the API server prefers.
        preferred_holder: String,
    },
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopReason::Stopped => f.write_str("stopped"),
            StopReason::SteppedDown => f.write_str("stepped down"),
            StopReason::Abandoned => f.write_str("abandoned (stopped without releasing)"),
            StopReason::LeaseLost { holder: Some(h) } => write!(f, "the lease was lost to {h}"),
            StopReason::LeaseLost { holder: None } => f.write_str("the lease was lost"),
            StopReason::RenewDeadlineExceeded { last_error } => {
                write!(
                    f,
                    "no renew succeeded within the renew deadline ({last_error})"
                )
            }
            StopReason::Panicked(m) => write!(f, "the renew thread panicked: {m}"),
            StopReason::IdentityConflict => f.write_str(
                "another process wrote the lock under our identity (identities must be unique per process)",
            ),
            StopReason::EndOfTerm { preferred_holder } => {
                write!(f, "end of term: the API server prefers {preferred_holder}")
            }
        }
    }
}

/// Fan-out to any number of subscribers. Sending never blocks: the channels are unbounded, and
/// subscribers whose receiver was dropped are forgotten. A new subscriber first gets the state so far
/// (the holder last reported, and `StartedLeading` while a term is outstanding), so every stream is well
/// formed however late it subscribes. Once the elector has sent its last event the hub closes: every
/// receiver ends after its last event, and a later subscriber gets the state so far and then the end.
#[derive(Default)]
pub(crate) struct EventHub {
    inner: Mutex<Hub>,
    /// Also told of every event published (an elector set's stream of all its shards' events).
    tap: Option<Tap>,
}

/// Told of every event a hub publishes.
type Tap = Box<dyn Fn(&LeaderEvent) + Send + Sync>;

impl std::fmt::Debug for EventHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventHub").finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct Hub {
    subscribers: Vec<Sender<LeaderEvent>>,
    /// The last `NewLeader`.
    holder: Option<LeaderEvent>,
    /// The outstanding `StartedLeading`, if we lead.
    started: Option<LeaderEvent>,
    /// The elector has stopped: nothing more will be sent.
    closed: bool,
}

impl EventHub {
    /// A hub that also hands every event it publishes to `tap`.
    pub(crate) fn with_tap(tap: impl Fn(&LeaderEvent) + Send + Sync + 'static) -> Self {
        EventHub {
            inner: Mutex::default(),
            tap: Some(Box::new(tap)),
        }
    }

    pub(crate) fn subscribe(&self) -> Receiver<LeaderEvent> {
        let (tx, rx) = unbounded();
        let mut hub = self.lock();
        for event in hub.holder.iter().chain(hub.started.iter()) {
            let _ = tx.send(event.clone());
        }
        if !hub.closed {
            hub.subscribers.push(tx);
        }
        rx
    }

    pub(crate) fn publish(&self, event: LeaderEvent) {
        let mut hub = self.lock();
        if hub.closed {
            return;
        }
        match &event {
            LeaderEvent::NewLeader { .. } => hub.holder = Some(event.clone()),
            LeaderEvent::StartedLeading { .. } => hub.started = Some(event.clone()),
            LeaderEvent::StoppedLeading { .. } => hub.started = None,
            LeaderEvent::TermLimitReached { .. } => {}
        }
        hub.subscribers.retain(|tx| tx.send(event.clone()).is_ok());
        if let Some(tap) = &self.tap {
            tap(&event);
        }
    }

    /// The last event was sent: drop every sender, so receivers end once they have read everything.
    pub(crate) fn close(&self) {
        let mut hub = self.lock();
        hub.closed = true;
        hub.subscribers.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Hub> {
        // A panic while holding this lock cannot leave the hub inconsistent: keep using it.
        lock(&self.inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subscriber_gets_every_event_and_dropped_ones_are_forgotten() {
        let hub = EventHub::default();
        let a = hub.subscribe();
        let b = hub.subscribe();
        hub.publish(LeaderEvent::NewLeader {
            identity: Some("x".into()),
        });
        drop(b);
        hub.publish(LeaderEvent::StartedLeading { transitions: 3 });
        assert_eq!(a.try_iter().count(), 2);
        assert_eq!(hub.lock().subscribers.len(), 1);
    }

    #[test]
    fn a_late_subscriber_starts_from_the_state_so_far() {
        let hub = EventHub::default();
        let holder = LeaderEvent::NewLeader {
            identity: Some("me".into()),
        };
        let started = LeaderEvent::StartedLeading { transitions: 7 };
        hub.publish(holder.clone());
        hub.publish(started.clone());
        let late = hub.subscribe();
        assert_eq!(
            late.try_iter().collect::<Vec<_>>(),
            [holder.clone(), started]
        );
        hub.publish(LeaderEvent::StoppedLeading {
            reason: StopReason::Stopped,
        });
        let later = hub.subscribe();
        assert_eq!(
            later.try_iter().collect::<Vec<_>>(),
            [holder],
            "no term outstanding"
        );
        assert_eq!(late.try_iter().count(), 1, "the StoppedLeading");
    }

    #[test]
    fn closing_ends_every_stream_after_its_last_event() {
        let hub = EventHub::default();
        let early = hub.subscribe();
        let holder = LeaderEvent::NewLeader {
            identity: Some("me".into()),
        };
        hub.publish(holder.clone());
        hub.close();
        hub.publish(LeaderEvent::StartedLeading { transitions: 1 });
        // `iter()` blocks until the channel disconnects: it must end.
        assert_eq!(
            early.iter().collect::<Vec<_>>(),
            std::slice::from_ref(&holder)
        );
        let late = hub.subscribe();
        assert_eq!(late.iter().collect::<Vec<_>>(), [holder]);
    }
}
