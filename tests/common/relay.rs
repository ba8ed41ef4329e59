//! A fault-injecting TCP relay on loopback: it forwards every connection to a target and, on command,
//! swallows bytes (the connections that lose bytes stay open and silent, like a half-open connection
//! after a network drop), delays every chunk, or closes every open connection.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Default)]
struct Modes {
    swallow_until: Option<Instant>,
    slow_until: Option<Instant>,
    /// Delay of each chunk while slow, milliseconds: uniform in this range.
    slow_ms: (u64, u64),
}

struct Shared {
    target: SocketAddr,
    modes: Mutex<Modes>,
    /// Both ends of every open connection, to close them on a reset.
    open: Mutex<Vec<(u64, TcpStream, TcpStream)>>,
    next_id: AtomicU64,
    rng: AtomicU64,
    stop: AtomicBool,
}

impl Shared {
    fn random(&self, lo: u64, hi: u64) -> u64 {
        // xorshift on a shared word: good enough to spread delays.
        let mut x = self.rng.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.store(x, Ordering::Relaxed);
        lo + x % (hi - lo + 1)
    }
}

/// A relay listening on `127.0.0.1:port()`, forwarding to its target.
pub struct Relay {
    port: u16,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl Relay {
    /// Forward connections on a fresh loopback port to `target`. `seed` drives the chunk delays.
    pub fn start(target: SocketAddr, seed: u64) -> std::io::Result<Relay> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            target,
            modes: Mutex::new(Modes::default()),
            open: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(0),
            rng: AtomicU64::new(seed | 1),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let accept = std::thread::Builder::new()
            .name("relay-accept".into())
            .spawn(move || {
                for client in listener.incoming() {
                    if s.stop.load(Ordering::Acquire) {
                        return;
                    }
                    if let Ok(client) = client {
                        connect(&s, client);
                    }
                }
            })?;
        Ok(Relay {
            port,
            shared,
            accept: Some(accept),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// For `d`, swallow every byte in both directions. A connection that lost bytes stays open and
    /// silent for good (its peer must time out), as after a drop on the network.
    pub fn swallow(&self, d: Duration) {
        self.shared.modes.lock().unwrap().swallow_until = Some(Instant::now() + d);
    }

    /// For `d`, delay every chunk by a uniform `min_ms..=max_ms` milliseconds.
    pub fn slow(&self, d: Duration, min_ms: u64, max_ms: u64) {
        let mut m = self.shared.modes.lock().unwrap();
        m.slow_until = Some(Instant::now() + d);
        m.slow_ms = (min_ms, max_ms.max(min_ms));
    }

    /// Close every open connection now.
    pub fn reset(&self) {
        for (_, a, b) in self.shared.open.lock().unwrap().drain(..) {
            let _ = a.shutdown(Shutdown::Both);
            let _ = b.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.reset();
        // Wake the accept loop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn connect(shared: &Arc<Shared>, client: TcpStream) {
    let Ok(server) = TcpStream::connect_timeout(&shared.target, Duration::from_secs(2)) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let (Ok(c2), Ok(s2), Ok(c3), Ok(s3)) = (
        client.try_clone(),
        server.try_clone(),
        client.try_clone(),
        server.try_clone(),
    ) else {
        return;
    };
    shared.open.lock().unwrap().push((id, c3, s3));
    let poisoned = Arc::new(AtomicBool::new(false));
    for (from, to) in [(client, server), (s2, c2)] {
        let (shared, poisoned) = (shared.clone(), poisoned.clone());
        let _ = std::thread::Builder::new()
            .name("relay-pump".into())
            .spawn(move || {
                pump(&shared, from, to, &poisoned);
                shared.open.lock().unwrap().retain(|(i, _, _)| *i != id);
            });
    }
}

fn pump(shared: &Shared, mut from: TcpStream, mut to: TcpStream, poisoned: &AtomicBool) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if shared.stop.load(Ordering::Acquire) {
            break;
        }
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => break,
        };
        let now = Instant::now();
        let delay = {
            let m = shared.modes.lock().unwrap();
            if m.swallow_until.is_some_and(|u| now < u) {
                poisoned.store(true, Ordering::Release);
            }
            m.slow_until
                .filter(|u| now < *u)
                .map(|_| Duration::from_millis(shared.random(m.slow_ms.0, m.slow_ms.1)))
        };
        if poisoned.load(Ordering::Acquire) {
            continue;
        }
        if let Some(d) = delay {
            std::thread::sleep(d);
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
