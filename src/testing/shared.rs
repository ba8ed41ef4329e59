//! What the server's threads share: the store, tokens, counters, faults, open connections.

use std::collections::{HashMap, HashSet};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use super::faults::Faults;
use super::store::Store;

use super::tls;
use crate::sync::{lock, wait};

pub(crate) struct Inner {
    pub(crate) store: Mutex<Store>,
    /// Notified after every change to the store (watches wait on it).
    pub(crate) store_changed: Condvar,
    pub(super) faults: Faults,
    pub(super) tokens: Mutex<Option<HashSet<String>>>,
    /// Authenticated, but forbidden everything.
    pub(crate) forbidden: HashSet<String>,
    /// base64(`user:password`) → user.
    pub(super) basic: HashMap<String, String>,
    pub(super) last_impersonation: Mutex<Vec<(String, String)>>,
    pub(super) path_prefix: String,
    pub(super) counters: Mutex<HashMap<(String, Option<String>), u64>>,
    /// Set while down or stopped: hung requests give up.
    pub(super) down_or_stopped: AtomicBool,
    pub(super) down: AtomicBool,
    pub(crate) stopped: AtomicBool,
    pub(super) conns: Mutex<HashMap<u64, TcpStream>>,
    pub(super) next_conn: AtomicU64,
    pub(super) listening: Mutex<bool>,
    pub(super) listening_cv: Condvar,
    pub(super) tls: Option<tls::TlsMaterial>,
    pub(super) ca_pem: Option<String>,
    pub(super) addr: SocketAddr,
}

impl Inner {
    pub(crate) fn is_down(&self) -> bool {
        self.down_or_stopped.load(Ordering::Acquire)
    }

    pub(super) fn count(&self, verb: &str, token: Option<&str>) {
        *lock(&self.counters)
            .entry((verb.to_string(), token.map(str::to_string)))
            .or_insert(0) += 1;
    }

    /// The user of a basic-auth header, when it names a known user and password.
    pub(super) fn basic_user(&self, header: Option<&str>) -> Option<&str> {
        let (scheme, value) = header?.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        self.basic.get(value.trim()).map(String::as_str)
    }

    /// A request is authenticated by a known client certificate or basic-auth user, or an accepted token.
    pub(super) fn authorized(
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

    pub(super) fn wake_accept(&self) {
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(500));
    }

    pub(super) fn close_connections(&self) {
        for (_, s) in lock(&self.conns).drain() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    pub(super) fn set_listening(&self, v: bool) {
        *lock(&self.listening) = v;
        self.listening_cv.notify_all();
    }

    pub(super) fn wait_listening(&self, want: bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut g = lock(&self.listening);
        while *g != want && Instant::now() < deadline && !self.stopped.load(Ordering::Acquire) {
            g = wait(&self.listening_cv, g, Some(Duration::from_millis(50)));
        }
    }
}
