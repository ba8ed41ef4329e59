//! The embedded API server checked against bodies captured from a real kube-apiserver v1.36
//! (tests/fixtures/apiserver), and its fault injection checked on its own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube_elector::testing::{ApiServer, Fault};
use serde_json::{Value, json};
use ureq::Agent;

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/default/leases";

/// Status code and JSON body of a captured exchange.
fn fixture(name: &str) -> (u16, Value) {
    let path = format!(
        "{}/tests/fixtures/apiserver/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\r\n", "\n");
    let start = text.find("HTTP/2 ").expect("status line");
    let code: u16 = text[start + 7..start + 10].parse().unwrap();
    let body_start = text[start..].find("\n\n").expect("blank line") + start + 2;
    (
        code,
        serde_json::from_str(text[body_start..].trim()).unwrap(),
    )
}

fn agent(server: &ApiServer) -> Agent {
    let mut tls = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()));
    if let Some(ca) = server.ca_pem() {
        let certs: Vec<_> = ureq::tls::parse_pem(ca.as_bytes())
            .filter_map(|i| match i.unwrap() {
                ureq::tls::PemItem::Certificate(c) => Some(c),
                _ => None,
            })
            .collect();
        tls = tls.root_certs(ureq::tls::RootCerts::from(certs));
    }
    Agent::config_builder()
        .http_status_as_error(false)
        .tls_config(tls.build())
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

fn call(
    agent: &Agent,
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let result = match (method, body) {
        ("GET", _) => {
            let mut r = agent.get(url);
            if let Some(a) = &auth {
                r = r.header("Authorization", a);
            }
            r.call()
        }
        (m, b) => {
            let mut r = if m == "POST" {
                agent.post(url)
            } else {
                agent.put(url)
            };
            if let Some(a) = &auth {
                r = r.header("Authorization", a);
            }
            r.header("Content-Type", "application/json")
                .send(serde_json::to_vec(b.unwrap()).unwrap())
        }
    };
    let mut resp = result.unwrap();
    let code = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap();
    (
        code,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn lease(name: &str, rv: Option<&str>, duration: i64) -> Value {
    let mut l = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"holderIdentity": "holder-a", "leaseDurationSeconds": duration,
                 "acquireTime": "2026-01-02T03:04:05.123456Z", "renewTime": "2026-01-02T03:04:10.654321Z",
                 "leaseTransitions": 0}
    });
    if let Some(rv) = rv {
        l["metadata"]["resourceVersion"] = json!(rv);
    }
    l
}

