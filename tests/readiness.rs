//! Readiness that tells the truth, and errors that say what to fix: a replica that cannot reach the API
//! server (a closed port, a rejected token, missing RBAC, an unknown CA) is not ready and keeps saying
//! why in its log, slowly; each message names the server and the setting to look at.

mod common;

use std::time::{Duration, Instant};

use common::logs::{capture, lines_with};
use common::{temp_dir, timing, wait_until};
use kube_elector::testing::{ApiServer, Fault};
use kube_elector::{Config, LeaderElector, LeaderHandle};

fn start(config: Config, lock: &str) -> LeaderHandle {
    common::start(config, lock, "r", timing(2, 1500, 200))
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    port
}

fn not_ready(h: &LeaderHandle) -> String {
    h.ready(Duration::from_secs(5))
        .expect_err("not ready")
        .to_string()
}

#[test]
fn a_closed_port_is_not_ready_and_warns_again_while_it_lasts() {
    capture();
    let port = closed_port();
    let url = format!("http://127.0.0.1:{port}");
    let h = start(Config::new(url.clone()), "closed-port");
    std::thread::sleep(Duration::from_millis(500));
    let e = not_ready(&h);
    assert!(
        e.contains(&url) && e.contains("has not answered yet"),
        "{e}"
    );
    assert!(!h.is_leader());
    warns_once_then_again(&h, "closed-port", &url);
}

/// The renew thread's warnings about `lock`: one when the streak begins, naming the server, and
/// another after the slow cadence (every 30 retry periods, at least 5 s), not one per attempt.
fn warns_once_then_again(h: &LeaderHandle, lock: &str, url: &str) {
    let warns = || {
        lines_with(&format!("default/{lock} "))
            .into_iter()
            .filter(|(l, m)| *l == log::Level::Warn && !m.contains("following by polling"))
            .map(|(_, m)| m)
            .collect::<Vec<_>>()
    };
    assert!(wait_until(Duration::from_secs(3), || !warns().is_empty()));
    let first = warns();
    assert_eq!(
        first.len(),
        1,
        "one WARN when the streak begins: {first:#?}"
    );
    assert!(
        first[0].contains(url),
        "the warning names the server: {}",
        first[0]
    );
    assert!(
        wait_until(Duration::from_secs(10), || warns().len() >= 2),
        "{:#?}",
        warns()
    );
    let all = warns();
    assert!(all[1].contains("still failing"), "{}", all[1]);
    assert!(all.len() <= 3, "a slow cadence: {all:#?}");
    assert!(h.ready(Duration::from_secs(30)).is_err(), "still not ready");
}

#[test]
fn a_rejected_token_is_not_ready() {
    capture();
    let server = common::tls_server(&["good"]);
    let h = start(server.config_for("bad"), "bad-token");
    std::thread::sleep(Duration::from_millis(500));
    let e = not_ready(&h);
    assert!(
        e.contains("401") && e.contains("bearer token") && e.contains(server.url()),
        "{e}"
    );
    warns_once_then_again(&h, "bad-token", server.url());
}

#[test]
fn missing_rbac_is_not_ready() {
    capture();
    let server = ApiServer::builder()
        .tls(true)
        .forbidden_token("no-rbac")
        .start()
        .unwrap();
    let h = start(server.config_for("no-rbac"), "forbidden");
    std::thread::sleep(Duration::from_millis(500));
    let e = not_ready(&h);
    assert!(e.contains("403") && e.contains("RBAC"), "{e}");
    warns_once_then_again(&h, "forbidden", server.url());
}

#[test]
fn an_unknown_ca_is_not_ready_and_points_at_certificate_authority() {
    capture();
    let server = common::tls_server(&["t"]);
    let other = common::tls_server(&["t"]);
    let config = Config::new(server.url().to_string())
        .with_ca_pem(other.ca_pem().unwrap().as_bytes().to_vec())
        .with_token("t");
    let h = start(config, "unknown-ca");
    std::thread::sleep(Duration::from_millis(500));
    let e = not_ready(&h);
    assert!(
        e.contains("certificate-authority") && !e.contains("is the API server reachable"),
        "a TLS failure points at the CA, not at reachability: {e}"
    );
    warns_once_then_again(&h, "unknown-ca", server.url());
}

