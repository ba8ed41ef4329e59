//! Unit tests of the state machine: a property test of hostile answers, and scenarios fed by hand, a
//! file per phase of a step (beside the scenarios over HTTP in `tests/election.rs`).

mod judge;
mod release;
mod renew;
mod scenario;
mod write;

use super::*;
use crate::election::protocol::{Request, Status};
use proptest::prelude::*;
use scenario::Failure;

proptest! {
    /// Whatever the server answers (hostile durations, terms, holders, errors) and however
    /// time jumps, the core neither panics nor leads without a write the server confirmed, and never past
    /// that write's step start plus the renew deadline.
    #[test]
    fn hostile_answers_never_panic_or_make_a_leader(
        answers in proptest::collection::vec(
            (0u8..7, any::<i32>(), any::<i32>(), prop_oneof![Just("me".to_string()), Just(String::new()), ".{0,6}"],
             0u64..4_000),
            1..80),
        pair in any::<bool>(),
        coordinated in any::<bool>(),
    ) {
        let timing = Timing {
            lease_duration: Duration::from_secs(2),
            renew_deadline: Duration::from_millis(1500),
            retry_period: Duration::from_millis(200),
        };
        let mut e = Election::<Failure>::with_error_type(ElectionConfig {
            identity: "me".into(),
            lock: "test".into(),
            timing,
            pair,
            coordinated,
            incarnation: "i1".into(),
        }).unwrap();
        let base = Instant::now();
        let (mut now, wall) = (base, Utc::now());
        let mut rv = 0u64;
        let mut step_start = now;
        let mut confirmed: Option<Instant> = None;
        let mut wrote_ok = false;
        let mut action = e.begin(now, wall);
        // When the current action was produced.
        let mut acted = now;
        for (kind, duration, transitions, holder, advance) in answers {
            now += Duration::from_millis(advance);
            action = match action {
                Action::Send(request) => {
                    rv += 1;
                    let echo = match &request {
                        Request::Create { record, .. } | Request::Update { record, .. } => Some(record.clone()),
                        Request::Get { .. } => None,
                    };
                    let reply = match kind {
                        0 | 1 => Reply::Object(VersionedRecord {
                            record: match (&echo, kind) {
                                (Some(r), 0) => r.clone(),
                                _ => LeaderElectionRecord {
                                    holder_identity: holder,
                                    lease_duration_seconds: duration,
                                    leader_transitions: transitions,
                                    ..Default::default()
                                },
                            },
                            resource_version: rv.to_string(),
                        }),
                        2 => Reply::NotFound,
                        3 => Reply::Conflict(Failure::Request("409")),
                        4 => Reply::Failed(Failure::Request("429")),
                        5 => Reply::Failed(Failure::Request("timeout")),
                        _ => Reply::Failed(Failure::Request("500")),
                    };
                    if echo.is_some() && matches!(reply, Reply::Object(_)) {
                        wrote_ok = true;
                    }
                    e.feed(reply, now, wall)
                }
                Action::Stepped(outcome) => {
                    if wrote_ok {
                        confirmed = Some(step_start);
                    }
                    if let Status::Leading { deadline, .. } = outcome.status {
                        let start = confirmed.expect("leading without a confirmed write");
                        prop_assert!(deadline <= start + timing.renew_deadline);
                        prop_assert!(acted < deadline);
                    }
                    wrote_ok = false;
                    step_start = now;
                    e.begin(now, wall)
                }
                Action::Released(_) => {
                    step_start = now;
                    e.begin(now, wall)
                }
            };
            acted = now;
        }
    }
}
