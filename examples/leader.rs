//! A small leader-election CLI for real clusters and scripts: one JSON line per event on stdout, logs on
//! stderr. Without `--kubeconfig` it finds its config as `Config::infer()` does (`KUBECONFIG`, then the
//! in-cluster service account, then `~/.kube/config`).
//!
//!     cargo run --example leader -- --kubeconfig ~/.kube/config --name my-app --id pod-1 --run-for 60s
//!
//! Exits 0 after `--run-for` or on SIGTERM/SIGINT after a graceful stop that releases the lease (as the
//! library does by default; `--release-on-cancel=false` keeps it held until it expires); bad flags or
//! config: a one-line error on stderr and exit code 2. Logs go to stderr through env_logger: `RUST_LOG`
//! (default `info`) picks what is shown.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use kube_elector::config::KubeconfigOptions;
use kube_elector::{Config, LeaderElector, LeaderEvent, LockKind};

struct Args {
    kubeconfig: Option<PathBuf>,
    context: Option<String>,
    namespace: Option<String>,
    name: String,
    id: Option<String>,
    /// The durations given (the library's defaults otherwise, which its errors call defaults).
    lease_duration: Option<Duration>,
    renew_deadline: Option<Duration>,
    retry_period: Option<Duration>,
    release_on_cancel: bool,
    run_for: Option<Duration>,
    lock: LockKind,
    watch: bool,
}

const USAGE: &str = "usage: leader --name NAME [flags]  (leader --help lists them)";

const HELP: &str = "\
leader: campaign for a Kubernetes lock and print one JSON line per leadership event

usage: leader --name NAME [flags]

  --name NAME                 the lock's name (required)
  --namespace, -n NS          the lock's namespace (default: the config's, else default)
  --id ID                     this candidate's identity (default: <hostname>_<random hex>)
  --lock KIND                 leases, configmaps, endpoints, configmapsleases or endpointsleases
                              (default: leases)
  --kubeconfig PATH           the kubeconfig to use (default: KUBECONFIG, then the pod's service
                              account, then ~/.kube/config)
  --context NAME              the kubeconfig context (default: its current-context)
  --lease-duration D          how long followers wait for a renew (default: 15s)
  --renew-deadline D          how long the leader leads without a renew (default: 10s)
  --retry-period D            how often the leader renews and candidates retry (default: 2s)
  --release-on-cancel[=BOOL]  release the lock on SIGTERM/SIGINT (default: true)
  --watch, --no-watch         follow by watching the lock, or by polling (default: --watch)
  --run-for D                 stop after this long (default: run until SIGTERM/SIGINT)
  --help, -h                  this text
  --version, -V               the version

Durations: 15s, 500ms, 2m, 1h, 1m30s. Events on stdout, one JSON object a line:
  {\"ts\":\"...\",\"id\":\"...\",\"event\":\"new_leader|started_leading|stopped_leading\",\"leader\":\"...\"}
Logs on stderr (RUST_LOG, default info). Exit 0 after a stop, 2 on bad flags or config.";

/// Parse `15s`, `500ms`, `2m`, `1h`, `1m30s`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?} (use e.g. 15s, 500ms, 2m)");
    let mut total = Duration::ZERO;
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (num, tail) = rest.split_at(digits);
        let n: f64 = num.parse().map_err(|_| bad())?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let secs = match unit {
            "ms" => n / 1000.0,
            "s" => n,
            "m" => n * 60.0,
            "h" => n * 3600.0,
            _ => return Err(bad()),
        };
        total += Duration::try_from_secs_f64(secs).map_err(|_| bad())?;
        rest = tail;
    }
    Ok(total)
}

/// A duration flag's value, or an error that names the flag.
fn duration_flag(flag: &str, value: &str) -> Result<Duration, String> {
    parse_duration(value).map_err(|e| format!("{flag}: {e}"))
}

/// A library error in the CLI's words: the timing settings by their flags.
fn in_flags(message: &str) -> String {
    message
        .replace("lease_duration", "--lease-duration")
        .replace("renew_deadline", "--renew-deadline")
        .replace("retry_period", "--retry-period")
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        kubeconfig: None,
        context: None,
        namespace: None,
        name: String::new(),
        id: None,
        lease_duration: None,
        renew_deadline: None,
        retry_period: None,
        release_on_cancel: true,
        run_for: None,
        lock: LockKind::Leases,
        watch: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let (flag, inline) = match flag.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (flag, None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--kubeconfig" => args.kubeconfig = Some(PathBuf::from(value()?)),
            "--context" => args.context = Some(value()?),
            "--namespace" | "-n" => args.namespace = Some(value()?),
            "--name" => args.name = value()?,
            "--id" => args.id = Some(value()?),
            "--lock" => {
                args.lock = value()?
                    .parse()
                    .map_err(|e: kube_elector::Error| format!("--lock: {e}"))?
            }
            "--lease-duration" => args.lease_duration = Some(duration_flag(&flag, &value()?)?),
            "--renew-deadline" => args.renew_deadline = Some(duration_flag(&flag, &value()?)?),
            "--retry-period" => args.retry_period = Some(duration_flag(&flag, &value()?)?),
            "--run-for" => args.run_for = Some(duration_flag(&flag, &value()?)?),
            "--release-on-cancel" => {
                args.release_on_cancel = match inline.as_deref() {
                    None | Some("true") => true,
                    Some("false") => false,
                    Some(other) => {
                        return Err(format!("--release-on-cancel={other}: use true or false"));
                    }
                }
            }
            "--watch" => args.watch = true,
            "--no-watch" => args.watch = false,
            "--help" | "-h" => {
                println!("{HELP}");
                std::process::exit(0);
            }
            "--version" | "-V" => {
                println!("leader (kube-elector {})", env!("CARGO_PKG_VERSION"));
                std::process::exit(0);
            }
            other => return Err(format!("unknown flag {other:?}; {USAGE}")),
        }
    }
    if args.name.is_empty() {
        return Err(format!("--name is required; {USAGE}"));
    }
    Ok(args)
}

