//! The crate's behaviour against a real kube-apiserver and etcd (`kube_elector::testing::ControlPlane`,
//! from `KUBEBUILDER_ASSETS`). Without assets these tests say so and pass; with
//! `KUBE_ELECTOR_REQUIRE_REAL_SERVER=1` (as CI sets it) a missing asset fails them instead.
//!
//! ```sh
//! KUBEBUILDER_ASSETS=/path/to/assets cargo test --test real_server
//! ```

mod common;

use std::time::{Duration, Instant};

use common::{wait_event, wait_until};
use kube_elector::config::KubeconfigOptions;
use kube_elector::election::{Elector, Status};
use kube_elector::lock::{Lock, LockKind};
use kube_elector::record::{LeaderElectionRecord, VersionedRecord};
use kube_elector::testing::ControlPlane;
use kube_elector::{
    CandidateInfo, Config, LeaderElector, LeaderEvent, LeaderHandle, StopReason, Timing,
};

/// One control plane for the whole test binary (its processes die with the binary).
fn cp() -> Option<&'static ControlPlane> {
    common::real::control_plane()
}

macro_rules! need_cp {
    () => {
        match cp() {
            Some(cp) => cp,
            None => return,
        }
    };
}

fn fast() -> Timing {
    common::timing(2, 1500, 200)
}

fn elector(
    config: Config,
    name: &str,
    id: &str,
) -> kube_elector::LeaderElectorBuilder<kube_elector::runner::Managed> {
    common::candidate(config, name, id, fast())
}

fn leads(h: &LeaderHandle) -> bool {
    wait_until(Duration::from_secs(10), || h.is_leader())
}

