//! The threaded runner: [`LeaderElector::builder`] → [`LeaderHandle`], one background renew thread per
//! elector, an `is_leader()` bounded by the leadership deadline, and events on crossbeam channels.

mod builder;
mod handle;
pub(crate) mod pacing;
mod state;
mod worker;

pub use builder::{CustomLock, LeaderElector, LeaderElectorBuilder, Managed};
pub use handle::{LeaderHandle, LeaderStatus};
pub use state::ElectorStats;
