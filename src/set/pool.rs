//! The requests of an elector set, run by a few threads whatever the number of locks. A job carries its
//! lock object there and back, so a lock has at most one request in flight and needs no locking; a
//! request waiting for a free thread loses that time from its timeout, never more.
//!
//! How many threads a set needs depends on the server, not on the locks alone: renews per second times
//! the time each takes (1,000 locks renewed every 2 s at 10 ms a write keep five threads busy, at 3 ms
//! two). So the pool follows its own load, judged over windows of a retry period (at most a second):
//! a thread more when its threads were busy all the time for a few windows in a row, one fewer when
//! they were mostly idle as long, within its bounds.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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

/// What the queue carries: a job, or (`None`) the end of the thread that takes it: the pool shrinks.
type Message = Option<Job>;

/// A job done.
pub(crate) enum Done {
    Lock {
        shard: usize,
        lock: Box<dyn Lock>,
        reply: Reply<Error>,
    },
    Listed(Result<Vec<(String, VersionedRecord)>>),
}

/// How many threads, and how often to look again.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sizing {
    /// The pool starts with this many and never has fewer (at least one).
    pub(crate) min: usize,
    /// Nor more than this.
    pub(crate) max: usize,
    /// The window its load is judged over.
    pub(crate) window: Duration,
}

/// Above this share of their time busy, the threads get another; below `SHRINK_BELOW`, one fewer; each
/// only when the load stays there for `SUSTAINED` windows in a row. A renew has its renew deadline to
/// finish, so a queue is no harm while the threads keep up: they grow only when they are about to fall
/// behind (busy all the time), and not for a burst (a thousand locks taken at once, when a set starts
/// or a member leaves), since every thread costs memory for good (its stack and connection, and the
/// allocator arena it leaves behind). One step cannot cross the gap (0.95 n / (n + 1) is above 0.45 for
/// every n), so the count settles.
const GROW_ABOVE: f64 = 0.95;
const SHRINK_BELOW: f64 = 0.45;
const SUSTAINED: u32 = 3;

/// The threads and the queue they take jobs from.
pub(crate) struct Pool {
    jobs: Option<Sender<Message>>,
    queue: Receiver<Message>,
    done: Sender<Done>,
    threads: Vec<JoinHandle<()>>,
    /// Threads running (retired ones excluded).
    running: usize,
    sizing: Sizing,
    /// Nanoseconds the threads spent on jobs, all together.
    busy: Arc<AtomicU64>,
    /// The window under way: its start and `busy` then.
    window: (Instant, u64),
    /// Windows in a row above `GROW_ABOVE` (positive) or below `SHRINK_BELOW` (negative).
    streak: i32,
}

impl Pool {
    /// A pool of `sizing.min` threads (at least one) to begin with, each answering on `done`.
    pub(crate) fn start(sizing: Sizing, done: Sender<Done>, now: Instant) -> Result<Pool> {
        let (jobs, queue) = unbounded::<Message>();
        let sizing = Sizing {
            min: sizing.min.max(1),
            max: sizing.max.max(sizing.min.max(1)),
            ..sizing
        };
        let mut pool = Pool {
            jobs: Some(jobs),
            queue,
            done,
            threads: Vec::new(),
            running: 0,
            sizing,
            busy: Arc::default(),
            window: (now, 0),
            streak: 0,
        };
        for _ in 0..sizing.min {
            pool.spawn()?;
        }
        Ok(pool)
    }

