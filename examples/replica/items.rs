//! Leader-only items that leave a trace: each item appends its start and its end, with this process's
//! id and the wall-clock time in nanoseconds, to the file named by `ITEMS` (when set), so a test can
//! check that no two replicas' items ever overlap. Each line is one `write` on a file opened for
//! appending, so lines from several processes never interleave.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kube_elector::Timing;

/// The timing from `LEASE_DURATION`, `RENEW_DEADLINE` and `RETRY_PERIOD` (milliseconds), client-go's
/// defaults for those not set: the replica processes of the tests run on short timings.
#[allow(dead_code)] // readme_service.rs shares this file and keeps the README's timing
pub fn timing_from_env() -> Timing {
    let millis = |name: &str, default: Duration| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(default, Duration::from_millis)
    };
    let defaults = Timing::default();
    Timing {
        lease_duration: millis("LEASE_DURATION", defaults.lease_duration),
        renew_deadline: millis("RENEW_DEADLINE", defaults.renew_deadline),
        retry_period: millis("RETRY_PERIOD", defaults.retry_period),
    }
}

/// How long one item takes.
pub const ITEM: Duration = Duration::from_millis(50);

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn trace(mark: &str, worker: usize, token: i32) {
    let Some(path) = std::env::var_os("ITEMS") else {
        return;
    };
    let line = format!(
        "{mark} {} {worker} {token} {}\n",
        std::process::id(),
        now_ns()
    );
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = f.write_all(line.as_bytes());
    }
}

/// One item of leader-only work by `worker`, fenced with the term's number.
pub fn one_item(worker: usize, fencing_token: i32) {
    trace("S", worker, fencing_token);
    std::thread::sleep(ITEM);
    trace("E", worker, fencing_token);
}
