//! What the elector never takes at its word: a watch event, a redirect, a record someone else cleared,
//! and writes that leave the record alone. One regression test for each way an attack through the
//! public API on the embedded API server broke a promise.

mod common;

use std::time::{Duration, Instant};

use common::{Trap, no_overlap, timing, wait_until};
use kube_elector::election::Elector;
use kube_elector::lock::LeaseLock;
use kube_elector::testing::{ApiServer, Fault};
use kube_elector::{LeaderElector, LeaderHandle, LockKind};
use serde_json::{Value, json};

fn start(server: &ApiServer, lock: &str, id: &str, kind: LockKind, watch: bool) -> LeaderHandle {
    LeaderElector::builder(server.config(), lock)
        .identity(id)
        .lock_kind(kind)
        .timing(timing(2, 1500, 200))
        .watch(watch)
        .start()
        .unwrap()
}

fn rv_of(object: &Value) -> String {
    object["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Wait until every follower has seen `leader` as the holder.
fn all_see(followers: &[&LeaderHandle], leader: &str) {
    assert!(
        wait_until(Duration::from_secs(5), || followers
            .iter()
            .all(|f| f.leader().as_deref() == Some(leader))),
        "the followers saw {leader} lead"
    );
}

// ---- a watch that lies ----

#[test]
fn a_watch_event_showing_the_lock_free_is_never_taken_on_its_word() {
    let server = ApiServer::start().unwrap();
    let elector = |id: &str| {
        LeaderElector::builder(server.config(), "lying-watch")
            .identity(id)
            // Renews a second apart leave time to forge a lie that carries the current version.
            .timing(timing(4, 3000, 1000))
            .watch(true)
            .start()
            .unwrap()
    };
    let a = elector("a");
    assert!(wait_until(Duration::from_secs(5), || a.is_leader()));
    let b = elector("b");
    all_see(&[&b], "a");
    for _ in 0..3 {
        // Just after a renew: the stored version stays current for about a second.
        let before = rv_of(&server.lease("default", "lying-watch").unwrap());
        assert!(wait_until(Duration::from_secs(3), || rv_of(
            &server.lease("default", "lying-watch").unwrap()
        ) != before));
        let mut lie = server.lease("default", "lying-watch").unwrap();
        let now = json!(
            chrono::Utc::now()
                .format("%Y-%m-%dT%H:%M:%S%.6fZ")
                .to_string()
        );
        lie["spec"]["holderIdentity"] = json!("");
        lie["spec"]["leaseDurationSeconds"] = json!(1);
        lie["spec"]["acquireTime"] = now.clone();
        lie["spec"]["renewTime"] = now;
        assert!(server.forge_watch_event("leases", "default", "lying-watch", lie));
        no_overlap(&[&a, &b], Duration::from_millis(600));
        assert_eq!(
            server.lease_holder("default", "lying-watch").as_deref(),
            Some("a"),
            "the live leader's lease was not taken"
        );
        assert!(a.is_leader());
    }
}

// ---- redirects ----

/// A Lease naming `mallory`, as a server the redirect points to would serve it.
fn mallorys_lease(name: &str) -> String {
    let now = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": name, "namespace": "default", "resourceVersion": "999999", "uid": "u"},
        "spec": {"holderIdentity": "mallory", "leaseDurationSeconds": 15, "acquireTime": now,
                 "renewTime": now, "leaseTransitions": 0}
    })
    .to_string()
}

#[test]
fn a_redirect_is_never_followed_nor_taken_for_a_write_that_succeeded() {
    let server = common::tls_server(&["b"]);
    let path = "/apis/coordination.k8s.io/v1/namespaces/default/leases/redirected";
    let trap = Trap::start(mallorys_lease("redirected"));
    // A create (POST), then the takeover of a released lease (PUT), then a read (GET): each answered
    // with a redirect, to another host over plain http and to another path on the same server.
    for (verb, code, location) in [
        ("POST", 302, trap.url(path)),
        ("PUT", 307, trap.url(path)),
        ("PUT", 302, format!("{path}-other")),
        ("GET", 301, trap.url(path)),
    ] {
        if verb != "POST" && server.lease("default", "redirected").is_none() {
            // Released: the next step takes it with one PUT (after a GET, which we let through).
            let t = chrono::Utc::now()
                .format("%Y-%m-%dT%H:%M:%S%.6fZ")
                .to_string();
            server.put_lease_raw(
                "default",
                "redirected",
                json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                       "metadata": {"name": "redirected", "namespace": "default", "uid": "u1"},
                       "spec": {"holderIdentity": "", "leaseDurationSeconds": 1, "acquireTime": t,
                                "renewTime": t, "leaseTransitions": 3}}),
            );
        }
        let fault = server.inject(Fault::redirect(code, location.clone()).for_verb(verb));
        let lock = LeaseLock::new(&server.config_for("b"), "default", "redirected", "b").unwrap();
        let mut e = Elector::new(lock, timing(2, 1500, 200)).unwrap();
        let o = e.step();
        assert!(
            !o.is_leading() && !e.is_leader(),
            "{verb} answered {code}: not leading, {o:?}"
        );
        let err = o.error.expect("the step failed").to_string();
        assert!(
            err.contains(&format!("{code}")) && err.contains("redirect") && err.contains(&location),
            "the error names the redirect and where it pointed: {err}"
        );
        assert!(
            trap.requests().is_empty(),
            "nothing reached the redirect's target: {:?}",
            trap.requests()
        );
        server.remove_fault(fault);
        server.delete_lease("default", "redirected");
    }
}

