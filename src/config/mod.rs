//! Connection config: where the API server is, how to trust it and how to authenticate to it.
//!
//! - [`Config::infer`]: `KUBECONFIG` > in-cluster > `~/.kube/config`, as controller-runtime does.
//! - [`Config::in_cluster`]: the pod's service account ([`InClusterOptions`] to point it elsewhere).
//! - [`Config::from_kubeconfig`] and [`KubeconfigOptions`]: kubeconfig files, merged as kubectl does.
//! - [`Config::new`] plus setters: everything explicit.
//!
//! A `Config` is data: it reads files when it is made (a kubeconfig, the service account's files, a
//! token file once to check it) and does nothing after. TLS set-up, proxies, re-reading token files and
//! running exec plugins happen in the REST client that uses it.

mod auth;
mod base64;
pub(crate) mod files;
mod in_cluster;
mod kubeconfig;
mod pem;
mod url;

pub(crate) use self::auth::{Auth, ExecConfig, read_token};
pub(crate) use self::base64::decode as base64_decode;
pub(crate) use self::base64::encode as base64_encode;
pub(crate) use self::pem::certificates;
pub(crate) use self::url::{ServerUrl, proxy_url, split_host_port};
pub use in_cluster::InClusterOptions;
pub use kubeconfig::KubeconfigOptions;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use crate::error::{ConfigErrorKind, Error, Result};

/// Acting as another user (`kubectl --as`): sent as `Impersonate-*` headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Impersonation {
    /// `Impersonate-User`.
    pub user: String,
    /// `Impersonate-Group`, once per group.
    pub groups: Vec<String>,
    /// `Impersonate-Uid`.
    pub uid: Option<String>,
    /// `Impersonate-Extra-<key>`, once per value.
    pub extra: BTreeMap<String, Vec<String>>,
}

impl Impersonation {
    /// The headers to send, in a stable order.
    pub(crate) fn headers(&self) -> Vec<(String, String)> {
        let mut h = vec![("Impersonate-User".to_string(), self.user.clone())];
        h.extend(
            self.groups
                .iter()
                .map(|g| ("Impersonate-Group".to_string(), g.clone())),
        );
        if let Some(uid) = &self.uid {
            h.push(("Impersonate-Uid".to_string(), uid.clone()));
        }
        for (k, values) in &self.extra {
            h.extend(
                values
                    .iter()
                    .map(|v| (format!("Impersonate-Extra-{k}"), v.clone())),
            );
        }
        h
    }
}

/// A client certificate and its private key, as PEM.
#[derive(Clone)]
pub(crate) struct ClientIdentity {
    pub(crate) cert_pem: Vec<u8>,
    pub(crate) key_pem: Vec<u8>,
}

/// How to reach and authenticate to a Kubernetes API server.
///
/// `Debug` never prints tokens, passwords or keys.
///
/// ```
/// use kube_elector::Config;
/// let config = Config::new("https://10.96.0.1:443")
///     .with_token("abc")
///     .with_namespace("kube-system");
/// assert_eq!(config.server(), "https://10.96.0.1:443");
/// assert_eq!(config.namespace(), "kube-system");
/// assert!(!format!("{config:?}").contains("abc"));
/// ```
#[derive(Clone)]
pub struct Config {
    server: String,
    /// `server`, parsed (or why it does not parse).
    url: std::result::Result<ServerUrl, String>,
    ca_pem: Option<Vec<u8>>,
    insecure_skip_tls_verify: bool,
    client_identity: Option<ClientIdentity>,
    auth: Auth,
    impersonation: Option<Impersonation>,
    proxy_url: Option<String>,
    tls_server_name: Option<String>,
    namespace: Option<String>,
}

impl Config {
    /// A config for the server at `server_url` (`https://host:port`, optionally with a path prefix), no
    /// credentials, the bundled web roots.
    pub fn new(server_url: impl Into<String>) -> Self {
        let server: String = server_url.into();
        let url = ServerUrl::parse(&server).map_err(|e| match e {
            Error::Config(c) => c.message().to_string(),
            other => other.to_string(),
        });
        Config {
            server: server.trim().trim_end_matches('/').to_string(),
            url,
            ca_pem: None,
            insecure_skip_tls_verify: false,
            client_identity: None,
            auth: Auth::None,
            impersonation: None,
            proxy_url: None,
            tls_server_name: None,
            namespace: None,
        }
    }

