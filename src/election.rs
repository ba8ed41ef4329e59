//! The election state machine (SPEC §1), free of threads: one [`Elector::try_acquire_or_renew`] step at a
//! time, driven by the runner or by the user. It talks only to a [`Lock`] and a [`Clock`].

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::lock::Lock;
use crate::record::{LeaderElectionRecord, VersionedRecord};

/// The jitter factor of client-go: candidates retry every `retry_period * (1 + rand[0, 1.2))`.
pub const JITTER_FACTOR: f64 = 1.2;

/// Where the election reads time. Expiry is judged only on the monotonic clock; the wall clock is only
/// written into records. Tests substitute a clock they drive.
pub trait Clock: Send {
    /// The monotonic now.
    fn now(&self) -> Instant;
    /// The wall-clock now, written as `acquireTime` / `renewTime`.
    fn wall(&self) -> DateTime<Utc>;
}

/// The process clocks: `Instant::now()` and `Utc::now()`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn wall(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The three durations of an election (client-go's defaults: 15 s, 10 s, 2 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long followers wait after the last observed change before taking the lease.
    pub lease_duration: Duration,
    /// How long a leader keeps leading without a successful renew.
    pub renew_deadline: Duration,
    /// How often a leader renews and a candidate retries (candidates add jitter).
    pub retry_period: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

impl Timing {
    /// Check the rules of SPEC §1. Errors say which rule failed and with what values.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidElectionConfig(m));
        for (name, d) in [
            ("lease_duration", self.lease_duration),
            ("renew_deadline", self.renew_deadline),
            ("retry_period", self.retry_period),
        ] {
            if d.is_zero() {
                return bad(format!("{name} must be greater than zero"));
            }
        }
        if self.lease_duration < Duration::from_secs(1) || self.lease_duration.subsec_nanos() != 0 {
            return bad(format!(
                "lease_duration must be a whole number of seconds, at least 1 s (leaseDurationSeconds is an integer), got {:?}",
                self.lease_duration
            ));
        }
        if self.lease_duration.as_secs() > i32::MAX as u64 {
            return bad(format!(
                "lease_duration {:?} is too long",
                self.lease_duration
            ));
        }
        if self.lease_duration <= self.renew_deadline {
            return bad(format!(
                "lease_duration ({:?}) must be greater than renew_deadline ({:?})",
                self.lease_duration, self.renew_deadline
            ));
        }
        if self.renew_deadline.as_secs_f64() <= JITTER_FACTOR * self.retry_period.as_secs_f64() {
            return bad(format!(
                "renew_deadline ({:?}) must be greater than {JITTER_FACTOR} × retry_period ({:?})",
                self.renew_deadline, self.retry_period
            ));
        }
        Ok(())
    }

    /// The longest any single request may take: client-go's `max(1 s, renew_deadline / 2)`.
    pub fn request_timeout_cap(&self) -> Duration {
        (self.renew_deadline / 2).max(Duration::from_secs(1))
    }
}

/// The last record we saw change, and when (on our monotonic clock).
#[derive(Debug, Clone)]
struct Observation {
    versioned: VersionedRecord,
    at: Instant,
}

/// The election for one candidate on one lock.
///
/// Call [`try_acquire_or_renew`](Elector::try_acquire_or_renew) every retry period; it returns whether we
/// hold the lock now. [`is_leader`](Elector::is_leader) is true only until the last successful attempt's
/// start plus `renew_deadline`.
pub struct Elector<L: Lock, C: Clock = SystemClock> {
    lock: L,
    clock: C,
    timing: Timing,
    observed: Option<Observation>,
    /// Start of the last successful acquire or renew while leading; `None` when not leading.
    renewed_at: Option<Instant>,
    slow_path_renews: u64,
    /// Coordinated leader election: the API server picks the holder; we never create or take the lease.
    coordinated: bool,
}

impl<L: Lock> Elector<L, SystemClock> {
    /// An elector on `lock` with the system clocks. Fails if `timing` or the lock's identity is invalid.
    pub fn new(lock: L, timing: Timing) -> Result<Self> {
        Self::with_clock(lock, timing, SystemClock)
    }
}

impl<L: Lock, C: Clock> Elector<L, C> {
    /// An elector reading time from `clock`.
    pub fn with_clock(lock: L, timing: Timing, clock: C) -> Result<Self> {
        timing.validate()?;
        if lock.identity().is_empty() {
            return Err(Error::InvalidElectionConfig(
                "identity must not be empty".into(),
            ));
        }
        Ok(Elector {
            lock,
            clock,
            timing,
            observed: None,
            renewed_at: None,
            slow_path_renews: 0,
            coordinated: false,
        })
    }

