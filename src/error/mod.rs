//! The crate's error type: what failed and what to fix. API server answers are decoded in `status.rs`.

mod status;

use std::fmt;
use std::time::Duration;

pub use status::{ApiError, StatusReason};

/// Everything that can go wrong in kube-elector. Each message says what failed and, where it can, what to fix.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The election settings are inconsistent (durations, identity, lock name).
    InvalidElectionConfig(String),
    /// The connection configuration is unusable; [`ConfigError::kind`] says which part of it.
    Config(Box<ConfigError>),
    /// The API server answered with an error status.
    Api(Box<ApiError>),
    /// The request did not complete: connection refused or reset, TLS failure, and so on.
    Transport {
        /// What was being done, e.g. `PUT default/my-lease`.
        context: String,
        /// The underlying ureq error.
        source: Box<ureq::Error>,
    },
    /// The request did not complete within its timeout (bounded by the leadership deadline).
    Timeout {
        /// What was being done, e.g. `GET default/my-lease`.
        context: String,
        /// The timeout that expired.
        after: Duration,
    },
    /// The API server answered 2xx with a body that is not a valid object of the expected kind.
    Decode {
        /// What was being decoded, e.g. `Lease default/my-lease`.
        context: String,
        /// Why it could not be decoded.
        message: String,
    },
    /// The request was interrupted because the elector is stopping.
    Interrupted {
        /// What was being done.
        context: String,
    },
    /// The leadership deadline passed before the request could be sent.
    DeadlineExceeded {
        /// The lock, `namespace/name`.
        lock: String,
    },
    /// The lock's transition counter (`leaseTransitions`) is at its limit, 2147483647: a new term's
    /// fencing token could not be larger than the last one's, so the elector does not take the lock.
    TermLimit {
        /// The lock, e.g. `leases default/my-app`.
        lock: String,
    },
    /// The background renew thread panicked (a bug: please report it).
    RenewThreadPanicked(String),
    /// The health check failed (see `LeaderHandle::check`).
    Unhealthy(String),
    /// The readiness check failed (see `LeaderStatus::ready`): the API server has not answered yet, or
    /// not for longer than allowed.
    NotReady(String),
    /// A graceful stop or step-down found leader work still running when its drain ran out of time, so
    /// the lock was not released: it expires on its own a lease duration after the last renew.
    DrainTimedOut(Box<DrainTimeout>),
    /// Coordinated leader election: the API server has not given us the lease, or wants another holder.
    Coordinated(String),
    /// The operating system would not start one of the elector's threads.
    Spawn {
        /// Which thread.
        thread: &'static str,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn config(kind: ConfigErrorKind, message: impl Into<String>) -> Error {
        Error::Config(Box::new(ConfigError {
            kind,
            message: message.into(),
            io: None,
        }))
    }

    /// A config error caused by reading a file.
    pub(crate) fn config_io(
        kind: ConfigErrorKind,
        message: impl Into<String>,
        io: std::io::Error,
    ) -> Error {
        Error::Config(Box::new(ConfigError {
            kind,
            message: message.into(),
            io: Some(io),
        }))
    }

    pub(crate) fn spawn(thread: &'static str, source: std::io::Error) -> Error {
        Error::Spawn { thread, source }
    }

    /// Which part of the connection config failed, if this is a config error.
    pub fn config_kind(&self) -> Option<ConfigErrorKind> {
        match self {
            Error::Config(c) => Some(c.kind),
            _ => None,
        }
    }

    /// The decoded API error, if this is one.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            Error::Api(e) => Some(&**e),
            _ => None,
        }
    }

    /// The same error, its context naming the API server it came from (`… on https://host:6443`).
    pub(crate) fn on_server(mut self, server: &str) -> Error {
        let context = match &mut self {
            Error::Api(e) => &mut e.context,
            Error::Transport { context, .. } | Error::Timeout { context, .. } => context,
            _ => return self,
        };
        context.push_str(" on ");
        context.push_str(server);
        self
    }

    /// A 404 for a lock object that vanished between a read and a write.
    pub(crate) fn lock_gone(lock: &str) -> Error {
        Error::Api(Box::new(ApiError {
            context: format!("update {lock}"),
            code: 404,
            reason: StatusReason::NotFound,
            message: "the lock object does not exist (deleted?)".into(),
            retry_after: None,
        }))
    }

    /// True for a 404 `NotFound` from the API server.
    pub fn is_not_found(&self) -> bool {
        self.api()
            .is_some_and(|e| e.reason == StatusReason::NotFound)
    }

    /// True for a 409 `Conflict` (a stale `resourceVersion`): someone else wrote first.
    pub fn is_conflict(&self) -> bool {
        self.api()
            .is_some_and(|e| e.reason == StatusReason::Conflict)
    }

    /// True for a 409 `AlreadyExists` (a create raced with another create).
    pub fn is_already_exists(&self) -> bool {
        self.api()
            .is_some_and(|e| e.reason == StatusReason::AlreadyExists)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidElectionConfig(m) => write!(f, "invalid leader election config: {m}"),
            Error::Config(c) => write!(f, "{c}"),
            Error::Api(e) => write!(f, "{e}"),
            Error::Transport { context, source } => match tls_rejected(source) {
                Some(why) => write!(
                    f,
                    "{context}: the API server's TLS certificate was not accepted ({why}): check the CA it is verified against (certificate-authority or certificate-authority-data in the kubeconfig, the service account's ca.crt in a pod) and tls-server-name"
                ),
                None => write!(
                    f,
                    "{context}: request failed: {source} (is the API server reachable and the server URL right?)"
                ),
            },
            Error::Timeout { context, after } => {
                write!(f, "{context}: no answer within {after:?}")
            }
            Error::Decode { context, message } => {
                write!(
                    f,
                    "{context}: the API server sent a malformed object: {message}"
                )
            }
            Error::Interrupted { context } => {
                write!(f, "{context}: interrupted: the elector is stopping")
            }
            Error::DeadlineExceeded { lock } => write!(
                f,
                "{lock}: the renew deadline passed before the lease could be renewed"
            ),
            Error::TermLimit { lock } => write!(
                f,
                "{lock}: the transition counter is at its limit (2147483647), so a new term could not be numbered above the last one (terms are fencing tokens): not taking the lock; once no worker fenced by its terms runs, reset the counter (set leaseTransitions, or leaderTransitions in the leader annotation, to 0) or delete the lock object and restart the candidates"
            ),
            Error::RenewThreadPanicked(m) => {
                write!(
                    f,
                    "the renew thread panicked (a kube-elector bug, please report it): {m}"
                )
            }
            Error::Unhealthy(m) => write!(f, "leader election unhealthy: {m}"),
            Error::NotReady(m) => write!(f, "leader election not ready: {m}"),
            Error::DrainTimedOut(d) => write!(
                f,
                "{}: {} unit(s) of leader work still running after {:?}: the lock was not released and expires on its own a lease duration after the last renew (end leader work when its Term is cancelled, or give the drain more time with drain_timeout)",
                d.context, d.running, d.waited
            ),
            Error::Coordinated(m) => write!(f, "coordinated leader election: {m}"),
            Error::Spawn { thread, source } => write!(
                f,
                "could not start the {thread} thread: {source} (is the process out of threads or memory?)"
            ),
        }
    }
}

