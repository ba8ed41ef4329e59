//! The threaded runner: [`LeaderElector::builder`] → [`LeaderHandle`], one background renew thread per
//! elector, an `is_leader()` bounded by the leadership deadline, terms as cancellation tokens for worker
//! threads, and events on crossbeam channels.

mod builder;
mod drain;
mod failures;
mod handle;
pub(crate) mod pacing;
mod state;
mod step_down;
mod term;
mod validate;
mod worker;

pub use builder::{CustomLock, LeaderElector, LeaderElectorBuilder, Managed};
pub use handle::{LeaderHandle, LeaderStatus};
pub use state::ElectorStats;
pub use term::{Term, WorkGuard};

pub(crate) use failures::{Failures, server_answered};
pub(crate) use state::{Owner, State};
