//! The in-cluster config: service-account files and the `KUBERNETES_SERVICE_*` env vars.

use std::path::PathBuf;

use super::Config;
use crate::error::{ConfigErrorKind, Error, Result};

/// Where the in-cluster config comes from. [`InClusterOptions::from_env`] reads the real places; tests and
/// unusual pods point them elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InClusterOptions {
    /// The folder with `token`, `ca.crt` and `namespace`.
    pub service_account_dir: PathBuf,
    /// `KUBERNETES_SERVICE_HOST`.
    pub host: Option<String>,
    /// `KUBERNETES_SERVICE_PORT`.
    pub port: Option<String>,
    /// `POD_NAMESPACE` (the downward API), which wins over the namespace file.
    pub pod_namespace: Option<String>,
}

/// The service-account folder the kubelet mounts.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

impl InClusterOptions {
    /// The real places: the mounted service-account folder and the process environment.
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        InClusterOptions {
            service_account_dir: PathBuf::from(SERVICE_ACCOUNT_DIR),
            host: var("KUBERNETES_SERVICE_HOST"),
            port: var("KUBERNETES_SERVICE_PORT"),
            pod_namespace: var("POD_NAMESPACE"),
        }
    }
}

impl Default for InClusterOptions {
    fn default() -> Self {
        Self::from_env()
    }
}

pub(super) fn load(o: &InClusterOptions) -> Result<Config> {
    let (Some(host), Some(port)) = (o.host.as_deref(), o.port.as_deref()) else {
        return Err(Error::config(
            ConfigErrorKind::InCluster,
            "not running in a cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set",
        ));
    };
    let (host, port) = (host.trim(), port.trim());
    let token = o.service_account_dir.join("token");
    if !token.exists() {
        return Err(Error::config(
            ConfigErrorKind::InCluster,
            format!(
                "in-cluster: service-account token {} not found (is automountServiceAccountToken disabled?)",
                token.display()
            ),
        ));
    }
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let mut config = Config::new(format!("https://{host}:{port}")).with_token_file(&token)?;
    let ca_path = o.service_account_dir.join("ca.crt");
    let ca = super::files::read_bounded(&ca_path, super::files::MAX_CONFIG_FILE).map_err(|e| {
        Error::config_io(
            ConfigErrorKind::InCluster,
            format!("in-cluster: reading the cluster CA {}", ca_path.display()),
            e,
        )
    })?;
    super::certificates(&ca, &format!("in-cluster CA {}", ca_path.display()))?;
    config = config.with_ca_pem(ca);
    let namespace = o
        .pod_namespace
        .clone()
        .filter(|n| !n.trim().is_empty())
        .or_else(|| {
            super::files::read_bounded_text(&o.service_account_dir.join("namespace"), 4096)
                .ok()
                .map(|n| n.trim().to_string())
                .filter(|n| !n.is_empty())
        });
    if let Some(ns) = namespace {
        config = config.with_namespace(ns.trim());
    }
    Ok(config)
}