    /// Coordinated leader election (Kubernetes 1.31+, KEP-4355): the API server chooses the holder among the
    /// `LeaseCandidate`s and writes it into the Lease. We never create or take the Lease; we renew it only
    /// while it names us, and stop renewing (letting our term end by the deadline) once it names another
    /// `preferredHolder`.
    pub fn coordinated(mut self, coordinated: bool) -> Self {
        self.coordinated = coordinated;
        self
    }

    /// The election's durations.
    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// The lock this elector campaigns on.
    pub fn lock(&self) -> &L {
        &self.lock
    }

    /// True until `start of the last successful renew + renew_deadline`.
    pub fn is_leader(&self) -> bool {
        self.leader_deadline().is_some_and(|d| self.clock.now() < d)
    }

    /// The instant our leadership ends unless renewed, when we lead.
    pub fn leader_deadline(&self) -> Option<Instant> {
        self.renewed_at.map(|t| t + self.timing.renew_deadline)
    }

    /// The holder in the last record we saw, `None` when none was seen or the lock is free.
    pub fn observed_holder(&self) -> Option<&str> {
        self.observed
            .as_ref()
            .map(|o| o.versioned.record.holder_identity.as_str())
            .filter(|h| !h.is_empty())
    }

    /// The last record we saw, with its `resourceVersion`.
    pub fn observed_record(&self) -> Option<&VersionedRecord> {
        self.observed.as_ref().map(|o| &o.versioned)
    }

    /// When the lease we last saw held by another candidate expires by our clock (`observed + holder's
    /// duration`): the moment a follower should look again to take over without delay.
    pub fn holder_expiry(&self) -> Option<std::time::Instant> {
        let o = self.observed.as_ref()?;
        let r = &o.versioned.record;
        if r.holder_identity.is_empty() || r.holder_identity == self.identity() {
            return None;
        }
        Some(o.at + Duration::from_secs(self.holder_duration_secs(r)))
    }

    /// The holder's advertised duration; a non-positive one (invalid on the wire) counts as ours.
    fn holder_duration_secs(&self, r: &LeaderElectionRecord) -> u64 {
        if r.lease_duration_seconds > 0 {
            u64::from(r.lease_duration_seconds.unsigned_abs())
        } else {
            self.timing.lease_duration.as_secs()
        }
    }

    /// How many renews needed the slow path (a GET) because the fast-path PUT failed.
    pub fn slow_path_renews(&self) -> u64 {
        self.slow_path_renews
    }

    fn identity(&self) -> &str {
        self.lock.identity()
    }

    fn our_duration_seconds(&self) -> i32 {
        // validate() bounds it to 1..=i32::MAX.
        self.timing.lease_duration.as_secs() as i32
    }

    /// Forget leadership once its deadline has passed.
    fn expire(&mut self, now: Instant) {
        if self.leader_deadline().is_some_and(|d| now >= d) {
            self.renewed_at = None;
        }
    }

    /// The timeout for the next request: the cap, and never past the leadership deadline.
    /// `None` when leading and the deadline has (all but) passed.
    fn request_timeout(&mut self) -> Option<Duration> {
        let now = self.clock.now();
        self.expire(now);
        let cap = self.timing.request_timeout_cap();
        match self.leader_deadline() {
            None => Some(cap),
            Some(d) => {
                let left = d.saturating_duration_since(now);
                (left >= Duration::from_millis(1)).then(|| left.min(cap))
            }
        }
    }

    fn observe(&mut self, versioned: VersionedRecord, at: Instant) {
        let changed = self
            .observed
            .as_ref()
            .is_none_or(|o| o.versioned.resource_version != versioned.resource_version);
        if changed {
            self.observed = Some(Observation { versioned, at });
        }
    }

    fn deadline_error(&self) -> Error {
        Error::DeadlineExceeded {
            lock: self.lock.describe(),
        }
    }