#[test]
fn a_watch_answered_with_a_redirect_is_not_followed_and_the_elector_polls() {
    let server = ApiServer::start().unwrap();
    let trap = Trap::start(String::new());
    server.inject(Fault::redirect(302, trap.url("/watch")).for_verb("WATCH"));
    let a = start(&server, "redirected-watch", "a", LockKind::Leases, true);
    assert!(wait_until(Duration::from_secs(5), || a.is_leader()));
    let b = start(&server, "redirected-watch", "b", LockKind::Leases, true);
    all_see(&[&b], "a");
    a.stop().unwrap();
    assert!(
        wait_until(Duration::from_secs(3), || b.is_leader()),
        "the follower took over by polling"
    );
    assert!(trap.requests().is_empty(), "{:?}", trap.requests());
}

// ---- records cleared by someone other than their holder ----

/// Clear the record of the lock object as an administrator or a tool might: `kubectl edit` removing
/// `holderIdentity`, or re-applying a ConfigMap without the leader annotation.
fn clear_record(server: &ApiServer, kind: LockKind, name: &str) {
    match kind {
        LockKind::Leases => {
            let mut lease = server.lease("default", name).unwrap();
            lease["spec"]
                .as_object_mut()
                .unwrap()
                .remove("holderIdentity");
            server.put_lease_raw("default", name, lease);
        }
        _ => {
            let plural = if kind == LockKind::ConfigMaps {
                "configmaps"
            } else {
                "endpoints"
            };
            let mut object = server.object(plural, "default", name).unwrap();
            object["metadata"]["annotations"]
                .as_object_mut()
                .unwrap()
                .remove("control-plane.alpha.kubernetes.io/leader");
            server.put_object_raw(plural, "default", name, object);
        }
    }
}

fn a_cleared_record_is_held_for_its_lease(kind: LockKind, slow_renews: bool) {
    let server = common::tls_server(&["a", "b", "c"]);
    let name = format!("cleared-{kind}-{slow_renews}");
    let start = |id: &str, watch: bool| {
        LeaderElector::builder(server.config_for(id), name.as_str())
            .identity(id)
            .lock_kind(kind)
            .timing(timing(2, 1500, 200))
            .watch(watch)
            .start()
            .unwrap()
    };
    let a = start("a", false);
    assert!(wait_until(Duration::from_secs(5), || a.is_leader()));
    let (b, c) = (start("b", false), start("c", true));
    all_see(&[&b, &c], "a");
    if slow_renews {
        server.inject(
            Fault::latency(Duration::from_millis(300))
                .for_token("a")
                .for_verb("PUT"),
        );
    }
    for _ in 0..2 {
        clear_record(&server, kind, &name);
        no_overlap(&[&a, &b, &c], Duration::from_millis(2500));
    }
    server.clear_faults();
    assert!(
        wait_until(Duration::from_secs(5), || [&a, &b, &c]
            .iter()
            .any(|h| h.is_leader())),
        "someone leads again"
    );
    no_overlap(&[&a, &b, &c], Duration::from_millis(500));
}

#[test]
fn a_lease_whose_holder_was_removed_is_held_for_the_last_holders_lease() {
    a_cleared_record_is_held_for_its_lease(LockKind::Leases, false);
}

#[test]
fn a_cleared_lease_is_held_while_the_leaders_renews_are_slow() {
    a_cleared_record_is_held_for_its_lease(LockKind::Leases, true);
}

#[test]
fn a_configmap_reapplied_without_the_leader_annotation_is_held_for_the_last_holders_lease() {
    a_cleared_record_is_held_for_its_lease(LockKind::ConfigMaps, false);
}

#[test]
fn a_released_lock_is_still_taken_at_once() {
    let server = ApiServer::start().unwrap();
    for kind in [LockKind::Leases, LockKind::ConfigMaps] {
        let name = format!("released-{kind}");
        let a = start(&server, &name, "a", kind, false);
        assert!(wait_until(Duration::from_secs(5), || a.is_leader()));
        let (b, c) = (
            start(&server, &name, "b", kind, false),
            start(&server, &name, "c", kind, true),
        );
        all_see(&[&b, &c], "a");
        let stopped = Instant::now();
        a.stop().unwrap();
        assert!(
            wait_until(Duration::from_secs(2), || b.is_leader() || c.is_leader()),
            "{kind}: a follower took the released lock"
        );
        assert!(
            stopped.elapsed() < Duration::from_millis(1500),
            "{kind}: well before the 2 s lease: {:?}",
            stopped.elapsed()
        );
    }
}

// ---- writes that leave the record alone ----

#[test]
fn writes_that_leave_the_record_alone_do_not_delay_a_takeover() {
    let server = ApiServer::start().unwrap();
    let a = start(&server, "touched", "a", LockKind::Leases, false);
    assert!(wait_until(Duration::from_secs(5), || a.is_leader()));
    let (b, c) = (
        start(&server, "touched", "b", LockKind::Leases, false),
        start(&server, "touched", "c", LockKind::Leases, true),
    );
    all_see(&[&b, &c], "a");
    // Another controller labels the Lease every 100 ms; the record stays as the holder wrote it.
    let crashed = Instant::now();
    a.abandon();
    let mut n = 0u64;
    let took = loop {
        let mut lease = server.lease("default", "touched").unwrap();
        n += 1;
        lease["metadata"]["labels"] = json!({"touched": n.to_string()});
        server.put_lease_raw("default", "touched", lease);
        if b.is_leader() || c.is_leader() {
            break crashed.elapsed();
        }
        assert!(
            crashed.elapsed() < Duration::from_secs(5),
            "no takeover 5 s after a crash with a 2 s lease while the Lease was labelled every 100 ms"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // The lease (2 s) plus 2.2 retries (440 ms), with room for a loaded machine.
    assert!(
        took < Duration::from_millis(3500),
        "took over after {took:?}"
    );
    no_overlap(&[&b, &c], Duration::from_millis(500));
}
