//! The service itself: leader-only workers fenced by the term, `/healthz`, `/readyz` and `/metrics`
//! over a tiny HTTP server, and a shutdown that stops the elector, which lets the items in flight finish
//! before it releases the lock.
//! `main.rs` wires it to the environment and to SIGTERM; the tests run it as it is.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use kube_elector::metrics::Metrics;
use kube_elector::{Config, LeaderElector, LeaderHandle, LeaderStatus, Term, Timing};

/// How the service runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The Lease the replicas campaign for.
    pub lock_name: String,
    /// The Lease's namespace (default: the config's).
    pub namespace: Option<String>,
    /// This replica's identity (default: hostname and a random suffix; the pod name in Kubernetes).
    pub identity: Option<String>,
    /// Where `/healthz` and `/metrics` are served.
    pub listen: SocketAddr,
    /// Worker threads doing leader-only work.
    pub workers: usize,
    /// How long one item of work takes.
    pub item: Duration,
    /// The election's timing.
    pub timing: Timing,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            lock_name: "kube-elector-service".into(),
            namespace: None,
            identity: None,
            listen: ([0, 0, 0, 0], 8080).into(),
            workers: 4,
            item: Duration::from_millis(200),
            timing: Timing::default(),
        }
    }
}

/// What the workers share: counts of what they did.
#[derive(Debug, Default)]
struct Work {
    done: AtomicU64,
    /// Items begun while the term was already over: must stay 0.
    unfenced: AtomicU64,
}

/// A running service.
pub struct Service {
    handle: Arc<LeaderHandle>,
    workers: Vec<JoinHandle<()>>,
    work: Arc<Work>,
    http: Http,
}

impl Service {
    /// Start campaigning, the workers and the HTTP server.
    pub fn start(config: Config, s: Settings) -> Result<Service, Box<dyn std::error::Error>> {
        let mut builder = LeaderElector::builder(config, &s.lock_name).timing(s.timing);
        if let Some(ns) = &s.namespace {
            builder = builder.namespace(ns);
        }
        if let Some(id) = &s.identity {
            builder = builder.identity(id);
        }
        let handle = Arc::new(builder.start()?);
        let metrics = Metrics::new();
        metrics.add(handle.status());
        let work = Arc::new(Work::default());
        let workers = (0..s.workers)
            .map(|n| {
                let work = work.clone();
                handle
                    .status()
                    .run_while_leading(move |term| lead(n, &term, &work, s.item))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let ready_within = s.timing.retry_period.saturating_mul(5);
        let http = Http::start(s.listen, handle.status(), metrics, ready_within)?;
        log::info!(
            "{} campaigns for {}; /healthz and /metrics on http://{}",
            handle.identity(),
            s.lock_name,
            http.addr
        );
        Ok(Service {
            handle,
            workers,
            work,
            http,
        })
    }

    /// Where `/healthz` and `/metrics` are served.
    pub fn http_addr(&self) -> SocketAddr {
        self.http.addr
    }

    /// The elector's status, for tests and for other threads.
    pub fn status(&self) -> LeaderStatus {
        self.handle.status()
    }

    /// Items of leader-only work done so far.
    pub fn items_done(&self) -> u64 {
        self.work.done.load(Ordering::SeqCst)
    }

    /// Items begun after their term had ended (a fencing bug): always 0.
    pub fn items_unfenced(&self) -> u64 {
        self.work.unfenced.load(Ordering::SeqCst)
    }

    /// The SIGTERM path: `stop()` ends the term (the workers take no new item), lets the items in flight
    /// finish, then releases the lock so another replica takes over at once.
    pub fn shutdown(mut self) -> kube_elector::Result<()> {
        let stopped = self.handle.stop();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        self.http.stop();
        log::info!("shut down after {} items", self.items_done());
        stopped
    }

    /// Crash without releasing (for failover tests): the lease must expire first.
    pub fn crash(mut self) {
        self.handle.abandon();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        self.http.stop();
    }
}

/// One worker's share of one term: items until the term ends (a loss, or `stop()` on SIGTERM, which
/// waits for this function to return before it releases the lock).
fn lead(n: usize, term: &Term, work: &Work, item: Duration) {
    log::info!("worker {n}: leading (term {})", term.transitions());
    while !term.is_cancelled() {
        // A real worker sends term.transitions() with its writes, so a store can refuse a stale leader.
        if term.is_cancelled() {
            work.unfenced.fetch_add(1, Ordering::SeqCst);
        }
        std::thread::sleep(item);
        work.done.fetch_add(1, Ordering::SeqCst);
    }
    log::info!("worker {n}: term {} over", term.transitions());
}

/// A tiny HTTP/1.1 server: one request per connection, answered on the server's thread.
struct Http {
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Http {
    fn start(
        listen: SocketAddr,
        status: LeaderStatus,
        metrics: Metrics,
        ready_within: Duration,
    ) -> std::io::Result<Http> {
        let listener = TcpListener::bind(listen)?;
        let addr = listener.local_addr()?;
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = stopping.clone();
        let thread = std::thread::Builder::new()
            .name("http".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(conn) = conn {
                        let _ = answer(conn, &status, &metrics, ready_within);
                    }
                }
            })?;
        Ok(Http {
            addr,
            stopping,
            thread: Some(thread),
        })
    }

    fn stop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn answer(
    conn: TcpStream,
    status: &LeaderStatus,
    metrics: &Metrics,
    ready_within: Duration,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    // Skip the headers.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    let (code, content_type, body) = match path {
        // Unhealthy only when we lead but the renew thread is stuck: restart the pod then.
        "/healthz" => match status.check(Duration::from_secs(20)) {
            Ok(()) => ("200 OK", "text/plain", "ok\n".to_string()),
            Err(e) => ("500 Internal Server Error", "text/plain", format!("{e}\n")),
        },
        // Not ready while the API server does not answer us (a replica that cannot campaign).
        "/readyz" => match status.ready(ready_within) {
            Ok(()) => ("200 OK", "text/plain", "ok\n".to_string()),
            Err(e) => ("503 Service Unavailable", "text/plain", format!("{e}\n")),
        },
        "/metrics" => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.render(),
        ),
        _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
    };
    let mut conn = conn;
    write!(
        conn,
        "HTTP/1.1 {code}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    conn.flush()
}