    /// One step of SPEC §1: renew if we lead (one PUT on the fast path), else try to acquire.
    ///
    /// `Ok(true)`: we hold the lock. `Ok(false)`: someone else holds it. `Err`: the attempt failed; a
    /// leader stays leader until its deadline and should call again after `retry_period`.
    pub fn try_acquire_or_renew(&mut self) -> Result<bool> {
        let start = self.clock.now();
        self.expire(start);
        let mut fast_error = None;
        if self.renewed_at.is_some() {
            // In coordinated mode a lease the server wants for another candidate is never renewed,
            // not even from the cache: the slow path reports the end of our term.
            let cached = self
                .observed
                .as_ref()
                .filter(|o| o.versioned.record.holder_identity == self.identity())
                .filter(|o| !(self.coordinated && o.versioned.record.preferred_holder.is_some()))
                .map(|o| o.versioned.record.clone());
            if let Some(mut record) = cached {
                let Some(timeout) = self.request_timeout() else {
                    return Err(self.deadline_error());
                };
                record.renew_time = Some(self.clock.wall());
                record.lease_duration_seconds = self.our_duration_seconds();
                match self.lock.update(&record, timeout) {
                    Ok(v) => {
                        let now = self.clock.now();
                        self.observe(v, now);
                        self.renewed_at = Some(start);
                        return Ok(true);
                    }
                    Err(e) => {
                        log::debug!(
                            "{}: fast-path renew failed, re-reading: {e}",
                            self.lock.describe()
                        );
                        self.slow_path_renews += 1;
                        fast_error = Some(e);
                    }
                }
            }
        }
        match self.slow_path(start) {
            Err(Error::DeadlineExceeded { .. }) if fast_error.is_some() => Err(fast_error.unwrap()),
            other => other,
        }
    }

    fn slow_path(&mut self, start: Instant) -> Result<bool> {
        let Some(timeout) = self.request_timeout() else {
            return Err(self.deadline_error());
        };
        let Some(current) = self.lock.get(timeout)? else {
            if self.coordinated {
                return Err(Error::Coordinated(format!(
                    "{} does not exist: the API server's coordinated election creates it (is the CoordinatedLeaderElection feature on?)",
                    self.lock.describe()
                )));
            }
            return self.create(start);
        };
        let now = self.clock.now();
        self.observe(current, now);
        let observed = self.observed.as_ref().expect("observe() just stored it");
        let old = observed.versioned.record.clone();
        let ours = old.holder_identity == self.identity();
        if self.coordinated {
            return self.coordinated_renew(start, old, now);
        }
        if !old.holder_identity.is_empty() && !ours {
            // The holder's advertised duration counts, from when *we* saw the record change.
            let secs = self.holder_duration_secs(&old);
            if observed.at + Duration::from_secs(secs) > now {
                self.renewed_at = None;
                return Ok(false);
            }
        }
        let wall = self.clock.wall();
        let record = if ours {
            LeaderElectionRecord {
                renew_time: Some(wall),
                lease_duration_seconds: self.our_duration_seconds(),
                acquire_time: old.acquire_time.or(Some(wall)),
                ..old
            }
        } else {
            LeaderElectionRecord {
                holder_identity: self.identity().to_string(),
                lease_duration_seconds: self.our_duration_seconds(),
                acquire_time: Some(wall),
                renew_time: Some(wall),
                leader_transitions: old.leader_transitions.saturating_add(1),
                strategy: None,
                preferred_holder: None,
            }
        };
        let Some(timeout) = self.request_timeout() else {
            return Err(self.deadline_error());
        };
        match self.lock.update(&record, timeout) {
            Ok(v) => {
                let now = self.clock.now();
                self.observe(v, now);
                self.renewed_at = Some(start);
                Ok(true)
            }
            Err(e) => {
                if e.is_conflict() {
                    // Someone wrote between our GET and PUT: whatever we thought, we do not lead now.
                    self.renewed_at = None;
                }
                Err(e)
            }
        }
    }

