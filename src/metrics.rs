//! Leader-election metrics under the names client-go uses, so existing dashboards and alerts work
//! unchanged:
//!
//! - `leader_election_master_status{name}` (gauge): 1 while this process leads the lock `name`, else 0;
//! - `leader_election_slowpath_total{name}` (counter): renews that had to read the lock again after a
//!   failed write (the slow path). A steady rise means renews keep failing on the first try.
//!
//! [`Metrics`] collects them from any number of electors. Serve [`Metrics::render`] (the Prometheus
//! text format) from your own `/metrics` endpoint, or, with the `prometheus` feature, register the
//! [`Metrics`] in a `prometheus::Registry` next to your other metrics.
//!
//! ```
//! # use std::time::Duration;
//! # use kube_elector::{LeaderElector, metrics::Metrics, testing::ApiServer};
//! # let server = ApiServer::start().unwrap();
//! let handle = LeaderElector::builder(server.config(), "doc-metrics").identity("a")
//! #   .lease_duration(Duration::from_secs(2)).renew_deadline(Duration::from_secs(1))
//! #   .retry_period(Duration::from_millis(200))
//!     .start()?;
//! let metrics = Metrics::new();
//! metrics.add(handle.status());
//! handle.wait_until_leader(Some(Duration::from_secs(10)));
//! assert!(metrics.render().contains("leader_election_master_status{name=\"doc-metrics\"} 1\n"));
//! # Ok::<(), kube_elector::Error>(())
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use crate::runner::LeaderStatus;
use crate::sync::lock;

const MASTER: &str = "leader_election_master_status";
const MASTER_HELP: &str =
    "Whether this process leads the lock: 1 leading, 0 following. Group by name.";
const SLOWPATH: &str = "leader_election_slowpath_total";
const SLOWPATH_HELP: &str =
    "Renews that read the lock again after a failed write (the slow path). Group by name.";

/// The metrics of a set of electors (cheap to clone; clones share the set).
#[derive(Clone, Default)]
pub struct Metrics {
    electors: Arc<Mutex<Vec<LeaderStatus>>>,
    #[cfg(feature = "prometheus")]
    families: Arc<prom::Families>,
}

/// One sample per lock name: electors of the same lock are added up.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Sample {
    leading: bool,
    slow_path: u64,
}

impl Metrics {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Report this elector too (it keeps being reported, as following, after it stops).
    pub fn add(&self, status: LeaderStatus) {
        lock(&self.electors).push(status);
    }

    fn samples(&self) -> BTreeMap<String, Sample> {
        let electors = lock(&self.electors);
        let mut samples = BTreeMap::<String, Sample>::new();
        for status in electors.iter() {
            let s = samples.entry(status.lock_name().to_string()).or_default();
            let stats = status.stats();
            s.leading |= stats.is_leader;
            s.slow_path += stats.slow_path_renews;
        }
        samples
    }

    /// The metrics in the Prometheus text exposition format (version 0.0.4; serve it with
    /// `Content-Type: text/plain; version=0.0.4`).
    pub fn render(&self) -> String {
        let samples = self.samples();
        let mut out = String::new();
        let _ = writeln!(out, "# HELP {MASTER} {MASTER_HELP}");
        let _ = writeln!(out, "# TYPE {MASTER} gauge");
        for (name, s) in &samples {
            let _ = writeln!(
                out,
                "{MASTER}{{name=\"{}\"}} {}",
                escape(name),
                u8::from(s.leading)
            );
        }
        let _ = writeln!(out, "# HELP {SLOWPATH} {SLOWPATH_HELP}");
        let _ = writeln!(out, "# TYPE {SLOWPATH} counter");
        for (name, s) in &samples {
            let _ = writeln!(
                out,
                "{SLOWPATH}{{name=\"{}\"}} {}",
                escape(name),
                s.slow_path
            );
        }
        out
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("samples", &self.samples())
            .finish()
    }
}

/// A label value as the text format wants it: backslash, double quote and newline escaped.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(feature = "prometheus")]
mod prom {
    //! The `prometheus` crate's side: two metric vectors, brought up to date at every scrape.

    use std::sync::Mutex;

    use prometheus::core::{Collector, Desc};
    use prometheus::proto::MetricFamily;
    use prometheus::{IntCounterVec, IntGaugeVec, Opts};

    use super::{MASTER, MASTER_HELP, Metrics, SLOWPATH, SLOWPATH_HELP};
    use crate::sync::lock;

    pub(super) struct Families {
        master: IntGaugeVec,
        slow_path: IntCounterVec,
        /// Scrapes bring the counter up to date one at a time, so two at once cannot both add.
        scraping: Mutex<()>,
    }

    impl Default for Families {
        fn default() -> Self {
            // Fixed, valid names and labels: these constructors cannot fail.
            let master = IntGaugeVec::new(Opts::new(MASTER, MASTER_HELP), &["name"])
                .expect("a valid metric definition");
            let slow_path = IntCounterVec::new(Opts::new(SLOWPATH, SLOWPATH_HELP), &["name"])
                .expect("a valid metric definition");
            Families {
                master,
                slow_path,
                scraping: Mutex::new(()),
            }
        }
    }

    /// Register with `registry.register(Box::new(metrics.clone()))`.
    impl Collector for Metrics {
        fn desc(&self) -> Vec<&Desc> {
            let f = &*self.families;
            f.master
                .desc()
                .into_iter()
                .chain(f.slow_path.desc())
                .collect()
        }

        fn collect(&self) -> Vec<MetricFamily> {
            let f = &*self.families;
            let _one_at_a_time = lock(&f.scraping);
            for (name, s) in self.samples() {
                f.master
                    .with_label_values(&[name.as_str()])
                    .set(i64::from(s.leading));
                let counter = f.slow_path.with_label_values(&[name.as_str()]);
                let seen = counter.get();
                if s.slow_path > seen {
                    counter.inc_by(s.slow_path - seen);
                }
            }
            let mut out = f.master.collect();
            out.extend(f.slow_path.collect());
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape("x\ny"), "x\\ny");
    }
}
