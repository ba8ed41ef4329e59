//! Watch-based followers: one helper thread per elector keeps a watch on the lock object and hands every
//! change to the renew thread the moment it arrives, so a follower observes renews at once, takes a
//! released lock within a round trip, wakes exactly at expiry, and makes no periodic GETs while it waits.
//! The renew thread still reads before it writes (the takeover path is unchanged), so a stalled or lying
//! watch can delay a takeover but never cause a wrong one. When the watch fails or is refused, the renew
//! thread polls as usual until it is back.

use std::io::BufRead;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded};
use serde_json::Value;

use crate::client::RestClient;
use crate::config::Config;
use crate::election::Watched;
use crate::error::{Error, Result};
use crate::lock::{ConfigMap, Endpoints, Lease, LockKind};
use crate::record::VersionedRecord;
use crate::sync::lock;

/// The longest watch event we read: lock objects are a few kilobytes; a server that sends more is
/// treated as broken (the stream is dropped and opened again) rather than buffered without bound.
const MAX_EVENT: usize = 1 << 20;

/// One line of a stream, at most `max` bytes. `Ok(None)` at the end of the stream; an error for a line
/// that is too long or not UTF-8.
fn read_line<'a, R: BufRead + ?Sized>(
    reader: &mut R,
    buf: &'a mut Vec<u8>,
    max: usize,
) -> std::io::Result<Option<&'a str>> {
    buf.clear();
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            return Ok((!buf.is_empty()).then(|| std::str::from_utf8(buf).unwrap_or("")));
        }
        let (used, done) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        if buf.len() + used > max + 1 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("a watch event longer than {max} bytes"),
            ));
        }
        buf.extend_from_slice(&available[..used]);
        reader.consume(used);
        if done {
            let line = std::str::from_utf8(buf)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            return Ok(Some(line.trim_end_matches(['\r', '\n'])));
        }
    }
}

/// How long one watch request may stay open before it is renewed (the server ends it first).
const WATCH_SECONDS: u64 = 300;

type Decoder = fn(&Value) -> std::result::Result<VersionedRecord, String>;

/// The changes the renew thread has not taken yet, coalesced: only the latest record matters, except
/// that a deletion must not hide the record it deleted (the holder it named keeps its lease).
#[derive(Debug, Default)]
pub(crate) struct Mailbox {
    changes: Vec<Watched>,
}

impl Mailbox {
    pub(crate) fn put(&mut self, change: Watched) {
        match change {
            Watched::Changed(_) => self.changes.clear(),
            Watched::Deleted => self.changes.retain(|c| matches!(c, Watched::Changed(_))),
        }
        self.changes.push(change);
    }

