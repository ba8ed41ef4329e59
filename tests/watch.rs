//! Watch-based followers: the test server's watch (history, live changes, bookmarks, 410 Gone), and
//! electors that follow by watching: a released lease taken at once, no periodic GETs while waiting, a
//! crash taken over at expiry, polling when the watch is refused or compacted away, and a watch that
//! stalls without an error (a half-open connection) opened again.

mod common;

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use common::relay::Relay;
use common::wait_until;
use kube_elector::testing::{ApiServer, Fault};
use kube_elector::{Config, LeaderElector, LeaderHandle};
use serde_json::{Value, json};

fn lease(holder: &str) -> Value {
    json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "w"},
           "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "leaseTransitions": 0,
                    "acquireTime": "2026-01-02T03:04:05.123456Z", "renewTime": "2026-01-02T03:04:05.123456Z"}})
}

#[test]
fn the_test_server_streams_watch_events_and_answers_410_after_compaction() {
    let server = ApiServer::start().unwrap();
    let rv = server.put_lease_raw("default", "w", lease("a"));
    let url = format!(
        "{}/apis/coordination.k8s.io/v1/namespaces/default/leases?watch=true&allowWatchBookmarks=true&timeoutSeconds=3&fieldSelector=metadata.name%3Dw",
        server.url()
    );
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let resp = agent.get(&url).call().unwrap();
    let mut lines = BufReader::new(resp.into_body().into_reader()).lines();
    let mut next = || -> Value { serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap() };
    let first = next();
    assert_eq!(
        (
            first["type"].as_str(),
            first["object"]["spec"]["holderIdentity"].as_str()
        ),
        (Some("ADDED"), Some("a"))
    );
    server.put_lease_raw("default", "w", lease("b"));
    server.put_lease_raw("default", "other", lease("x"));
    let mut saw = Vec::new();
    while saw.len() < 2 {
        let e = next();
        saw.push(e["type"].as_str().unwrap().to_string());
        if e["type"] == "MODIFIED" {
            assert_eq!(
                e["object"]["spec"]["holderIdentity"], "b",
                "only the named object"
            );
        }
    }
    assert!(
        saw.contains(&"MODIFIED".to_string()) && saw.contains(&"BOOKMARK".to_string()),
        "{saw:?}"
    );
    assert!(server.requests("WATCH") == 1 && server.requests("GET") == 0);

    // From an old version: the history is replayed...
    let from = format!("{url}&resourceVersion={rv}");
    let resp = agent.get(&from).call().unwrap();
    let mut lines = BufReader::new(resp.into_body().into_reader()).lines();
    let e: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(
        (
            e["type"].as_str(),
            e["object"]["spec"]["holderIdentity"].as_str()
        ),
        (Some("MODIFIED"), Some("b"))
    );
    // ...unless it was compacted away: 410 Gone as an ERROR event.
    server.compact();
    let resp = agent.get(&from).call().unwrap();
    let mut lines = BufReader::new(resp.into_body().into_reader()).lines();
    let e: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(
        (e["type"].as_str(), e["object"]["code"].as_u64()),
        (Some("ERROR"), Some(410))
    );
}

fn candidate(server: &ApiServer, id: &str, watch: bool, lease_secs: u64) -> LeaderHandle {
    common::candidate(
        server.config_for(id),
        "watched",
        id,
        common::timing(lease_secs, 1000, 200),
    )
    .watch(watch)
    .start()
    .unwrap()
}

#[test]
fn a_watching_follower_takes_a_released_lease_at_once_and_makes_no_periodic_gets() {
    let server = common::tls_server(&["a", "b", "c"]);
    let a = candidate(&server, "a", false, 5);
    assert!(wait_until(Duration::from_secs(5), || a.is_leader()));
    let b = candidate(&server, "b", true, 5);
    assert!(wait_until(Duration::from_secs(5), || b.leader().as_deref()
        == Some("a")));
    // While a renews (every 200 ms), the watching follower only listens.
    std::thread::sleep(Duration::from_millis(300));
    let gets = server.requests_for("b", "GET");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        server.requests_for("b", "GET"),
        gets,
        "no periodic GETs while the watch is healthy"
    );
    assert!(server.requests_for("b", "WATCH") >= 1);
    // A release is seen at once and the lease taken within a round trip or two.
    let t = Instant::now();
    a.stop().unwrap();
    assert!(wait_until(Duration::from_secs(3), || b.is_leader()));
    let handoff = t.elapsed();
    eprintln!("watch handoff after release: {handoff:?}");
    assert!(handoff < Duration::from_millis(1000), "{handoff:?}");
    assert!(!a.is_leader());
}

