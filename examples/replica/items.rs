//! Leader-only items that leave a trace: each item appends its start and its end, with this process's
//! id and the wall-clock time in nanoseconds, to the file named by `ITEMS` (when set), so a test can
//! check that no two replicas' items ever overlap. Each line is one `write` on a file opened for
//! appending, so lines from several processes never interleave.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
