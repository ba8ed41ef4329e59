//! `examples/leader.rs` as a process against the embedded API server over TLS: JSON events, graceful
//! release on SIGTERM, exit code 2 on bad flags. (cargo test builds the examples first.)

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kube_elector::testing::ApiServer;

mod common;

use common::leader_bin;

fn temp_kubeconfig(server: &ApiServer, tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kube-elector-cli-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config");
    std::fs::write(&path, server.kubeconfig()).unwrap();
    path
}

fn spawn(kubeconfig: &std::path::Path, id: &str, extra: &[&str]) -> Child {
    Command::new(leader_bin())
        .args([
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--name",
            "cli",
            "--id",
            id,
        ])
        .args(common::FAST_TIMING)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the leader example is built by cargo test")
}

#[test]
fn the_cli_leads_prints_json_events_and_releases_on_sigterm() {
    let server = common::tls_server(&["cli-token"]);
    let kubeconfig = temp_kubeconfig(&server, "sigterm");
    // Releasing on SIGTERM is the default.
    let mut child = spawn(&kubeconfig, "p1", &[]);
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let end = Instant::now() + Duration::from_secs(10);
    let mut lines = Vec::new();
    while !lines.iter().any(|l: &String| l.contains("started_leading")) {
        let left = end.saturating_duration_since(Instant::now());
        lines.push(rx.recv_timeout(left).expect("started_leading within 10 s"));
    }
    assert_eq!(server.lease_holder("default", "cli").as_deref(), Some("p1"));
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert_eq!(exit.code(), Some(0));
    lines.extend(rx.iter());
    for l in &lines {
        // The keys in the order the README shows them.
        let at = |k: &str| {
            l.find(&format!("\"{k}\":"))
                .unwrap_or_else(|| panic!("{k} in {l}"))
        };
        assert!(
            at("ts") < at("id") && at("id") < at("event") && at("event") < at("leader"),
            "{l}"
        );
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"));
        assert_eq!(v["id"], "p1");
        let ts = v["ts"].as_str().unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok(), "{ts}");
        assert!(v["leader"].is_string());
    }
    let kinds: Vec<String> = lines
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["event"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        kinds,
        ["new_leader", "started_leading", "stopped_leading"],
        "{lines:?}"
    );
    assert_eq!(
        server.lease_holder("default", "cli").as_deref(),
        Some(""),
        "released on SIGTERM"
    );
}

#[test]
fn the_cli_exits_0_after_run_for_and_2_on_bad_input() {
    let server = common::tls_server(&["cli-token"]);
    let kubeconfig = temp_kubeconfig(&server, "runfor");
    let out = spawn(&kubeconfig, "p2", &["--run-for", "500ms"])
        .wait_with_output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("started_leading"));
    assert_eq!(
        server.lease_holder("default", "cli").as_deref(),
        Some(""),
        "released by default"
    );
    let out = spawn(
        &kubeconfig,
        "p3",
        &["--run-for", "500ms", "--release-on-cancel=false"],
    )
    .wait_with_output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        server.lease_holder("default", "cli").as_deref(),
        Some("p3"),
        "kept until it expires with --release-on-cancel=false"
    );

    for bad in [
        vec!["--name", "x", "--bogus"],
        vec!["--name", "x", "--release-on-cancel=maybe"],
        vec!["--name", "x", "--lease-duration", "soon"],
        vec!["--kubeconfig", "/nonexistent/kubeconfig", "--name", "x"],
        vec!["--kubeconfig", kubeconfig.to_str().unwrap()],
        vec![
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--name",
            "x",
            "--lease-duration",
            "1s",
        ],
        vec![
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--name",
            "x",
            "--lock",
            "zookeeper",
        ],
    ] {
        let out = Command::new(leader_bin()).args(&bad).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            err.trim().lines().count(),
            1,
            "one-line error for {bad:?}: {err}"
        );
        assert!(err.starts_with("leader: "), "{err}");
    }
}

