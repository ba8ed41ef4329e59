//! Running exec credential plugins (`client.authentication.k8s.io/v1` and `v1beta1`) as kubectl runs
//! them for EKS, GKE, AKS and OIDC: run the command, read an `ExecCredential` from its stdout, cache it
//! until it expires, run it again once after a 401.

use std::fmt;
use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::{ClientIdentity, ExecConfig};
use crate::error::{ConfigErrorKind, Error, Result};

/// How long a plugin may run before it is killed. Plugins that talk to a cloud's IAM take seconds.
const PLUGIN_TIMEOUT: Duration = Duration::from_secs(30);

/// What a plugin run gave us.
#[derive(Clone)]
pub(crate) enum ExecCredential {
    Token(Arc<str>),
    Certificate(Arc<ClientIdentity>),
}

struct Cached {
    credential: ExecCredential,
    expires: Option<DateTime<Utc>>,
}

/// A plugin and its cached credential.
pub(crate) struct ExecProvider {
    config: ExecConfig,
    cache: Mutex<Option<Cached>>,
}

impl fmt::Debug for ExecProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ExecProvider").field(&self.config).finish()
    }
}

#[derive(Deserialize)]
struct Output {
    #[serde(rename = "apiVersion", default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    status: Option<Status>,
}

#[derive(Deserialize)]
struct Status {
    #[serde(default)]
    token: Option<String>,
    #[serde(rename = "clientCertificateData", default)]
    client_certificate_data: Option<String>,
    #[serde(rename = "clientKeyData", default)]
    client_key_data: Option<String>,
    #[serde(rename = "expirationTimestamp", default)]
    expiration_timestamp: Option<String>,
}

impl ExecProvider {
    pub(crate) fn new(config: ExecConfig) -> Self {
        ExecProvider {
            config,
            cache: Mutex::new(None),
        }
    }

    /// The cached credential while it is valid, else a fresh one from the plugin.
    pub(crate) fn credential(&self) -> Result<ExecCredential> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cache.as_ref() {
            if c.expires.is_none_or(|e| Utc::now() < e) {
                return Ok(c.credential.clone());
            }
        }
        let fresh = self.run()?;
        let credential = fresh.credential.clone();
        *cache = Some(fresh);
        Ok(credential)
    }

    /// After a 401: forget the cached credential so the next request runs the plugin again.
    pub(crate) fn invalidate(&self) -> bool {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .is_some()
    }

    fn failure(&self, what: String) -> Error {
        let hint = self
            .config
            .install_hint
            .as_deref()
            .map(|h| format!("\n{}", h.trim()))
            .unwrap_or_default();
        Error::config(
            ConfigErrorKind::ExecPlugin,
            format!(
                "exec credential plugin {:?}: {what}{hint}",
                self.config.command
            ),
        )
    }

    fn run(&self) -> Result<Cached> {
        let mut spec = json!({"interactive": false});
        if let Some(cluster) = &self.config.cluster {
            spec["cluster"] = serde_json::from_str(cluster).unwrap_or(Value::Null);
        }
        let info =
            json!({"apiVersion": self.config.api_version, "kind": "ExecCredential", "spec": spec});
        let mut command = Command::new(&self.config.command);
        command
            .args(&self.config.args)
            .envs(self.config.env.iter().map(|(k, v)| (k, v)))
            .env("KUBERNETES_EXEC_INFO", info.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = self.spawn(&mut command)?;
        let (status, stdout, stderr) = self.wait(child)?;
        if !status.success() {
            let stderr = String::from_utf8_lossy(&stderr);
            let stderr: String = stderr.trim().chars().take(500).collect();
            return Err(self.failure(format!("exited with {status}: {stderr}")));
        }
        self.parse(&stdout)
    }

    fn spawn(&self, command: &mut Command) -> Result<Child> {
        let mut attempts = 0;
        loop {
            match command.spawn() {
                Ok(child) => return Ok(child),
                // "Text file busy": the plugin is being replaced, or another thread's fork still holds a
                // write handle to it. It clears in moments.
                Err(e) if e.raw_os_error() == Some(26) && attempts < 20 => {
                    attempts += 1;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(self.failure("executable not found".into()));
                }
                Err(e) => return Err(self.failure(format!("cannot start: {e}"))),
            }
        }
    }

    /// Wait for the plugin (killing it after [`PLUGIN_TIMEOUT`]) while reading both pipes on their own
    /// threads, so a chatty plugin cannot block on a full pipe. Its exit status, stdout and stderr.
    fn wait(&self, mut child: Child) -> Result<(ExitStatus, Vec<u8>, Vec<u8>)> {
        let drain = |pipe: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut b = Vec::new();
                if let Some(mut p) = pipe {
                    let _ = p.read_to_end(&mut b);
                }
                b
            })
        };
        let out = drain(
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        );
        let err = drain(
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        );
        let deadline = Instant::now() + PLUGIN_TIMEOUT;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(self.failure(format!("did not finish within {PLUGIN_TIMEOUT:?}")));
                }
                Err(e) => return Err(self.failure(format!("waiting for it failed: {e}"))),
            }
        };
        Ok((
            status,
            out.join().unwrap_or_default(),
            err.join().unwrap_or_default(),
        ))
    }

    fn parse(&self, stdout: &[u8]) -> Result<Cached> {
        let out: Output = serde_json::from_slice(stdout)
            .map_err(|e| self.failure(format!("its output is not an ExecCredential: {e}")))?;
        if out.kind != "ExecCredential" {
            return Err(self.failure(format!(
                "its output has kind {:?}, expected ExecCredential",
                out.kind
            )));
        }
        if out.api_version != self.config.api_version {
            return Err(self.failure(format!(
                "its output has apiVersion {:?}, but the kubeconfig asked for {:?}",
                out.api_version, self.config.api_version
            )));
        }
        let status = out
            .status
            .ok_or_else(|| self.failure("its output has no status".into()))?;
        let expires = match status
            .expiration_timestamp
            .as_deref()
            .filter(|t| !t.is_empty())
        {
            Some(t) => Some(
                DateTime::parse_from_rfc3339(t)
                    .map_err(|e| self.failure(format!("bad expirationTimestamp {t:?}: {e}")))?
                    .with_timezone(&Utc),
            ),
            None => None,
        };
        let credential = match (
            status.token.filter(|t| !t.is_empty()),
            status.client_certificate_data,
            status.client_key_data,
        ) {
            (Some(t), None, None) => {
                ExecCredential::Token(Arc::from(format!("Bearer {}", t.trim())))
            }
            (None, Some(cert), Some(key)) if !cert.is_empty() && !key.is_empty() => {
                ExecCredential::Certificate(Arc::new(ClientIdentity {
                    cert_pem: cert.into_bytes(),
                    key_pem: key.into_bytes(),
                }))
            }
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                return Err(
                    self.failure("its output has both a token and a client certificate".into())
                );
            }
            _ => {
                return Err(self.failure(
                    "its output has neither status.token nor status.clientCertificateData and clientKeyData".into(),
                ));
            }
        };
        Ok(Cached {
            credential,
            expires,
        })
    }
}
