//! Connection config: where the API server is and how to authenticate to it.
//!
//! [`Config::new`] plus setters covers an explicit server; [`Config::from_kubeconfig`] reads the current
//! context of a kubeconfig file (server, CA, token, namespace).

mod base64;
mod kubeconfig;
mod tls;

pub(crate) use self::base64::decode as base64_decode;
#[cfg(feature = "testing")]
pub(crate) use self::base64::encode as base64_encode;
pub(crate) use self::tls::tls_config;

use std::fmt;
use std::path::Path;

use crate::error::{Error, Result};

/// How to reach and authenticate to a Kubernetes API server.
///
/// `Debug` never prints the token.
///
/// ```
/// use kube_elector::Config;
/// let config = Config::new("https://10.96.0.1:443")
///     .with_token("abc")
///     .with_namespace("kube-system");
/// assert_eq!(config.server(), "https://10.96.0.1:443");
/// assert!(!format!("{config:?}").contains("abc"));
/// ```
#[derive(Clone)]
pub struct Config {
    server: String,
    ca_pem: Option<Vec<u8>>,
    token: Option<String>,
    insecure_skip_tls_verify: bool,
    namespace: Option<String>,
}

impl Config {
    /// A config for the server at `server_url` (`https://host:port`, optionally with a path prefix), no
    /// credentials, the system's trusted roots.
    pub fn new(server_url: impl Into<String>) -> Self {
        let server: String = server_url.into();
        Config {
            server: server.trim_end_matches('/').to_string(),
            ca_pem: None,
            token: None,
            insecure_skip_tls_verify: false,
            namespace: None,
        }
    }

    /// Trust only the certificates in this PEM bundle to identify the server.
    pub fn with_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_pem = Some(pem.into());
        self
    }

    /// Authenticate with this bearer token.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into().trim().to_string());
        self
    }

    /// Skip verification of the server's certificate. Only for tests: anyone on the path can impersonate
    /// the server. Combining it with a CA is an error at connect time.
    pub fn with_insecure_skip_tls_verify(mut self, insecure: bool) -> Self {
        self.insecure_skip_tls_verify = insecure;
        self
    }

    /// The namespace electors use when the builder is not given one.
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Read the current context of a kubeconfig file: server, CA (data or file), token (or tokenFile),
    /// insecure flag and namespace.
    pub fn from_kubeconfig(path: impl AsRef<Path>) -> Result<Self> {
        kubeconfig::load(path.as_ref(), None)
    }

    /// Like [`Config::from_kubeconfig`], with an explicit context instead of `current-context`.
    pub fn from_kubeconfig_context(path: impl AsRef<Path>, context: &str) -> Result<Self> {
        kubeconfig::load(path.as_ref(), Some(context))
    }

    /// Parse kubeconfig text; relative file paths resolve against `base_dir`.
    pub fn from_kubeconfig_str(text: &str, base_dir: &Path, context: Option<&str>) -> Result<Self> {
        kubeconfig::parse(text, "<kubeconfig text>", base_dir, context)
    }

    /// The server URL, without a trailing slash.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The default namespace: the one set on this config, else `default`.
    pub fn namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or("default")
    }

    /// The CA bundle, if one was given.
    pub fn ca_pem(&self) -> Option<&[u8]> {
        self.ca_pem.as_deref()
    }

    pub(crate) fn token(&self) -> Option<&str> {
        self.token.as_deref().filter(|t| !t.is_empty())
    }

    /// Whether server certificate verification is disabled.
    pub fn insecure_skip_tls_verify(&self) -> bool {
        self.insecure_skip_tls_verify
    }

    /// Check the config for contradictions before any connection is made.
    pub(crate) fn validate(&self) -> Result<()> {
        let scheme = self.server.split("://").next().unwrap_or("");
        if !self.server.contains("://") || !(scheme == "https" || scheme == "http") {
            return Err(Error::Config(format!(
                "server URL {:?} must start with https:// (or http:// for a local test server)",
                self.server
            )));
        }
        if scheme == "http" && self.token().is_some() {
            return Err(Error::Config(format!(
                "refusing to send a bearer token over plain http to {}: use an https:// server URL",
                self.server
            )));
        }
        if self.insecure_skip_tls_verify && self.ca_pem.is_some() {
            return Err(Error::Config(
                "a CA and insecure-skip-tls-verify are both set: drop one of them (the CA is the safe choice)"
                    .into(),
            ));
        }
        Ok(())
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("server", &self.server)
            .field(
                "ca_pem",
                &self.ca_pem.as_ref().map(|p| format!("<{} bytes>", p.len())),
            )
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("insecure_skip_tls_verify", &self.insecure_skip_tls_verify)
            .field("namespace", &self.namespace)
            .finish()
    }
}
