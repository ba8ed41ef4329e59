//! The example service and its manifests against a real kube-apiserver (see `common::real`): the
//! manifests pass a server-side dry run, their Role is enough for the service run with the service
//! account's own token, and replicas hand over as on the embedded server.
//!
//! ```sh
//! KUBEBUILDER_ASSETS=/path/to/assets cargo test --test real_service
//! ```

mod common;

#[path = "../examples/service/app.rs"]
#[allow(dead_code)]
mod app;

use std::time::{Duration, Instant};

use app::{Service, Settings};
use common::prom::{http_get, parse, value};
use common::raw::Raw;
use common::wait_until;
use kube_elector::testing::ControlPlane;
use kube_elector::{Config, Timing};
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(30);
const MANIFESTS: &str = include_str!("../examples/service/kubernetes.yaml");

fn settings(lock: &str, id: &str, namespace: &str) -> Settings {
    Settings {
        lock_name: lock.into(),
        namespace: Some(namespace.into()),
        identity: Some(id.into()),
        listen: ([127, 0, 0, 1], 0).into(),
        item: Duration::from_millis(20),
        timing: Timing {
            lease_duration: Duration::from_secs(2),
            renew_deadline: Duration::from_millis(1500),
            retry_period: Duration::from_millis(200),
        },
        ..Settings::default()
    }
}

fn manifests() -> Vec<Value> {
    serde_yaml::Deserializer::from_str(MANIFESTS)
        .map(|doc| serde::Deserialize::deserialize(doc).expect("valid YAML"))
        .collect()
}

/// Where objects of this kind are created in `ns`.
fn collection(object: &Value, ns: &str) -> String {
    let kind = object["kind"].as_str().unwrap();
    let plural = match kind {
        "ServiceAccount" => "serviceaccounts",
        "Role" => "roles",
        "RoleBinding" => "rolebindings",
        "Deployment" => "deployments",
        other => panic!("no path for kind {other}: add it here"),
    };
    match object["apiVersion"].as_str().unwrap() {
        "v1" => format!("/api/v1/namespaces/{ns}/{plural}"),
        group => format!("/apis/{group}/namespaces/{ns}/{plural}"),
    }
}

fn admin(cp: &ControlPlane) -> Raw {
    Raw::new(cp.url(), Some(cp.ca_pem()), Some(cp.admin_token()))
}

#[test]
fn the_manifests_pass_a_server_side_dry_run_and_their_role_is_enough_for_the_service() {
    let Some(cp) = common::real::control_plane() else {
        return;
    };
    let ns = cp.namespace();
    let raw = admin(cp);
    let objects = manifests();
    let kinds: Vec<_> = objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["ServiceAccount", "Role", "RoleBinding", "Deployment"]
    );

    // Every object, as `kubectl apply --dry-run=server --validate=strict` sends it.
    for object in &objects {
        let path = format!(
            "{}?dryRun=All&fieldValidation=Strict",
            collection(object, ns)
        );
        let a = raw.call("POST", &path, Some(object));
        assert_eq!(a.status, 201, "{} refused: {:?}", object["kind"], a.body);
        let name = object["metadata"]["name"].as_str().unwrap();
        let get = raw.call("GET", &format!("{}/{name}", collection(object, ns)), None);
        assert_eq!(get.status, 404, "a dry run creates nothing");
    }
    let deployment = &objects[3];
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(deployment["spec"]["replicas"], 3);
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(
        container["env"][0],
        json!({"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}})
    );
    // The same request refuses a broken Deployment: the check can fail.
    let mut broken = deployment.clone();
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGett"] =
        json!({"path": "/healthz"});
    let path = format!(
        "{}?dryRun=All&fieldValidation=Strict",
        collection(&broken, ns)
    );
    let a = raw.call("POST", &path, Some(&broken));
    assert!(a.status >= 400, "a misspelt field passed: {a:?}");

    // The ServiceAccount, Role and RoleBinding for real; then the service runs with the account's
    // own token, so the Role is proven enough (campaign, renew, watch, release).
    for object in &objects[..3] {
        let a = raw.call("POST", &collection(object, ns), Some(object));
        assert!(a.status == 201 || a.status == 409, "{a:?}");
    }
    let request = json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"expirationSeconds": 3600}
    });
    let a = raw.call(
        "POST",
        &format!("/api/v1/namespaces/{ns}/serviceaccounts/kube-elector-service/token"),
        Some(&request),
    );
    assert_eq!(a.status, 201, "{a:?}");
    let token = a.body["status"]["token"].as_str().unwrap();
    let config = Config::new(cp.url())
        .with_ca_pem(cp.ca_pem().as_bytes().to_vec())
        .with_token(token)
        .with_namespace(ns);
    let a = Service::start(config.clone(), settings("sa-service", "sa-a", ns)).unwrap();
    let b = Service::start(config, settings("sa-service", "sa-b", ns)).unwrap();
    assert!(
        wait_until(LONG, || a.status().is_leader() || b.status().is_leader()),
        "a replica leads with the Role's permissions"
    );
    let (leader, follower) = if a.status().is_leader() {
        (a, b)
    } else {
        (b, a)
    };
    assert!(wait_until(LONG, || leader.items_done() > 0));
    assert_eq!(leader.status().stats().last_error, None);
    leader.shutdown().unwrap();
    assert!(
        follower.status().wait_until_leader(Some(LONG)).is_some(),
        "the other replica takes the released lock"
    );
    assert_eq!(follower.status().stats().last_error, None);
    follower.shutdown().unwrap();
}

#[test]
fn replicas_of_the_service_hand_over_on_the_real_server() {
    let Some(cp) = common::real::control_plane() else {
        return;
    };
    let ns = cp.namespace();
    let services: Vec<Service> = ["r1", "r2", "r3"]
        .iter()
        .map(|id| Service::start(cp.user(), settings("real-service", id, ns)).unwrap())
        .collect();
    let leader_of = |services: &[Service]| {
        let end = Instant::now() + LONG;
        loop {
            let l: Vec<usize> = (0..services.len())
                .filter(|&i| services[i].status().is_leader())
                .collect();
            assert!(l.len() <= 1, "two leaders: {l:?}");
            if let [one] = l[..] {
                return one;
            }
            assert!(Instant::now() < end, "no leader");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    let mut services = services;
    let first = leader_of(&services);
    assert!(wait_until(LONG, || services[first].items_done() >= 4));
    for (i, s) in services.iter().enumerate() {
        let (code, _, body) = http_get(s.http_addr(), "/metrics");
        assert_eq!(code, 200);
        let m = parse(&body).unwrap_or_else(|e| panic!("{e}\n{body}"));
        let expected = if i == first { 1.0 } else { 0.0 };
        assert_eq!(
            value(&m, "leader_election_master_status", "real-service"),
            Some(expected)
        );
        assert_eq!(http_get(s.http_addr(), "/healthz").0, 200);
    }
    let t = Instant::now();
    services.remove(first).shutdown().unwrap();
    let second = leader_of(&services);
    assert!(
        t.elapsed() < Duration::from_millis(1800),
        "a released lock is taken before the lease would expire: {:?}",
        t.elapsed()
    );
    assert!(wait_until(LONG, || services[second].items_done() >= 4));
    for s in services {
        assert_eq!(s.items_unfenced(), 0);
        s.shutdown().unwrap();
    }
}
