//! The election: client-go's leader-election algorithm, with stricter rules where client-go can elect two
//! leaders.
//!
//! # The algorithm
//!
//! Candidates share one lock object (a Lease, or the leader annotation of a ConfigMap or Endpoints
//! object) holding a [`LeaderElectionRecord`](crate::record::LeaderElectionRecord): the holder's identity, its
//! lease duration, when it acquired and last renewed, and a transition counter. Every write is
//! conditional on the object's `resourceVersion`, so of two racing writers one gets 409 Conflict.
//!
//! * **A follower** reads the lock every retry period (with client-go's jitter) or watches it. Each
//!   time the record changes it notes *when it saw the change* on its own monotonic clock; a write that
//!   leaves the record alone (a label, another controller's key in a shared ConfigMap) is no change. It
//!   takes the lock, writing itself as holder with the counter incremented, only when its holder
//!   released it or when it has seen no change for the holder's full advertised lease duration. It never
//!   judges expiry by the remote `renewTime`: clocks on different machines disagree, clock *rates*
//!   hardly do. A watch event is only a reason to read now: every judgement is made on a read, and
//!   every write is conditional on the version that read found.
//! * **A leader** renews every retry period with one conditional write of the object it holds (no read
//!   first). It leads until *the start of its last successful renew + `renew_deadline`*, and every
//!   request's timeout ends before that instant, so a leader cut off from the API server stops
//!   claiming leadership on time even while a request hangs. A renew counts only if followers can see
//!   it: its record must read differently from before (an identical write, as two annotation renews
//!   within one wall-clock second are, moves nothing; the renew time never goes back, so a record of
//!   ours never repeats an earlier one). A term whose deadline passed is over for good: a renew that
//!   succeeds after it begins a new term.
//! * **A failed renew** reads the lock and judges it again (the slow path); a 409 means someone wrote
//!   first and is never taken for "still leader".
//! * **Releasing** writes holder `""` with a 1 s duration, so a follower takes over at once, on condition
//!   that the object is still as we last wrote it; if anyone wrote since (409), it reads the lock and
//!   clears only a record that still names us.
//! * **A deleted lock object** (an administrator's delete) is treated as still held by the holder last
//!   seen until that holder's lease expires by our clock, counted from when we saw the object gone; the
//!   holder itself re-creates it at its next renew and keeps its term. Whoever else re-creates it then
//!   holds it for a lease duration before it leads, since someone unseen may have taken the lock in the
//!   gap.
//! * **A record cleared by someone other than its holder** (no holder, and not in the shape of a
//!   release: `leaseDurationSeconds: 1` with equal acquire and renew times) is treated like a deletion:
//!   the holder last seen holds it until its lease runs out by our clock; the holder itself writes its
//!   record back and keeps its term; whoever else takes it then holds it a lease duration before leading.
//! * **A record naming our identity** is ours only if this election wrote it: each election writes a
//!   random incarnation beside its records, so a successor under the same identity (a pod re-created
//!   while we were cut off) is another candidate, and we step down when we find its record.
//! * **A new term** is numbered one above the highest seen; at `i32::MAX` no new term is taken.
//! * **A migration pair** (`configmapsleases`, `endpointsleases`) writes the old kind first, then the
//!   Lease. When the two records name different holders, the holder is
//!   [`UNKNOWN_LEADER`] and followers wait for the longest duration either
//!   record advertises. Every write is of a record this candidate has just judged.
//!
//! # The clock model
//!
//! Only monotonic instants ([`std::time::Instant`]) decide anything. A follower waits
//! `lease_duration` from *after* the leader's write took effect; the leader stops at `renew_deadline`
//! from *before* it sent that write. So the two never overlap as long as the clocks' rates differ by
//! less than `(lease_duration - renew_deadline) / (lease_duration + renew_deadline)` (20% with the
//! defaults of 15 s and 10 s). Wall-clock time is only written into records, for humans and other
//! clients, except in coordinated mode, where the API server judges expiry by `renewTime` on its own
//! clock: there we write renew times on the server's clock as read from its `Date` headers.
//!
//! # Shape
//!
//! [`Election`] is the algorithm as a state machine with no I/O and no clock: it asks for requests and
//! is fed their replies, and each step ends with an [`Outcome`]. It speaks its own language: a
//! [`Reply`] says only what the election judges by (the object, not found, a lost race, a failure),
//! the failures it finds itself are [`ElectionError`]s, and the driver's error type is a parameter
//! (`Election<E>`), passed through to the outcome untouched, so the core knows nothing of HTTP, of
//! locks or of the crate's [`Error`](crate::Error). [`Elector`] drives it over
//! [`Lock`](crate::lock::Lock)s one blocking step at a time, with the crate's `Error` as `E` (one
//! file, `crate_error.rs`, turns a lock's result into a reply and the core's failures into that
//! `Error`); the threaded runner
//! ([`LeaderElector`](crate::runner::LeaderElector)) drives an `Elector` on a background thread.

mod crate_error;
mod elector;
mod failure;
mod machine;
mod protocol;
mod timing;

pub use crate::identity::default_identity;
pub use elector::{Clock, Elector, SystemClock};
pub use failure::{ElectionError, StepError};
pub use machine::Election;
pub(crate) use machine::later;
pub use protocol::{
    Action, ElectionConfig, Outcome, Reply, Request, Slot, Status, UNKNOWN_LEADER, WatchReaction,
    Watched,
};
pub(crate) use timing::Defaulted;
pub use timing::{JITTER_FACTOR, Timing};
