//! The control plane's processes: each runs under a small `sh` guard in a process group of its own, so
//! it dies with the test however the test ends, and leftovers of a killed run are reaped the next time.
//!
//! The guard holds the server's stdin pipe: when our end closes (the handle is dropped, or the test
//! process dies, even by SIGKILL) it kills the server. Dropping the handle also kills the whole group.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

/// Runs the server in the background and kills it when stdin closes; exits with the server's status.
/// (Background jobs get /dev/null as stdin, so the pipe is kept on fd 3 for the watcher.)
const GUARD: &str = r#"exec 3<&0
"$0" "$@" </dev/null 3<&- & server=$!
echo "$server" > "$KUBE_ELECTOR_PIDFILE"
( read -r _ <&3 ; kill -9 "$server" 2>/dev/null ) &
exec 3<&-
wait "$server""#;

/// A server process and its guard.
pub(crate) struct Guarded {
    pub(crate) name: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    pub(crate) log: PathBuf,
}

impl Guarded {
    /// Start `binary args…` under a guard, its output in `log`, its pid recorded in `pidfile`.
    pub(crate) fn spawn(
        name: &'static str,
        binary: &Path,
        args: &[String],
        log: &Path,
        pidfile: &Path,
    ) -> io::Result<Guarded> {
        use std::os::unix::process::CommandExt;
        let out = File::create(log)?;
        let err = out.try_clone()?;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(GUARD)
            .arg(binary)
            .args(args)
            .env("KUBE_ELECTOR_PIDFILE", pidfile)
            .stdin(Stdio::piped())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .process_group(0)
            .spawn()?;
        let stdin = child.stdin.take();
        Ok(Guarded {
            name,
            child,
            stdin,
            log: log.to_path_buf(),
        })
    }

    /// Whether the server (its guard) has exited, and how.
    pub(crate) fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The last `lines` lines of the server's output.
    pub(crate) fn tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        // The guard kills the server when its stdin closes; the group kill is belt and braces.
        drop(self.stdin.take());
        let group = format!("-{}", self.child.id());
        let _ = Command::new("sh")
            .args(["-c", "kill -9 -- \"$0\" 2>/dev/null", &group])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last `lines` lines of a file (at most 64 KiB read).
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::from("(no log)");
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut text = String::new();
    let _ = f.read_to_string(&mut text);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Where runs keep their files: one folder per run, named after the test process that owns it.
pub(crate) fn runs_dir() -> PathBuf {
    std::env::temp_dir().join("kube-elector-control-plane")
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Kill what runs of dead test processes left behind, and remove their folders. A pid is only killed if
/// its command line still names that run's folder (pids are reused).
pub(crate) fn reap_orphans() {
    let Ok(entries) = fs::read_dir(runs_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let owner = dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.split('-').next())
            .and_then(|p| p.parse::<u32>().ok());
        let Some(owner) = owner else { continue };
        if alive(owner) {
            continue;
        }
        for pidfile in ["etcd.pid", "kube-apiserver.pid"] {
            let pid = fs::read_to_string(dir.join(pidfile))
                .ok()
                .and_then(|p| p.trim().parse::<u32>().ok());
            let Some(pid) = pid else { continue };
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let marker = entry.file_name().to_string_lossy().into_owned();
            if String::from_utf8_lossy(&cmdline).contains(marker.as_str()) {
                log::warn!(
                    "control plane: killing {pidfile} {pid} left by dead test process {owner}"
                );
                let _ = Command::new("sh")
                    .args(["-c", "kill -9 \"$0\" 2>/dev/null", &pid.to_string()])
                    .status();
            }
        }
        if let Ok(data) = fs::read_to_string(dir.join("datadir")) {
            let _ = fs::remove_dir_all(data.trim());
        }
        let _ = fs::remove_dir_all(&dir);
    }
}
