//! Accepting connections and serving each on its own thread, plain or TLS.

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{Inner, http};
use crate::sync::{lock, wait};

pub(super) fn bind_again(addr: SocketAddr) -> Option<TcpListener> {
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

pub(super) fn accept_loop(inner: Arc<Inner>, mut first: Option<TcpListener>) {
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
            g = wait(&inner.listening_cv, g, Some(Duration::from_millis(50)));
        }
        drop(g);
        if inner.stopped.load(Ordering::Acquire) {
            return;
        }
    }
}

pub(super) fn serve_connection(inner: Arc<Inner>, stream: TcpStream) {
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

pub(super) fn serve_io<S: Read + Write>(inner: &Inner, stream: S, cert_user: Option<&str>) {
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
                headers,
            } => {
                if http::write_response(reader.get_mut(), code, &body, &headers).is_err() {
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