    /// The oldest change not taken yet.
    pub(crate) fn take(&mut self) -> Option<Watched> {
        (!self.changes.is_empty()).then(|| self.changes.remove(0))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// The changes not taken yet, one mailbox per object name, in the order the objects first changed.
#[derive(Debug, Default)]
struct Mailboxes {
    by_name: std::collections::HashMap<String, Mailbox>,
    order: std::collections::VecDeque<String>,
}

impl Mailboxes {
    fn put(&mut self, name: &str, change: Watched) {
        let mailbox = self.by_name.entry(name.to_string()).or_default();
        if mailbox.is_empty() {
            self.order.push_back(name.to_string());
        }
        mailbox.put(change);
    }

    fn take(&mut self) -> Option<(String, Watched)> {
        let name = self.order.front()?.clone();
        let mailbox = self.by_name.get_mut(&name)?;
        let change = mailbox.take()?;
        if mailbox.is_empty() {
            self.order.pop_front();
            self.by_name.remove(&name);
        }
        Some((name, change))
    }

    fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

struct Shared {
    latest: Mutex<Mailboxes>,
    healthy: AtomicBool,
    /// When the stream last brought anything (an event, a bookmark) or opened.
    activity: Mutex<Option<Instant>>,
    /// The renew thread cut the stream on purpose ([`Watcher::restart`]): open the next one at once.
    restart: AtomicBool,
    /// The renew thread's own requests get answers: a failing watch is then worth a warning of its
    /// own (while they fail too, the renew thread's warning says it all).
    requests_ok: AtomicBool,
    stop: AtomicBool,
}

/// The helper thread and what it shares with the renew thread.
pub(crate) struct Watcher {
    shared: Arc<Shared>,
    wake: Receiver<()>,
    /// A sender on `wake`, for when a take leaves more behind.
    rewake: Sender<()>,
    client: Arc<RestClient>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("healthy", &self.healthy())
            .finish_non_exhaustive()
    }
}

fn path_and_decoder(kind: LockKind, namespace: &str) -> Option<(String, Decoder)> {
    use crate::lock::object::{collection_path, decode};
    Some(match kind {
        LockKind::Leases => (
            collection_path::<Lease>(namespace),
            decode::<Lease> as Decoder,
        ),
        LockKind::ConfigMaps => (
            collection_path::<ConfigMap>(namespace),
            decode::<ConfigMap> as Decoder,
        ),
        LockKind::Endpoints => (
            collection_path::<Endpoints>(namespace),
            decode::<Endpoints> as Decoder,
        ),
        // A multi-lock is two objects; its followers poll.
        LockKind::ConfigMapsLeases | LockKind::EndpointsLeases => return None,
    })
}

impl Watcher {
    /// Start watching `namespace/name` of `kind`; `None` for kinds that cannot be watched as one object.
    pub(crate) fn start(
        config: &Config,
        kind: LockKind,
        namespace: &str,
        name: &str,
        identity: &str,
        retry: Duration,
    ) -> Result<Option<Self>> {
        let Some((collection, decoder)) = path_and_decoder(kind, namespace) else {
            return Ok(None);
        };
        let context = format!("watch {} {namespace}/{name} as {identity}", kind.as_str());
        let selector = format!("fieldSelector=metadata.name%3D{name}");
        Self::spawn(config, collection, decoder, &selector, context, retry).map(Some)
    }

    /// A watch of every object of `kind` in `namespace` that carries `label` = `value` (an elector set's
    /// locks): one connection for all of them. Changes come out of [`take_named`](Self::take_named).
    pub(crate) fn start_labelled(
        config: &Config,
        kind: LockKind,
        namespace: &str,
        (label, value): (&str, &str),
        context: String,
        retry: Duration,
    ) -> Result<Option<Self>> {
        let Some((collection, decoder)) = path_and_decoder(kind, namespace) else {
            return Ok(None);
        };
        let selector = format!("labelSelector={}%3D{}", label.replace('/', "%2F"), value);
        Self::spawn(config, collection, decoder, &selector, context, retry).map(Some)
    }

    fn spawn(
        config: &Config,
        collection: String,
        decoder: Decoder,
        selector: &str,
        context: String,
        retry: Duration,
    ) -> Result<Self> {
        let client = Arc::new(RestClient::new(config)?);
        let shared = Arc::new(Shared {
            latest: Mutex::new(Mailboxes::default()),
            healthy: AtomicBool::new(false),
            activity: Mutex::new(None),
            restart: AtomicBool::new(false),
            requests_ok: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let (wake_tx, wake) = bounded(1);
        let path = format!(
            "{collection}?watch=true&allowWatchBookmarks=true&timeoutSeconds={WATCH_SECONDS}&{selector}"
        );
        let (c, s) = (client.clone(), shared.clone());
        let thread = std::thread::Builder::new()
            .name("kube-elector-watch".into())
            .spawn({
                let wake_tx = wake_tx.clone();
                move || watch_loop(&c, &s, &wake_tx, &path, &context, decoder, retry)
            })
            .map_err(|e| Error::spawn("watch", e))?;
        Ok(Watcher {
            shared,
            wake,
            rewake: wake_tx,
            client,
            thread: Some(thread),
        })
    }

    /// Whether a watch stream is open right now.
    pub(crate) fn healthy(&self) -> bool {
        self.shared.healthy.load(Ordering::Acquire)
    }

    /// When the stream last brought anything, or opened.
    pub(crate) fn last_activity(&self) -> Option<Instant> {
        *lock(&self.shared.activity)
    }

    /// Whether the stream is open but has brought nothing since `since` (when a live holder's renew
    /// should have arrived).
    pub(crate) fn quiet_since(&self, since: Instant) -> bool {
        self.healthy() && self.last_activity().is_none_or(|t| t <= since)
    }

    /// Cut the open stream and open a new one at once. For a stream that stalled without an error (a
    /// half-open connection after a network drop reports nothing and brings nothing): the renew thread
    /// calls this when a poll finds a change the watch never delivered.
    pub(crate) fn restart(&self) {
        self.shared.restart.store(true, Ordering::Release);
        let interrupter = self.client.interrupter();
        interrupter.interrupt();
        interrupter.resume();
    }

    /// Whether the renew thread's own requests get answers (see `Shared::requests_ok`).
    pub(crate) fn set_requests_ok(&self, ok: bool) {
        self.shared.requests_ok.store(ok, Ordering::Release);
    }

    /// Wakes the renew thread when an update arrives.
    pub(crate) fn wake(&self) -> &Receiver<()> {
        &self.wake
    }

    /// The next change to take in, if any arrived since the last call.
    pub(crate) fn take(&self) -> Option<Watched> {
        self.take_named().map(|(_, change)| change)
    }

    /// The next change to take in and the name of the object it is about.
    pub(crate) fn take_named(&self) -> Option<(String, Watched)> {
        let mut mailboxes = lock(&self.shared.latest);
        let change = mailboxes.take();
        if !mailboxes.is_empty() {
            // More to come: wake the renew thread again.
            let _ = self.rewake.try_send(());
        }
        change
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        // Interrupt the blocked read of the open watch.
        self.client.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn touch(shared: &Shared) {
    *lock(&shared.activity) = Some(Instant::now());
}

fn publish(shared: &Shared, wake: &Sender<()>, name: &str, update: Watched) {
    lock(&shared.latest).put(name, update);
    let _ = wake.try_send(());
}

fn watch_loop(
    client: &RestClient,
    shared: &Shared,
    wake: &Sender<()>,
    path: &str,
    context: &str,
    decode: Decoder,
    retry: Duration,
) {
    let mut rv: Option<String> = None;
    let mut failures = 0u32;
    let mut warned = false;
    while !shared.stop.load(Ordering::Acquire) {
        let url = match &rv {
            Some(v) => format!("{path}&resourceVersion={v}"),
            None => path.to_string(),
        };
        match client.stream(&url, Duration::from_secs(WATCH_SECONDS + 30), &context) {
            Ok(reader) => {
                if failures > 0 && warned {
                    log::info!("{context}: watching again after {failures} failures");
                }
                warned = false;
                shared.healthy.store(true, Ordering::Release);
                touch(shared);
                // The renew thread paces differently with a live watch.
                let _ = wake.try_send(());
                failures = 0;
                if read_events(reader, shared, wake, decode, &mut rv, context).is_err()
                    && !shared.restart.swap(false, Ordering::AcqRel)
                {
                    failures += 1;
                }
            }
            Err(_) if shared.restart.swap(false, Ordering::AcqRel) => {
                log::debug!("{context}: restarting a stalled watch");
            }
            Err(e) => {
                failures += 1;
                // One warning per streak of failures, and only while other requests work: when the API
                // server answers nothing, the renew thread's warning says so. The rest at debug level,
                // and nothing for a stop (which interrupts the client a moment before it sets `stop`).
                if shared.stop.load(Ordering::Acquire)
                    || matches!(e, crate::error::Error::Interrupted { .. })
                {
                } else if !warned && shared.requests_ok.load(Ordering::Acquire) {
                    warned = true;
                    // The error names the watch already: no second prefix.
                    log::warn!("{e}; following by polling until the watch is back");
                } else {
                    log::debug!("still failing ({failures} times): {e}");
                }
            }
        }
        shared.healthy.store(false, Ordering::Release);
        let _ = wake.try_send(());
        if failures > 0 {
            // Back off, interruptibly.
            let pause = retry.saturating_mul(failures.min(15));
            let until = Instant::now() + pause;
            while Instant::now() < until && !shared.stop.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Read one watch stream to its end. `Err` when it failed rather than ended.
fn read_events(
    mut reader: Box<dyn BufRead + Send>,
    shared: &Shared,
    wake: &Sender<()>,
    decode: Decoder,
    rv: &mut Option<String>,
    context: &str,
) -> std::result::Result<(), ()> {
    let mut buf = Vec::new();
    while let Some(line) = read_line(&mut reader, &mut buf, MAX_EVENT).map_err(|_| ())? {
        touch(shared);
        if line.trim().is_empty() {
            continue;
        }
        let event: Value = serde_json::from_str(line).map_err(|_| ())?;
        let object_rv = event["object"]["metadata"]["resourceVersion"]
            .as_str()
            .map(str::to_string);
        let name = event["object"]["metadata"]["name"].as_str().unwrap_or("");
        match event["type"].as_str() {
            Some("ADDED" | "MODIFIED") => match decode(&event["object"]) {
                Ok(v) => {
                    *rv = Some(v.resource_version.clone());
                    publish(shared, wake, name, Watched::Changed(v));
                }
                // A malformed record: the renew thread will read it and report the error itself.
                Err(e) => {
                    log::debug!("{context}: malformed lock object: {e}");
                    *rv = object_rv;
                }
            },
            Some("DELETED") => {
                *rv = object_rv;
                publish(shared, wake, name, Watched::Deleted);
            }
            Some("BOOKMARK") => *rv = object_rv.or(rv.take()),
            Some("ERROR") => {
                if event["object"]["code"].as_u64() == Some(410) {
                    // Too old: list again (a watch without a version starts with the current object).
                    *rv = None;
                    return Ok(());
                }
                return Err(());
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_bounded() {
        let mut input: &[u8] = b"{\"a\":1}\r\n\nlast";
        let mut buf = Vec::new();
        assert_eq!(
            read_line(&mut input, &mut buf, 64).unwrap(),
            Some("{\"a\":1}")
        );
        assert_eq!(read_line(&mut input, &mut buf, 64).unwrap(), Some(""));
        assert_eq!(read_line(&mut input, &mut buf, 64).unwrap(), Some("last"));
        assert_eq!(read_line(&mut input, &mut buf, 64).unwrap(), None);
        let long = vec![b'x'; 100];
        let mut input: &[u8] = &long;
        assert!(
            read_line(&mut input, &mut buf, 64).is_err(),
            "a hostile server cannot grow memory"
        );
    }

    #[test]
    fn a_delete_keeps_the_record_it_deleted() {
        let v = |rv: &str| {
            Watched::Changed(VersionedRecord {
                record: Default::default(),
                resource_version: rv.into(),
            })
        };
        let mut m = Mailbox::default();
        m.put(v("1"));
        m.put(v("2"));
        m.put(Watched::Deleted);
        assert!(matches!(m.take(), Some(Watched::Changed(r)) if r.resource_version == "2"));
        assert!(matches!(m.take(), Some(Watched::Deleted)));
        assert!(m.take().is_none());
        m.put(Watched::Deleted);
        m.put(v("3"));
        assert!(matches!(m.take(), Some(Watched::Changed(r)) if r.resource_version == "3"));
        assert!(m.is_empty());
    }
}
