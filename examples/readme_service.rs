//! The README's service snippet, copied verbatim between the markers below (a test checks that the two
//! stay the same), with the three functions it leaves to the reader: items that leave a trace (see
//! `replica/items.rs`), no HTTP server, and a wait for SIGTERM. The handoff tests run three of these.
//!
//!     ITEMS=/tmp/items KUBECONFIG=... POD_NAMESPACE=default POD_NAME=r0 cargo run --example readme_service

#[path = "replica/items.rs"]
mod items;

use items::one_item;

fn serve(_healthz: impl Fn() -> bool, _readyz: impl Fn() -> bool, _metrics: impl Fn() -> String) {}

fn wait_for_sigterm() {
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])
    .expect("signal handlers");
    signals.forever().next();
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // README: begin
    use kube_elector::{Config, LeaderElector, metrics::Metrics};
    use std::time::Duration;

    let handle = LeaderElector::builder(Config::infer()?, "my-service")
        .namespace(std::env::var("POD_NAMESPACE")?)
        .identity(std::env::var("POD_NAME")?)
        .start()?;
    for n in 0..4 {
        handle.status().run_while_leading(move |term| {
            while !term.is_cancelled() {
                one_item(n, term.transitions()); // fenced with the term's number
            }
        })?;
    }
    let metrics = Metrics::new();
    metrics.add(handle.status());
    let (live, ready) = (handle.status(), handle.status());
    serve(
        move || live.check(Duration::from_secs(20)).is_ok(),
        move || ready.ready(Duration::from_secs(30)).is_ok(),
        move || metrics.render(),
    );

    wait_for_sigterm();
    handle.stop()?; // ends the term, lets the items in flight finish, then releases the lease
    // README: end
    Ok(())
}
