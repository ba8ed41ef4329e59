//! A real Kubernetes control plane for tests: `kube-apiserver` and `etcd` started from the directory that
//! `KUBEBUILDER_ASSETS` names (the convention of controller-runtime's envtest and `setup-envtest`, so
//! existing assets work), on free loopback ports, with generated certificates, and the users a test
//! needs handed out as [`Config`]s.
//!
//! ```no_run
//! use kube_elector::testing::ControlPlane;
//! let cp = ControlPlane::start()?; // reads KUBEBUILDER_ASSETS
//! let handle = kube_elector::LeaderElector::builder(cp.user(), "my-app").start()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The processes never outlive the test: each runs in its own process group under a guard that kills it
//! when the handle is dropped or the test process dies (even by SIGKILL), and folders and processes left
//! by a run that could not clean up are reaped by the next one.

mod process;
mod setup;

use std::fmt;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use process::{Guarded, reap_orphans, runs_dir};

use crate::client::RestClient;
use crate::config::{Config, InClusterOptions};

/// The namespace the test users may work in.
pub const NAMESPACE: &str = "elector";

/// Why a control plane could not start: what was looked for, or the tail of the server's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchError(pub String);

impl fmt::Display for LaunchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "control plane: {}", self.0)
    }
}

impl std::error::Error for LaunchError {}

fn err(e: impl fmt::Display) -> LaunchError {
    LaunchError(e.to_string())
}

/// Tokens of the users the control plane knows.
struct Tokens {
    admin: String,
    user: String,
    nobody: String,
}

/// A running `etcd` + `kube-apiserver`. Dropping it stops both and removes their files.
pub struct ControlPlane {
    apiserver: Option<Guarded>,
    etcd: Option<Guarded>,
    dir: PathBuf,
    data_dir: PathBuf,
    url: String,
    ca_pem: String,
    tokens: Tokens,
    client_cert: (String, String),
    service_account_dir: PathBuf,
    port: u16,
    etcd_url: String,
    /// How the API server was started, for restarts.
    apiserver_bin: PathBuf,
    apiserver_args: Vec<String>,
}

impl fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlPlane")
            .field("url", &self.url)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn free_port() -> Result<u16, LaunchError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| err(format!("no free port: {e}")))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| err(format!("no free port: {e}")))
}

impl ControlPlane {
    /// The assets directory named by `KUBEBUILDER_ASSETS`, if set.
    pub fn assets_from_env() -> Option<PathBuf> {
        std::env::var_os("KUBEBUILDER_ASSETS")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    }

    /// Start from `KUBEBUILDER_ASSETS`.
    pub fn start() -> Result<ControlPlane, LaunchError> {
        let assets = Self::assets_from_env().ok_or_else(|| {
            err("KUBEBUILDER_ASSETS is not set: point it at a folder with kube-apiserver and etcd (setup-envtest, or the unpacked ../shared/k8s binaries)")
        })?;
        Self::start_with_assets(&assets)
    }

