//! One member of an elector set: leader-only items of 50 ms on each shard it owns (a thread per shard,
//! through `run_while_leading`), and SIGTERM stops the set, which lets the items in flight finish before
//! it releases the shards. The set tests run several of these and check balance and that no shard's
//! items ever overlap between members.
//!
//!     ITEMS=/tmp/items KUBECONFIG=... POD_NAME=m0 SHARDS=32 cargo run --example set_replica
//!
//! Environment: `KUBECONFIG` (or in-cluster), `POD_NAMESPACE`, `POD_NAME`, `SET_NAME` (default `shard`),
//! `SHARDS` (default 32), `HASHING` (`1` for consistent hashing), `LEASE_DURATION`, `RENEW_DEADLINE`,
//! `RETRY_PERIOD` (milliseconds; client-go's defaults otherwise), `ITEMS` (where items leave their
//! trace), `OWNED` (where a sampler writes, every 10 ms, which shards this member leads and in which
//! term: a line `pid time_ns shard:term ...`).

#[path = "replica/items.rs"]
mod items;

use items::{one_item, timing_from_env};
use kube_elector::Config;
use kube_elector::set::ElectorSet;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let timing = timing_from_env();
    let name = std::env::var("SET_NAME").unwrap_or_else(|_| "shard".into());
    let shards: usize = std::env::var("SHARDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32);
    let mut builder = ElectorSet::builder(Config::infer()?, name)
        .shards(shards)
        .timing(timing)
        .consistent_hashing(std::env::var("HASHING").is_ok_and(|v| v == "1"));
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
    let set = std::sync::Arc::new(builder.start()?);
    if let Some(path) = std::env::var_os("OWNED") {
        let set = set.clone();
        std::thread::spawn(move || sample_owned(&set, &path));
    }
    for shard in 0..set.len() {
        set.status(shard).run_while_leading(move |term| {
            while !term.is_cancelled() {
                one_item(shard, term.transitions());
            }
        })?;
    }
    signals?.forever().next();
    // Every term ends now; the items in flight finish; then the shards are released.
    set.stop()?;
    Ok(())
}

/// Every 10 ms, the shards this member leads and the term of each, appended to `path` as one line (one
/// `write` on a file opened for appending, so lines from several members never interleave).
fn sample_owned(set: &kube_elector::set::ElectorSetHandle, path: &std::ffi::OsStr) {
    use std::io::Write;
    let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    else {
        return;
    };
    loop {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let mut line = format!("{} {now}", std::process::id());
        for shard in 0..set.len() {
            if let Some(term) = set.status(shard).term() {
                line.push_str(&format!(" {shard}:{}", term.transitions()));
            }
        }
        line.push('\n');
        if file.write_all(line.as_bytes()).is_err() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
