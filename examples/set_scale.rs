//! What an elector set costs as its locks grow: for N = 10, 100 and 1,000 Leases in one process (a lone
//! member, so it holds them all), on the embedded API server and on a real kube-apiserver started through
//! `testing::ControlPlane`. The set runs in a child process of its own (`examples/set_scale_child.rs`, a
//! binary with only the library in it, as a user's would be), so its threads, RSS and CPU are its own,
//! not the server's. For each N:
//!
//! - **threads**: the process's threads (the library's: the driver, the request pool, the watch), against
//!   N single electors' (a renew and a watch thread each);
//! - **RSS**, **heap** (the bytes allocated and live, and per lock beyond a single elector's) and **CPU**
//!   seconds per second, over an idle window while every lock is held and renewed;
//! - **requests/s** the API server answered over that window, against N / retry period (one renew per
//!   lock per retry period, and nothing else);
//! - **renew latency** p50/p99 per lock (from a renew's start, queueing in the set's request pool
//!   included, to its answer), against a single elector's on the same server in the same run.
//!
//! With `--electors`, N single electors (N ≤ 100) run beside it for the comparison.
//!
//!     cargo run --release --example set_scale
//!     cargo run --release --example set_scale -- --locks 10,100,1000 --seconds 10 --server both --electors
//!
//! The child is built on first use (`cargo build --example set_scale_child`, in the same profile) when it
//! is not beside this binary already.
//!
//! `--server real` (or `both`) needs `KUBEBUILDER_ASSETS` naming a directory with `kube-apiserver` and
//! `etcd` (envtest's assets). Timing is client-go's default (15 s lease, 10 s renew deadline, 2 s retry).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kube_elector::Timing;
use kube_elector::testing::{ApiServer, ControlPlane};

/// What the child measures: a set of N locks, one single elector, or N single electors.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    Set,
    Single,
    Electors,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Set => "set",
            Role::Single => "single",
            Role::Electors => "electors",
        }
    }
}

/// What a child reports.
#[derive(Debug, Default, Clone)]
struct Report {
    threads: usize,
    lib_threads: usize,
    rss_mib: f64,
    heap_bytes: f64,
    cpu_per_sec: f64,
    p50: Duration,
    p99: Duration,
    renews: usize,
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    parent();
}

/// The child's binary: beside this one, else built now in the same profile.
fn child_binary() -> PathBuf {
    let me = std::env::current_exe().expect("this example's path");
    let dir = me.parent().expect("the examples directory");
    let child = dir.join(format!("set_scale_child{}", std::env::consts::EXE_SUFFIX));
    if child.exists() {
        return child;
    }
    let release = dir.parent().and_then(Path::file_name) == Some("release".as_ref());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("set_scale: building the measured child (cargo build --example set_scale_child)");
    let mut build = Command::new(cargo);
    build.args(["build", "--quiet", "--example", "set_scale_child"]);
    if release {
        build.arg("--release");
    }
    let built = build.status().is_ok_and(|s| s.success());
    if !built || !child.exists() {
        eprintln!(
            "set_scale: could not build {}; run `cargo build{} --example set_scale_child` first",
            child.display(),
            if release { " --release" } else { "" }
        );
        std::process::exit(1);
    }
    child
}

fn usage() -> ! {
    eprintln!(
        "set_scale: use --locks 10,100,1000 --seconds 10 --server embedded|real|both [--io-threads N] [--electors]"
    );
    std::process::exit(2)
}

