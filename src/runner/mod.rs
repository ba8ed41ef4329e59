//! The threaded runner: [`LeaderElector::builder`] → [`LeaderHandle`], one background renew thread per
//! elector, an `is_leader()` bounded by the leadership deadline, terms as cancellation tokens for worker
//! threads, and events on crossbeam channels. The threads an elector may keep beside its renew thread
//! live here too: the watch that wakes a follower (`watch.rs`, shared with elector sets), the upkeep of
//! its `LeaseCandidate` in coordinated election (`candidate.rs`) and the poster of Kubernetes Events
//! (`event_recorder.rs`).

mod builder;
mod candidate;
mod drain;
mod event_recorder;
mod failures;
mod handle;
pub(crate) mod pacing;
mod state;
mod step_down;
mod term;
mod validate;
pub(crate) mod watch;
mod worker;

pub use builder::{CustomLock, LeaderElector, LeaderElectorBuilder, Managed};
pub use candidate::CandidateInfo;
pub use handle::{LeaderHandle, LeaderStatus};
pub use state::ElectorStats;
pub use term::{Term, WorkGuard};

pub(crate) use failures::{Failures, server_answered};
pub(crate) use state::{Owner, State};
