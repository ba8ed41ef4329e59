//! An embedded Kubernetes API server for tests, examples and benchmarks (feature `testing`).
//!
//! A real HTTP/1.1 server on 127.0.0.1 with an ephemeral port, plain or TLS (with a generated CA), with
//! bearer-token authentication and the Lease endpoints with the real API server's semantics:
//! `resourceVersion` checks (409 Conflict), 409 AlreadyExists, 404 NotFound, 422 Invalid with causes,
//! strict MicroTime parsing, lists and watches narrowed by `labelSelector` and `fieldSelector`. Faults
//! can be injected per client (by bearer token), and per-verb request counters let a test assert exactly
//! which requests a step made.
//!
//! ```
//! use kube_elector::testing::ApiServer;
//! let server = ApiServer::builder().tls(true).token("t1").start().unwrap();
//! assert!(server.url().starts_with("https://127.0.0.1:"));
//! assert!(server.ca_pem().unwrap().contains("BEGIN CERTIFICATE"));
//! assert!(server.kubeconfig().contains("certificate-authority-data"));
//! ```

mod builder;
mod control_plane;
mod coordinator;
mod faults;
mod http;
mod listener;
mod names;
mod selector;
mod server;
mod shared;
pub mod sim;
mod store;
mod tls;

pub use builder::ApiServerBuilder;
pub use control_plane::{ControlPlane, LaunchError};
pub use faults::{Fault, FaultAction, FaultId};
use listener::accept_loop;
pub use server::ApiServer;
pub(crate) use shared::Inner;