#[test]
fn lease_crud_matches_the_real_api_server() {
    let server = ApiServer::start().unwrap();
    let a = agent(&server);
    let base = format!("{}{LEASES}", server.url());
    let item = format!("{base}/example-lease");

    let (code, created) = call(
        &a,
        "POST",
        &base,
        None,
        Some(&lease("example-lease", None, 15)),
    );
    assert_eq!(code, 201);
    let (fcode, fixture_get) = fixture("10b-http-get-lease-200-compact.txt");
    let (code, got) = call(&a, "GET", &item, None, None);
    assert_eq!(code, fcode);
    assert_eq!(got, created);
    assert_eq!(
        got["spec"], fixture_get["spec"],
        "spec round-trips exactly, MicroTimes included"
    );
    assert_eq!(got["kind"], fixture_get["kind"]);
    assert_eq!(got["apiVersion"], fixture_get["apiVersion"]);
    for field in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        assert!(
            got["metadata"][field].is_string(),
            "metadata.{field} in {got}"
        );
    }
    let rv = got["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();

    // 12: PUT with the current version and nothing changed: 200, a no-op that keeps the version (the
    // captured exchange shows the same resourceVersion before and after).
    let (code, same) = call(
        &a,
        "PUT",
        &item,
        None,
        Some(&lease("example-lease", Some(&rv), 15)),
    );
    assert_eq!(code, fixture("12-http-put-current-200.txt").0);
    assert_eq!(same["metadata"]["resourceVersion"], rv.as_str());
    // With a change, the version advances.
    let mut changed = lease("example-lease", Some(&rv), 15);
    changed["spec"]["holderIdentity"] = json!("holder-b");
    let (code, updated) = call(&a, "PUT", &item, None, Some(&changed));
    assert_eq!(code, 200);
    let new_rv = updated["metadata"]["resourceVersion"].as_str().unwrap();
    assert!(new_rv.parse::<u64>().unwrap() > rv.parse::<u64>().unwrap());
    assert_eq!(updated["metadata"]["uid"], got["metadata"]["uid"]);

    // 11b: PUT with the stale version: 409 Conflict, body as the real server's.
    let (code, body) = call(
        &a,
        "PUT",
        &item,
        None,
        Some(&lease("example-lease", Some(&rv), 15)),
    );
    assert_eq!((code, body), fixture("11b-http-put-stale-409-compact.txt"));

    // 13: PUT without a version: 422 Invalid with the cause.
    let (code, body) = call(
        &a,
        "PUT",
        &item,
        None,
        Some(&lease("example-lease", None, 15)),
    );
    assert_eq!((code, body), fixture("13-http-put-no-resourceversion.txt"));

    // 16: POST of an existing name: 409 AlreadyExists.
    let (code, body) = call(
        &a,
        "POST",
        &base,
        None,
        Some(&lease("example-lease", None, 15)),
    );
    assert_eq!(
        (code, body),
        fixture("16-http-post-exists-409-alreadyexists.txt")
    );

    // 14b: GET of a missing lease: 404 NotFound.
    let (code, body) = call(&a, "GET", &format!("{base}/does-not-exist"), None, None);
    assert_eq!(
        (code, body),
        fixture("14b-http-get-missing-404-compact.txt")
    );

    // 21: an invalid duration: 422 Invalid with the cause.
    let (code, body) = call(&a, "POST", &base, None, Some(&lease("bad-lease", None, -1)));
    assert_eq!((code, body), fixture("21-http-post-invalid-422.txt"));

    // 15: PUT to a missing lease creates it.
    let (fcode, fbody) = fixture("15-http-put-missing-creates-201.txt");
    let (code, body) = call(
        &a,
        "PUT",
        &format!("{base}/put-creates-lease"),
        None,
        Some(&lease("put-creates-lease", Some("999999"), 15)),
    );
    assert_eq!(code, fcode);
    assert_eq!(body["spec"], fbody["spec"]);
    assert_ne!(body["metadata"]["resourceVersion"], "999999");
}

#[test]
fn strict_wire_rules() {
    let server = ApiServer::start().unwrap();
    let a = agent(&server);
    let base = format!("{}{LEASES}", server.url());
    for bad_time in [
        "2026-01-02T03:04:05Z",
        "2026-01-02T03:04:05.123Z",
        "2026-01-02T03:04:05.123456789Z",
    ] {
        let mut l = lease("t", None, 15);
        l["spec"]["renewTime"] = json!(bad_time);
        let (code, body) = call(&a, "POST", &base, None, Some(&l));
        assert_eq!(code, 400, "{bad_time}");
        assert_eq!(body["reason"], "BadRequest");
    }
    let mut l = lease("t", None, 15);
    l["spec"]["leaseTransitions"] = json!(-1);
    let (code, body) = call(&a, "POST", &base, None, Some(&l));
    assert_eq!((code, body["reason"].as_str()), (422, Some("Invalid")));
    assert_eq!(
        body["details"]["causes"][0]["field"],
        "spec.leaseTransitions"
    );
    let (code, body) = call(&a, "POST", &base, None, Some(&lease("t", Some("5"), 15)));
    assert_eq!(code, 500, "POST must not carry a resourceVersion: {body}");
    let (code, _) = call(&a, "POST", &base, None, Some(&json!("not an object")));
    assert_eq!(code, 400);
    let (code, _) = call(
        &a,
        "PUT",
        &format!("{base}/other-name"),
        None,
        Some(&lease("t", Some("1"), 15)),
    );
    assert_eq!(code, 400, "name mismatch");
    let (code, body) = call(
        &a,
        "GET",
        &format!("{}/apis/unknown/v1/things", server.url()),
        None,
        None,
    );
    assert_eq!((code, body["reason"].as_str()), (404, Some("NotFound")));
    let (code, list) = call(&a, "GET", &base, None, None);
    assert_eq!((code, list["kind"].as_str()), (200, Some("LeaseList")));
}

