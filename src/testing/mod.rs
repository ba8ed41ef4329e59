//! An embedded Kubernetes API server for tests, examples and benchmarks (feature `testing`).
//!
//! A real HTTP/1.1 server on 127.0.0.1 with an ephemeral port, plain or TLS (with a generated CA), with
//! bearer-token authentication and the Lease endpoints with the real API server's semantics:
//! `resourceVersion` checks (409 Conflict), 409 AlreadyExists, 404 NotFound, 422 Invalid with causes,
//! strict MicroTime parsing. Faults can be injected per client (by bearer token), and per-verb request
//! counters let a test assert exactly which requests a step made.
//!
//! ```
//! use kube_elector::testing::ApiServer;
//! let server = ApiServer::builder().tls(true).token("t1").start().unwrap();
//! assert!(server.url().starts_with("https://127.0.0.1:"));
//! assert!(server.ca_pem().unwrap().contains("BEGIN CERTIFICATE"));
//! assert!(server.kubeconfig().contains("certificate-authority-data"));
//! ```

mod control_plane;
mod coordinator;
mod faults;
mod http;
pub mod sim;
mod store;
mod tls;

pub use control_plane::{ControlPlane, LaunchError};
pub use faults::{Fault, FaultAction, FaultId};

/// The record codecs, for tests and benches that check what goes over the wire. Not part of the stable
/// API: the election uses them internally.
pub mod codec {
    pub use crate::lock::annotation::{decode_annotation, encode_annotation};
    pub use crate::record::time::{
        format_micro_time, format_seconds_time, parse_micro_time_strict, parse_time_lenient,
    };
}