    /// Start from the `kube-apiserver` and `etcd` binaries in `assets`.
    pub fn start_with_assets(assets: &Path) -> Result<ControlPlane, LaunchError> {
        let (apiserver_bin, etcd_bin) = (
            setup::binary(assets, "kube-apiserver")?,
            setup::binary(assets, "etcd")?,
        );
        reap_orphans();
        static RUN: AtomicU32 = AtomicU32::new(0);
        let run = format!(
            "{}-{}",
            std::process::id(),
            RUN.fetch_add(1, Ordering::Relaxed)
        );
        let dir = runs_dir().join(&run);
        std::fs::create_dir_all(&dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
        // etcd's writes are cheapest on tmpfs.
        let shm = Path::new("/dev/shm");
        let data_dir = if shm.is_dir() {
            shm.join(format!("kube-elector-etcd-{run}"))
        } else {
            dir.join("etcd-data")
        };
        let _ = std::fs::write(dir.join("datadir"), data_dir.to_string_lossy().as_bytes());
        let pki = setup::Pki::write(&dir)?;
        let (etcd_port, peer_port, port) = (free_port()?, free_port()?, free_port()?);
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let etcd_args = setup::etcd_args(&run, &data_dir, &etcd_url, peer_port);
        let etcd = Guarded::spawn(
            "etcd",
            &etcd_bin,
            &etcd_args,
            &dir.join("etcd.log"),
            &dir.join("etcd.pid"),
        )
        .map_err(|e| err(format!("starting {}: {e}", etcd_bin.display())))?;
        let apiserver_args = setup::apiserver_args(&dir, &etcd_url, port);
        let apiserver = Guarded::spawn(
            "kube-apiserver",
            &apiserver_bin,
            &apiserver_args,
            &dir.join("kube-apiserver.log"),
            &dir.join("kube-apiserver.pid"),
        )
        .map_err(|e| err(format!("starting {}: {e}", apiserver_bin.display())))?;
        let mut cp = ControlPlane {
            apiserver: Some(apiserver),
            etcd: Some(etcd),
            service_account_dir: dir.join("serviceaccount"),
            dir,
            data_dir,
            url: format!("https://127.0.0.1:{port}"),
            ca_pem: pki.ca_pem,
            tokens: pki.tokens,
            client_cert: pki.client_cert,
            port,
            etcd_url,
            apiserver_bin,
            apiserver_args,
        };
        cp.wait_ready(Duration::from_secs(60))?;
        setup::objects(&cp)?;
        Ok(cp)
    }

    /// Poll `/readyz` until it answers ok; a process that exits, or a deadline that passes, is an error
    /// with the tail of the logs.
    fn wait_ready(&mut self, within: Duration) -> Result<(), LaunchError> {
        let client = RestClient::new(&self.admin()).map_err(err)?;
        let start = Instant::now();
        let mut last = String::new();
        while start.elapsed() < within {
            for p in [&mut self.etcd, &mut self.apiserver].into_iter().flatten() {
                if let Some(status) = p.exited() {
                    return Err(err(format!(
                        "{} exited ({status}) before the API server was ready; its log ends:\n{}",
                        p.name,
                        p.tail(30)
                    )));
                }
            }
            match client.get(&"/readyz", Duration::from_secs(2), &"readyz") {
                Ok(_) => return Ok(()),
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(err(format!(
            "the API server was not ready within {within:?} ({last}); {}",
            self.logs()
        )))
    }

    /// Stop the API server and start it again on the same port and etcd (open connections and watches
    /// break; its watch cache starts afresh). Returns once it is ready.
    pub fn restart_apiserver(&mut self) -> Result<(), LaunchError> {
        drop(self.apiserver.take());
        // The port is free again once the old process is gone.
        let start = Instant::now();
        while TcpListener::bind(("127.0.0.1", self.port)).is_err()
            && start.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        let apiserver = Guarded::spawn(
            "kube-apiserver",
            &self.apiserver_bin,
            &self.apiserver_args,
            &self.dir.join("kube-apiserver.log"),
            &self.dir.join("kube-apiserver.pid"),
        )
        .map_err(|e| err(format!("restarting kube-apiserver: {e}")))?;
        self.apiserver = Some(apiserver);
        self.wait_ready(Duration::from_secs(60))
    }

    /// Compact etcd's history up to its current revision, as the API server does every few minutes:
    /// watches from older resource versions then get `410 Gone` once the API server's cache forgets them.
    pub fn compact(&self) -> Result<(), LaunchError> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .into();
        let post =
            |path: &str, body: serde_json::Value| -> Result<serde_json::Value, LaunchError> {
                let mut answer = agent
                    .post(format!("{}{path}", self.etcd_url))
                    .header("Content-Type", "application/json")
                    .send(body.to_string())
                    .map_err(|e| err(format!("etcd {path}: {e}")))?;
                if !answer.status().is_success() {
                    return Err(err(format!("etcd {path} answered {}", answer.status())));
                }
                let text = answer
                    .body_mut()
                    .read_to_string()
                    .map_err(|e| err(format!("etcd {path}: {e}")))?;
                serde_json::from_str(&text).map_err(|e| err(format!("etcd {path}: {e}: {text}")))
            };
        let status = post("/v3/kv/range", serde_json::json!({"key": "AA=="}))?;
        let revision = status["header"]["revision"]
            .as_str()
            .ok_or_else(|| err(format!("etcd answered without a revision: {status}")))?
            .to_string();
        post(
            "/v3/kv/compaction",
            serde_json::json!({"revision": revision, "physical": true}),
        )?;
        Ok(())
    }

    /// The API server's Prometheus metrics (`GET /metrics` as the admin), as text.
    pub fn metrics(&self) -> Result<String, LaunchError> {
        let client = RestClient::new(&self.admin()).map_err(err)?;
        let body = client
            .get(&"/metrics", Duration::from_secs(10), &"metrics")
            .map_err(err)?;
        String::from_utf8(body.body).map_err(|e| err(format!("metrics: {e}")))
    }

    /// How many API requests for leases the API server has answered since it started, by verb
    /// (`GET`, `LIST`, `PUT`, `POST`, `WATCH`, ...), from its `apiserver_request_total` counter. The
    /// control plane's own leases count too (a few per minute).
    pub fn lease_requests(&self) -> Result<std::collections::BTreeMap<String, u64>, LaunchError> {
        Ok(lease_requests_in(&self.metrics()?))
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The API server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The CA that signed the API server's certificate (and the client certificates it accepts).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The namespace the users may work in.
    pub fn namespace(&self) -> &str {
        NAMESPACE
    }

    fn config(&self, token: &str) -> Config {
        Config::new(self.url.clone())
            .with_ca_pem(self.ca_pem.as_bytes().to_vec())
            .with_token(token)
            .with_namespace(NAMESPACE)
    }

    /// A cluster admin (group `system:masters`).
    pub fn admin(&self) -> Config {
        self.config(&self.tokens.admin)
    }

    /// A user with a token and only a Role in the test namespace ([`namespace`](Self::namespace)):
    /// leases, leasecandidates, configmaps, endpoints and events (what an elector needs, and watch/list
    /// for watching followers).
    pub fn user(&self) -> Config {
        self.config(&self.tokens.user)
    }

    /// The same Role's user by a client certificate (no token).
    pub fn client_cert_user(&self) -> Config {
        Config::new(self.url.clone())
            .with_ca_pem(self.ca_pem.as_bytes().to_vec())
            .with_client_cert(
                self.client_cert.0.as_bytes().to_vec(),
                self.client_cert.1.as_bytes().to_vec(),
            )
            .with_namespace(NAMESPACE)
    }

    /// A user the API server knows but who may do nothing: for RBAC refusals.
    pub fn unprivileged(&self) -> Config {
        self.config(&self.tokens.nobody)
    }

    /// A service account's token laid out as an in-cluster mount (`token`, `ca.crt`, `namespace`), and
    /// the host and port a pod would get.
    pub fn in_cluster(&self) -> InClusterOptions {
        InClusterOptions {
            service_account_dir: self.service_account_dir.clone(),
            host: Some("127.0.0.1".into()),
            port: Some(self.port.to_string()),
            pod_namespace: None,
        }
    }

    /// A kubeconfig's text for the token user (as kubectl would write it).
    pub fn kubeconfig(&self) -> String {
        setup::kubeconfig(&self.url, &self.ca_pem, &self.tokens.user)
    }

    /// The process ids of etcd and the API server (to check that none outlives the test).
    pub fn pids(&self) -> Vec<u32> {
        ["etcd.pid", "kube-apiserver.pid"]
            .iter()
            .filter_map(|f| std::fs::read_to_string(self.dir.join(f)).ok())
            .filter_map(|p| p.trim().parse().ok())
            .collect()
    }

    /// The admin's bearer token (for raw requests in tests).
    pub fn admin_token(&self) -> &str {
        &self.tokens.admin
    }

    /// The bearer token of the user without a Role.
    pub fn unprivileged_token(&self) -> &str {
        &self.tokens.nobody
    }

    /// The bearer token of the Role user (for hand-written kubeconfigs and exec plugins).
    pub fn user_token(&self) -> &str {
        &self.tokens.user
    }

    /// The ends of both servers' logs, for a failing test's message.
    pub fn logs(&self) -> String {
        let tail = |p: &Option<Guarded>, n| p.as_ref().map_or_else(String::new, |p| p.tail(n));
        format!(
            "kube-apiserver's log ends:\n{}\netcd's log ends:\n{}",
            tail(&self.apiserver, 40),
            tail(&self.etcd, 10)
        )
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        // The API server first, then etcd, then their files.
        drop(self.apiserver.take());
        drop(self.etcd.take());
        let _ = std::fs::remove_dir_all(&self.data_dir);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Sum `apiserver_request_total` over every series for `resource="leases"`, by verb.
fn lease_requests_in(metrics: &str) -> std::collections::BTreeMap<String, u64> {
    let mut by_verb = std::collections::BTreeMap::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once('}') else {
            continue;
        };
        if !labels.split(',').any(|l| l == "resource=\"leases\"") {
            continue;
        }
        let verb = labels
            .split(',')
            .find_map(|l| l.strip_prefix("verb=\""))
            .map(|v| v.trim_end_matches('"').to_string())
            .unwrap_or_default();
        let n = value.trim().parse::<f64>().unwrap_or(0.0);
        *by_verb.entry(verb).or_insert(0) += n as u64;
    }
    by_verb
}

#[cfg(test)]
mod metrics_tests {
    use super::lease_requests_in;

    #[test]
    fn lease_requests_sum_every_series_of_leases_by_verb() {
        let text = r#"# HELP apiserver_request_total Counter of apiserver requests
apiserver_request_total{code="200",component="apiserver",dry_run="",group="coordination.k8s.io",resource="leases",scope="resource",subresource="",verb="PUT",version="v1"} 120
apiserver_request_total{code="409",component="apiserver",dry_run="",group="coordination.k8s.io",resource="leases",scope="resource",subresource="",verb="PUT",version="v1"} 3
apiserver_request_total{code="200",component="apiserver",dry_run="",group="coordination.k8s.io",resource="leases",scope="namespace",subresource="",verb="LIST",version="v1"} 7
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="configmaps",scope="resource",subresource="",verb="PUT",version="v1"} 99
apiserver_request_total_other{resource="leases",verb="PUT"} 5
"#;
        let got = lease_requests_in(text);
        assert_eq!(got.get("PUT"), Some(&123));
        assert_eq!(got.get("LIST"), Some(&7));
        assert_eq!(got.len(), 2);
    }
}
