//! The example service (`examples/service`) as an operator runs it, on the embedded API server: three
//! replicas, one doing the work; `/healthz` and `/metrics`; SIGTERM's path (finish in-flight work,
//! stop, release) hands over at once; a crash hands over after the lease. The real-server suite runs
//! the same service against a kube-apiserver.

mod common;

#[path = "../examples/service/app.rs"]
#[allow(dead_code)]
mod app;

use std::time::{Duration, Instant};

use app::{Service, Settings};
use common::prom::{http_get, parse, value};
use common::wait_until;
use kube_elector::Timing;
use kube_elector::metrics::Metrics;
use kube_elector::testing::ApiServer;

const LONG: Duration = Duration::from_secs(20);

fn settings(id: &str) -> Settings {
    Settings {
        lock_name: "service".into(),
        identity: Some(id.into()),
        listen: ([127, 0, 0, 1], 0).into(),
        item: Duration::from_millis(20),
        timing: Timing {
            lease_duration: Duration::from_secs(2),
            renew_deadline: Duration::from_secs(1),
            retry_period: Duration::from_millis(100),
        },
        ..Settings::default()
    }
}

fn leaders(services: &[&Service]) -> Vec<usize> {
    (0..services.len())
        .filter(|&i| services[i].status().is_leader())
        .collect()
}