#[test]
fn without_flags_the_cli_infers_its_config_from_the_environment() {
    let server = common::tls_server(&["cli-token"]);
    let kubeconfig = temp_kubeconfig(&server, "infer");
    let empty_home = kubeconfig.parent().unwrap().join("home");
    std::fs::create_dir_all(&empty_home).unwrap();
    let run = |kubeconfig_env: Option<&str>| {
        let mut cmd = Command::new(leader_bin());
        // Kept after the run, so the holder shows which config it used.
        cmd.args(["--name", "inferred", "--id", "p9", "--run-for", "300ms"])
            .arg("--release-on-cancel=false")
            .args(common::FAST_TIMING)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("KUBERNETES_SERVICE_PORT")
            .env("HOME", &empty_home);
        match kubeconfig_env {
            Some(v) => cmd.env("KUBECONFIG", v),
            None => cmd.env_remove("KUBECONFIG"),
        };
        cmd.output().unwrap()
    };
    // KUBECONFIG, a path list with a missing entry first.
    let list = format!("/nonexistent/config:{}", kubeconfig.display());
    let out = run(Some(&list));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        server.lease_holder("default", "inferred").as_deref(),
        Some("p9")
    );
    // Nothing at all: one line naming everything that was tried.
    let out = run(None);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("KUBECONFIG") && err.contains("in-cluster") && err.contains(".kube/config"),
        "{err}"
    );
}

#[test]
fn the_cli_takes_every_lock_kind() {
    let server = common::tls_server(&["cli-token"]);
    let kubeconfig = temp_kubeconfig(&server, "kinds");
    for kind in [
        "leases",
        "configmaps",
        "endpoints",
        "configmapsleases",
        "endpointsleases",
    ] {
        let name = format!("kind-{kind}");
        let out = Command::new(leader_bin())
            .args([
                "--kubeconfig",
                kubeconfig.to_str().unwrap(),
                "--name",
                &name,
                "--id",
                "k",
                "--lock",
                kind,
            ])
            .args(common::FAST_TIMING)
            .args(["--run-for", "300ms"])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{kind}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("started_leading"),
            "{kind}"
        );
        let plural = match kind {
            "endpoints" | "endpointsleases" => "endpoints",
            "leases" => "leases",
            _ => "configmaps",
        };
        assert!(
            server.object(plural, "default", &name).is_some(),
            "{kind} wrote a {plural} object"
        );
    }
}

#[test]
fn help_lists_every_flag_with_its_default_and_errors_name_the_flag() {
    let run = |args: &[&str]| {
        let out = Command::new(leader_bin()).args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, help, _) = run(&["--help"]);
    assert_eq!(code, Some(0));
    for flag in [
        "--name",
        "--namespace",
        "--id",
        "--lock",
        "--kubeconfig",
        "--context",
        "--lease-duration",
        "--renew-deadline",
        "--retry-period",
        "--release-on-cancel",
        "--watch",
        "--no-watch",
        "--run-for",
        "--help",
        "--version",
    ] {
        assert!(help.contains(flag), "--help lists {flag}: {help}");
    }
    for default in [
        "(default: 15s)",
        "(default: 10s)",
        "(default: 2s)",
        "(default: leases)",
        "(default: true)",
    ] {
        assert!(help.contains(default), "--help shows {default}: {help}");
    }
    let (code, version, _) = run(&["--version"]);
    assert_eq!(code, Some(0));
    assert!(version.contains(env!("CARGO_PKG_VERSION")), "{version}");
    let (code, _, err) = run(&["--name", "x", "--retry-period", "soon"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("--retry-period") && err.contains("soon"),
        "{err}"
    );
    let (code, _, err) = run(&["--name", "x", "--lock", "zookeeper"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--lock"), "{err}");
    let server = ApiServer::start().unwrap();
    let kubeconfig = temp_kubeconfig(&server, "flag-names");
    let (code, _, err) = run(&[
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--name",
        "x",
        "--retry-period",
        "9s",
    ]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("--renew-deadline (10s, the default)") && err.contains("--retry-period (9s)"),
        "{err}"
    );
}
