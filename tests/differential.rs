//! The embedded API server kept honest: the same request sequences go to it and to a real kube-apiserver
//! (`KUBEBUILDER_ASSETS`), and their answers must agree in status code, `Status` reason and the shape of
//! the body. Covers every request the crate makes (GET, POST and PUT of Leases, ConfigMaps and
//! Endpoints, watches, Events, LeaseCandidates) and the error statuses a real server can be made to
//! answer (404, 409 Conflict and AlreadyExists, 422 with its causes, 400, 401, 403, 500).

mod common;

use std::time::Duration;

use common::raw::{Answer, Raw};
use kube_elector::testing::{ApiServer, ControlPlane};
use serde_json::{Value, json};

fn cp() -> Option<&'static ControlPlane> {
    common::real::control_plane()
}

/// The two servers, each with an admin client, a client the server refuses (401) and, where the server
/// has one, a client it authenticates but forbids (403).
struct Pair {
    real: &'static ControlPlane,
    embedded: ApiServer,
}

impl Pair {
    fn new() -> Option<Pair> {
        let real = cp()?;
        let embedded = ApiServer::builder()
            .tls(true)
            .token("admin")
            .forbidden_token("nobody")
            .start()
            .unwrap();
        Some(Pair { real, embedded })
    }

    fn clients(&self, who: &str) -> (Raw, Raw) {
        let real_token = match who {
            "admin" => self.real.admin_token().to_string(),
            "nobody" => self.real.unprivileged_token().to_string(),
            other => other.to_string(),
        };
        (
            Raw::new(self.real.url(), Some(self.real.ca_pem()), Some(&real_token)),
            Raw::new(
                self.embedded.url(),
                self.embedded.ca_pem(),
                Some(if who == "admin" || who == "nobody" {
                    who
                } else {
                    "wrong"
                }),
            ),
        )
    }
}

