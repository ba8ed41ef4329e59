//! This process's threads, memory and CPU time, from `/proc/self` (Linux; zeros elsewhere), for the
//! scale examples.

#![allow(dead_code)]

use std::time::Duration;

/// Threads of this process whose name starts with `prefix` (`""`: all of them).
pub fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|t| {
                    std::fs::read_to_string(t.path().join("comm"))
                        .is_ok_and(|c| c.starts_with(prefix))
                })
                .count()
        })
        .unwrap_or(0)
}

/// A field of `/proc/self/status` in its unit (kB for the memory fields).
pub fn proc_status(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Resident memory, MiB.
pub fn rss_mib() -> f64 {
    proc_status("VmRSS:") as f64 / 1024.0
}

/// CPU time of this process's live threads, from `/proc/self/task/*/schedstat`. When no thread starts
/// or ends during a measuring window, the difference across it is exact.
pub fn cpu_time() -> Duration {
    let nanos: u64 = std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
                .filter_map(|s| {
                    s.split_whitespace()
                        .next()
                        .and_then(|v| v.parse::<u64>().ok())
                })
                .sum()
        })
        .unwrap_or(0);
    Duration::from_nanos(nanos)
}