/// Sample for `d`: never two leaders; returns who led at the end.
fn one_at_a_time(hs: &[&LeaderHandle], d: Duration) -> Vec<String> {
    let end = Instant::now() + d;
    loop {
        let leading: Vec<String> = hs
            .iter()
            .filter(|h| h.is_leader())
            .map(|h| h.identity().to_string())
            .collect();
        assert!(leading.len() <= 1, "two leaders at once: {leading:?}");
        if Instant::now() >= end {
            return leading;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn holder(cp: &ControlPlane, plural: &str, name: &str) -> Option<String> {
    let path = match plural {
        "leases" => format!(
            "/apis/coordination.k8s.io/v1/namespaces/{}/leases/{name}",
            cp.namespace()
        ),
        other => format!("/api/v1/namespaces/{}/{other}/{name}", cp.namespace()),
    };
    let v = get_json(cp, &path)?;
    if plural == "leases" {
        return Some(
            v["spec"]["holderIdentity"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        );
    }
    let record =
        v["metadata"]["annotations"]["control-plane.alpha.kubernetes.io/leader"].as_str()?;
    let r: serde_json::Value = serde_json::from_str(record).ok()?;
    Some(r["holderIdentity"].as_str().unwrap_or("").to_string())
}

fn get_json(cp: &ControlPlane, path: &str) -> Option<serde_json::Value> {
    let a = common::raw::Raw::new(cp.url(), Some(cp.ca_pem()), Some(cp.admin_token()))
        .call("GET", path, None);
    (a.status == 200).then_some(a.body)
}

/// A lock that counts the requests it makes.
struct Counting<L> {
    inner: L,
    gets: u32,
    writes: u32,
}

impl<L: Lock> Lock for Counting<L> {
    fn get(&mut self, timeout: Duration) -> kube_elector::Result<Option<VersionedRecord>> {
        self.gets += 1;
        self.inner.get(timeout)
    }
    fn create(
        &mut self,
        r: &LeaderElectionRecord,
        timeout: Duration,
    ) -> kube_elector::Result<VersionedRecord> {
        self.writes += 1;
        self.inner.create(r, timeout)
    }
    fn update(
        &mut self,
        r: &LeaderElectionRecord,
        rv: &str,
        timeout: Duration,
    ) -> kube_elector::Result<VersionedRecord> {
        self.writes += 1;
        self.inner.update(r, rv, timeout)
    }
    fn identity(&self) -> &str {
        self.inner.identity()
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

#[test]
fn every_lock_kind_acquires_renews_with_one_write_per_object_releases_and_is_taken_over_after_a_crash()
 {
    let cp = need_cp!();
    for kind in LockKind::ALL {
        let name = format!("kind-{kind}");
        // Renews: one write per object, no read.
        let locks = kind
            .locks(&cp.user(), cp.namespace(), &name, "stepper")
            .unwrap();
        let mut e = Elector::new(locks, fast()).unwrap();
        assert!(e.step().is_leading(), "{kind}: acquires");
        std::thread::sleep(Duration::from_millis(1100));
        let o = e.step();
        assert!(o.is_leading() && o.renewed && !o.slow_path, "{kind}: {o:?}");
        assert!(e.release().unwrap(), "{kind}: releases");
        let lease = |p: &str| holder(cp, p, &name);
        let primary = match kind {
            LockKind::Leases => "leases",
            LockKind::ConfigMaps | LockKind::ConfigMapsLeases => "configmaps",
            LockKind::Endpoints | LockKind::EndpointsLeases => "endpoints",
        };
        assert_eq!(lease(primary).as_deref(), Some(""), "{kind}: released");
        if kind.is_pair() {
            assert_eq!(
                lease("leases").as_deref(),
                Some(""),
                "{kind}: the Lease released too"
            );
        }
        // Threaded: a crash is taken over once the lease expires, never before.
        let a = elector(cp.user(), &name, "a")
            .lock_kind(kind)
            .start()
            .unwrap();
        assert!(leads(&a), "{kind}");
        let b = elector(cp.user(), &name, "b")
            .lock_kind(kind)
            .start()
            .unwrap();
        assert!(wait_until(Duration::from_secs(5), || b.leader().as_deref()
            == Some("a")));
        a.abandon();
        let crashed = Instant::now();
        assert!(leads(&b), "{kind}: taken over");
        let took = crashed.elapsed();
        assert!(
            took >= Duration::from_millis(1400),
            "{kind}: not before the lease (took {took:?})"
        );
        assert!(took < Duration::from_secs(5), "{kind}: took {took:?}");
    }
    // A renew is exactly one request on the wire, counted at the lock.
    let lock =
        kube_elector::lock::LeaseLock::new(&cp.user(), cp.namespace(), "one-put", "c").unwrap();
    let mut e = Elector::new(
        Counting {
            inner: lock,
            gets: 0,
            writes: 0,
        },
        fast(),
    )
    .unwrap();
    assert!(e.step().is_leading());
    for _ in 0..5 {
        assert!(e.step().renewed);
    }
    let counted = e.locks().primary();
    assert_eq!(
        (counted.gets, counted.writes),
        (1, 6),
        "one GET and a create, then one PUT per renew"
    );
}

/// The lock caches its object without `managedFields` (the server keeps them when an update leaves
/// them out): renews keep the server's record of who manages what, and what others wrote stays.
#[test]
fn renews_leave_managed_fields_and_what_others_wrote_in_place() {
    let cp = need_cp!();
    let path = format!(
        "/apis/coordination.k8s.io/v1/namespaces/{}/leases/managed",
        cp.namespace()
    );
    let lock = kube_elector::lock::LeaseLock::new(&cp.user(), cp.namespace(), "managed", "m-1")
        .unwrap()
        .with_labels([("owner".to_string(), "elector".to_string())].into());
    let mut e = Elector::new(lock, fast()).unwrap();
    assert!(e.step().is_leading());
    // Another writer (the admin) adds a label and an annotation of its own.
    let admin = common::raw::Raw::new(cp.url(), Some(cp.ca_pem()), Some(cp.admin_token()));
    let mut object = get_json(cp, &path).unwrap();
    object["metadata"]["labels"]["team"] = "storage".into();
    object["metadata"]["annotations"]["note"] = "kept".into();
    assert_eq!(admin.call("PUT", &path, Some(&object)).status, 200);
    // The next renew meets the admin's version (one re-read), the ones after are single PUTs.
    assert!(e.step().is_leading());
    for _ in 0..3 {
        let o = e.step();
        assert!(o.renewed && !o.slow_path, "{o:?}");
    }
    let lease = get_json(cp, &path).unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "m-1");
    assert_eq!(lease["metadata"]["labels"]["team"], "storage");
    assert_eq!(lease["metadata"]["labels"]["owner"], "elector");
    assert_eq!(lease["metadata"]["annotations"]["note"], "kept");
    let managers: Vec<&str> = lease["metadata"]["managedFields"]
        .as_array()
        .expect("the server kept the managed fields")
        .iter()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert!(
        managers.iter().any(|m| m.starts_with("kube-elector")) && managers.len() >= 2,
        "both writers stay recorded: {managers:?}"
    );
    let ours = lease["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| {
            m["manager"]
                .as_str()
                .is_some_and(|m| m.starts_with("kube-elector"))
        })
        .unwrap();
    assert!(
        ours["fieldsV1"]["f:spec"]["f:renewTime"].is_object(),
        "our entry still claims the record: {ours}"
    );
    assert!(e.release().unwrap());
}

#[test]
fn three_electors_racing_elect_one_and_hand_over_gracefully() {
    let cp = need_cp!();
    let hs: Vec<LeaderHandle> = (0..3)
        .map(|i| {
            elector(cp.user(), "race", &format!("r{i}"))
                .start()
                .unwrap()
        })
        .collect();
    let refs: Vec<&LeaderHandle> = hs.iter().collect();
    assert!(wait_until(Duration::from_secs(10), || refs
        .iter()
        .any(|h| h.is_leader())));
    let first = one_at_a_time(&refs, Duration::from_millis(1500));
    assert_eq!(first.len(), 1);
    let mut hs = hs;
    let i = hs.iter().position(|h| h.identity() == first[0]).unwrap();
    let leader = hs.remove(i);
    let stopped = Instant::now();
    leader.stop().unwrap();
    let refs: Vec<&LeaderHandle> = hs.iter().collect();
    assert!(wait_until(Duration::from_secs(3), || refs
        .iter()
        .any(|h| h.is_leader())));
    assert!(
        stopped.elapsed() < Duration::from_millis(1500),
        "a released lease is taken within a jittered retry, not a lease: {:?}",
        stopped.elapsed()
    );
    one_at_a_time(&refs, Duration::from_millis(1000));
}

#[test]
fn watching_followers_take_a_released_lease_at_once_and_a_crashed_one_at_expiry() {
    let cp = need_cp!();
    let a = elector(cp.user(), "watched", "a").start().unwrap();
    assert!(leads(&a));
    let b = elector(cp.user(), "watched", "b")
        .watch(true)
        .start()
        .unwrap();
    assert!(wait_until(Duration::from_secs(5), || b.leader().as_deref()
        == Some("a")));
    // A watch brings renews; nothing else is asked of the server while the lease runs.
    std::thread::sleep(Duration::from_millis(500));
    let stopped = Instant::now();
    a.stop().unwrap();
    assert!(leads(&b));
    assert!(
        stopped.elapsed() < Duration::from_millis(300),
        "the release arrives on the watch: {:?}",
        stopped.elapsed()
    );
    let c = elector(cp.user(), "watched", "c")
        .watch(true)
        .start()
        .unwrap();
    assert!(wait_until(Duration::from_secs(5), || c.leader().as_deref()
        == Some("b")));
    let b = b;
    b.abandon();
    let crashed = Instant::now();
    // The crashed leader's lease runs to its last renewTime plus the lease duration.
    std::thread::sleep(Duration::from_millis(50));
    let lease = get_json(
        cp,
        &format!(
            "/apis/coordination.k8s.io/v1/namespaces/{}/leases/watched",
            cp.namespace()
        ),
    )
    .expect("the lease");
    let renewed: chrono::DateTime<chrono::Utc> = lease["spec"]["renewTime"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("a renewTime");
    assert!(leads(&c));
    let took = crashed.elapsed();
    let after_expiry = chrono::Utc::now() - (renewed + fast().lease_duration);
    assert!(
        after_expiry >= chrono::TimeDelta::zero(),
        "taken {after_expiry} before the crashed leader's lease expired"
    );
    assert!(
        took > Duration::from_millis(1400) && took < Duration::from_millis(2600),
        "a crash is taken over at expiry: {took:?}"
    );
}

#[test]
fn a_watch_survives_an_api_server_restart_and_a_compacted_history() {
    if cp().is_none() {
        return;
    }
    // A control plane of its own: this test restarts its API server.
    let mut own = ControlPlane::start().unwrap_or_else(|e| panic!("{e}"));
    let a = elector(own.user(), "compacted", "a").start().unwrap();
    assert!(leads(&a));
    let b = elector(own.user(), "compacted", "b")
        .watch(true)
        .start()
        .unwrap();
    assert!(wait_until(Duration::from_secs(5), || b.leader().as_deref()
        == Some("a")));
    // The watch breaks while history moves on and is compacted: it comes back with an old version,
    // gets 410 Gone, and lists again.
    own.restart_apiserver().unwrap_or_else(|e| panic!("{e}"));
    std::thread::sleep(Duration::from_millis(500));
    own.compact().unwrap();
    let a = a;
    a.stop().unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || b.is_leader()),
        "b follows again after the restart: {}",
        own.logs()
    );
}

#[test]
fn every_way_of_connecting_elects() {
    let cp = need_cp!();
    let dir = common::temp_dir("connect");
    // A merged KUBECONFIG: the cluster and context in one file, the user in another.
    let full = cp.kubeconfig();
    let (cluster_part, user_part) = full.split_once("users:").unwrap();
    std::fs::write(dir.join("cluster.yaml"), cluster_part).unwrap();
    std::fs::write(
        dir.join("user.yaml"),
        format!("apiVersion: v1\nkind: Config\nusers:{user_part}"),
    )
    .unwrap();
    let merged = KubeconfigOptions::new()
        .paths([dir.join("cluster.yaml"), dir.join("user.yaml")])
        .load()
        .unwrap();
    // An exec plugin printing the user's token.
    let plugin = dir.join("plugin.sh");
    std::fs::write(
        &plugin,
        format!(
            "#!/bin/sh\necho '{{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\",\"status\":{{\"token\":\"{}\"}}}}'\n",
            cp.user_token()
        ),
    )
    .unwrap();
    common::make_executable(&plugin);
    let exec_config = full.replace(
        &format!("    token: {}\n", cp.user_token()),
        &format!(
            "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: {}\n      interactiveMode: Never\n",
            plugin.display()
        ),
    );
    std::fs::write(dir.join("exec.yaml"), exec_config).unwrap();
    let exec = Config::from_kubeconfig(dir.join("exec.yaml")).unwrap();
    let ways = [
        ("token", cp.user()),
        ("client certificate", cp.client_cert_user()),
        (
            "in-cluster",
            Config::in_cluster_with(&cp.in_cluster()).unwrap(),
        ),
        ("exec plugin", exec),
        ("merged KUBECONFIG", merged),
    ];
    for (i, (way, config)) in ways.into_iter().enumerate() {
        let h = elector(
            config,
            &format!("connect-{i}"),
            way.replace(' ', "-").as_str(),
        )
        .start()
        .unwrap();
        assert!(leads(&h), "{way}: {:?}", h.stats().last_error);
        h.stop().unwrap();
        assert_eq!(
            holder(cp, "leases", &format!("connect-{i}")).as_deref(),
            Some(""),
            "{way}"
        );
    }
}

#[test]
fn rbac_refusals_give_the_error_the_readme_promises() {
    let cp = need_cp!();
    let h = elector(cp.unprivileged(), "refused", "n").start().unwrap();
    assert!(wait_until(Duration::from_secs(5), || h
        .stats()
        .last_error
        .is_some()));
    let e = h.stats().last_error.unwrap();
    assert!(
        e.contains("403 Forbidden") && e.contains("see README, RBAC"),
        "{e}"
    );
    assert!(!h.is_leader());
    // Outside its namespace the Role user is refused too.
    let h = LeaderElector::builder(cp.user(), "elsewhere")
        .namespace("default")
        .timing(fast())
        .start()
        .unwrap();
    assert!(wait_until(Duration::from_secs(5), || h
        .stats()
        .last_error
        .is_some()));
    assert!(h.stats().last_error.unwrap().contains("403"));
}

#[test]
fn events_are_recorded_and_labels_put_on_the_lock() {
    let cp = need_cp!();
    let h = elector(cp.user(), "evented", "ev-1")
        .record_events(true)
        .label("app.kubernetes.io/name", "demo")
        .start()
        .unwrap();
    assert!(leads(&h));
    let lease = get_json(
        cp,
        &format!(
            "/apis/coordination.k8s.io/v1/namespaces/{}/leases/evented",
            cp.namespace()
        ),
    )
    .unwrap();
    assert_eq!(
        lease["metadata"]["labels"]["app.kubernetes.io/name"],
        "demo"
    );
    h.stop().unwrap();
    let found = wait_until(Duration::from_secs(5), || {
        let events =
            get_json(cp, &format!("/api/v1/namespaces/{}/events", cp.namespace())).unwrap();
        let messages: Vec<String> = events["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["reason"] == "LeaderElection" && e["involvedObject"]["name"] == "evented")
            .map(|e| e["message"].as_str().unwrap_or("").to_string())
            .collect();
        messages.contains(&"ev-1 became leader".to_string())
            && messages.contains(&"ev-1 stopped leading".to_string())
    });
    assert!(found, "both Events posted");
}

#[test]
fn the_servers_own_lease_candidate_controller_chooses_the_leader() {
    let cp = need_cp!();
    let candidate = |id: &str, emulation: &str| {
        LeaderElector::builder(cp.user(), "coordinated")
            .identity(id)
            .timing(Timing {
                lease_duration: Duration::from_secs(5),
                renew_deadline: Duration::from_secs(4),
                retry_period: Duration::from_millis(500),
            })
            .coordinated(CandidateInfo::new("1.36.0", emulation))
            .start()
            .unwrap()
    };
    let a = candidate("cand-new", "1.36.0");
    let b = candidate("cand-old", "1.35.0");
    let events = b.events();
    let all = [&a, &b];
    assert!(
        wait_until(Duration::from_secs(40), || b.is_leader()),
        "the controller picks the oldest emulation version: {}",
        cp.logs()
    );
    assert!(
        wait_event(&events, Duration::from_secs(1), |e| matches!(
            e,
            LeaderEvent::StartedLeading { .. }
        ))
        .is_some()
    );
    one_at_a_time(&all, Duration::from_secs(2));
    assert!(!a.is_leader());
    assert_eq!(
        holder(cp, "leases", "coordinated").as_deref(),
        Some("cand-old")
    );
    let _ = (
        StopReason::Stopped,
        Status::Following {
            holder: None,
            expiry: None,
        },
    );
}

/// Run by `a_killed_test_leaves_no_process_behind` in a child process: hold a control plane and wait to
/// be killed.
#[test]
fn hold_a_control_plane_until_killed() {
    if std::env::var_os("KUBE_ELECTOR_HOLD_CONTROL_PLANE").is_none() {
        return;
    }
    let cp = ControlPlane::start().unwrap();
    println!("pids: {:?}", cp.pids());
    std::thread::sleep(Duration::from_secs(120));
}

#[test]
fn a_killed_test_leaves_no_process_behind() {
    if cp().is_none() {
        return;
    }
    use std::io::BufRead;
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "hold_a_control_plane_until_killed",
            "--nocapture",
        ])
        .env("KUBE_ELECTOR_HOLD_CONTROL_PLANE", "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut pids = Vec::new();
    for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(list) = line.strip_prefix("pids: ") {
            pids = list
                .trim_matches(|c| c == '[' || c == ']')
                .split(',')
                .filter_map(|p| p.trim().parse::<u32>().ok())
                .collect();
            break;
        }
    }
    assert_eq!(pids.len(), 2, "etcd and kube-apiserver started");
    assert!(
        pids.iter()
            .all(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
    );
    child.kill().unwrap(); // SIGKILL: no destructor runs
    let _ = child.wait();
    assert!(
        wait_until(Duration::from_secs(10), || pids
            .iter()
            .all(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())),
        "etcd and kube-apiserver died with the test process: {pids:?}"
    );
}
