//! Helpers shared by the integration tests: the usual candidate and its timing, a driven clock, and
//! event checks.
#![allow(dead_code)]

pub mod items;
pub mod logs;
pub mod prom;
pub mod raw;
pub mod real;
pub mod relay;
pub mod rng;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use kube_elector::LeaderEvent;
use kube_elector::election::Clock;

/// A clock the test moves by hand. Clones share the same time.
#[derive(Clone)]
pub struct ManualClock(Arc<Mutex<(Instant, DateTime<Utc>)>>);

impl ManualClock {
    pub fn new() -> Self {
        ManualClock(Arc::new(Mutex::new((Instant::now(), Utc::now()))))
    }
    pub fn advance(&self, d: Duration) {
        let mut g = self.0.lock().unwrap();
        g.0 += d;
        g.1 += chrono::Duration::from_std(d).unwrap();
    }
    /// Move only the wall clock (a jump by NTP or an operator): expiry must not change.
    pub fn jump_wall(&self, d: chrono::Duration) {
        self.0.lock().unwrap().1 += d;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.0.lock().unwrap().0
    }
    fn wall(&self) -> DateTime<Utc> {
        self.0.lock().unwrap().1
    }
}

/// Assert an event sequence is well formed: StoppedLeading only after StartedLeading, alternating.
pub fn assert_well_formed(events: &[LeaderEvent]) {
    let mut leading = false;
    for (i, e) in events.iter().enumerate() {
        match e {
            LeaderEvent::StartedLeading { .. } => {
                assert!(
                    !leading,
                    "StartedLeading twice without StoppedLeading at {i}: {events:?}"
                );
                leading = true;
            }
            LeaderEvent::StoppedLeading { .. } => {
                assert!(
                    leading,
                    "StoppedLeading without StartedLeading at {i}: {events:?}"
                );
                leading = false;
            }
            _ => {}
        }
    }
}

/// Poll `f` every 5 ms until it is true or `timeout` passes; returns whether it became true.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    f()
}

/// The first event matching `pred` within `timeout`.
pub fn wait_event(
    rx: &crossbeam_channel::Receiver<LeaderEvent>,
    timeout: Duration,
    pred: impl Fn(&LeaderEvent) -> bool,
) -> Option<LeaderEvent> {
    let end = Instant::now() + timeout;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(e) if pred(&e) => return Some(e),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
}

/// Standard base64 with padding (test fixtures: kubeconfig `*-data` fields).
pub fn b64(data: &str) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                A[(n >> (18 - 6 * i)) as usize & 63] as char
            } else {
                '='
            });
        }
    }
    out
}

/// The `leader` example binary, which `cargo test` builds: target/<profile>/deps/<test> →
/// target/<profile>/examples/leader.
pub fn leader_bin() -> std::path::PathBuf {
    example_bin("leader")
}

/// An example's binary, which `cargo test` builds beside the tests.
pub fn example_bin(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    dir.join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

/// The `leader` CLI's timing flags for tests: a 2 s lease, 1.5 s renew deadline, 200 ms retry (valid for
/// every lock kind: annotation records need a renew deadline over 1 s + the retry period).
pub const FAST_TIMING: [&str; 6] = [
    "--lease-duration",
    "2s",
    "--renew-deadline",
    "1500ms",
    "--retry-period",
    "200ms",
];

/// A fresh folder under the system temp dir for one test.
pub fn temp_dir(label: &str) -> std::path::PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "kube-elector-{label}-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// chmod 755.
pub fn make_executable(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Election timing from a whole-second lease and millisecond renew deadline and retry period.
pub fn timing(lease: u64, renew_ms: u64, retry_ms: u64) -> kube_elector::Timing {
    kube_elector::Timing {
        lease_duration: Duration::from_secs(lease),
        renew_deadline: Duration::from_millis(renew_ms),
        retry_period: Duration::from_millis(retry_ms),
    }
}

/// The embedded API server over TLS, knowing one bearer token per candidate (each candidate connects
/// with `config_for(token)`), so that a fault can hit one of them.
pub fn tls_server(tokens: &[&str]) -> kube_elector::testing::ApiServer {
    tokens
        .iter()
        .fold(
            kube_elector::testing::ApiServer::builder().tls(true),
            |b, t| b.token(*t),
        )
        .start()
        .expect("the embedded API server starts")
}

/// The usual test candidate: identity `id` on lock `name` with `timing`. A test adds its own options
/// (watching, the lock kind, a drain timeout) before `start()`.
pub fn candidate(
    config: kube_elector::Config,
    name: &str,
    id: &str,
    timing: kube_elector::Timing,
) -> kube_elector::LeaderElectorBuilder<kube_elector::runner::Managed> {
    kube_elector::LeaderElector::builder(config, name)
        .identity(id)
        .timing(timing)
}

/// [`candidate`], started (valid settings are a test's premise).
pub fn start(
    config: kube_elector::Config,
    name: &str,
    id: &str,
    timing: kube_elector::Timing,
) -> kube_elector::LeaderHandle {
    candidate(config, name, id, timing)
        .start()
        .expect("the test's settings are valid")
}

/// Sample every handle each millisecond for `d`; panic if two lead at once.
pub fn no_overlap(hs: &[&kube_elector::LeaderHandle], d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        let leading: Vec<&str> = hs
            .iter()
            .filter(|h| h.is_leader())
            .map(|h| h.identity())
            .collect();
        assert!(leading.len() <= 1, "two leaders at once: {leading:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A loopback HTTP server that answers every request with `200` and `body`, and keeps each request's
/// head (its request line and headers), to show what reached it.
pub struct Trap {
    pub port: u16,
    pub heads: Arc<Mutex<Vec<String>>>,
}

impl Trap {
    pub fn start(body: String) -> Trap {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = heads.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                }
                seen.lock().unwrap().push(head);
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Trap { port, heads }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn requests(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

/// Threads of this process whose name starts with `prefix` (Linux truncates names to 15 bytes; none
/// elsewhere).
pub fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|t| {
                    std::fs::read_to_string(t.path().join("comm"))
                        .is_ok_and(|c| c.trim().starts_with(prefix))
                })
                .count()
        })
        .unwrap_or(0)
}