    /// Find the config as controller-runtime does: the files in `KUBECONFIG` when it is set, else the
    /// in-cluster service account when running in a pod, else `~/.kube/config`. The error lists what was
    /// tried. (kubectl looks at `~/.kube/config` before in-cluster; that matters only where both exist.)
    pub fn infer() -> Result<Self> {
        let mut tried = Vec::new();
        if let Some(paths) = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
            return KubeconfigOptions::new()
                .paths(std::env::split_paths(&paths))
                .load();
        }
        tried.push("KUBECONFIG (not set)".to_string());
        match Config::in_cluster() {
            Ok(c) => return Ok(c),
            Err(e) => tried.push(format!("in-cluster ({e})")),
        }
        match kubeconfig::home_config() {
            Some(path) if path.exists() => return Config::from_kubeconfig(&path),
            Some(path) => tried.push(format!("{} (missing)", path.display())),
            None => tried.push("~/.kube/config (HOME is not set)".into()),
        }
        Err(Error::config(
            ConfigErrorKind::Kubeconfig,
            format!("no Kubernetes config found; tried: {}", tried.join("; ")),
        ))
    }

    /// The pod's service account: `KUBERNETES_SERVICE_HOST`/`_PORT`, and the token, CA and namespace in
    /// `/var/run/secrets/kubernetes.io/serviceaccount/`. The token file is re-read about every minute and
    /// after a 401, as bound tokens rotate.
    pub fn in_cluster() -> Result<Self> {
        in_cluster::load(&InClusterOptions::from_env())
    }

    /// The in-cluster config from explicit places (tests, sidecars with the files elsewhere).
    pub fn in_cluster_with(options: &InClusterOptions) -> Result<Self> {
        in_cluster::load(options)
    }

    /// The current context of one kubeconfig file (which must exist).
    pub fn from_kubeconfig(path: impl AsRef<Path>) -> Result<Self> {
        KubeconfigOptions::new().path(path.as_ref()).load()
    }

    /// Parse kubeconfig text; relative file paths resolve against `base_dir`.
    pub fn from_kubeconfig_str(text: &str, base_dir: &Path, context: Option<&str>) -> Result<Self> {
        kubeconfig::from_text(text, base_dir, context)
    }

    /// Trust only the certificates in this PEM bundle to identify the server.
    pub fn with_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_pem = Some(pem.into());
        self
    }

    /// Authenticate with this bearer token.
    pub fn with_token(mut self, token: impl AsRef<str>) -> Self {
        self.auth = Auth::Token(token.as_ref().trim().to_string());
        self
    }

    /// Authenticate with the bearer token in this file, re-read about every minute and after a 401 (the
    /// last good token is kept when a read fails). The file must be readable now.
    pub fn with_token_file(mut self, path: impl AsRef<Path>) -> Result<Self> {
        read_token(path.as_ref())?;
        self.auth = Auth::TokenFile(path.as_ref().to_path_buf());
        Ok(self)
    }

    /// Authenticate with HTTP basic auth.
    pub fn with_basic_auth(mut self, username: impl AsRef<str>, password: impl AsRef<str>) -> Self {
        self.auth = Auth::Basic {
            username: username.as_ref().to_string(),
            password: password.as_ref().to_string(),
        };
        self
    }

    /// Authenticate with a client certificate (PEM chain) and its key (PKCS#1, SEC1 or PKCS#8 PEM).
    /// A key the TLS provider cannot use is an error when the elector connects.
    pub fn with_client_cert(
        mut self,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.client_identity = Some(ClientIdentity {
            cert_pem: cert_pem.into(),
            key_pem: key_pem.into(),
        });
        self
    }

    /// Act as another user (`Impersonate-*` headers).
    pub fn with_impersonation(mut self, impersonation: Impersonation) -> Self {
        self.impersonation = Some(impersonation);
        self
    }

    /// Send requests through this proxy (`http://`, `https://` or `socks5://`, as a kubeconfig's
    /// `proxy-url`). Without it, `HTTPS_PROXY`/`HTTP_PROXY` and `NO_PROXY` apply by Go's rules, and
    /// loopback servers are never proxied.
    pub fn with_proxy_url(mut self, url: impl Into<String>) -> Self {
        self.proxy_url = Some(url.into()).filter(|u: &String| !u.trim().is_empty());
        self
    }

    /// The explicit proxy URL, if any.
    pub(crate) fn proxy_url(&self) -> Option<&str> {
        self.proxy_url.as_deref()
    }

    /// Verify the server's certificate for this name (and send it as SNI) instead of the URL's host, as a
    /// kubeconfig's `tls-server-name` does.
    pub fn with_tls_server_name(mut self, name: impl Into<String>) -> Self {
        self.tls_server_name = Some(name.into()).filter(|n: &String| !n.is_empty());
        self
    }

    /// The name the server's certificate is verified for, when it is not the URL's host.
    pub fn tls_server_name(&self) -> Option<&str> {
        self.tls_server_name.as_deref()
    }

    /// Skip verification of the server's certificate. Only for tests: anyone on the path can impersonate
    /// the server. Combining it with a CA is an error.
    pub fn with_insecure_skip_tls_verify(mut self, insecure: bool) -> Self {
        self.insecure_skip_tls_verify = insecure;
        self
    }

    /// The namespace electors use when the builder is not given one.
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into()).filter(|n: &String| !n.is_empty());
        self
    }

    /// The server URL, without a trailing slash.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The default namespace: the one from the kubeconfig context or the pod, else `default`.
    pub fn namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or("default")
    }

    /// The CA bundle, if one was given.
    pub fn ca_pem(&self) -> Option<&[u8]> {
        self.ca_pem.as_deref()
    }

    /// Whether server certificate verification is disabled.
    pub fn insecure_skip_tls_verify(&self) -> bool {
        self.insecure_skip_tls_verify
    }

    /// The impersonation settings, if any.
    pub fn impersonation(&self) -> Option<&Impersonation> {
        self.impersonation.as_ref()
    }

    /// Authenticate with an exec credential plugin (from a kubeconfig's `user.exec`).
    pub(crate) fn with_exec(mut self, exec: ExecConfig) -> Self {
        self.auth = Auth::Exec(exec);
        self
    }

    /// How requests authenticate (besides a client certificate).
    pub(crate) fn auth(&self) -> &Auth {
        &self.auth
    }

    pub(crate) fn client_identity(&self) -> Option<&ClientIdentity> {
        self.client_identity.as_ref()
    }

    /// The parsed server URL, or why it does not parse.
    pub(crate) fn url(&self) -> Result<&ServerUrl> {
        self.url
            .as_ref()
            .map_err(|m| Error::config(ConfigErrorKind::ServerUrl, m.clone()))
    }

    /// Check the config for contradictions before any connection is made.
    pub(crate) fn validate(&self) -> Result<()> {
        let url = self.url()?;
        if !url.is_https() && (self.auth != Auth::None || self.client_identity.is_some()) {
            // (An exec plugin counts too: it is only configured alongside credentials.)
            return Err(Error::config(
                ConfigErrorKind::ServerUrl,
                format!(
                    "refusing to send credentials over plain http to {}: use an https:// server URL",
                    url.base()
                ),
            ));
        }
        if self.insecure_skip_tls_verify && self.ca_pem.is_some() {
            return Err(Error::config(
                ConfigErrorKind::Tls,
                "a CA and insecure-skip-tls-verify are both set: drop one of them (the CA is the safe choice)",
            ));
        }
        Ok(())
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("server", &url::redact(&self.server))
            .field(
                "ca_pem",
                &self.ca_pem.as_ref().map(|p| format!("<{} bytes>", p.len())),
            )
            .field("insecure_skip_tls_verify", &self.insecure_skip_tls_verify)
            .field(
                "client_cert",
                &self
                    .client_identity
                    .as_ref()
                    .map(|_| "<cert and key redacted>"),
            )
            .field("auth", &self.auth)
            .field("impersonation", &self.impersonation)
            .field("proxy_url", &self.proxy_url.as_deref().map(url::redact))
            .field("tls_server_name", &self.tls_server_name)
            .field("namespace", &self.namespace)
            .finish()
    }
}