/// Why a TLS handshake rejected the server's certificate, if that is what failed.
fn tls_rejected(e: &ureq::Error) -> Option<String> {
    let rustls = match e {
        ureq::Error::Rustls(r) => Some(r),
        ureq::Error::Io(io) => io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()),
        _ => None,
    };
    match rustls {
        Some(rustls::Error::InvalidCertificate(c)) => Some(format!("{c:?}")),
        _ => None,
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Api(e) => Some(&**e),
            Error::Transport { source, .. } => Some(&**source),
            Error::Config(c) => Some(&**c),
            Error::Spawn { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<ApiError> for Error {
    fn from(e: ApiError) -> Self {
        Error::Api(Box::new(e))
    }
}

/// What a drain that ran out of time left behind (see [`Error::DrainTimedOut`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainTimeout {
    /// The lock and our identity.
    pub context: String,
    /// How many units of leader work were still running.
    pub running: u32,
    /// How long the drain waited.
    pub waited: Duration,
}

/// Which part of a connection config is unusable: where to look to fix it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// The server URL (scheme, host, port), or plain http with credentials.
    ServerUrl,
    /// A kubeconfig file: missing, unreadable, unparsable, or naming a context, cluster or user that is
    /// not there; or `Config::infer` found no config at all.
    Kubeconfig,
    /// The in-cluster service account: the `KUBERNETES_SERVICE_*` variables or the mounted files.
    InCluster,
    /// A bearer token or token file.
    Token,
    /// An exec credential plugin: missing, failing, or printing something that is not a credential.
    ExecPlugin,
    /// TLS material and settings: the CA bundle, the client certificate or key, the server name.
    Tls,
    /// A proxy URL, explicit or from `HTTPS_PROXY`/`HTTP_PROXY`.
    Proxy,
}

impl ConfigErrorKind {
    fn as_str(self) -> &'static str {
        match self {
            ConfigErrorKind::ServerUrl => "server URL",
            ConfigErrorKind::Kubeconfig => "kubeconfig",
            ConfigErrorKind::InCluster => "in-cluster config",
            ConfigErrorKind::Token => "token",
            ConfigErrorKind::ExecPlugin => "exec credential plugin",
            ConfigErrorKind::Tls => "TLS",
            ConfigErrorKind::Proxy => "proxy",
        }
    }
}

/// An unusable connection config: which part ([`kind`](Self::kind)) and what to fix.
#[derive(Debug)]
pub struct ConfigError {
    kind: ConfigErrorKind,
    message: String,
    io: Option<std::io::Error>,
}

impl ConfigError {
    /// Which part of the config failed.
    pub fn kind(&self) -> ConfigErrorKind {
        self.kind
    }

    /// What failed and what to fix, without the kind.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The message and the I/O error behind it, if any, without the kind.
    pub(crate) fn detail(&self) -> String {
        match &self.io {
            Some(io) => format!("{}: {io}", self.message),
            None => self.message.clone(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid connection config ({}): {}",
            self.kind.as_str(),
            self.message
        )?;
        if let Some(io) = &self.io {
            write!(f, ": {io}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.io.as_ref().map(|e| e as _)
    }
}

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_stays_small() {
        // Results of this crate travel through every step; the error stays six words wide (API, transport
        // and config errors are boxed: they are the rare path). A change here should be a decision.
        assert_eq!(std::mem::size_of::<Error>(), 48, "size of Error");
    }
}
