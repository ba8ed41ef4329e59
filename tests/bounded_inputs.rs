//! Inputs without a bound never cost unbounded memory or time: oversized or special token files, a
//! kubeconfig whose aliases expand without end, and the health check's tolerance at its maximum.
#![cfg(unix)]

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{temp_dir, wait_until};
use kube_elector::Config;
use kube_elector::testing::ApiServer;

/// A kubeconfig for `server` whose user reads its token from `token_file`.
fn kubeconfig_with_token_file(
    dir: &std::path::Path,
    server: &str,
    token_file: &str,
) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "current-context: x\nclusters:\n- name: c\n  cluster: {{server: '{server}'}}\n\
             contexts:\n- name: x\n  context: {{cluster: c, user: u}}\n\
             users:\n- name: u\n  user: {{tokenFile: '{token_file}'}}\n"
        ),
    )
    .unwrap();
    path
}

/// Load `path` on another thread: an answer within `limit`, or `None` if loading blocked.
fn load_within(path: std::path::PathBuf, limit: Duration) -> Option<kube_elector::Result<Config>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(Config::from_kubeconfig(&path));
    });
    rx.recv_timeout(limit).ok()
}

#[test]
fn a_token_file_that_is_a_fifo_or_a_device_is_refused_without_blocking() {
    let dir = temp_dir("fifo-token");
    let fifo = dir.join("token");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    for (token, why) in [
        (fifo.display().to_string(), "not a regular file"),
        ("/dev/zero".into(), "larger than 1 MiB"),
    ] {
        let path = kubeconfig_with_token_file(&dir, "https://127.0.0.1:1", &token);
        let loaded = load_within(path, Duration::from_secs(5))
            .unwrap_or_else(|| panic!("loading a kubeconfig whose tokenFile is {token} blocked"));
        let err = loaded.unwrap_err().to_string();
        assert!(err.contains(why) && err.contains(&token), "{err}");
    }
}

#[test]
fn an_oversized_token_file_is_refused_with_its_size_cap() {
    let dir = temp_dir("big-token");
    let token = dir.join("token");
    std::fs::write(&token, "x".repeat(2 * 1024 * 1024)).unwrap();
    let path =
        kubeconfig_with_token_file(&dir, "https://127.0.0.1:1", &token.display().to_string());
    let err = Config::from_kubeconfig(&path).unwrap_err().to_string();
    assert!(err.contains("larger than 1 MiB"), "{err}");
    // In-cluster too: the same reader.
    let err = Config::new("https://127.0.0.1:1")
        .with_token_file(&token)
        .unwrap_err()
        .to_string();
    assert!(err.contains("larger than 1 MiB"), "{err}");
}

#[test]
fn a_kubeconfig_whose_aliases_expand_without_end_is_refused() {
    let dir = temp_dir("alias-bomb");
    let path = dir.join("kubeconfig");
    // One 200 KB anchor, aliased 2,000 times: 400 MB once expanded, from a 210 KB file.
    let mut text = format!(
        "current-context: x\nclusters:\n- name: c\n  cluster: {{server: 'https://127.0.0.1:1'}}\n\
         contexts:\n- name: x\n  context: {{cluster: c, user: u}}\nusers:\n- name: u\n  user:\n    token: &big {}\n",
        "y".repeat(200_000)
    );
    for i in 0..2000 {
        text.push_str(&format!("- name: u{i}\n  user:\n    token: *big\n"));
    }
    std::fs::write(&path, text).unwrap();
    let started = Instant::now();
    let err = Config::from_kubeconfig(&path).unwrap_err().to_string();
    assert!(err.contains("alias") && err.contains("kubeconfig"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // A kubeconfig that reuses a small anchor a few times still loads.
    std::fs::write(
        &path,
        "current-context: x\nclusters:\n- name: c\n  cluster: &c {server: 'https://127.0.0.1:1'}\n\
         - name: d\n  cluster: *c\ncontexts:\n- name: x\n  context: {cluster: d, user: u}\n\
         users:\n- name: u\n  user: {token: t}\n",
    )
    .unwrap();
    assert!(Config::from_kubeconfig(&path).is_ok());
}

#[test]
fn the_health_check_takes_any_tolerance() {
    let server = ApiServer::start().unwrap();
    let handle = common::start(
        server.config(),
        "check-max",
        "a",
        common::timing(2, 1500, 200),
    );
    assert!(wait_until(Duration::from_secs(5), || handle.is_leader()));
    assert!(handle.check(Duration::MAX).is_ok());
    assert!(handle.check(Duration::ZERO).is_ok());
}
