//! The running embedded API server: where it is, configs and kubeconfigs for it, and what a test can
//! see and change (objects, tokens, counters, faults, going down and coming back).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;

use serde_json::Value;

use super::selector::Selector;
use super::store::Resource;
use crate::config::Config;

use super::{ApiServerBuilder, Fault, FaultId, Inner};
use crate::sync::lock;

/// The embedded API server. Dropping it stops it and closes every connection.
pub struct ApiServer {
    pub(super) inner: Arc<Inner>,
    pub(super) accept: Option<JoinHandle<()>>,
    pub(super) url: String,
    pub(super) default_token: Option<String>,
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
        Resource::from_plural(plural).map_or_else(Vec::new, |r| {
            lock(&self.inner.store).selected(r, namespace, &Selector::default())
        })
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

    /// Send `object` to every watch of `plural` `namespace/name` as a `MODIFIED` event, without storing
    /// it: a watch that lies. The object's `resourceVersion` is sent as given (say, the stored object's,
    /// so the lie shows the current version). Returns false for an unknown plural.
    pub fn forge_watch_event(
        &self,
        plural: &str,
        namespace: &str,
        name: &str,
        object: Value,
    ) -> bool {
        let Some(r) = Resource::from_plural(plural) else {
            return false;
        };
        lock(&self.inner.store).forge_change(r, namespace, name, &object);
        self.inner.store_changed.notify_all();
        true
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
