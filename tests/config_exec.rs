//! Exec credential plugins end to end: small shell scripts in a temporary folder play the plugin (they
//! count their runs and record `KUBERNETES_EXEC_INFO`), the embedded API server checks what they hand out.
#![cfg(unix)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod common;

use common::b64;
use kube_elector::election::Elector;
use kube_elector::lock::LeaseLock;
use kube_elector::testing::ApiServer;
use kube_elector::{Config, LeaderEvent};
use serde_json::{Value, json};

struct Plugin {
    dir: PathBuf,
}

impl Plugin {
    /// A plugin folder with `plugin.sh`: it counts its runs in `runs`, saves its exec info in `info.json`,
    /// prints `output.json` and exits with the code in `exit-code` (0 if missing). Misbehaviour on
    /// request: it sleeps the seconds in `sleep` first, prints 10 MB of junk when `flood` exists, and
    /// leaves a child holding its stdout open for 30 s when `daemon` exists.
    fn new(tag: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("kube-elector-exec-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("plugin.sh");
        std::fs::write(
            &script,
            "#!/bin/sh\necho run >> \"$PLUGIN_DIR/runs\"\nprintf '%s' \"$KUBERNETES_EXEC_INFO\" > \"$PLUGIN_DIR/info.json\"\n\
             code=0\n[ -f \"$PLUGIN_DIR/exit-code\" ] && code=$(cat \"$PLUGIN_DIR/exit-code\")\n\
             if [ \"$code\" != 0 ]; then echo \"boom: no credentials for $1\" >&2; exit \"$code\"; fi\n\
             [ -f \"$PLUGIN_DIR/sleep\" ] && sleep \"$(cat \"$PLUGIN_DIR/sleep\")\"\n\
             [ -f \"$PLUGIN_DIR/flood\" ] && head -c 10000000 /dev/zero | tr '\\0' x\n\
             [ -f \"$PLUGIN_DIR/daemon\" ] && sleep 30 &\n\
             cat \"$PLUGIN_DIR/output.json\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        Plugin { dir }
    }

    fn runs(&self) -> usize {
        std::fs::read_to_string(self.dir.join("runs")).map_or(0, |s| s.lines().count())
    }

    fn output(&self, status: Value) {
        let out = json!({"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential", "status": status});
        std::fs::write(self.dir.join("output.json"), out.to_string()).unwrap();
    }

    fn info(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.dir.join("info.json")).unwrap()).unwrap()
    }

    /// A kubeconfig for `server` whose user runs this plugin (by a path relative to the kubeconfig).
    fn kubeconfig(&self, server: &ApiServer, exec_extra: &str) -> Config {
        let text = format!(
            "current-context: x\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority-data: {}\n\
             contexts:\n- name: x\n  context: {{cluster: c, user: u}}\nusers:\n- name: u\n  user:\n    exec:\n\
             \x20     apiVersion: client.authentication.k8s.io/v1\n      command: ./plugin.sh\n      args: [my-cluster]\n\
             \x20     interactiveMode: Never\n      installHint: 'install it with: brew install my-plugin'\n\
             \x20     env:\n      - {{name: PLUGIN_DIR, value: '{}'}}\n{exec_extra}",
            server.url(),
            b64(server.ca_pem().unwrap()),
            self.dir.display()
        );
        let path = self.dir.join("kubeconfig");
        std::fs::write(&path, text).unwrap();
        Config::from_kubeconfig(&path).unwrap()
    }
}

fn elector(config: &Config, name: &str) -> Elector<LeaseLock> {
    let timing = common::timing(10, 5000, 1000);
    Elector::new(
        LeaseLock::new(config, "default", name, "a").unwrap(),
        timing,
    )
    .unwrap()
}

fn rfc3339_in(d: Duration) -> String {
    (chrono::Utc::now() + chrono::Duration::from_std(d).unwrap()).to_rfc3339()
}

#[test]
fn a_token_is_cached_until_it_expires_and_refreshed_after_a_401() {
    let server = common::tls_server(&["tok-1"]);
    let plugin = Plugin::new("token");
    plugin.output(
        json!({"token": "tok-1", "expirationTimestamp": rfc3339_in(Duration::from_secs(3600))}),
    );
    let config = plugin.kubeconfig(&server, "      provideClusterInfo: true\n");
    let mut e = elector(&config, "exec-token");
    for _ in 0..3 {
        assert!(e.try_acquire_or_renew().unwrap());
    }
    assert_eq!(plugin.runs(), 1, "cached until expiry");
    assert_eq!(server.requests_for("tok-1", "PUT"), 2);

    // The exec info: never interactive, with the cluster because provideClusterInfo is set.
    let info = plugin.info();
    assert_eq!(info["kind"], "ExecCredential");
    assert_eq!(info["apiVersion"], "client.authentication.k8s.io/v1");
    assert_eq!(info["spec"]["interactive"], false);
    assert_eq!(info["spec"]["cluster"]["server"], server.url());
    assert_eq!(
        info["spec"]["cluster"]["certificate-authority-data"],
        b64(server.ca_pem().unwrap())
    );

    // The server rotates to a new token; the cached one gets a 401; the plugin runs once more at once.
    server.add_token("tok-2");
    server.revoke_token("tok-1");
    plugin.output(json!({"token": "tok-2"}));
    assert!(
        e.try_acquire_or_renew().unwrap(),
        "the renew succeeds within the same call"
    );
    assert_eq!(plugin.runs(), 2);
    assert_eq!(server.requests_for("tok-2", "PUT"), 1);
}

