#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod candidate;
mod client;
pub mod config;
pub mod election;
pub mod error;
mod event_recorder;
mod events;
mod identity;
pub mod lock;
pub mod metrics;
mod random;
pub mod record;
pub mod runner;
mod watch;

#[cfg(feature = "testing")]
pub mod testing;

pub use candidate::CandidateInfo;
pub use config::Config;
/// The receiving end of [`LeaderStatus::events`] (crossbeam-channel's), re-exported so you can name it
/// without depending on crossbeam-channel yourself.
pub use crossbeam_channel::Receiver;
pub use election::Timing;
pub use error::{Error, Result};
pub use events::{LeaderEvent, StopReason};
pub use lock::LockKind;
pub use runner::{
    ElectorStats, LeaderElector, LeaderElectorBuilder, LeaderHandle, LeaderStatus, Term, WorkGuard,
};
