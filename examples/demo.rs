//! The main job on the embedded API server: three candidates, one leader, a graceful handoff, a crash
//! and the failover after expiry, printed as a timeline.
//!
//!     cargo run --example demo

use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube_elector::testing::ApiServer;
use kube_elector::{LeaderElector, LeaderEvent, LeaderHandle, StopReason};

const LEASE: Duration = Duration::from_secs(3);
const RENEW_DEADLINE: Duration = Duration::from_secs(2);
const RETRY: Duration = Duration::from_millis(500);

struct Timeline {
    start: Instant,
    out: Mutex<()>,
}

impl Timeline {
    fn say(&self, who: &str, what: &str) {
        let _g = self.out.lock().unwrap();
        let t = self.start.elapsed().as_secs_f64();
        println!("[{t:6.3}s] {who:<8} {what}");
    }
}

fn describe(event: &LeaderEvent) -> String {
    match event {
        LeaderEvent::StartedLeading { transitions } => {
            format!("★ started leading (term {transitions})")
        }
        LeaderEvent::StoppedLeading { reason } => match reason {
            StopReason::Stopped => "✖ stopped leading (stopped by its owner)".into(),
            StopReason::Abandoned => "✖ gone (crashed: no release)".into(),
            StopReason::LeaseLost { holder } => {
                format!("✖ stopped leading (lease taken by {holder:?})")
            }
            StopReason::RenewDeadlineExceeded { last_error } => {
                format!("✖ stopped leading (renew deadline exceeded: {last_error})")
            }
            other => format!("✖ stopped leading ({other:?})"),
        },
        LeaderEvent::NewLeader { identity: Some(id) } => format!("sees leader {id}"),
        LeaderEvent::NewLeader { identity: None } => "sees the lease released".into(),
        other => format!("{other:?}"),
    }
}

fn candidate(server: &ApiServer, id: &str, timeline: &'static Timeline) -> LeaderHandle {
    let builder = LeaderElector::builder(server.config(), "demo")
        .identity(id)
        .lease_duration(LEASE)
        .renew_deadline(RENEW_DEADLINE)
        .retry_period(RETRY);
    // Subscribed before the start: the timeline misses nothing. The loop ends when the elector stops.
    let events = builder.events();
    let handle = builder.start().expect("valid settings");
    let name = id.to_string();
    std::thread::spawn(move || {
        for e in events {
            timeline.say(&name, &describe(&e));
        }
    });
    handle
}

/// Wait until exactly one of `handles` leads (checking that never two do); returns its index.
fn wait_for_leader(handles: &[&LeaderHandle], within: Duration) -> Option<usize> {
    let end = Instant::now() + within;
    while Instant::now() < end {
        let leaders: Vec<usize> = (0..handles.len())
            .filter(|&i| handles[i].is_leader())
            .collect();
        assert!(
            leaders.len() <= 1,
            "two leaders at once: a bug, please report it"
        );
        if let Some(&i) = leaders.first() {
            return Some(i);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}

fn main() {
    // The library's log lines under the output: `RUST_LOG=info` (or `debug`) to see them.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let timeline: &'static Timeline = Box::leak(Box::new(Timeline {
        start: Instant::now(),
        out: Mutex::new(()),
    }));
    let server = ApiServer::start().expect("start the embedded API server");
    timeline.say(
        "server",
        &format!("embedded API server listening on {}", server.url()),
    );
    timeline.say(
        "demo",
        &format!(
            "alpha, bravo, charlie campaign for lease default/demo (lease {LEASE:?}, renew deadline {RENEW_DEADLINE:?}, retry {RETRY:?})"
        ),
    );
    let mut handles: Vec<(String, LeaderHandle)> = ["alpha", "bravo", "charlie"]
        .iter()
        .map(|id| (id.to_string(), candidate(&server, id, timeline)))
        .collect();

    let leader_of = |handles: &Vec<(String, LeaderHandle)>, within| {
        let hs: Vec<&LeaderHandle> = handles.iter().map(|(_, h)| h).collect();
        wait_for_leader(&hs, within)
    };

    let Some(first) = leader_of(&handles, LEASE + 2 * RETRY) else {
        eprintln!("no leader was elected: this is a bug");
        std::process::exit(1);
    };
    std::thread::sleep(Duration::from_millis(1500));
    let term = server
        .lease("default", "demo")
        .and_then(|l| l["spec"]["leaseTransitions"].as_i64());
    timeline.say(
        "demo",
        &format!(
            "{} leads and renews every {RETRY:?} (leaseTransitions {})",
            handles[first].0,
            term.unwrap_or(-1)
        ),
    );

    // 1. Graceful handoff: the leader stops and releases the lease.
    let (name, old) = handles.remove(first);
    timeline.say(
        "demo",
        &format!("── graceful handoff: {name} stops and releases the lease"),
    );
    let t0 = Instant::now();
    old.stop().expect("release");
    let Some(second) = leader_of(&handles, LEASE + 3 * RETRY) else {
        eprintln!("no leader after the handoff: this is a bug");
        std::process::exit(1);
    };
    let handoff = t0.elapsed();
    timeline.say(
        "demo",
        &format!(
            "handoff to {} took {} ms (no lease expiry needed)",
            handles[second].0,
            handoff.as_millis()
        ),
    );
    std::thread::sleep(Duration::from_millis(1500));

    // 2. Crash: the new leader vanishes without releasing; the last one waits out the lease.
    let (name, crashed) = handles.remove(second);
    timeline.say(
        "demo",
        &format!("── crash: {name} vanishes without releasing the lease"),
    );
    let t1 = Instant::now();
    crashed.abandon();
    let Some(third) = leader_of(&handles, LEASE + RENEW_DEADLINE + 4 * RETRY) else {
        eprintln!("no leader after the crash: this is a bug");
        std::process::exit(1);
    };
    let failover = t1.elapsed();
    timeline.say(
        "demo",
        &format!(
            "failover to {} took {:.2} s (the lease is {:?}: followers wait for it to expire)",
            handles[third].0,
            failover.as_secs_f64(),
            LEASE
        ),
    );
    std::thread::sleep(Duration::from_millis(1000));
    let (name, last) = handles.remove(third);
    timeline.say(
        "demo",
        &format!("── shutting down: {name} stops and releases"),
    );
    last.stop().expect("release");
    drop(old);
    drop(crashed);
    std::thread::sleep(Duration::from_millis(50));
    let holder = server.lease_holder("default", "demo").unwrap_or_default();
    timeline.say(
        "server",
        &format!(
            "lease holder now {:?}; {} requests served ({} GET, {} POST, {} PUT)",
            holder,
            server.total_requests(),
            server.requests("GET"),
            server.requests("POST"),
            server.requests("PUT")
        ),
    );
    timeline.say("demo", "done: never more than one leader at a time");
}
