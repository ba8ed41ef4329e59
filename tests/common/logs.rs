//! A logger for tests that read what the library logs: every line of the `kube_elector` crate, kept in
//! memory. One test binary, one logger: call [`capture`] first in each test that reads lines.

use std::sync::{Mutex, Once};

static LINES: Mutex<Vec<(log::Level, String)>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.target().starts_with("kube_elector")
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            LINES
                .lock()
                .unwrap()
                .push((r.level(), r.args().to_string()));
        }
    }
    fn flush(&self) {}
}

/// Start keeping the library's log lines (once per test binary).
pub fn capture() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        log::set_boxed_logger(Box::new(Capture)).unwrap();
        log::set_max_level(log::LevelFilter::Debug);
    });
}

/// Every line kept so far that contains `needle` (tests run side by side: pick a needle of their own).
pub fn lines_with(needle: &str) -> Vec<(log::Level, String)> {
    LINES
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, l)| l.contains(needle))
        .cloned()
        .collect()
}
