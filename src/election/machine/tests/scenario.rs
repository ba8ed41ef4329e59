//! A driver for scenario tests: an election on one lock, fed replies by hand on a clock the test moves.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::election::protocol::{Action, ElectionConfig, Outcome, Reply, Request};
use crate::election::{Election, ElectionError, Timing};
use crate::record::{LeaderElectionRecord, VersionedRecord};

pub(super) const ME: &str = "me";

/// Lease 10 s, renew deadline 5 s, retry 1 s.
pub(super) fn timing() -> Timing {
    Timing {
        lease_duration: Duration::from_secs(10),
        renew_deadline: Duration::from_secs(5),
        retry_period: Duration::from_secs(1),
    }
}

/// The driver's error in these tests: the core takes any type that can carry its own failures, so
/// these tests use none of the crate's transport errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Failure {
    /// A request failed; the core only reports it.
    Request(&'static str),
    /// One of the election's own failures.
    Election(ElectionError),
}

impl From<ElectionError> for Failure {
    fn from(e: ElectionError) -> Self {
        Failure::Election(e)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Request(what) => write!(f, "request failed: {what}"),
            Failure::Election(e) => write!(f, "{e}"),
        }
    }
}

/// An election of ours and the clocks it is fed.
pub(super) struct Scenario {
    pub(super) e: Election<Failure>,
    pub(super) now: Instant,
    pub(super) wall: DateTime<Utc>,
    /// The object's version, as the "server" numbers it.
    rv: u64,
}

impl Scenario {
    pub(super) fn new() -> Self {
        let mut config = ElectionConfig::new(ME, "leases default/test", timing());
        config.incarnation = "inc-me".into();
        Scenario {
            e: Election::with_error_type(config).unwrap(),
            now: Instant::now(),
            wall: Utc::now(),
            rv: 0,
        }
    }

    pub(super) fn advance(&mut self, d: Duration) {
        self.now += d;
        self.wall += chrono::Duration::from_std(d).unwrap();
    }

    pub(super) fn begin(&mut self) -> Action<Failure> {
        self.e.begin(self.now, self.wall)
    }

    pub(super) fn feed(&mut self, reply: Reply<Failure>) -> Action<Failure> {
        self.e.feed(reply, self.now, self.wall)
    }

    /// The object at a new version, holding `record`.
    pub(super) fn object(&mut self, record: LeaderElectionRecord) -> Reply<Failure> {
        self.rv += 1;
        Reply::Object(VersionedRecord {
            record,
            resource_version: self.rv.to_string(),
        })
    }

    /// The server confirms the write `request` asked for (a new version holding its record).
    pub(super) fn confirm(&mut self, request: &Request) -> Reply<Failure> {
        self.object(written(request).clone())
    }

    /// Lead: take a missing lock (a read, then a create the server confirms).
    pub(super) fn lead(&mut self) -> Outcome<Failure> {
        let get = send(self.begin());
        assert!(matches!(get, Request::Get { .. }), "{get:?}");
        let create = send(self.feed(Reply::NotFound));
        assert!(matches!(create, Request::Create { .. }), "{create:?}");
        let reply = self.confirm(&create);
        let outcome = stepped(self.feed(reply));
        assert!(outcome.is_leading(), "{outcome:?}");
        outcome
    }

    /// A step that finds the lock released after term `transitions`: the write it asks for.
    pub(super) fn find_released(&mut self, transitions: i32) -> Request {
        send(self.begin());
        let reply = self.object(released(transitions));
        send(self.feed(reply))
    }

    /// Stop and give the lock up: the release's first request.
    pub(super) fn release(&mut self) -> Request {
        self.e.resign(crate::events::StopReason::Stopped);
        send(self.e.begin_release(self.now, self.wall))
    }
}

/// Another holder's record, renewed now by its clock.
pub(super) fn held_by(holder: &str, transitions: i32) -> LeaderElectionRecord {
    LeaderElectionRecord {
        holder_identity: holder.into(),
        lease_duration_seconds: 10,
        acquire_time: Some(Utc::now()),
        renew_time: Some(Utc::now()),
        leader_transitions: transitions,
        incarnation: Some(format!("inc-{holder}")),
        ..Default::default()
    }
}

/// A record its holder released (holder `""`, duration 1 s), at term `transitions`.
pub(super) fn released(transitions: i32) -> LeaderElectionRecord {
    let mut record = held_by("", transitions);
    record.lease_duration_seconds = 1;
    record.renew_time = record.acquire_time;
    record
}

/// The request an action asks to send.
pub(super) fn send(action: Action<Failure>) -> Request {
    match action {
        Action::Send(request) => request,
        other => panic!("expected a request, got {other:?}"),
    }
}

/// The outcome an action ends a step with.
pub(super) fn stepped(action: Action<Failure>) -> Outcome<Failure> {
    match action {
        Action::Stepped(outcome) => outcome,
        other => panic!("expected the end of the step, got {other:?}"),
    }
}

/// The record a write carries.
pub(super) fn written(request: &Request) -> &LeaderElectionRecord {
    match request {
        Request::Create { record, .. } | Request::Update { record, .. } => record,
        Request::Get { .. } => panic!("expected a write, got {request:?}"),
    }
}