/// `--kubeconfig` (with `--context`) when given, else `Config::infer()`: `KUBECONFIG`, then the pod's
/// service account, then `~/.kube/config`.
fn load_config(args: &Args) -> Result<Config, String> {
    let result = match (&args.kubeconfig, &args.context) {
        (Some(path), context) => {
            let mut o = KubeconfigOptions::new().path(path);
            if let Some(c) = context {
                o = o.context(c);
            }
            o.load()
        }
        (None, Some(c)) => KubeconfigOptions::from_env().context(c).load(),
        (None, None) => Config::infer(),
    };
    result.map_err(|e| e.to_string().replace('\n', " "))
}

/// One event as a JSON line, its keys in the order the README shows: ts, id, event, leader.
fn emit(id: &str, event: &str, leader: &str) {
    let text = |s: &str| serde_json::Value::from(s).to_string();
    let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    println!(
        "{{\"ts\":{},\"id\":{},\"event\":{},\"leader\":{}}}",
        text(&ts),
        text(id),
        text(event),
        text(leader)
    );
}

/// Log lines to stderr, keeping stdout for the JSON events: `RUST_LOG` (default `info`) as env_logger
/// reads it, with each line's target shown.
fn init_logging() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .target(env_logger::Target::Stderr)
        .init();
}

fn fail(message: &str) -> ! {
    eprintln!("leader: {message}");
    std::process::exit(2);
}

fn main() {
    init_logging();
    let args = parse_args().unwrap_or_else(|e| fail(&e));
    let config = load_config(&args).unwrap_or_else(|e| fail(&e));
    let mut builder = LeaderElector::builder(config, &args.name)
        .release_on_stop(args.release_on_cancel)
        .lock_kind(args.lock)
        .watch(args.watch);
    if let Some(d) = args.lease_duration {
        builder = builder.lease_duration(d);
    }
    if let Some(d) = args.renew_deadline {
        builder = builder.renew_deadline(d);
    }
    if let Some(d) = args.retry_period {
        builder = builder.retry_period(d);
    }
    if let Some(ns) = &args.namespace {
        builder = builder.namespace(ns);
    }
    if let Some(id) = &args.id {
        builder = builder.identity(id);
    }
    let handle = builder
        .start()
        .unwrap_or_else(|e| fail(&in_flags(&e.to_string())));
    let events = handle.events();
    let id = handle.identity().to_string();

    // SIGTERM/SIGINT end the loop the moment they arrive (a thread waits for them).
    let (cancel_tx, cancelled) = crossbeam_channel::bounded::<()>(1);
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])
    .unwrap_or_else(|e| fail(&format!("cannot install the signal handler: {e}")));
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            let _ = cancel_tx.send(());
        }
    });
    let end = args.run_for.map(|d| Instant::now() + d);
    let print = |event: LeaderEvent, handle: &kube_elector::LeaderHandle| match event {
        LeaderEvent::StartedLeading { .. } => emit(&id, "started_leading", &id),
        LeaderEvent::StoppedLeading { .. } => {
            emit(&id, "stopped_leading", &handle.leader().unwrap_or_default())
        }
        LeaderEvent::NewLeader { identity } => {
            emit(&id, "new_leader", identity.as_deref().unwrap_or(""))
        }
        _ => {}
    };
    loop {
        let left = end.map_or(Duration::from_secs(3600), |e| {
            e.saturating_duration_since(Instant::now())
        });
        crossbeam_channel::select! {
            recv(events) -> event => match event {
                Ok(event) => print(event, &handle),
                Err(_) => break,
            },
            recv(cancelled) -> _ => break,
            default(left) => if end.is_some() { break },
        }
    }
    let stopped = handle.stop();
    for event in events.try_iter() {
        print(event, &handle);
    }
    if let Err(e) = stopped {
        eprintln!("leader: stopping: {e}");
    }
}