#[test]
fn an_expired_credential_runs_the_plugin_again() {
    let server = common::tls_server(&["t"]);
    let plugin = Plugin::new("expiry");
    plugin.output(
        json!({"token": "t", "expirationTimestamp": rfc3339_in(Duration::from_millis(1500))}),
    );
    let config = plugin.kubeconfig(&server, "");
    let mut e = elector(&config, "exec-expiry");
    assert!(e.try_acquire_or_renew().unwrap());
    assert!(e.try_acquire_or_renew().unwrap());
    assert_eq!(plugin.runs(), 1);
    std::thread::sleep(Duration::from_millis(1600));
    assert!(e.try_acquire_or_renew().unwrap());
    assert_eq!(plugin.runs(), 2, "run again after expirationTimestamp");
    // No info about the cluster without provideClusterInfo.
    assert!(plugin.info()["spec"].get("cluster").is_none());
}

#[test]
fn a_client_certificate_from_the_plugin_authenticates() {
    let server = common::tls_server(&["unused"]);
    let (cert, key) = server.issue_client_cert("plugin-user", None).unwrap();
    let plugin = Plugin::new("cert");
    plugin.output(json!({"clientCertificateData": cert, "clientKeyData": key}));
    let config = plugin.kubeconfig(&server, "");
    let mut e = elector(&config, "exec-cert");
    assert!(e.try_acquire_or_renew().unwrap());
    assert!(e.try_acquire_or_renew().unwrap());
    assert_eq!(server.requests_for("plugin-user", "PUT"), 1);
    assert_eq!(plugin.runs(), 1);
}

#[test]
fn plugin_failures_are_clear_errors_with_the_install_hint() {
    let server = common::tls_server(&["t"]);
    let plugin = Plugin::new("failures");
    let config = plugin.kubeconfig(&server, "");
    let mut e = elector(&config, "exec-fail");

    std::fs::write(plugin.dir.join("exit-code"), "3").unwrap();
    let err = e.try_acquire_or_renew().unwrap_err();
    assert_eq!(
        err.config_kind(),
        Some(kube_elector::error::ConfigErrorKind::ExecPlugin),
        "{err}"
    );
    let err = err.to_string();
    assert!(
        err.contains("boom: no credentials for my-cluster"),
        "stderr and args: {err}"
    );
    assert!(
        err.contains("brew install my-plugin"),
        "install hint: {err}"
    );
    assert!(!e.is_leader());
    std::fs::remove_file(plugin.dir.join("exit-code")).unwrap();

    std::fs::write(plugin.dir.join("output.json"), "not json").unwrap();
    let err = e.try_acquire_or_renew().unwrap_err().to_string();
    assert!(err.contains("not an ExecCredential"), "{err}");

    let wrong = json!({"apiVersion": "client.authentication.k8s.io/v1beta1", "kind": "ExecCredential", "status": {"token": "t"}});
    std::fs::write(plugin.dir.join("output.json"), wrong.to_string()).unwrap();
    let err = e.try_acquire_or_renew().unwrap_err().to_string();
    assert!(err.contains("apiVersion"), "{err}");

    plugin.output(json!({}));
    let err = e.try_acquire_or_renew().unwrap_err().to_string();
    assert!(err.contains("neither status.token"), "{err}");

    plugin.output(json!({"token": "t", "expirationTimestamp": "tomorrow"}));
    let err = e.try_acquire_or_renew().unwrap_err().to_string();
    assert!(err.contains("expirationTimestamp"), "{err}");

    plugin.output(json!({"token": "t"}));
    assert!(
        e.try_acquire_or_renew().unwrap(),
        "and once the plugin works, so does the election"
    );

    // A plugin that is not installed: the hint says how to get it.
    let missing = Plugin::new("missing");
    let config = missing.kubeconfig(&server, "");
    std::fs::remove_file(missing.dir.join("plugin.sh")).unwrap();
    let err = elector(&config, "exec-missing")
        .try_acquire_or_renew()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not found") && err.contains("brew install my-plugin"),
        "{err}"
    );
    let _ = Path::new(&missing.dir);
}

