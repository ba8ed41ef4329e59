//! Running exec credential plugins (`client.authentication.k8s.io/v1` and `v1beta1`) as kubectl runs
//! them for EKS, GKE, AKS and OIDC: run the command, read an `ExecCredential` from its stdout, cache it
//! until it expires, run it again once after a 401.

use std::fmt;
use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::{ClientIdentity, ExecConfig};
use crate::error::{ConfigErrorKind, Error, Result};
use crate::sync::{lock, wait};

/// The longest a plugin may run, whatever time the request has left. Plugins that talk to a cloud's IAM
/// take seconds.
const PLUGIN_TIMEOUT: Duration = Duration::from_secs(30);
/// The most a plugin may print on stdout: an `ExecCredential` is a few kilobytes, with a client
/// certificate and key perhaps ten.
const MAX_STDOUT: usize = 1024 * 1024;
/// The most of a plugin's stderr kept (a few hundred characters of it are quoted in errors).
const MAX_STDERR: usize = 64 * 1024;
/// How long a plugin that has exited may keep its stdout open (through a child it left running)
/// before its process group is killed.
const EXIT_GRACE: Duration = Duration::from_millis(200);
/// How often a run checks its deadline and whether the elector is stopping.
const POLL: Duration = Duration::from_millis(5);

/// What a plugin run gave us.
#[derive(Clone)]
pub(crate) enum ExecCredential {
    Token(Arc<str>),
    Certificate(Arc<ClientIdentity>),
}

struct Cached {
    credential: ExecCredential,
    expires: Option<DateTime<Utc>>,
}

#[derive(Default)]
struct State {
    cached: Option<Cached>,
    /// A request is running the plugin: others wait for its result, each within its own time.
    running: bool,
}

/// A plugin and its cached credential.
pub(crate) struct ExecProvider {
    config: ExecConfig,
    state: Mutex<State>,
    ran: Condvar,
}

impl fmt::Debug for ExecProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ExecProvider").field(&self.config).finish()
    }
}

#[derive(Deserialize)]
struct Output {
    #[serde(rename = "apiVersion", default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    status: Option<Status>,
}

#[derive(Deserialize)]
struct Status {
    #[serde(default)]
    token: Option<String>,
    #[serde(rename = "clientCertificateData", default)]
    client_certificate_data: Option<String>,
    #[serde(rename = "clientKeyData", default)]
    client_key_data: Option<String>,
    #[serde(rename = "expirationTimestamp", default)]
    expiration_timestamp: Option<String>,
}

/// When a plugin run must give up: the request's deadline, or an interrupt (the elector stopping).
pub(crate) struct Bound<'a> {
    pub(crate) deadline: Instant,
    pub(crate) interrupted: &'a dyn Fn() -> bool,
}

impl Bound<'_> {
    fn over(&self) -> bool {
        Instant::now() >= self.deadline || (self.interrupted)()
    }
}

