//! The requests of an elector set, run by a few threads whatever the number of locks. A job carries its
//! lock object there and back, so a lock has at most one request in flight and needs no locking; a
//! request waiting for a free thread loses that time from its timeout, never more.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, unbounded};

use crate::client::RestClient;
use crate::election::{Reply, Request};
use crate::error::{Error, Result};
use crate::lock::{Lease, Lock};
use crate::record::VersionedRecord;

/// Work for a thread of the pool.
pub(crate) enum Job {
    /// One request of one lock's election, to be finished by `until`.
    Lock {
        shard: usize,
        lock: Box<dyn Lock>,
        request: Request,
        until: Instant,
    },
    /// List the Leases at `path` (a label-selected collection).
    List {
        client: Arc<RestClient>,
        path: String,
        timeout: Duration,
    },
}

/// A job done.
pub(crate) enum Done {
    Lock {
        shard: usize,
        lock: Box<dyn Lock>,
        reply: Reply,
    },
    Listed(Result<Vec<(String, VersionedRecord)>>),
}

/// The threads and the queue they take jobs from.
pub(crate) struct Pool {
    jobs: Option<Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

impl Pool {
    /// `threads` threads (at least one), each answering on `done`.
    pub(crate) fn start(threads: usize, done: Sender<Done>) -> Result<Pool> {
        let (jobs, queue) = unbounded::<Job>();
        let mut handles = Vec::new();
        for _ in 0..threads.max(1) {
            let (queue, done): (Receiver<Job>, Sender<Done>) = (queue.clone(), done.clone());
            let handle = std::thread::Builder::new()
                .name("kube-elector-set-io".into())
                .spawn(move || {
                    for job in queue.iter() {
                        if done.send(run(job)).is_err() {
                            break;
                        }
                    }
                })
                .map_err(|e| Error::spawn("elector set I/O", e))?;
            handles.push(handle);
        }
        Ok(Pool {
            jobs: Some(jobs),
            threads: handles,
        })
    }

    pub(crate) fn submit(&self, job: Job) {
        if let Some(jobs) = &self.jobs {
            let _ = jobs.send(job);
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // The queue closes; each thread ends after its job in flight.
        self.jobs = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn run(job: Job) -> Done {
    match job {
        Job::Lock {
            shard,
            mut lock,
            request,
            until,
        } => {
            let timeout = until.saturating_duration_since(Instant::now());
            let reply = if timeout < Duration::from_millis(1) {
                Reply::Failed(Error::Timeout {
                    context: format!("{}: waiting for a free request thread", lock.describe()),
                    after: request.timeout(),
                })
            } else {
                execute(&mut *lock, request, timeout)
            };
            Done::Lock { shard, lock, reply }
        }
        Job::List {
            client,
            path,
            timeout,
        } => Done::Listed(list(&client, &path, timeout)),
    }
}

fn execute(lock: &mut dyn Lock, request: Request, timeout: Duration) -> Reply {
    match request {
        Request::Get { .. } => Reply::from_read(lock.get(timeout)),
        Request::Create { record, .. } => Reply::from_write(lock.create(&record, timeout)),
        Request::Update {
            record,
            resource_version,
            ..
        } => Reply::from_write(lock.update(&record, &resource_version, timeout)),
    }
}

/// The Leases of a listing, by name; items that do not decode are left out.
fn list(
    client: &RestClient,
    path: &str,
    timeout: Duration,
) -> Result<Vec<(String, VersionedRecord)>> {
    let body = client.get(&path, timeout, &"list leases")?;
    let list: serde_json::Value = serde_json::from_slice(&body).map_err(|e| Error::Decode {
        context: "list leases".into(),
        message: format!("not JSON: {e}"),
    })?;
    let items = list["items"].as_array().cloned().unwrap_or_default();
    Ok(items
        .iter()
        .filter_map(|item| {
            let name = item["metadata"]["name"].as_str()?.to_string();
            crate::lock::object::decode::<Lease>(item)
                .ok()
                .map(|v| (name, v))
        })
        .collect())
}
