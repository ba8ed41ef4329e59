//! A complete threaded service: four workers do leader-only work for as long as each term lasts,
//! `/healthz` reports a stuck renew thread, `/readyz` an API server that does not answer, `/metrics` carries client-go's leader-election metrics, and
//! SIGTERM finishes the work in flight, then stops and releases the lock.
//!
//!     cargo run --example service -- --embedded       # on an embedded API server, in-process
//!     cargo run --example service                     # in a pod, or with your kubeconfig
//!
//! Environment: `LOCK_NAME` (default `kube-elector-service`), `POD_NAMESPACE` and `POD_NAME` (from the
//! downward API; see `kubernetes.yaml` beside this file), `LISTEN` (default `0.0.0.0:8080`), and
//! `RUST_LOG` (default `info`).

// The tests drive the service through more of its methods than `main` needs.
#[allow(dead_code)]
mod app;

use app::{Service, Settings};
use kube_elector::Config;

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    if let Err(e) = run() {
        eprintln!("service: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let embedded = std::env::args().any(|a| a == "--embedded");
    let mut settings = Settings {
        namespace: std::env::var("POD_NAMESPACE").ok(),
        identity: std::env::var("POD_NAME").ok(),
        ..Settings::default()
    };
    if let Ok(name) = std::env::var("LOCK_NAME") {
        settings.lock_name = name;
    }
    if embedded {
        // Not reachable from other hosts when it runs on a laptop.
        settings.listen = ([127, 0, 0, 1], 8080).into();
    }
    if let Ok(listen) = std::env::var("LISTEN") {
        settings.listen = listen.parse().map_err(|e| {
            format!("LISTEN={listen:?}: {e} (use an address and port, such as 0.0.0.0:8080)")
        })?;
    }
    // Keep the embedded server alive for as long as the service runs.
    let (config, _server) = if embedded {
        let server = kube_elector::testing::ApiServer::start()?;
        (server.config(), Some(server))
    } else {
        (Config::infer()?, None)
    };

    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])?;
    let service = Service::start(config, settings)?;
    println!(
        "serving http://{0}/healthz and http://{0}/metrics; Ctrl-C to stop",
        service.http_addr()
    );
    signals.forever().next();
    // The items in flight finish within the drain (at most the renew deadline): well inside
    // Kubernetes' terminationGracePeriodSeconds (30 s by default) before SIGKILL.
    service.shutdown()?;
    Ok(())
}