use std::collections::{HashMap, HashSet};
use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::config::Config;
use faults::Faults;
use store::{Resource, Store};

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Settings for an [`ApiServer`].
#[derive(Debug, Default, Clone)]
pub struct ApiServerBuilder {
    tls: bool,
    ipv6: bool,
    dns_san_only: bool,
    path_prefix: String,
    coordinated_lease_seconds: Option<i64>,
    tokens: Vec<String>,
    forbidden: Vec<String>,
    basic: Vec<(String, String)>,
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

/// The embedded API server. Dropping it stops it and closes every connection.
pub struct ApiServer {
    inner: Arc<Inner>,
    accept: Option<JoinHandle<()>>,
    url: String,
    default_token: Option<String>,
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl ApiServer {
    /// A plain-HTTP server without authentication.
    pub fn start() -> std::io::Result<ApiServer> {
        ApiServerBuilder::default().start()
    }

    /// A server to configure: TLS, tokens.
    pub fn builder() -> ApiServerBuilder {
        ApiServerBuilder::default()
    }

    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// The PEM of the CA that signed the server certificate (TLS servers only).
    pub fn ca_pem(&self) -> Option<&str> {
        self.inner.ca_pem.as_deref()
    }

    /// Issue a client certificate with CN `user`, signed by this server's CA: connections presenting it
    /// are authenticated as `user` (no token needed). With `key_pkcs8_pem`, the certificate is for that
    /// key; else a fresh P-256 key is made. Returns `(certificate PEM, key PEM)`. TLS servers only.
    pub fn issue_client_cert(
        &self,
        user: &str,
        key_pkcs8_pem: Option<&str>,
    ) -> std::io::Result<(String, String)> {
        match &self.inner.tls {
            Some(t) => t.issue_client_cert(user, key_pkcs8_pem),
            None => Err(std::io::Error::other(
                "client certificates need a TLS server (ApiServer::builder().tls(true))",
            )),
        }
    }

    /// A connection config for this server: its CA, and its first token on a TLS server.
    pub fn config(&self) -> Config {
        let mut c = Config::new(self.url.clone());
        if let Some(ca) = self.ca_pem() {
            c = c.with_ca_pem(ca.as_bytes().to_vec());
            if let Some(t) = &self.default_token {
                c = c.with_token(t.clone());
            }
        }
        c
    }

    /// A connection config for this server authenticating with `token` (TLS servers: tokens are never
    /// sent over plain HTTP).
    pub fn config_for(&self, token: &str) -> Config {
        let mut c = Config::new(self.url.clone());
        if let Some(ca) = self.ca_pem() {
            c = c.with_ca_pem(ca.as_bytes().to_vec());
        }
        c.with_token(token)
    }

    /// A kubeconfig file's text pointing at this server, with its CA and first token.
    pub fn kubeconfig(&self) -> String {
        self.kubeconfig_for(self.default_token.as_deref())
    }

    /// A kubeconfig file's text pointing at this server with the given token.
    pub fn kubeconfig_for(&self, token: Option<&str>) -> String {
        let mut out =
            String::from("apiVersion: v1\nkind: Config\ncurrent-context: kube-elector-test\n");
        out.push_str(&format!(
            "clusters:\n- name: kube-elector-test\n  cluster:\n    server: {}\n",
            self.url
        ));
        if let Some(ca) = self.ca_pem() {
            out.push_str(&format!(
                "    certificate-authority-data: {}\n",
                crate::config::base64_encode(ca.as_bytes())
            ));
        }
        out.push_str(
            "contexts:\n- name: kube-elector-test\n  context:\n    cluster: kube-elector-test\n    user: kube-elector-test\n    namespace: default\n",
        );
        out.push_str("users:\n- name: kube-elector-test\n  user:");
        match token {
            Some(t) => out.push_str(&format!("\n    token: {t}\n")),
            None => out.push_str(" {}\n"),
        }
        out
    }

    /// Accept another bearer token from now on.
    pub fn add_token(&self, token: impl Into<String>) {
        lock(&self.inner.tokens)
            .get_or_insert_with(HashSet::new)
            .insert(token.into());
    }

    /// Reject this token from now on (as when a service-account token is revoked).
    pub fn revoke_token(&self, token: &str) {
        if let Some(set) = lock(&self.inner.tokens).as_mut() {
            set.remove(token);
        }
    }

    /// The Lease `namespace/name` as stored, if it exists.
    pub fn lease(&self, namespace: &str, name: &str) -> Option<Value> {
        lock(&self.inner.store)
            .get(Resource::Leases, namespace, name)
            .cloned()
    }

    /// The `spec.holderIdentity` of a Lease (`Some("")` when released, `None` when missing).
    pub fn lease_holder(&self, namespace: &str, name: &str) -> Option<String> {
        self.lease(namespace, name).map(|l| {
            l["spec"]["holderIdentity"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
    }

    /// Store a Lease object as given, bypassing validation (for malformed-record tests), with a new
    /// resourceVersion. Returns that version.
    pub fn put_lease_raw(&self, namespace: &str, name: &str, object: Value) -> String {
        let rv = lock(&self.inner.store).put_raw(Resource::Leases, namespace, name, object);
        self.inner.store_changed.notify_all();
        rv
    }

    /// Forget the change history, as an etcd compaction does: watches from older versions get 410 Gone.
    pub fn compact(&self) {
        lock(&self.inner.store).compact();
    }

    /// Any stored object by its plural (`leases`, `configmaps`, `endpoints`), if it exists.
    pub fn object(&self, plural: &str, namespace: &str, name: &str) -> Option<Value> {
        let r = Resource::from_plural(plural)?;
        lock(&self.inner.store).get(r, namespace, name).cloned()
    }

    /// Every stored object of a kind (by its plural) in a namespace, e.g. the `events` posted.
    pub fn objects(&self, plural: &str, namespace: &str) -> Vec<Value> {
        Resource::from_plural(plural)
            .map_or_else(Vec::new, |r| lock(&self.inner.store).all(r, namespace))
    }

    /// Store any object as given (by its plural), bypassing validation, with a new resourceVersion.
    /// Returns that version, or `None` for an unknown plural.
    pub fn put_object_raw(
        &self,
        plural: &str,
        namespace: &str,
        name: &str,
        object: Value,
    ) -> Option<String> {
        let r = Resource::from_plural(plural)?;
        let rv = lock(&self.inner.store).put_raw(r, namespace, name, object);
        self.inner.store_changed.notify_all();
        Some(rv)
    }

    /// Delete any object by its plural, as an administrator would. Returns whether it existed.
    pub fn delete_object(&self, plural: &str, namespace: &str, name: &str) -> bool {
        let deleted = Resource::from_plural(plural)
            .is_some_and(|r| lock(&self.inner.store).delete(r, namespace, name).code == 200);
        self.inner.store_changed.notify_all();
        deleted
    }

    /// Delete a Lease, as an administrator would. Returns whether it existed.
    pub fn delete_lease(&self, namespace: &str, name: &str) -> bool {
        self.delete_object("leases", namespace, name)
    }

    /// The `Impersonate-*` headers of the last request that carried any.
    pub fn last_impersonation(&self) -> Vec<(String, String)> {
        lock(&self.inner.last_impersonation).clone()
    }

    /// Requests received with this method (`GET`, `PUT`, ...), from every client.
    pub fn requests(&self, verb: &str) -> u64 {
        let verb = verb.to_ascii_uppercase();
        lock(&self.inner.counters)
            .iter()
            .filter(|((v, _), _)| *v == verb)
            .map(|(_, n)| n)
            .sum()
    }

    /// Requests received with this method from this client: a bearer token, or the user of a client
    /// certificate or of basic auth.
    pub fn requests_for(&self, token: &str, verb: &str) -> u64 {
        let key = (verb.to_ascii_uppercase(), Some(token.to_string()));
        lock(&self.inner.counters).get(&key).copied().unwrap_or(0)
    }

    /// All requests received.
    pub fn total_requests(&self) -> u64 {
        lock(&self.inner.counters).values().sum()
    }

    /// Zero every counter.
    pub fn reset_counters(&self) {
        lock(&self.inner.counters).clear();
    }

    /// Add a fault rule; it applies until removed or used up (`times`).
    pub fn inject(&self, fault: Fault) -> FaultId {
        self.inner.faults.add(fault)
    }

    /// Remove a fault rule; requests it holds (`hang`) go on.
    pub fn remove_fault(&self, id: FaultId) {
        self.inner.faults.remove(id);
    }

    /// Remove every fault rule.
    pub fn clear_faults(&self) {
        self.inner.faults.clear();
    }

    /// Go down: close the listener (connections are refused) and every open connection. State is kept.
    pub fn go_down(&self) {
        self.inner.down.store(true, Ordering::Release);
        self.inner.down_or_stopped.store(true, Ordering::Release);
        self.inner.faults.wake();
        self.inner.wake_accept();
        self.inner.close_connections();
        self.inner.wait_listening(false);
    }

    /// Come back on the same address with the same objects.
    pub fn come_up(&self) {
        self.inner.down.store(false, Ordering::Release);
        self.inner.down_or_stopped.store(false, Ordering::Release);
        self.inner.listening_cv.notify_all();
        self.inner.wait_listening(true);
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.inner.stopped.store(true, Ordering::Release);
        self.inner.down_or_stopped.store(true, Ordering::Release);
        self.inner.listening_cv.notify_all();
        self.inner.faults.wake();
        self.inner.wake_accept();
        self.inner.close_connections();
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

pub(crate) struct Inner {
    pub(crate) store: Mutex<Store>,
    /// Notified after every change to the store (watches wait on it).
    pub(crate) store_changed: Condvar,
    faults: Faults,
    tokens: Mutex<Option<HashSet<String>>>,
    /// Authenticated, but forbidden everything.
    pub(crate) forbidden: HashSet<String>,
    /// base64(`user:password`) → user.
    basic: HashMap<String, String>,
    last_impersonation: Mutex<Vec<(String, String)>>,
    path_prefix: String,
    counters: Mutex<HashMap<(String, Option<String>), u64>>,
    /// Set while down or stopped: hung requests give up.
    down_or_stopped: AtomicBool,
    down: AtomicBool,
    pub(crate) stopped: AtomicBool,
    conns: Mutex<HashMap<u64, TcpStream>>,
    next_conn: AtomicU64,
    listening: Mutex<bool>,
    listening_cv: Condvar,
    tls: Option<tls::TlsMaterial>,
    ca_pem: Option<String>,
    addr: SocketAddr,
}

impl Inner {
    pub(crate) fn is_down(&self) -> bool {
        self.down_or_stopped.load(Ordering::Acquire)
    }

    fn count(&self, verb: &str, token: Option<&str>) {
        *lock(&self.counters)
            .entry((verb.to_string(), token.map(str::to_string)))
            .or_insert(0) += 1;
    }

    /// The user of a basic-auth header, when it names a known user and password.
    fn basic_user(&self, header: Option<&str>) -> Option<&str> {
        let (scheme, value) = header?.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        self.basic.get(value.trim()).map(String::as_str)
    }

    /// A request is authenticated by a known client certificate or basic-auth user, or an accepted token.
    fn authorized(
        &self,
        token: Option<&str>,
        cert_user: Option<&str>,
        basic_user: Option<&str>,
    ) -> bool {
        if cert_user.is_some() || basic_user.is_some() {
            return true;
        }
        match &*lock(&self.tokens) {
            None => true,
            Some(set) => token.is_some_and(|t| set.contains(t)),
        }
    }

    fn wake_accept(&self) {
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(500));
    }

    fn close_connections(&self) {
        for (_, s) in lock(&self.conns).drain() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    fn set_listening(&self, v: bool) {
        *lock(&self.listening) = v;
        self.listening_cv.notify_all();
    }

    fn wait_listening(&self, want: bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut g = lock(&self.listening);
        while *g != want && Instant::now() < deadline && !self.stopped.load(Ordering::Acquire) {
            g = self
                .listening_cv
                .wait_timeout(g, Duration::from_millis(50))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

fn bind_again(addr: SocketAddr) -> Option<TcpListener> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpListener::bind(addr) {
            Ok(l) => return Some(l),
            Err(e) if Instant::now() < deadline => {
                log::debug!("test API server: rebinding {addr}: {e}");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                log::error!("test API server: cannot rebind {addr}: {e}");
                return None;
            }
        }
    }
}

fn accept_loop(inner: Arc<Inner>, mut first: Option<TcpListener>) {
    loop {
        let Some(listener) = first.take().or_else(|| bind_again(inner.addr)) else {
            return;
        };
        inner.set_listening(true);
        for stream in listener.incoming() {
            if inner.is_down() {
                break;
            }
            let Ok(stream) = stream else { continue };
            let conn_inner = inner.clone();
            let spawned = std::thread::Builder::new()
                .name("test-apiserver-conn".into())
                .spawn(move || serve_connection(conn_inner, stream));
            if spawned.is_err() {
                log::error!("test API server: cannot spawn a connection thread");
            }
        }
        drop(listener);
        inner.set_listening(false);
        let mut g = lock(&inner.listening);
        while inner.down.load(Ordering::Acquire) && !inner.stopped.load(Ordering::Acquire) {
            g = inner
                .listening_cv
                .wait_timeout(g, Duration::from_millis(50))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        drop(g);
        if inner.stopped.load(Ordering::Acquire) {
            return;
        }
    }
}

fn serve_connection(inner: Arc<Inner>, stream: TcpStream) {
    let id = inner.next_conn.fetch_add(1, Ordering::Relaxed);
    if let Ok(clone) = stream.try_clone() {
        lock(&inner.conns).insert(id, clone);
    }
    let _ = stream.set_nodelay(true);
    match &inner.tls {
        Some(tls) => {
            if let Ok(conn) = rustls::ServerConnection::new(tls.server_config.clone()) {
                let mut s = rustls::StreamOwned::new(conn, stream);
                // Finish the handshake first: the client certificate decides who the requests are from.
                let mut ok = true;
                while ok && s.conn.is_handshaking() {
                    ok = s.conn.complete_io(&mut s.sock).is_ok();
                }
                if ok {
                    let user = s
                        .conn
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .and_then(|c| lock(&tls.client_users).get(c.as_ref()).cloned());
                    serve_io(&inner, s, user.as_deref());
                }
            }
        }
        None => serve_io(&inner, stream, None),
    }
    lock(&inner.conns).remove(&id);
}

fn serve_io<S: Read + Write>(inner: &Inner, stream: S, cert_user: Option<&str>) {
    let mut reader = BufReader::new(stream);
    loop {
        let req = match http::read_request(&mut reader) {
            Ok(Some(r)) => r,
            _ => return,
        };
        if inner.is_down() {
            return;
        }
        match http::handle(inner, &req, cert_user) {
            http::Outcome::Close => return,
            http::Outcome::Watch(w) => {
                if http::stream(inner, reader.get_mut(), &w).is_err() {
                    return;
                }
            }
            http::Outcome::Truncated { code, body } => {
                let _ = http::write_truncated(reader.get_mut(), code, &body);
                return;
            }
            http::Outcome::Respond {
                code,
                body,
                retry_after,
            } => {
                if http::write_response(reader.get_mut(), code, &body, retry_after).is_err() {
                    return;
                }
            }
        }
        if req
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
        {
            return;
        }
    }
}