    /// Coordinated mode: renew only a lease the API server gave us, and not once it prefers another.
    fn coordinated_renew(
        &mut self,
        start: Instant,
        old: LeaderElectionRecord,
        now: Instant,
    ) -> Result<bool> {
        if old.holder_identity != self.identity() {
            self.renewed_at = None;
            return Ok(false);
        }
        let observed_at = self.observed.as_ref().map_or(now, |o| o.at);
        let expired = observed_at + Duration::from_secs(self.holder_duration_secs(&old)) <= now;
        if self.renewed_at.is_none() && expired {
            // A stale assignment: the API server will hand the lease out again.
            return Ok(false);
        }
        if let Some(p) = old
            .preferred_holder
            .as_ref()
            .filter(|p| p.as_str() != self.identity())
        {
            // End of term: stop renewing; our leadership ends by the deadline, then the server moves on.
            return Err(Error::Coordinated(format!(
                "end of term: the API server prefers candidate {p:?}"
            )));
        }
        let Some(timeout) = self.request_timeout() else {
            return Err(self.deadline_error());
        };
        let record = LeaderElectionRecord {
            renew_time: Some(self.clock.wall()),
            lease_duration_seconds: self.our_duration_seconds(),
            preferred_holder: None,
            ..old
        };
        let v = self.lock.update(&record, timeout)?;
        let at = self.clock.now();
        self.observe(v, at);
        self.renewed_at = Some(start);
        Ok(true)
    }

    /// Record a change seen on a watch, as observed now (when it arrived). It only informs the expiry
    /// countdown and [`observed_holder`](Elector::observed_holder): leadership still changes only through
    /// `try_acquire_or_renew`, which reads before it writes.
    pub fn observe_watched(&mut self, versioned: VersionedRecord) {
        let now = self.clock.now();
        self.observe(versioned, now);
    }

    /// The candidate the API server prefers over the current holder, when it has said so.
    pub fn preferred_holder(&self) -> Option<&str> {
        self.observed
            .as_ref()
            .and_then(|o| o.versioned.record.preferred_holder.as_deref())
    }

    /// The lock does not exist: create it with us as holder.
    fn create(&mut self, start: Instant) -> Result<bool> {
        let Some(timeout) = self.request_timeout() else {
            return Err(self.deadline_error());
        };
        let wall = self.clock.wall();
        // A lease deleted under us is re-created with a higher term, so fencing tokens keep increasing
        // for everyone who saw the old one.
        let transitions = self.observed.as_ref().map_or(0, |o| {
            o.versioned.record.leader_transitions.saturating_add(1)
        });
        let record = LeaderElectionRecord {
            holder_identity: self.identity().to_string(),
            lease_duration_seconds: self.our_duration_seconds(),
            acquire_time: Some(wall),
            renew_time: Some(wall),
            leader_transitions: transitions,
            strategy: None,
            preferred_holder: None,
        };
        let v = self.lock.create(&record, timeout)?;
        let now = self.clock.now();
        self.observe(v, now);
        self.renewed_at = Some(start);
        Ok(true)
    }

    /// Give the lock up (SPEC §1 Release): stop claiming leadership at once, then, only if the record we
    /// fetch still names us, write holder `""` and duration 1 s. A racing 409 is retried within the renew
    /// deadline. `Ok(true)` when we released it, `Ok(false)` when there was nothing of ours to release.
    pub fn release(&mut self) -> Result<bool> {
        self.renewed_at = None;
        let believed_ours = self
            .observed
            .as_ref()
            .is_some_and(|o| o.versioned.record.holder_identity == self.identity());
        if !believed_ours {
            return Ok(false);
        }
        let give_up = self.clock.now() + self.timing.renew_deadline;
        let cap = self.timing.request_timeout_cap();
        loop {
            let now = self.clock.now();
            if now >= give_up {
                return Err(self.deadline_error());
            }
            let timeout = (give_up - now).min(cap);
            let Some(current) = self.lock.get(timeout)? else {
                return Ok(false);
            };
            let at = self.clock.now();
            self.observe(current.clone(), at);
            if current.record.holder_identity != self.identity() {
                return Ok(false);
            }
            let wall = self.clock.wall();
            let record = LeaderElectionRecord {
                holder_identity: String::new(),
                lease_duration_seconds: 1,
                acquire_time: Some(wall),
                renew_time: Some(wall),
                leader_transitions: current.record.leader_transitions,
                strategy: None,
                preferred_holder: None,
            };
            let timeout = give_up.saturating_duration_since(self.clock.now()).min(cap);
            if timeout.is_zero() {
                return Err(self.deadline_error());
            }
            match self.lock.update(&record, timeout) {
                Ok(v) => {
                    let at = self.clock.now();
                    self.observe(v, at);
                    return Ok(true);
                }
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

impl<L: Lock, C: Clock> std::fmt::Debug for Elector<L, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Elector")
            .field("lock", &self.lock.describe())
            .field("identity", &self.lock.identity())
            .field("timing", &self.timing)
            .field("leading", &self.renewed_at.is_some())
            .field("observed_holder", &self.observed_holder())
            .finish()
    }
}
