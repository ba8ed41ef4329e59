//! Settings for an embedded API server, and starting it: certificates, the listener, the accept thread.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Condvar, Mutex};

use super::faults::Faults;
use super::store::Store;

use super::{ApiServer, Inner, accept_loop, coordinator, tls};

/// Settings for an [`ApiServer`].
#[derive(Debug, Default, Clone)]
pub struct ApiServerBuilder {
    pub(super) tls: bool,
    pub(super) ipv6: bool,
    pub(super) dns_san_only: bool,
    pub(super) path_prefix: String,
    pub(super) coordinated_lease_seconds: Option<i64>,
    pub(super) tokens: Vec<String>,
    pub(super) forbidden: Vec<String>,
    pub(super) basic: Vec<(String, String)>,
}

impl ApiServerBuilder {
    /// Serve HTTPS with a freshly generated CA (default: plain HTTP).
    pub fn tls(mut self, tls: bool) -> Self {
        self.tls = tls;
        self
    }

    /// Listen on `[::1]` instead of 127.0.0.1 (to test IPv6 server addresses).
    pub fn ipv6(mut self, ipv6: bool) -> Self {
        self.ipv6 = ipv6;
        self
    }

    /// Give the server certificate only the DNS name `kube-apiserver.test` (no IP SANs), so clients must
    /// verify it with `tls-server-name`.
    pub fn dns_san_only(mut self, only: bool) -> Self {
        self.dns_san_only = only;
        self
    }

    /// Serve the API under a path prefix, as Rancher does (`/k8s/clusters/c-x`): `url()` includes it and
    /// requests without it get 404.
    pub fn path_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.path_prefix = prefix.into().trim_end_matches('/').to_string();
        self
    }

    /// Run a coordinated-leader-election controller (strategy `OldestEmulationVersion`): it pings
    /// `LeaseCandidate`s and writes the chosen holder into their Leases, with this lease duration.
    pub fn coordinated_election(mut self, lease_duration_seconds: i64) -> Self {
        self.coordinated_lease_seconds = Some(lease_duration_seconds);
        self
    }

    /// Accept HTTP basic auth with this user and password.
    pub fn basic_auth(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.basic.push((user.into(), password.into()));
        self
    }

    /// Accept this bearer token but forbid it everything (403 Forbidden, as RBAC answers a user without
    /// a Role).
    pub fn forbidden_token(mut self, token: impl Into<String>) -> Self {
        let token = token.into();
        self.tokens.push(token.clone());
        self.forbidden.push(token);
        self
    }

    /// Accept this bearer token. Once any token is set, requests without a valid one get 401.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.tokens.push(token.into());
        self
    }

    /// Bind 127.0.0.1 (or ::1) on an ephemeral port and start serving.
    pub fn start(self) -> std::io::Result<ApiServer> {
        let tls = if self.tls {
            Some(tls::generate(self.dns_san_only)?)
        } else {
            None
        };
        let listener = if self.ipv6 {
            TcpListener::bind(("::1", 0))?
        } else {
            TcpListener::bind(("127.0.0.1", 0))?
        };
        let addr = listener.local_addr()?;
        let inner = Arc::new(Inner {
            store: Mutex::new(Store::default()),
            store_changed: Condvar::new(),
            faults: Faults::default(),
            tokens: Mutex::new(
                (!self.tokens.is_empty() || !self.basic.is_empty())
                    .then(|| self.tokens.iter().cloned().collect()),
            ),
            basic: self
                .basic
                .iter()
                .map(|(u, p)| {
                    (
                        crate::config::base64_encode(format!("{u}:{p}").as_bytes()),
                        u.clone(),
                    )
                })
                .collect(),
            forbidden: self.forbidden.iter().cloned().collect(),
            last_impersonation: Mutex::new(Vec::new()),
            path_prefix: self.path_prefix.clone(),
            counters: Mutex::new(HashMap::new()),
            down_or_stopped: AtomicBool::new(false),
            down: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            conns: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(0),
            listening: Mutex::new(false),
            listening_cv: Condvar::new(),
            ca_pem: tls.as_ref().map(|t| t.ca_pem.clone()),
            tls,
            addr,
        });
        let accept_inner = inner.clone();
        let accept = std::thread::Builder::new()
            .name("test-apiserver-accept".into())
            .spawn(move || accept_loop(accept_inner, Some(listener)))?;
        inner.wait_listening(true);
        if let Some(secs) = self.coordinated_lease_seconds {
            let controller_inner = inner.clone();
            std::thread::Builder::new()
                .name("test-apiserver-cle".into())
                .spawn(move || coordinator::run(controller_inner, secs))?;
        }
        let scheme = if self.tls { "https" } else { "http" };
        Ok(ApiServer {
            url: format!("{scheme}://{addr}{}", inner.path_prefix),
            default_token: self.tokens.first().cloned(),
            inner,
            accept: Some(accept),
        })
    }
}