fn parent() {
    let mut locks = vec![10usize, 100, 1000];
    let mut seconds = 10u64;
    let mut electors = false;
    let mut io_threads = None;
    let mut server = if ControlPlane::assets_from_env().is_some() {
        "both".to_string()
    } else {
        "embedded".to_string()
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--electors" {
            electors = true;
            continue;
        }
        let v = args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--locks" => locks = v.split(',').filter_map(|n| n.trim().parse().ok()).collect(),
            "--seconds" => seconds = v.parse().unwrap_or_else(|_| usage()),
            "--server" => server = v,
            "--io-threads" => io_threads = Some(v.parse().unwrap_or_else(|_| usage())),
            _ => usage(),
        }
    }
    let timing = Timing::default();
    println!(
        "lease {:?}, renew deadline {:?}, retry {:?}; {seconds} s windows; each row a child process",
        timing.lease_duration, timing.renew_deadline, timing.retry_period
    );
    let child = Child {
        path: child_binary(),
        seconds,
        io_threads,
    };
    if let Some(n) = io_threads {
        println!("sets with {n} request threads");
    }
    println!(
        "{:<9} {:<9} {:>6} {:>8} {:>11} {:>8} {:>9} {:>10} {:>9} {:>12} {:>11} {:>16} {:>16}",
        "server",
        "what",
        "locks",
        "threads",
        "lib threads",
        "rss MiB",
        "heap MiB",
        "heap/lock",
        "cpu s/s",
        "requests/s",
        "N/retry",
        "renew p50/p99",
        "vs single p50/p99"
    );
    let embedded = matches!(server.as_str(), "embedded" | "both")
        .then(|| ApiServer::start().expect("embedded API server"));
    let real = matches!(server.as_str(), "real" | "both").then(|| {
        ControlPlane::start().unwrap_or_else(|e| {
            eprintln!("set_scale: {e}");
            std::process::exit(1);
        })
    });
    if embedded.is_none() && real.is_none() {
        usage();
    }
    let dir = std::env::temp_dir().join(format!("kube-elector-set-scale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let mut targets: Vec<Target> = Vec::new();
    if let Some(s) = &embedded {
        targets.push(Target::Embedded(s));
    }
    if let Some(cp) = &real {
        targets.push(Target::Real(cp));
    }
    for target in &targets {
        let kubeconfig = dir.join(format!("{}.kubeconfig", target.label()));
        std::fs::write(&kubeconfig, target.kubeconfig()).expect("writing the kubeconfig");
        let single = measure(&child, target, &kubeconfig, Role::Single, 1);
        print_row(target, Role::Single, 1, &single, &single, timing);
        for &n in &locks {
            let r = measure(&child, target, &kubeconfig, Role::Set, n);
            print_row(target, Role::Set, n, &r, &single, timing);
            if electors && n <= 100 {
                let r = measure(&child, target, &kubeconfig, Role::Electors, n);
                print_row(target, Role::Electors, n, &r, &single, timing);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

enum Target<'a> {
    Embedded(&'a ApiServer),
    Real(&'a ControlPlane),
}

impl Target<'_> {
    fn label(&self) -> &'static str {
        match self {
            Target::Embedded(_) => "embedded",
            Target::Real(_) => "real",
        }
    }
    fn kubeconfig(&self) -> String {
        match self {
            Target::Embedded(s) => s.kubeconfig(),
            Target::Real(cp) => cp.kubeconfig(),
        }
    }
    fn namespace(&self) -> &str {
        match self {
            Target::Embedded(_) => "default",
            Target::Real(cp) => cp.namespace(),
        }
    }
    /// Requests answered so far (the embedded server counts all; the real one, those for leases).
    fn requests(&self) -> u64 {
        match self {
            Target::Embedded(s) => s.total_requests(),
            Target::Real(cp) => cp
                .lease_requests()
                .map(|by_verb| by_verb.values().sum())
                .unwrap_or_else(|e| {
                    eprintln!("set_scale: {e}");
                    0
                }),
        }
    }
}

/// The requests/s the server answered while the child sat in its idle window; the child's report.
struct Measured {
    requests_per_sec: f64,
    report: Report,
}

/// How to run the measured child.
struct Child {
    path: PathBuf,
    seconds: u64,
    /// A set's request threads (`None`: its default).
    io_threads: Option<usize>,
}

fn measure(child: &Child, target: &Target, kubeconfig: &Path, role: Role, n: usize) -> Measured {
    static RUN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut command = Command::new(&child.path);
    if let Some(t) = child.io_threads {
        command.env("SET_SCALE_IO_THREADS", t.to_string());
    }
    let mut child = command
        .env("SET_SCALE_ROLE", role.name())
        .env("SET_SCALE_LOCKS", n.to_string())
        .env("SET_SCALE_SECONDS", child.seconds.to_string())
        .env("SET_SCALE_NAME", format!("scale{run}"))
        .env("KUBECONFIG", kubeconfig)
        .env("POD_NAMESPACE", target.namespace())
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .expect("the child process");
    let mut lines = BufReader::new(child.stdout.take().expect("its stdout")).lines();
    let mut next = || -> String {
        match lines.next() {
            Some(Ok(l)) => l,
            _ => {
                let status = child.wait();
                eprintln!("set_scale: the {} child ended: {status:?}", role.name());
                std::process::exit(1);
            }
        }
    };
    // The child holds every lock and has settled: the idle window starts.
    assert_eq!(next(), "window", "the child's first line");
    let (r0, t0) = (target.requests(), Instant::now());
    assert_eq!(next(), "measured", "the child's second line");
    let (r1, window) = (target.requests(), t0.elapsed());
    let report = parse_report(&next());
    let _ = child.wait();
    Measured {
        requests_per_sec: r1.saturating_sub(r0) as f64 / window.as_secs_f64(),
        report,
    }
}

fn print_row(target: &Target, role: Role, n: usize, m: &Measured, single: &Measured, t: Timing) {
    let r = &m.report;
    let s = &single.report;
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
    // The heap each lock adds beyond what one elector's process holds.
    let per_lock = if role == Role::Single {
        String::from("-")
    } else {
        format!("{:.0} B", (r.heap_bytes - s.heap_bytes) / n as f64)
    };
    println!(
        "{:<9} {:<9} {:>6} {:>8} {:>11} {:>8.1} {:>9.2} {:>10} {:>9.4} {:>12.1} {:>11.1} {:>7.1?}/{:<8.1?} {:>6.2}x/{:.2}x",
        target.label(),
        role.name(),
        n,
        r.threads,
        r.lib_threads,
        r.rss_mib,
        r.heap_bytes / (1024.0 * 1024.0),
        per_lock,
        r.cpu_per_sec,
        m.requests_per_sec,
        n as f64 / t.retry_period.as_secs_f64(),
        r.p50,
        r.p99,
        ratio(r.p50, s.p50),
        ratio(r.p99, s.p99),
    );
}

fn parse_report(line: &str) -> Report {
    let mut r = Report::default();
    for kv in line.split_whitespace() {
        let Some((k, v)) = kv.split_once('=') else {
            continue;
        };
        let ns = || Duration::from_nanos(v.parse().unwrap_or(0));
        match k {
            "threads" => r.threads = v.parse().unwrap_or(0),
            "lib_threads" => r.lib_threads = v.parse().unwrap_or(0),
            "rss_mib" => r.rss_mib = v.parse().unwrap_or(0.0),
            "heap_bytes" => r.heap_bytes = v.parse().unwrap_or(0.0),
            "cpu_per_sec" => r.cpu_per_sec = v.parse().unwrap_or(0.0),
            "p50_ns" => r.p50 = ns(),
            "p99_ns" => r.p99 = ns(),
            "renews" => r.renews = v.parse().unwrap_or(0),
            _ => {}
        }
    }
    r
}
