//! Kubernetes leader election for plain threaded Rust services: no async runtime, one background renew
//! thread per elector, an `is_leader()` to poll in your loops, terms as cancellation tokens for worker
//! threads, and leadership events on a crossbeam channel. It talks to the API server directly over REST
//! (ureq + rustls) on `coordination.k8s.io/v1` Leases and follows client-go's `tools/leaderelection`
//! algorithm, with stricter rules where client-go can elect two leaders.
//!
//! # A leader-only worker
//!
//! ```
//! use std::time::Duration;
//! use kube_elector::LeaderElector;
//!
//! # let server = kube_elector::testing::ApiServer::start()?;
//! # let config = server.config();
//! // In a pod: `let config = kube_elector::Config::infer()?;`
//! let handle = LeaderElector::builder(config, "my-service")
//!     .identity("pod-1") // in a pod: the pod's name, from the downward API
//! #   .timing(kube_elector::Timing { lease_duration: Duration::from_secs(2),
//! #       renew_deadline: Duration::from_millis(1500), retry_period: Duration::from_millis(200) })
//!     .start()?;
//!
//! // Runs once per term, on a thread of its own; the term is cancelled the moment we stop leading.
//! handle.status().run_while_leading(|term| {
//!     while !term.is_cancelled() {
//!         // one short item of leader-only work, fenced with term.transitions()
//! #       std::thread::sleep(Duration::from_millis(10));
//!     }
//! })?;
//!
//! # handle.wait_until_leader(Some(Duration::from_secs(10)));
//! // On SIGTERM: the term ends, the item in flight finishes, then the lease is released.
//! handle.stop()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Where to go next
//!
//! * [`LeaderElector::builder`] and [`LeaderElectorBuilder`]: the lock, its namespace and kind, the
//!   identity, the timing, watching, the drain before a release.
//! * [`LeaderHandle`] and [`LeaderStatus`]: `is_leader()`, [`Term`]s for leader-only work,
//!   `step_down()`, the liveness `check()` and the readiness `ready()`, events and counters.
//! * [`Config`]: connecting in a pod (`Config::in_cluster`), from a kubeconfig
//!   (`Config::from_kubeconfig`), or whichever applies (`Config::infer`).
//! * [`metrics`]: client-go's leader-election metrics as Prometheus text or a collector.
//! * The README: the guarantees and what they take, RBAC, lock kinds and migrations, a complete
//!   service, performance.
//!
//! For callers who drive the election from their own loop, [`election`] has the algorithm as a state
//! machine that does no I/O, and [`Elector`](election::Elector), one blocking step at a time; [`lock`]
//! has the lock objects and the trait for your own. With the `testing` feature, `testing` has the
//! embedded API server, a launcher for a real kube-apiserver and a deterministic simulation.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod client;
pub mod config;
pub mod election;
pub mod error;
mod events;
mod identity;
pub mod lock;
pub mod metrics;
mod random;
pub mod record;
pub mod runner;
pub mod set;
mod sync;

#[cfg(feature = "testing")]
pub mod testing;

/// Every example in the README, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

#[doc(inline)]
pub use config::Config;
/// The receiving end of [`LeaderStatus::events`] (crossbeam-channel's), re-exported so you can name it
/// without depending on crossbeam-channel yourself.
pub use crossbeam_channel::Receiver;
#[doc(inline)]
pub use election::Timing;
#[doc(inline)]
pub use error::{Error, Result};
pub use events::{LeaderEvent, StopReason};
#[doc(inline)]
pub use lock::LockKind;
#[doc(inline)]
pub use runner::{
    CandidateInfo, ElectorStats, LeaderElector, LeaderElectorBuilder, LeaderHandle, LeaderStatus,
    Term, WorkGuard,
};
