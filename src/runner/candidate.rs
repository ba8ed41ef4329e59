//! Coordinated leader election's other half: our `LeaseCandidate` (`coordination.k8s.io/v1beta1`), which
//! tells the API server we run, which versions we are and which strategy we accept. The API server pings
//! candidates by setting `pingTime`; we answer by updating `renewTime`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::client::RestClient;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::lock::valid_object_name;
use crate::record::{format_micro_time, parse_time_lenient};

/// What a candidate tells the API server about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CandidateInfo {
    /// The binary version, e.g. `1.34.1`.
    pub binary_version: String,
    /// The emulated (compatibility) version, e.g. `1.33.0`: the `OldestEmulationVersion` strategy picks
    /// the lowest, so that a rolling upgrade keeps the old behaviour until every candidate is new.
    pub emulation_version: String,
    /// The election strategy (default `OldestEmulationVersion`, the one Kubernetes ships).
    pub strategy: String,
}

impl CandidateInfo {
    /// A candidate of these versions using the `OldestEmulationVersion` strategy.
    pub fn new(binary_version: impl Into<String>, emulation_version: impl Into<String>) -> Self {
        CandidateInfo {
            binary_version: binary_version.into(),
            emulation_version: emulation_version.into(),
            strategy: "OldestEmulationVersion".into(),
        }
    }
}

/// Keeps our LeaseCandidate on a thread of its own, so its requests never delay a renew. Dropping it
/// stops the thread.
pub(crate) struct CandidateKeeper {
    stop: Option<crossbeam_channel::Sender<()>>,
    interrupter: crate::client::Interrupter,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for CandidateKeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CandidateKeeper").finish_non_exhaustive()
    }
}

impl CandidateKeeper {
    /// Start the upkeep: the candidate is created at once and checked for pings every retry period.
    pub(crate) fn start(
        config: &Config,
        namespace: &str,
        lease_name: &str,
        identity: &str,
        info: CandidateInfo,
        request_timeout: Duration,
        retry_period: Duration,
    ) -> Result<Self> {
        let mut candidate = LeaseCandidate::new(config, namespace, lease_name, identity, info)?;
        let interrupter = candidate.client.interrupter();
        let (stop, stopped) = crossbeam_channel::bounded::<()>(1);
        let describe = format!("leasecandidate {namespace}/{identity}");
        let thread = std::thread::Builder::new()
            .name("kube-elector-candidate".into())
            .spawn(move || {
                let mut failing = false;
                loop {
                    match candidate.maintain(request_timeout) {
                        Ok(()) if failing => {
                            failing = false;
                            log::info!("{describe}: kept again");
                        }
                        Ok(()) => {}
                        Err(e) if !failing => {
                            failing = true;
                            log::warn!("{describe}: keeping our LeaseCandidate failed (retrying every retry period): {e}");
                        }
                        Err(e) => log::debug!("{describe}: {e}"),
                    }
                    if !matches!(
                        stopped.recv_timeout(retry_period),
                        Err(crossbeam_channel::RecvTimeoutError::Timeout)
                    ) {
                        return;
                    }
                }
            })
            .map_err(|e| Error::spawn("LeaseCandidate", e))?;
        Ok(CandidateKeeper {
            stop: Some(stop),
            interrupter,
            thread: Some(thread),
        })
    }
}

impl Drop for CandidateKeeper {
    fn drop(&mut self) {
        drop(self.stop.take());
        self.interrupter.interrupt();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Our LeaseCandidate and its upkeep.
pub(crate) struct LeaseCandidate {
    client: RestClient,
    namespace: String,
    name: String,
    lease_name: String,
    info: CandidateInfo,
    item_path: String,
    collection_path: String,
}

impl LeaseCandidate {
    /// The candidate is named after our identity, which must therefore be a valid object name.
    pub(crate) fn new(
        config: &Config,
        namespace: &str,
        lease_name: &str,
        identity: &str,
        info: CandidateInfo,
    ) -> Result<Self> {
        if !valid_object_name(identity) {
            return Err(Error::InvalidElectionConfig(format!(
                "coordinated election names the LeaseCandidate after the identity, so {identity:?} must be a DNS subdomain (lowercase letters, digits, '-' and '.')"
            )));
        }
        let collection_path =
            format!("/apis/coordination.k8s.io/v1beta1/namespaces/{namespace}/leasecandidates");
        Ok(LeaseCandidate {
            client: RestClient::new(config)?,
            item_path: format!("{collection_path}/{identity}"),
            collection_path,
            namespace: namespace.to_string(),
            name: identity.to_string(),
            lease_name: lease_name.to_string(),
            info,
        })
    }

    fn context(&self, verb: &str) -> String {
        format!("{verb} leasecandidate {}/{}", self.namespace, self.name)
    }

    /// Make sure the candidate exists and answer a ping. One GET when nothing is to be done.
    pub(crate) fn maintain(&mut self, timeout: Duration) -> Result<()> {
        let now = format_micro_time(&chrono::Utc::now());
        let mut object: Value =
            match self
                .client
                .get(&self.item_path, timeout, &self.context("get"))
            {
                Ok(answer) => serde_json::from_slice(&answer.body).map_err(|e| Error::Decode {
                    context: self.context("get"),
                    message: e.to_string(),
                })?,
                Err(e) if e.is_not_found() => {
                    let object = json!({
                        "apiVersion": "coordination.k8s.io/v1beta1",
                        "kind": "LeaseCandidate",
                        "metadata": {"name": self.name, "namespace": self.namespace},
                        "spec": {
                            "leaseName": self.lease_name,
                            "binaryVersion": self.info.binary_version,
                            "emulationVersion": self.info.emulation_version,
                            "strategy": self.info.strategy,
                            "renewTime": now,
                        },
                    });
                    let body = serde_json::to_vec(&object).expect("a JSON value always serializes");
                    self.client.post(
                        &self.collection_path,
                        &body,
                        timeout,
                        &self.context("create"),
                    )?;
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
        let time = |field: &str| object["spec"][field].as_str().and_then(parse_time_lenient);
        let pinged = match (time("pingTime"), time("renewTime")) {
            (Some(ping), Some(renew)) => ping > renew,
            (_, None) => true,
            (None, Some(_)) => false,
        };
        if pinged {
            object["spec"]["renewTime"] = json!(now);
            let body = serde_json::to_vec(&object).expect("a JSON value always serializes");
            self.client
                .put(&self.item_path, &body, timeout, &self.context("update"))?;
        }
        Ok(())
    }
}