/// Wait for exactly one leader, checking there are never two.
fn the_leader(services: &[&Service]) -> usize {
    let end = Instant::now() + LONG;
    loop {
        let l = leaders(services);
        assert!(l.len() <= 1, "two leaders: {l:?}");
        if l.len() == 1 {
            return l[0];
        }
        assert!(Instant::now() < end, "no leader");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn all(services: &[Option<Service>]) -> Vec<&Service> {
    services.iter().flatten().collect()
}

fn metrics_of(s: &Service) -> Vec<common::prom::Sample> {
    let (code, content_type, body) = http_get(s.http_addr(), "/metrics");
    assert_eq!(code, 200);
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    parse(&body).unwrap_or_else(|e| panic!("{e}\n{body}"))
}

#[test]
fn three_replicas_one_worker_set_healthz_metrics_and_handovers() {
    let server = ApiServer::start().unwrap();
    let mut services: Vec<Option<Service>> = ["a", "b", "c"]
        .iter()
        .map(|id| Some(Service::start(server.config(), settings(id)).unwrap()))
        .collect();
    let first = the_leader(&all(&services));
    let leader = services[first].as_ref().unwrap();
    assert!(
        wait_until(LONG, || leader.items_done() >= 8),
        "four workers at work"
    );

    for s in all(&services) {
        assert_eq!(http_get(s.http_addr(), "/healthz").0, 200);
        assert_eq!(
            http_get(s.http_addr(), "/readyz").0,
            200,
            "the API server answers"
        );
        assert_eq!(http_get(s.http_addr(), "/nothing").0, 404);
        let m = metrics_of(s);
        let leads = s.status().is_leader();
        assert_eq!(
            value(&m, "leader_election_master_status", "service"),
            Some(if leads { 1.0 } else { 0.0 })
        );
        assert!(value(&m, "leader_election_slowpath_total", "service").is_some());
        let kinds: Vec<_> = m
            .iter()
            .map(|s| (s.name.as_str(), s.kind.as_str()))
            .collect();
        assert!(kinds.contains(&("leader_election_master_status", "gauge")));
        assert!(kinds.contains(&("leader_election_slowpath_total", "counter")));
        if !leads {
            assert_eq!(s.items_done(), 0, "followers do no leader-only work");
        }
    }

    // SIGTERM's path on the leader: the in-flight items finish, the lock is released, and another
    // replica takes over well before the 2 s lease would have expired.
    let stopped = services[first].take().unwrap();
    let before = stopped.items_done();
    let t = Instant::now();
    stopped.shutdown().unwrap();
    let second = the_leader(&all(&services));
    let handover = t.elapsed();
    assert!(
        handover < Duration::from_millis(1500),
        "handover took {handover:?}"
    );
    let leader = all(&services)[second];
    assert!(wait_until(LONG, || leader.items_done() >= 4));
    assert!(before > 0);

    // A crash of the second leader: the third takes over after the lease expires.
    let idx = services
        .iter()
        .position(|s| s.as_ref().is_some_and(|s| s.status().is_leader()))
        .unwrap();
    let crashed = services[idx].take().unwrap();
    let unfenced = crashed.items_unfenced();
    crashed.crash();
    assert_eq!(unfenced, 0);
    let third = all(&services)[the_leader(&all(&services))];
    assert!(wait_until(LONG, || third.items_done() >= 4));
    assert_eq!(third.items_unfenced(), 0);
    let last = services.into_iter().flatten().next().unwrap();
    last.shutdown().unwrap();
}

/// The example as a process: `--embedded`, /metrics and /healthz, then SIGTERM: exit 0 after the
/// in-flight work and the release.
#[test]
fn the_example_process_serves_and_shuts_down_cleanly_on_sigterm() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut child = Command::new(common::example_bin("service"))
        .arg("--embedded")
        .env("LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cargo test builds the examples");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let addr: std::net::SocketAddr = line
        .split("http://")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    let leads = || {
        let (code, _, body) = http_get(addr, "/metrics");
        code == 200
            && value(
                &parse(&body).unwrap(),
                "leader_election_master_status",
                "kube-elector-service",
            ) == Some(1.0)
    };
    assert!(wait_until(LONG, leads));
    assert_eq!(http_get(addr, "/healthz").0, 200);
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let logs = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{logs}");
    assert!(logs.contains("released the lock"), "{logs}");
    assert!(logs.contains("shut down after"), "{logs}");
}

#[test]
fn the_prometheus_registry_and_the_text_agree() {
    use prometheus::{Encoder, Registry, TextEncoder};
    let server = ApiServer::start().unwrap();
    let service = Service::start(server.config(), settings("solo")).unwrap();
    assert!(service.status().wait_until_leader(Some(LONG)).is_some());
    let metrics = Metrics::new();
    metrics.add(service.status());
    let registry = Registry::new();
    registry.register(Box::new(metrics.clone())).unwrap();
    let mut encoded = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut encoded)
        .unwrap();
    let from_registry = parse(&String::from_utf8(encoded).unwrap()).unwrap();
    let ours = parse(&metrics.render()).unwrap();
    for name in [
        "leader_election_master_status",
        "leader_election_slowpath_total",
    ] {
        assert_eq!(
            value(&from_registry, name, "service"),
            value(&ours, name, "service")
        );
    }
    assert_eq!(
        value(&ours, "leader_election_master_status", "service"),
        Some(1.0)
    );
    service.shutdown().unwrap();
    // After the stop the gauge says 0 in both.
    let encoded = {
        let mut b = Vec::new();
        TextEncoder::new()
            .encode(&registry.gather(), &mut b)
            .unwrap();
        String::from_utf8(b).unwrap()
    };
    assert_eq!(
        value(
            &parse(&encoded).unwrap(),
            "leader_election_master_status",
            "service"
        ),
        Some(0.0)
    );
}

#[test]
fn the_metrics_reader_refuses_what_prometheus_would() {
    use common::prom::parse;
    assert!(parse("# TYPE a gauge\na{name=\"x\"} 1\n").is_ok());
    assert!(parse("a 1\n").is_err(), "undeclared family");
    assert!(parse("# TYPE a gauge\na{name=x} 1\n").is_err(), "unquoted");
    assert!(
        parse("# TYPE a gauge\na{name=\"x\"} one\n").is_err(),
        "value"
    );
    assert!(
        parse("# TYPE a gauge\na{name=\"x\\q\"} 1\n").is_err(),
        "escape"
    );
    assert!(
        parse("# TYPE a gauge\na 1\n# TYPE a gauge\n").is_err(),
        "TYPE twice"
    );
    assert!(
        parse("# TYPE 1a gauge\n").is_ok(),
        "a comment that is not a valid TYPE is a comment"
    );
    assert!(parse("# TYPE a gauge\na 1").is_err(), "no final newline");
    let s = parse("# TYPE a counter\na{x=\"q\\\"\\\\\",y=\"\"} 2.5 1700000000\n").unwrap();
    assert_eq!(s[0].labels["x"], "q\"\\");
    assert_eq!(s[0].value, 2.5);
}
