//! Leadership events and their fan-out: every subscriber gets every event published after it subscribed.

use std::sync::Mutex;

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
}

/// Why leadership ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopReason {
    /// The handle was stopped or dropped.
    Stopped,
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
    /// Coordinated leader election: the API server named a better candidate, so we stopped renewing
    /// and our term ended.
    EndOfTerm {
        /// The candidate the API server prefers.
        preferred_holder: String,
    },
}

/// Fan-out to any number of subscribers. Sending never blocks: the channels are unbounded, and
/// subscribers whose receiver was dropped are forgotten.
#[derive(Debug, Default)]
pub(crate) struct EventHub {
    subscribers: Mutex<Vec<Sender<LeaderEvent>>>,
}

impl EventHub {
    pub(crate) fn subscribe(&self) -> Receiver<LeaderEvent> {
        let (tx, rx) = unbounded();
        self.lock().push(tx);
        rx
    }

    pub(crate) fn publish(&self, event: LeaderEvent) {
        log::info!("leader election event: {event:?}");
        self.lock().retain(|tx| tx.send(event.clone()).is_ok());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Sender<LeaderEvent>>> {
        // A panic while holding this lock cannot leave the Vec inconsistent: keep using it.
        self.subscribers.lock().unwrap_or_else(|p| p.into_inner())
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
        assert_eq!(hub.lock().len(), 1);
    }
}
