//! One replica of a queue worker: four threads do leader-only items of 50 ms through
//! `run_while_leading`, and SIGTERM stops the elector, which lets the items in flight finish before it
//! releases the lock. The handoff tests run three of these and check that no two replicas' items
//! overlap.
//!
//!     ITEMS=/tmp/items KUBECONFIG=... POD_NAME=r0 cargo run --example replica
//!
//! Environment: `KUBECONFIG` (or in-cluster), `POD_NAMESPACE`, `POD_NAME`, `LOCK_NAME` (default
//! `my-service`), `LEASE_DURATION`, `RENEW_DEADLINE`, `RETRY_PERIOD` (milliseconds; client-go's defaults
//! otherwise), `ITEMS` (where items leave their trace).

mod items;

use items::{one_item, timing_from_env};
use kube_elector::{Config, LeaderElector};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let timing = timing_from_env();
    let lock = std::env::var("LOCK_NAME").unwrap_or_else(|_| "my-service".into());
    let mut builder = LeaderElector::builder(Config::infer()?, lock).timing(timing);
    if let Ok(ns) = std::env::var("POD_NAMESPACE") {
        builder = builder.namespace(ns);
    }
    if let Ok(id) = std::env::var("POD_NAME") {
        builder = builder.identity(id);
    }
    let signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ]);
    let handle = builder.start()?;
    for n in 0..4 {
        handle.status().run_while_leading(move |term| {
            while !term.is_cancelled() {
                one_item(n, term.transitions());
            }
        })?;
    }
    signals?.forever().next();
    // The term ends now; the items in flight finish; then the lock is released.
    handle.stop()?;
    Ok(())
}
