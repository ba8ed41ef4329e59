//! Kubernetes Events about leadership (opt-in): `<identity> became leader` and `<identity> stopped
//! leading`, reason `LeaderElection`, on the lock object, as client-go's recorder posts them. Posting runs
//! on its own small thread with a bounded queue: it never blocks or fails the election; failures are
//! logged.

use std::time::Duration;

use crossbeam_channel::{Sender, TrySendError, bounded};
use serde_json::json;

use crate::client::RestClient;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::lock::ObjectReference;

/// How long one Event POST may take.
const POST_TIMEOUT: Duration = Duration::from_secs(5);

struct Request {
    object: ObjectReference,
    message: String,
}

/// The sending side; dropping it ends the thread once the queue is drained.
pub(crate) struct EventRecorder {
    tx: Sender<Request>,
}

impl std::fmt::Debug for EventRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventRecorder").finish_non_exhaustive()
    }
}

impl EventRecorder {
    /// A recorder with its own client (its own connection: it never delays a renew).
    pub(crate) fn start(config: &Config, component: String) -> Result<Self> {
        let client = RestClient::new(config)?;
        let (tx, rx) = bounded::<Request>(16);
        std::thread::Builder::new()
            .name("kube-elector-events".into())
            .spawn(move || {
                for req in rx {
                    if let Err(e) = post(&client, &component, &req) {
                        log::warn!(
                            "{} {}/{} as {component}: posting the leader election Event failed (the election is unaffected): {e}",
                            req.object.kind.to_ascii_lowercase(),
                            req.object.namespace,
                            req.object.name
                        );
                    }
                }
            })
            .map_err(|e| Error::spawn("event recorder", e))?;
        Ok(EventRecorder { tx })
    }

    /// Queue an Event; drop it (with a log line) if the queue is full.
    pub(crate) fn record(&self, object: Option<ObjectReference>, message: String) {
        let Some(object) = object else { return };
        if let Err(TrySendError::Full(r)) = self.tx.try_send(Request { object, message }) {
            log::warn!(
                "{}/{}: event queue full, dropping the Event {:?}",
                r.object.namespace,
                r.object.name,
                r.message
            );
        }
    }
}

fn post(client: &RestClient, component: &str, r: &Request) -> Result<()> {
    let now = chrono::Utc::now();
    let nanos = now.timestamp_nanos_opt().unwrap_or_default();
    let ts = crate::record::format_seconds_time(&now);
    let mut involved = json!({
        "apiVersion": r.object.api_version,
        "kind": r.object.kind,
        "namespace": r.object.namespace,
        "name": r.object.name,
    });
    if let Some(uid) = &r.object.uid {
        involved["uid"] = json!(uid);
    }
    // client-go names Events `<object>.<hex nanoseconds>`.
    let event = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": format!("{}.{nanos:x}", r.object.name), "namespace": r.object.namespace},
        "involvedObject": involved,
        "reason": "LeaderElection",
        "message": r.message,
        "type": "Normal",
        "source": {"component": component},
        "firstTimestamp": ts,
        "lastTimestamp": ts,
        "count": 1,
    });
    let path = format!("/api/v1/namespaces/{}/events", r.object.namespace);
    let body = serde_json::to_vec(&event).expect("a JSON value always serializes");
    client.post(
        &path,
        &body,
        POST_TIMEOUT,
        &format!("create event for {} {}", r.object.kind, r.object.name),
    )?;
    Ok(())
}