#[test]
fn a_watching_follower_takes_over_a_crashed_holder_at_expiry() {
    let server = common::tls_server(&["a", "b", "c"]);
    let a = candidate(&server, "a", false, 2);
    assert!(wait_until(Duration::from_secs(5), || a.is_leader()));
    let b = candidate(&server, "b", true, 2);
    assert!(wait_until(Duration::from_secs(5), || b.leader().as_deref()
        == Some("a")));
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    a.abandon();
    while !b.is_leader() {
        assert!(t.elapsed() < Duration::from_secs(5), "b takes over");
        std::thread::sleep(Duration::from_millis(2));
    }
    let failover = t.elapsed();
    eprintln!("watch failover after crash: {failover:?}");
    assert!(
        failover >= Duration::from_millis(1500),
        "not before the lease expired: {failover:?}"
    );
    assert!(failover < Duration::from_millis(3500), "{failover:?}");
}

#[test]
fn a_refused_or_compacted_watch_falls_back_to_polling() {
    let server = common::tls_server(&["a", "b", "c"]);
    server.inject(Fault::status(403).for_verb("WATCH").for_token("b"));
    let a = candidate(&server, "a", false, 2);
    assert!(wait_until(Duration::from_secs(5), || a.is_leader()));
    let b = candidate(&server, "b", true, 2);
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        server.requests_for("b", "GET") >= 3,
        "polling while the watch is refused"
    );
    a.abandon();
    assert!(
        wait_until(Duration::from_secs(5), || b.is_leader()),
        "b still takes over, by polling"
    );

    // A compaction mid-watch: the follower lists again and carries on.
    let server = common::tls_server(&["a", "b", "c"]);
    let a = candidate(&server, "a", false, 2);
    assert!(wait_until(Duration::from_secs(5), || a.is_leader()));
    let c = candidate(&server, "c", true, 2);
    assert!(wait_until(Duration::from_secs(5), || c.leader().as_deref()
        == Some("a")));
    server.compact();
    std::thread::sleep(Duration::from_millis(500));
    a.stop().unwrap();
    assert!(wait_until(Duration::from_secs(3), || c.is_leader()));
}

#[test]
fn a_watch_that_stalls_without_an_error_is_opened_again() {
    // b reaches the server through a relay that will swallow bytes: its watch connection then stays
    // open and silent for good, as a half-open connection after a network drop does.
    let server = common::tls_server(&["a", "b", "c"]);
    let config = server.config();
    let port = config
        .server()
        .rsplit(':')
        .next()
        .unwrap()
        .parse::<u16>()
        .unwrap();
    let relay = Relay::start(([127, 0, 0, 1], port).into(), 7).unwrap();
    let a = candidate(&server, "a", false, 2);
    assert!(wait_until(Duration::from_secs(5), || a.is_leader()));
    let b = LeaderElector::builder(
        Config::new(format!("https://127.0.0.1:{}", relay.port()))
            .with_ca_pem(config.ca_pem().unwrap().to_vec())
            .with_token("b"),
        "watched",
    )
    .identity("b")
    .timing(common::timing(2, 1000, 200))
    .start()
    .unwrap();
    assert!(wait_until(Duration::from_secs(5), || b.leader().as_deref()
        == Some("a")));
    std::thread::sleep(Duration::from_millis(300));
    let watches = server.requests_for("b", "WATCH");
    relay.swallow(Duration::from_millis(1000));
    // The stalled watch is taken for stale after two renew intervals; b polls, finds renews the watch
    // never brought, and opens a new watch: then it stops polling again.
    assert!(
        wait_until(Duration::from_secs(8), || server.requests_for("b", "WATCH")
            > watches),
        "a new watch after the stall"
    );
    std::thread::sleep(Duration::from_millis(500));
    let gets = server.requests_for("b", "GET");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        server.requests_for("b", "GET"),
        gets,
        "following by the new watch, not by polling"
    );
    assert_eq!(b.leader().as_deref(), Some("a"));
    a.abandon();
    assert!(wait_until(Duration::from_secs(5), || b.is_leader()));
}