#[test]
fn a_static_token_wins_over_the_plugin() {
    let server = common::tls_server(&["static"]);
    let plugin = Plugin::new("precedence");
    plugin.output(json!({"token": "from-plugin"}));
    let path = plugin.dir.join("kubeconfig");
    plugin.kubeconfig(&server, "");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("    exec:\n", "    token: static\n    exec:\n");
    std::fs::write(&path, text).unwrap();
    let config = Config::from_kubeconfig(&path).unwrap();
    assert!(
        elector(&config, "precedence")
            .try_acquire_or_renew()
            .unwrap()
    );
    assert_eq!(
        plugin.runs(),
        0,
        "the plugin only runs when no static credential is set"
    );
}

#[test]
fn clients_of_one_config_share_the_plugin_and_its_credential() {
    // As in client-go, the cache belongs to the plugin's configuration, not to one client: an elector's
    // renew, watch and event clients, and several electors on one kubeconfig, run the plugin once.
    let server = common::tls_server(&["tok"]);
    let plugin = Plugin::new("shared");
    plugin.output(
        json!({"token": "tok", "expirationTimestamp": rfc3339_in(Duration::from_secs(3600))}),
    );
    let config = plugin.kubeconfig(&server, "");
    let mut a = elector(&config, "shared-a");
    let mut b = elector(&config.clone(), "shared-b");
    assert!(a.try_acquire_or_renew().unwrap());
    assert!(b.try_acquire_or_renew().unwrap());
    // The same kubeconfig loaded again is the same plugin configuration.
    let again = Config::from_kubeconfig(plugin.dir.join("kubeconfig")).unwrap();
    let mut c = elector(&again, "shared-c");
    assert!(c.try_acquire_or_renew().unwrap());
    assert_eq!(
        plugin.runs(),
        1,
        "one run for every client of the same plugin"
    );
}

// ---- plugins that misbehave never hold the election back ----

#[test]
fn a_hanging_plugin_never_holds_back_the_end_of_leadership_nor_stop() {
    let server = common::tls_server(&["t", "f"]);
    let plugin = Plugin::new("hanging");
    plugin.output(
        json!({"token": "t", "expirationTimestamp": rfc3339_in(Duration::from_millis(1500))}),
    );
    let config = plugin.kubeconfig(&server, "");
    let start = |config: Config, id: &str| {
        let builder = common::candidate(config, "exec-hanging", id, common::timing(2, 1500, 200))
            .watch(false);
        let events = builder.events();
        (builder.start().unwrap(), events)
    };
    let (a, events) = start(config, "a");
    assert!(common::wait_until(Duration::from_secs(5), || a.is_leader()));
    let (b, _) = start(server.config_for("f"), "b");
    // From now on the plugin hangs for 20 s: the token expires and the next renew runs it.
    std::fs::write(plugin.dir.join("sleep"), "20").unwrap();
    assert!(
        common::wait_until(Duration::from_secs(5), || !a.is_leader()),
        "leadership ends by the renew deadline"
    );
    let lost = Instant::now();
    let stopped = common::wait_event(&events, Duration::from_secs(3), |e| {
        matches!(e, LeaderEvent::StoppedLeading { .. })
    });
    assert!(stopped.is_some(), "StoppedLeading is sent");
    assert!(
        lost.elapsed() < Duration::from_millis(700),
        "StoppedLeading came {:?} after is_leader() turned false: the plugin held it back",
        lost.elapsed()
    );
    assert!(
        common::wait_until(Duration::from_secs(5), || b.is_leader()),
        "the follower takes over"
    );
    let stopping = Instant::now();
    // Nothing of ours is left to release (b holds the lock); a release that needed the plugin would
    // fail within its own time and say why.
    if let Err(e) = a.stop() {
        assert!(e.to_string().contains("exec credential plugin"), "{e}");
    }
    assert!(
        stopping.elapsed() < Duration::from_secs(2),
        "stop() waited {:?} for the plugin",
        stopping.elapsed()
    );
}

#[test]
fn a_plugin_that_leaves_a_child_holding_its_output_does_not_block_leading_or_stop() {
    let server = common::tls_server(&["t"]);
    let plugin = Plugin::new("daemon");
    plugin.output(json!({"token": "t"}));
    std::fs::write(plugin.dir.join("daemon"), "").unwrap();
    let config = plugin.kubeconfig(&server, "");
    let started = Instant::now();
    let a = common::start(config, "exec-daemon", "a", common::timing(2, 1500, 200));
    assert!(
        common::wait_until(Duration::from_secs(5), || a.is_leader()),
        "leads although a child of the plugin keeps its stdout open"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let stopping = Instant::now();
    a.stop().unwrap();
    assert!(stopping.elapsed() < Duration::from_secs(2));
}

#[test]
fn a_plugin_that_prints_without_end_is_stopped_at_a_megabyte() {
    let server = common::tls_server(&["t"]);
    let plugin = Plugin::new("flood");
    plugin.output(json!({"token": "t"}));
    std::fs::write(plugin.dir.join("flood"), "").unwrap();
    let config = plugin.kubeconfig(&server, "");
    let started = Instant::now();
    let err = elector(&config, "exec-flood")
        .try_acquire_or_renew()
        .unwrap_err()
        .to_string();
    assert!(err.contains("more than 1024 KiB"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}