impl ExecProvider {
    pub(crate) fn new(config: ExecConfig) -> Self {
        ExecProvider {
            config,
            state: Mutex::new(State::default()),
            ran: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// The cached credential while it is valid, else a fresh one from the plugin, within `bound`: a run
    /// that outlasts the request's deadline, or that the elector's stop interrupts, is killed (with its
    /// process group), and a request that waits for another's run waits no longer than its own time.
    pub(crate) fn credential(&self, bound: &Bound<'_>) -> Result<ExecCredential> {
        let mut state = self.lock();
        loop {
            if let Some(c) = state.cached.as_ref() {
                if c.expires.is_none_or(|e| Utc::now() < e) {
                    return Ok(c.credential.clone());
                }
            }
            if !state.running {
                break;
            }
            if bound.over() {
                return Err(self.gave_up(bound, "waiting for another request's run of it"));
            }
            state = wait(&self.ran, state, Some(POLL.max(Duration::from_millis(20))));
        }
        state.running = true;
        drop(state);
        let fresh = self.run(bound);
        let mut state = self.lock();
        state.running = false;
        let result = fresh.map(|c| {
            let credential = c.credential.clone();
            state.cached = Some(c);
            credential
        });
        drop(state);
        self.ran.notify_all();
        result
    }

    /// After a 401: forget the cached credential so the next request runs the plugin again.
    pub(crate) fn invalidate(&self) -> bool {
        self.lock().cached.take().is_some()
    }

    fn failure(&self, what: String) -> Error {
        let hint = self
            .config
            .install_hint
            .as_deref()
            .map(|h| format!("\n{}", h.trim()))
            .unwrap_or_default();
        Error::config(
            ConfigErrorKind::ExecPlugin,
            format!(
                "exec credential plugin {:?}: {what}{hint}",
                self.config.command
            ),
        )
    }

    /// Why a run (or a wait for another's) ended early: the elector is stopping, or the request's time
    /// ran out.
    fn gave_up(&self, bound: &Bound<'_>, doing: &str) -> Error {
        let context = format!("exec credential plugin {:?}", self.config.command);
        if (bound.interrupted)() {
            Error::Interrupted { context }
        } else {
            self.failure(format!("{doing}: the request's time ran out"))
        }
    }

    fn run(&self, bound: &Bound<'_>) -> Result<Cached> {
        let mut spec = json!({"interactive": false});
        if let Some(cluster) = &self.config.cluster {
            spec["cluster"] = serde_json::from_str(cluster).unwrap_or(Value::Null);
        }
        let info =
            json!({"apiVersion": self.config.api_version, "kind": "ExecCredential", "spec": spec});
        let mut command = Command::new(&self.config.command);
        command
            .args(&self.config.args)
            .envs(self.config.env.iter().map(|(k, v)| (k, v)))
            .env("KUBERNETES_EXEC_INFO", info.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Its own process group, so that a run cut short ends everything it started.
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = self.spawn(&mut command)?;
        let (status, stdout, stderr) = self.wait(child, bound)?;
        if !status.success() {
            let stderr = String::from_utf8_lossy(&stderr);
            let stderr: String = stderr.trim().chars().take(500).collect();
            return Err(self.failure(format!("exited with {status}: {stderr}")));
        }
        self.parse(&stdout)
    }

    fn spawn(&self, command: &mut Command) -> Result<Child> {
        let mut attempts = 0;
        loop {
            match command.spawn() {
                Ok(child) => return Ok(child),
                // "Text file busy": the plugin is being replaced, or another thread's fork still holds a
                // write handle to it. It clears in moments.
                Err(e) if e.raw_os_error() == Some(26) && attempts < 20 => {
                    attempts += 1;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(self.failure("executable not found".into()));
                }
                Err(e) => return Err(self.failure(format!("cannot start: {e}"))),
            }
        }
    }

    /// Wait for the plugin while reading both pipes on their own threads (so a chatty plugin cannot
    /// block on a full pipe), within `bound` and [`PLUGIN_TIMEOUT`]. A run that outlasts them, prints
    /// too much, or exits leaving a child that holds its stdout open is killed with its process group.
    fn wait(&self, mut child: Child, bound: &Bound<'_>) -> Result<(ExitStatus, Vec<u8>, Vec<u8>)> {
        let started = Instant::now();
        let limit = bound.deadline.min(started + PLUGIN_TIMEOUT);
        let out = Pipe::drain(child.stdout.take().map(|p| Box::new(p) as _), MAX_STDOUT);
        let err = Pipe::drain(child.stderr.take().map(|p| Box::new(p) as _), MAX_STDERR);
        let end = |child: &mut Child, why: Error| {
            kill_group(child);
            Err(why)
        };
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) => {}
                Err(e) => {
                    return end(
                        &mut child,
                        self.failure(format!("waiting for it failed: {e}")),
                    );
                }
            }
            if out.overflowed() {
                return end(
                    &mut child,
                    self.failure(format!(
                        "it printed more than {} KiB on stdout: killed it",
                        MAX_STDOUT / 1024
                    )),
                );
            }
            if (bound.interrupted)() {
                return end(&mut child, self.gave_up(bound, "running it"));
            }
            if Instant::now() >= limit {
                let took = started.elapsed();
                let why = if limit < started + PLUGIN_TIMEOUT {
                    format!(
                        "did not finish within the {took:?} the request had left: killed it and its process group"
                    )
                } else {
                    format!(
                        "did not finish within {PLUGIN_TIMEOUT:?}: killed it and its process group"
                    )
                };
                return end(&mut child, self.failure(why));
            }
            std::thread::sleep(POLL);
        };
        // It exited; a child it left behind may still hold its stdout open.
        let grace = (Instant::now() + EXIT_GRACE).min(limit.max(Instant::now()));
        if !out.finished_by(grace) || !err.finished_by(grace) {
            log::debug!(
                "exec credential plugin {:?} exited, but something it started keeps its output open: ending its process group",
                self.config.command
            );
            kill_group(&mut child);
            let after = Instant::now() + EXIT_GRACE;
            out.finished_by(after);
            err.finished_by(after);
        }
        if out.overflowed() {
            return Err(self.failure(format!(
                "it printed more than {} KiB on stdout",
                MAX_STDOUT / 1024
            )));
        }
        Ok((status, out.take(), err.take()))
    }