#[test]
fn ready_after_the_first_answer_and_not_after_a_silence() {
    let server = ApiServer::start().unwrap();
    let h = start(server.config(), "ready-silence");
    assert!(wait_until(Duration::from_secs(5), || h
        .ready(Duration::from_secs(1))
        .is_ok()));
    let follower = start(server.config(), "ready-silence");
    assert!(wait_until(Duration::from_secs(5), || follower
        .ready(Duration::from_secs(1))
        .is_ok()));
    server.go_down();
    let down = Instant::now();
    assert!(wait_until(Duration::from_secs(5), || h
        .ready(Duration::from_secs(1))
        .is_err()));
    assert!(down.elapsed() >= Duration::from_millis(900));
    let e = h.ready(Duration::from_secs(1)).unwrap_err().to_string();
    assert!(
        e.contains("has not answered for") && e.contains(server.url()),
        "{e}"
    );
    server.come_up();
    assert!(wait_until(Duration::from_secs(5), || h
        .ready(Duration::from_secs(1))
        .is_ok()));
}

#[test]
fn the_watch_warning_names_its_watch_once() {
    capture();
    let server = ApiServer::start().unwrap();
    // Reads and writes work, watches are refused (RBAC without `watch`): the warning names the watch
    // once, and comes only once for the streak.
    server.inject(Fault::status(403).for_verb("WATCH"));
    let h = start(server.config(), "watch-warning");
    assert!(wait_until(Duration::from_secs(5), || lines_with(
        "default/watch-warning "
    )
    .iter()
    .any(
        |(l, m)| *l == log::Level::Warn && m.contains("following by polling")
    )));
    std::thread::sleep(Duration::from_millis(800));
    let lines = lines_with("default/watch-warning ");
    let watch = lines
        .iter()
        .find(|(l, m)| *l == log::Level::Warn && m.contains("following by polling"))
        .unwrap_or_else(|| panic!("{lines:#?}"));
    assert_eq!(
        watch
            .1
            .matches("watch leases default/watch-warning")
            .count(),
        1,
        "{}",
        watch.1
    );
    drop(h);
}

#[test]
fn timing_errors_say_which_value_is_a_default_and_give_the_product() {
    let server = ApiServer::start().unwrap();
    let err = LeaderElector::builder(server.config(), "t")
        .renew_deadline(Duration::from_secs(20))
        .start()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("lease_duration (15s, the default) must be greater than renew_deadline (20s)"),
        "{err}"
    );
    let err = LeaderElector::builder(server.config(), "t")
        .retry_period(Duration::from_secs(9))
        .start()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "renew_deadline (10s, the default) must be greater than 1.2 × retry_period (9s) = 10.8s"
        ),
        "{err}"
    );
}

#[test]
fn a_kubeconfig_server_without_a_scheme_is_https_and_a_missing_token_file_names_file_and_user() {
    let dir = temp_dir("kubeconfig-texts");
    let path = dir.join("config");
    std::fs::write(
        &path,
        "current-context: x\nclusters:\n- name: c\n  cluster: {server: '127.0.0.1:6443'}\n\
         contexts:\n- name: x\n  context: {cluster: c, user: alice}\n\
         users:\n- name: alice\n  user: {token: t}\n",
    )
    .unwrap();
    let config = Config::from_kubeconfig(&path).unwrap();
    assert_eq!(config.server(), "https://127.0.0.1:6443");
    std::fs::write(
        &path,
        "current-context: x\nclusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:6443'}\n\
         contexts:\n- name: x\n  context: {cluster: c, user: alice}\n\
         users:\n- name: alice\n  user: {tokenFile: missing-token}\n",
    )
    .unwrap();
    let err = Config::from_kubeconfig(&path).unwrap_err().to_string();
    assert!(
        err.contains(&path.display().to_string())
            && err.contains("user \"alice\"")
            && err.contains("missing-token"),
        "{err}"
    );
}