#[test]
fn tls_and_bearer_tokens() {
    let server = ApiServer::builder()
        .tls(true)
        .token("good")
        .start()
        .unwrap();
    assert!(server.url().starts_with("https://127.0.0.1:"));
    let a = agent(&server);
    let item = format!("{}{LEASES}/x", server.url());
    assert_eq!(
        call(&a, "GET", &item, Some("bad"), None),
        fixture("19-http-bad-token-401.txt")
    );
    assert_eq!(call(&a, "GET", &item, None, None).0, 401);
    assert_eq!(call(&a, "GET", &item, Some("good"), None).0, 404);
    server.add_token("new");
    assert_eq!(call(&a, "GET", &item, Some("new"), None).0, 404);
    server.revoke_token("good");
    assert_eq!(call(&a, "GET", &item, Some("good"), None).0, 401);
    assert_eq!(server.requests_for("good", "GET"), 2);
    assert_eq!(server.requests("GET"), 5);

    // A client that does not trust the CA cannot connect.
    let untrusting: Agent = Agent::config_builder()
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .provider(ureq::tls::TlsProvider::Rustls)
                .unversioned_rustls_crypto_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .root_certs(ureq::tls::RootCerts::from(Vec::new()))
                .build(),
        )
        .build()
        .into();
    assert!(untrusting.get(&item).call().is_err());

    // Its kubeconfig loads and connects.
    let dir = std::env::temp_dir().join(format!("kube-elector-ts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config"), server.kubeconfig_for(Some("new"))).unwrap();
    let config = kube_elector::Config::from_kubeconfig(dir.join("config")).unwrap();
    assert_eq!(config.server(), server.url());
    assert_eq!(config.ca_pem(), server.ca_pem().map(str::as_bytes));
    assert!(
        !format!("{config:?}").contains("new\""),
        "Debug redacts the token: {config:?}"
    );
}

#[test]
fn faults_apply_per_client_and_go_away() {
    let server = ApiServer::builder()
        .tls(true)
        .token("a")
        .token("b")
        .start()
        .unwrap();
    let agent = agent(&server);
    let item = format!("{}{LEASES}/f", server.url());
    let get = |t: &str| call(&agent, "GET", &item, Some(t), None).0;

    let f = server.inject(Fault::status_retry_after(429, 3).for_token("a").times(2));
    assert_eq!(
        (get("a"), get("b"), get("a"), get("a")),
        (429, 404, 429, 404)
    );
    server.remove_fault(f);

    server.inject(Fault::status(503).for_verb("PUT"));
    assert_eq!(get("a"), 404);
    let (code, body) = call(
        &agent,
        "PUT",
        &item,
        Some("a"),
        Some(&lease("f", Some("1"), 15)),
    );
    assert_eq!(
        (code, body["reason"].as_str()),
        (503, Some("ServiceUnavailable"))
    );
    server.clear_faults();

    server.inject(Fault::body(200, "{\"kind\": \"Lea").times(1));
    let (code, body) = call(&agent, "GET", &item, Some("a"), None);
    assert_eq!(
        (code, body),
        (200, Value::String("{\"kind\": \"Lea".into()))
    );

    server.inject(Fault::drop_connection().times(1));
    let mut r = agent.get(&item).header("Authorization", "Bearer a");
    r = r.header("Connection", "close");
    assert!(r.call().is_err(), "dropped connection");

    let f = server.inject(Fault::latency(Duration::from_millis(300)).for_token("b"));
    let t = Instant::now();
    assert_eq!(get("b"), 404);
    assert!(t.elapsed() >= Duration::from_millis(300));
    server.remove_fault(f);

    // A hang holds the request until the fault goes, then answers it.
    let f = server.inject(Fault::hang().for_token("a"));
    let worker = {
        let agent = agent.clone();
        let item = item.clone();
        std::thread::spawn(move || {
            let t = Instant::now();
            let code = call(&agent, "GET", &item, Some("a"), None).0;
            (code, t.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(get("b"), 404, "other clients are unaffected");
    server.remove_fault(f);
    let (code, held) = worker.join().unwrap();
    assert_eq!(code, 404);
    assert!(held >= Duration::from_millis(300), "{held:?}");
}

#[test]
fn down_and_up_again_with_state_kept() {
    let server = ApiServer::start().unwrap();
    let a = agent(&server);
    let base = format!("{}{LEASES}", server.url());
    assert_eq!(
        call(&a, "POST", &base, None, Some(&lease("kept", None, 15))).0,
        201
    );
    server.go_down();
    assert!(
        a.get(format!("{base}/kept")).call().is_err(),
        "refused while down"
    );
    server.come_up();
    let (code, body) = call(&a, "GET", &format!("{base}/kept"), None, None);
    assert_eq!(code, 200);
    assert_eq!(body["spec"]["holderIdentity"], "holder-a");
}