    fn spawn(&mut self) -> Result<()> {
        let (queue, done, busy) = (self.queue.clone(), self.done.clone(), self.busy.clone());
        let handle = std::thread::Builder::new()
            .name("kube-elector-set-io".into())
            .spawn(move || {
                for message in queue.iter() {
                    let Some(job) = message else {
                        break;
                    };
                    let start = Instant::now();
                    let answer = run(job);
                    let took = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
                    busy.fetch_add(took, Ordering::Relaxed);
                    if done.send(answer).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| Error::spawn("elector set I/O", e))?;
        self.threads.retain(|t| !t.is_finished());
        self.threads.push(handle);
        self.running += 1;
        Ok(())
    }

    pub(crate) fn submit(&self, job: Job) {
        self.send(Some(job));
    }

    fn send(&self, message: Message) {
        if let Some(jobs) = &self.jobs {
            let _ = jobs.send(message);
        }
    }

    /// Once a window has passed: one thread more when they were busy all of it, `SUSTAINED` windows in
    /// a row, one fewer when they were mostly idle as long.
    pub(crate) fn adjust(&mut self, now: Instant) {
        let (start, busy_then) = self.window;
        let elapsed = now.saturating_duration_since(start);
        if elapsed < self.sizing.window || elapsed.is_zero() {
            return;
        }
        let busy = self.busy.load(Ordering::Relaxed);
        self.window = (now, busy);
        let load = busy.saturating_sub(busy_then) as f64
            / (elapsed.as_nanos() as f64 * self.running.max(1) as f64);
        self.streak = match load {
            l if l > GROW_ABOVE => self.streak.max(0) + 1,
            l if l < SHRINK_BELOW => self.streak.min(0) - 1,
            _ => 0,
        };
        if self.streak >= SUSTAINED as i32 && self.running < self.sizing.max {
            self.streak = 0;
            match self.spawn() {
                Ok(()) => log::debug!(
                    "elector set: request threads busy {:.0}% of the time: now {}",
                    load * 100.0,
                    self.running
                ),
                Err(e) => log::warn!("elector set: {e}; going on with {} threads", self.running),
            }
        } else if self.streak <= -(SUSTAINED as i32) && self.running > self.sizing.min {
            self.streak = 0;
            self.send(None);
            self.running -= 1;
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

fn execute(lock: &mut dyn Lock, request: Request, timeout: Duration) -> Reply<Error> {
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
    let body = client.get(&path, timeout, &"list leases")?.body;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(min: usize, max: usize, now: Instant) -> Pool {
        let (done, _) = unbounded();
        let window = Duration::from_millis(100);
        Pool::start(Sizing { min, max, window }, done, now).unwrap()
    }

    /// Mark the threads busy for `share` of a window, and look again after it.
    fn window(p: &mut Pool, now: &mut Instant, share: f64) {
        let nanos = p.sizing.window.as_nanos() as f64 * p.running as f64 * share;
        p.busy.fetch_add(nanos as u64, Ordering::Relaxed);
        *now += p.sizing.window;
        p.adjust(*now);
    }

    #[test]
    fn the_pool_grows_while_busy_and_shrinks_while_idle_within_its_bounds() {
        let mut now = Instant::now();
        let mut p = pool(2, 4, now);
        assert_eq!(p.running, 2);
        // Nothing is judged before a window has passed.
        p.busy.fetch_add(10_000_000_000, Ordering::Relaxed);
        p.adjust(now + Duration::from_millis(50));
        assert_eq!((p.running, p.streak), (2, 0));
        let mut seen = Vec::new();
        for _ in 0..8 {
            window(&mut p, &mut now, 0.99);
            seen.push(p.running);
        }
        assert_eq!(
            seen,
            [2, 2, 3, 3, 3, 4, 4, 4],
            "busy for three windows: one more, up to the bound"
        );
        // A burst (two busy windows) or a half-busy spell: the count stays.
        let mut seen = Vec::new();
        for share in [0.99, 0.99, 0.1, 0.1, 0.6, 0.1, 0.6] {
            window(&mut p, &mut now, share);
            seen.push(p.running);
        }
        assert_eq!(seen, [4; 7]);
        let mut seen = Vec::new();
        for _ in 0..9 {
            window(&mut p, &mut now, 0.1);
            seen.push(p.running);
        }
        assert_eq!(seen, [4, 4, 3, 3, 3, 2, 2, 2, 2], "idle: down to the floor");
        drop(p); // every thread, retired or not, ends
    }

    #[test]
    fn a_fixed_pool_stays_as_it_is() {
        let mut now = Instant::now();
        let mut p = pool(3, 3, now);
        window(&mut p, &mut now, 1.0);
        window(&mut p, &mut now, 0.0);
        assert_eq!(p.running, 3);
    }
}