/// What must agree about one answer.
fn shape(a: &Answer) -> Value {
    let b = &a.body;
    if b["kind"] == "Status" {
        let mut causes: Vec<String> = b["details"]["causes"]
            .as_array()
            .map(|c| {
                c.iter()
                    .map(|c| c["field"].as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default();
        causes.sort();
        return json!({
            "status": a.status, "kind": "Status", "code": b["code"], "reason": b["reason"],
            "state": b["status"], "details.kind": b["details"]["kind"], "details.group": b["details"]["group"],
            "causes": causes,
        });
    }
    if b.is_null() {
        return json!({"status": a.status, "body": "not JSON"});
    }
    let meta = &b["metadata"];
    let keys = |v: &Value| -> Vec<String> {
        let mut k: Vec<String> = v
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        k.sort();
        k
    };
    json!({
        "status": a.status, "kind": b["kind"], "apiVersion": b["apiVersion"],
        "name": meta["name"], "namespace": meta["namespace"],
        "resourceVersion": meta["resourceVersion"].is_string(), "uid": meta["uid"].is_string(),
        "creationTimestamp": meta["creationTimestamp"].is_string(),
        "spec": keys(&b["spec"]), "annotations": keys(&meta["annotations"]),
        "labels": keys(&meta["labels"]),
    })
}

/// Run `steps` on both servers and compare each answer. Each step builds its request from the answers
/// so far on its own server (resource versions and uids differ between servers).
type Step = (
    &'static str,
    &'static str,
    fn(&[Answer]) -> (String, String, Option<Value>),
);

fn run(name: &str, pair: &Pair, who: &str, steps: &[Step]) {
    let (real, embedded) = pair.clients(who);
    let (mut ra, mut ea): (Vec<Answer>, Vec<Answer>) = (Vec::new(), Vec::new());
    for (label, facts, step) in steps {
        for (client, answers) in [(&real, &mut ra), (&embedded, &mut ea)] {
            let (method, path, body) = step(answers);
            let a = client.call(&method, &path, body.as_ref());
            answers.push(a);
        }
        let (r, e) = (ra.last().unwrap(), ea.last().unwrap());
        assert_eq!(
            shape(e),
            shape(r),
            "{name}: {label}: the embedded server (left) answers unlike the real one (right)\nreal body: {}\nembedded body: {}",
            r.body,
            e.body
        );
        // Facts across steps: did the version move?
        if *facts == "same-rv" || *facts == "new-rv" {
            let same = |a: &[Answer]| {
                let n = a.len();
                a[n - 1].body["metadata"]["resourceVersion"]
                    == a[n - 2].body["metadata"]["resourceVersion"]
            };
            assert_eq!(
                same(&ra),
                *facts == "same-rv",
                "{name}: {label}: real server"
            );
            assert_eq!(
                same(&ea),
                *facts == "same-rv",
                "{name}: {label}: embedded server"
            );
        }
    }
}

const NS: &str = "elector";

fn lease_path(name: &str) -> String {
    format!("/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/{name}")
}

fn leases() -> String {
    format!("/apis/coordination.k8s.io/v1/namespaces/{NS}/leases")
}

fn lease(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": name}, "spec": spec})
}

fn held(holder: &str) -> Value {
    json!({"holderIdentity": holder, "leaseDurationSeconds": 15, "acquireTime": "2026-01-02T03:04:05.123456Z",
           "renewTime": "2026-01-02T03:04:05.123456Z", "leaseTransitions": 0})
}

/// The last answer's body with `f` applied (for read-modify-write steps).
fn edit(answers: &[Answer], f: impl FnOnce(&mut Value)) -> Option<Value> {
    let mut b = answers.last().unwrap().body.clone();
    f(&mut b);
    Some(b)
}

#[test]
fn leases_agree() {
    let Some(pair) = Pair::new() else { return };
    run(
        "leases",
        &pair,
        "admin",
        &[
            ("GET a missing Lease", "", |_| {
                ("GET".into(), lease_path("d-lease"), None)
            }),
            ("POST it", "", |_| {
                ("POST".into(), leases(), Some(lease("d-lease", held("a"))))
            }),
            ("POST it again", "", |_| {
                ("POST".into(), leases(), Some(lease("d-lease", held("a"))))
            }),
            ("GET it", "", |_| {
                ("GET".into(), lease_path("d-lease"), None)
            }),
            ("PUT a change", "new-rv", |a| {
                (
                    "PUT".into(),
                    lease_path("d-lease"),
                    edit(a, |b| b["spec"]["holderIdentity"] = json!("b")),
                )
            }),
            ("PUT the same again", "same-rv", |a| {
                ("PUT".into(), lease_path("d-lease"), edit(a, |_| {}))
            }),
            ("PUT a stale version", "", |a| {
                (
                    "PUT".into(),
                    lease_path("d-lease"),
                    edit(a, |b| b["metadata"]["resourceVersion"] = json!("1")),
                )
            }),
            ("PUT without a version", "", |a| {
                (
                    "PUT".into(),
                    lease_path("d-lease"),
                    edit(&a[..a.len() - 2], |b| {
                        b["metadata"]
                            .as_object_mut()
                            .unwrap()
                            .remove("resourceVersion");
                    }),
                )
            }),
            ("PUT a bad duration", "", |a| {
                (
                    "PUT".into(),
                    lease_path("d-lease"),
                    edit(&a[..a.len() - 3], |b| {
                        b["spec"]["leaseDurationSeconds"] = json!(-1)
                    }),
                )
            }),
            ("PUT under another name", "", |a| {
                (
                    "PUT".into(),
                    lease_path("other"),
                    edit(&a[..a.len() - 4], |_| {}),
                )
            }),
            ("POST a bad name", "", |_| {
                ("POST".into(), leases(), Some(lease("Bad_Name", held("a"))))
            }),
            ("POST a MicroTime with 3 digits", "", |_| {
                (
                    "POST".into(),
                    leases(),
                    Some(lease(
                        "d-ms",
                        json!({"holderIdentity": "a", "renewTime": "2026-01-02T03:04:05.123Z"}),
                    )),
                )
            }),
            ("POST transitions -1", "", |_| {
                (
                    "POST".into(),
                    leases(),
                    Some(lease(
                        "d-neg",
                        json!({"holderIdentity": "a", "leaseTransitions": -1}),
                    )),
                )
            }),
            ("POST preferredHolder without strategy", "", |_| {
                (
                    "POST".into(),
                    leases(),
                    Some(lease(
                        "d-pref",
                        json!({"holderIdentity": "a", "preferredHolder": "b"}),
                    )),
                )
            }),
            ("POST with a resourceVersion", "", |_| {
                let mut l = lease("d-rv", held("a"));
                l["metadata"]["resourceVersion"] = json!("5");
                ("POST".into(), leases(), Some(l))
            }),
            ("POST coordinated fields", "", |_| {
                let mut spec = held("a");
                spec["strategy"] = json!("OldestEmulationVersion");
                spec["preferredHolder"] = json!("b");
                ("POST".into(), leases(), Some(lease("d-cle", spec)))
            }),
        ],
    );
}

#[test]
fn puts_to_deleted_objects_agree() {
    let Some(pair) = Pair::new() else { return };
    // Created, read back (uid and version known), deleted by an administrator, then written again.
    for (kind, api, plural, obj) in [
        (
            "Lease",
            "coordination.k8s.io/v1",
            "leases",
            json!({"spec": held("a")}),
        ),
        ("ConfigMap", "v1", "configmaps", json!({"data": {"k": "v"}})),
        ("Endpoints", "v1", "endpoints", json!({})),
    ] {
        let (real, embedded) = pair.clients("admin");
        let base = if api == "v1" {
            format!("/api/v1/namespaces/{NS}/{plural}")
        } else {
            format!("/apis/{api}/namespaces/{NS}/{plural}")
        };
        let mut object = obj.clone();
        object["apiVersion"] = json!(api);
        object["kind"] = json!(kind);
        object["metadata"] = json!({"name": "d-gone"});
        let mut shapes = Vec::new();
        for client in [&real, &embedded] {
            let created = client.call("POST", &base, Some(&object));
            assert_eq!(created.status, 201, "{kind}: {}", created.body);
            let item = format!("{base}/d-gone");
            let deleted = client.call("DELETE", &item, None);
            assert_eq!(deleted.status, 200, "{kind}");
            let with_uid = client.call("PUT", &item, Some(&created.body));
            let mut no_uid = created.body.clone();
            no_uid["metadata"].as_object_mut().unwrap().remove("uid");
            let without_uid = client.call("PUT", &item, Some(&no_uid));
            shapes.push((shape(&with_uid), shape(&without_uid)));
            client.call("DELETE", &item, None);
        }
        assert_eq!(
            shapes[1], shapes[0],
            "{kind}: embedded (left) vs real (right)"
        );
    }
}

#[test]
fn annotation_locks_agree() {
    let Some(pair) = Pair::new() else { return };
    run(
        "configmaps",
        &pair,
        "admin",
        &[
            ("GET a missing ConfigMap", "", |_| {
                (
                    "GET".into(),
                    format!("/api/v1/namespaces/{NS}/configmaps/d-cm"),
                    None,
                )
            }),
            ("POST it with the leader annotation", "", |_| {
                (
                    "POST".into(),
                    format!("/api/v1/namespaces/{NS}/configmaps"),
                    Some(json!({
                        "apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "d-cm", "labels": {"app": "x"}, "annotations": {"control-plane.alpha.kubernetes.io/leader":
                            r#"{"holderIdentity":"a","leaseDurationSeconds":15,"acquireTime":"2026-01-02T03:04:05Z","renewTime":"2026-01-02T03:04:05Z","leaderTransitions":0}"#}},
                        "data": {"k": "v"}
                    })),
                )
            }),
            ("PUT the same record", "same-rv", |a| {
                (
                    "PUT".into(),
                    format!("/api/v1/namespaces/{NS}/configmaps/d-cm"),
                    edit(a, |_| {}),
                )
            }),
            ("PUT a renewed record", "new-rv", |a| {
                (
                    "PUT".into(),
                    format!("/api/v1/namespaces/{NS}/configmaps/d-cm"),
                    edit(a, |b| {
                        b["metadata"]["annotations"]["control-plane.alpha.kubernetes.io/leader"] = json!(
                            r#"{"holderIdentity":"a","leaseDurationSeconds":15,"acquireTime":"2026-01-02T03:04:05Z","renewTime":"2026-01-02T03:04:06Z","leaderTransitions":0}"#
                        );
                    }),
                )
            }),
            ("POST an Endpoints lock", "", |_| {
                (
                    "POST".into(),
                    format!("/api/v1/namespaces/{NS}/endpoints"),
                    Some(json!({
                        "apiVersion": "v1", "kind": "Endpoints",
                        "metadata": {"name": "d-ep", "annotations": {"control-plane.alpha.kubernetes.io/leader": "{}"}}
                    })),
                )
            }),
            ("PUT it unchanged", "same-rv", |a| {
                (
                    "PUT".into(),
                    format!("/api/v1/namespaces/{NS}/endpoints/d-ep"),
                    edit(a, |_| {}),
                )
            }),
        ],
    );
}

#[test]
fn events_and_lease_candidates_agree() {
    let Some(pair) = Pair::new() else { return };
    run(
        "events and candidates",
        &pair,
        "admin",
        &[
            ("POST an Event", "", |_| {
                (
                    "POST".into(),
                    format!("/api/v1/namespaces/{NS}/events"),
                    Some(json!({
                        "apiVersion": "v1", "kind": "Event", "metadata": {"name": "d-ev.1"},
                        "involvedObject": {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "name": "d-lease", "namespace": NS},
                        "reason": "LeaderElection", "message": "a became leader", "type": "Normal", "source": {"component": "a"}
                    })),
                )
            }),
            ("GET a missing LeaseCandidate", "", |_| {
                (
                    "GET".into(),
                    format!(
                        "/apis/coordination.k8s.io/v1beta1/namespaces/{NS}/leasecandidates/d-cand"
                    ),
                    None,
                )
            }),
            ("POST it", "", |_| {
                (
                    "POST".into(),
                    format!("/apis/coordination.k8s.io/v1beta1/namespaces/{NS}/leasecandidates"),
                    Some(json!({
                        "apiVersion": "coordination.k8s.io/v1beta1", "kind": "LeaseCandidate", "metadata": {"name": "d-cand"},
                        "spec": {"leaseName": "d-lease", "binaryVersion": "1.36.0", "emulationVersion": "1.35.0",
                                 "strategy": "OldestEmulationVersion", "renewTime": "2026-01-02T03:04:05.123456Z"}
                    })),
                )
            }),
            ("PUT a new renewTime", "new-rv", |a| {
                (
                    "PUT".into(),
                    format!(
                        "/apis/coordination.k8s.io/v1beta1/namespaces/{NS}/leasecandidates/d-cand"
                    ),
                    edit(a, |b| {
                        b["spec"]["renewTime"] = json!("2026-01-02T03:04:06.123456Z")
                    }),
                )
            }),
            ("POST one without a binaryVersion", "", |_| {
                (
                    "POST".into(),
                    format!("/apis/coordination.k8s.io/v1beta1/namespaces/{NS}/leasecandidates"),
                    Some(json!({
                        "apiVersion": "coordination.k8s.io/v1beta1", "kind": "LeaseCandidate", "metadata": {"name": "d-cand2"},
                        "spec": {"leaseName": "d-lease", "emulationVersion": "1.35.0", "strategy": "OldestEmulationVersion"}
                    })),
                )
            }),
        ],
    );
}

#[test]
fn refusals_agree() {
    let Some(pair) = Pair::new() else { return };
    run(
        "401",
        &pair,
        "wrong",
        &[("GET with a wrong token", "", |_| {
            ("GET".into(), lease_path("x"), None)
        })],
    );
    run(
        "403",
        &pair,
        "nobody",
        &[
            ("GET, forbidden", "", |_| {
                ("GET".into(), lease_path("x"), None)
            }),
            ("POST, forbidden", "", |_| {
                ("POST".into(), leases(), Some(lease("x", held("a"))))
            }),
        ],
    );
}

#[test]
fn watches_agree() {
    let Some(pair) = Pair::new() else { return };
    let (real, embedded) = pair.clients("admin");
    let mut types = Vec::new();
    for client in [&real, &embedded] {
        let created = client.call("POST", &leases(), Some(&lease("d-watch", held("a"))));
        let rv = created.body["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_string();
        // From a version: the changes after it, in order.
        let path = format!(
            "{}?watch=true&allowWatchBookmarks=true&timeoutSeconds=5&fieldSelector=metadata.name%3Dd-watch&resourceVersion={rv}",
            leases()
        );
        let (status, events) = client.watch(&path, 2, Duration::from_secs(2), || {
            let mut b = client.call("GET", &lease_path("d-watch"), None).body;
            b["spec"]["holderIdentity"] = json!("b");
            client.call("PUT", &lease_path("d-watch"), Some(&b));
            client.call("DELETE", &lease_path("d-watch"), None);
        });
        let seen: Vec<String> = events
            .iter()
            .filter(|e| e["type"] != "BOOKMARK")
            .map(|e| {
                format!(
                    "{} {} {}",
                    e["type"].as_str().unwrap_or(""),
                    e["object"]["kind"],
                    e["object"]["spec"]["holderIdentity"]
                )
            })
            .collect();
        // Without a version: the current object first, then (when asked for bookmarks) a bookmark.
        client.call("POST", &leases(), Some(&lease("d-watch2", held("a"))));
        let path = format!(
            "{}?watch=true&allowWatchBookmarks=true&timeoutSeconds=2&fieldSelector=metadata.name%3Dd-watch2",
            leases()
        );
        let (status2, initial) = client.watch(&path, 1, Duration::from_secs(2), || {});
        let first = initial
            .first()
            .map(|e| format!("{} {}", e["type"], e["object"]["kind"]));
        types.push((status, seen, status2, first));
        client.call("DELETE", &lease_path("d-watch2"), None);
    }
    assert_eq!(types[1], types[0], "embedded (left) vs real (right)");
}

#[test]
fn label_and_field_selectors_agree() {
    let Some(pair) = Pair::new() else { return };
    let (real, embedded) = pair.clients("admin");
    let labelled = |name: &str, labels: Value| {
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
               "metadata": {"name": name, "labels": labels}, "spec": held("a")})
    };
    let mut answers = Vec::new();
    for client in [&real, &embedded] {
        client.call(
            "POST",
            &leases(),
            Some(&labelled("d-sel-0", json!({"d-sel": "set", "shard": "0"}))),
        );
        client.call(
            "POST",
            &leases(),
            Some(&labelled("d-sel-1", json!({"d-sel": "set", "shard": "1"}))),
        );
        client.call(
            "POST",
            &leases(),
            Some(&labelled(
                "d-sel-m",
                json!({"d-sel": "set", "example.com/member": "true"}),
            )),
        );
        client.call(
            "POST",
            &leases(),
            Some(&labelled("d-sel-x", json!({"d-sel": "other"}))),
        );
        let mut seen = Vec::new();
        for query in [
            "labelSelector=d-sel%3Dset",
            "labelSelector=d-sel%3Dset%2Cexample.com%2Fmember%3Dtrue",
            "labelSelector=d-sel%20in%20(set%2Cother)%2C!example.com%2Fmember",
            "labelSelector=d-sel%2Cshard!%3D0",
            "labelSelector=d-sel%2Cd-sel%20notin%20(set)",
            "labelSelector=d-sel&fieldSelector=metadata.name%3Dd-sel-1",
            "labelSelector=d-sel&fieldSelector=metadata.name!%3Dd-sel-1",
        ] {
            let a = client.call("GET", &format!("{}?{query}", leases()), None);
            let names: Vec<String> = a.body["items"]
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .map(|i| i["metadata"]["name"].as_str().unwrap_or("").to_string())
                        .collect()
                })
                .unwrap_or_default();
            seen.push((query, a.status, names));
        }
        // Refused selectors: the same status and reason.
        for query in [
            "labelSelector=a%20b",
            "fieldSelector=spec.holderIdentity%3Da",
        ] {
            let a = client.call("GET", &format!("{}?{query}", leases()), None);
            seen.push((query, a.status, vec![a.body["reason"].to_string()]));
        }
        // A watch by label: the matching objects only.
        let path = format!(
            "{}?watch=true&timeoutSeconds=2&labelSelector=d-sel%3Dset%2Cshard",
            leases()
        );
        let (status, events) = client.watch(&path, 2, Duration::from_secs(2), || {});
        let mut watched: Vec<String> = events
            .iter()
            .map(|e| format!("{} {}", e["type"], e["object"]["metadata"]["name"]))
            .collect();
        watched.sort();
        seen.push(("watch", status, watched));
        for name in ["d-sel-0", "d-sel-1", "d-sel-m", "d-sel-x"] {
            client.call("DELETE", &lease_path(name), None);
        }
        answers.push(seen);
    }
    assert_eq!(answers[1], answers[0], "embedded (left) vs real (right)");
    // And the answers are the ones Kubernetes documents (so the comparison cannot pass on two empty lists).
    let names = |i: usize| answers[0][i].2.join(",");
    assert_eq!(names(0), "d-sel-0,d-sel-1,d-sel-m");
    assert_eq!(names(1), "d-sel-m");
    assert_eq!(names(2), "d-sel-0,d-sel-1,d-sel-x");
    assert_eq!(names(3), "d-sel-1,d-sel-m,d-sel-x");
    assert_eq!(names(4), "d-sel-x");
    assert_eq!(names(5), "d-sel-1");
    assert_eq!(names(6), "d-sel-0,d-sel-m,d-sel-x");
    assert_eq!(answers[0][7].1, 400);
    assert_eq!(answers[0][8].1, 400);
    assert_eq!(answers[0][9].2.len(), 2);
}