    fn parse(&self, stdout: &[u8]) -> Result<Cached> {
        let out: Output = serde_json::from_slice(stdout)
            .map_err(|e| self.failure(format!("its output is not an ExecCredential: {e}")))?;
        if out.kind != "ExecCredential" {
            return Err(self.failure(format!(
                "its output has kind {:?}, expected ExecCredential",
                out.kind
            )));
        }
        if out.api_version != self.config.api_version {
            return Err(self.failure(format!(
                "its output has apiVersion {:?}, but the kubeconfig asked for {:?}",
                out.api_version, self.config.api_version
            )));
        }
        let status = out
            .status
            .ok_or_else(|| self.failure("its output has no status".into()))?;
        let expires = match status
            .expiration_timestamp
            .as_deref()
            .filter(|t| !t.is_empty())
        {
            Some(t) => Some(
                DateTime::parse_from_rfc3339(t)
                    .map_err(|e| self.failure(format!("bad expirationTimestamp {t:?}: {e}")))?
                    .with_timezone(&Utc),
            ),
            None => None,
        };
        let credential = match (
            status.token.filter(|t| !t.is_empty()),
            status.client_certificate_data,
            status.client_key_data,
        ) {
            (Some(t), None, None) => {
                ExecCredential::Token(Arc::from(format!("Bearer {}", t.trim())))
            }
            (None, Some(cert), Some(key)) if !cert.is_empty() && !key.is_empty() => {
                ExecCredential::Certificate(Arc::new(ClientIdentity {
                    cert_pem: cert.into_bytes(),
                    key_pem: key.into_bytes(),
                }))
            }
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                return Err(
                    self.failure("its output has both a token and a client certificate".into())
                );
            }
            _ => {
                return Err(self.failure(
                    "its output has neither status.token nor status.clientCertificateData and clientKeyData".into(),
                ));
            }
        };
        Ok(Cached {
            credential,
            expires,
        })
    }
}

/// One of a plugin's pipes, read on its own thread into a bounded buffer.
struct Pipe {
    shared: Arc<(Mutex<PipeState>, Condvar)>,
}

#[derive(Default)]
struct PipeState {
    bytes: Vec<u8>,
    overflowed: bool,
    done: bool,
}

impl Pipe {
    fn drain(pipe: Option<Box<dyn Read + Send>>, max: usize) -> Pipe {
        let shared = Arc::new((Mutex::new(PipeState::default()), Condvar::new()));
        let theirs = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("kube-elector-exec".into())
            .spawn(move || {
                let (state, cv) = &*theirs;
                if let Some(mut p) = pipe {
                    let mut chunk = [0u8; 8192];
                    loop {
                        match p.read(&mut chunk) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                let mut st = lock(state);
                                if st.bytes.len() + n > max {
                                    st.overflowed = true;
                                    break;
                                }
                                st.bytes.extend_from_slice(&chunk[..n]);
                            }
                        }
                    }
                }
                lock(state).done = true;
                cv.notify_all();
            });
        if spawned.is_err() {
            // No thread to read it: the run ends as a plugin with no output would.
            let mut st = lock(&shared.0);
            st.done = true;
        }
        Pipe { shared }
    }

    fn overflowed(&self) -> bool {
        lock(&self.shared.0).overflowed
    }

    /// Whether the pipe reached its end by `until`.
    fn finished_by(&self, until: Instant) -> bool {
        let (state, cv) = &*self.shared;
        let mut st = lock(state);
        while !st.done && !st.overflowed {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            st = wait(cv, st, Some(left));
        }
        true
    }

    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut lock(&self.shared.0).bytes)
    }
}

/// Kill a plugin and everything in its process group, and reap it.
fn kill_group(child: &mut Child) {
    #[cfg(unix)]
    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}
