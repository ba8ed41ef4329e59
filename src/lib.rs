#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod candidate;
mod client;
mod config;
mod election;
mod error;
mod event_recorder;
mod events;
mod identity;
mod lock;
mod random;
mod record;
mod runner;
mod watch;

#[cfg(feature = "testing")]
pub mod testing;

pub use candidate::CandidateInfo;
pub use config::{Config, Impersonation, InClusterOptions, KubeconfigOptions};
pub use election::{Clock, Elector, JITTER_FACTOR, SystemClock, Timing};
pub use error::{ApiError, Error, Result, StatusReason};
pub use events::{LeaderEvent, StopReason};
pub use identity::default_identity;
pub use lock::{
    ConfigMap, ConfigMapLock, Endpoints, EndpointsLock, LEADER_ANNOTATION, Lease, LeaseLock, Lock,
    LockKind, LockObject, MultiLock, ObjectLock, ObjectReference, UNKNOWN_LEADER,
    decode_annotation, encode_annotation,
};
pub use record::{
    LeaderElectionRecord, VersionedRecord, format_micro_time, format_seconds_time,
    parse_micro_time_strict, parse_time_lenient,
};
pub use runner::{ElectorStats, LeaderElector, LeaderElectorBuilder, LeaderHandle, LeaderStatus};
