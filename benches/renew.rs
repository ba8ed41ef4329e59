//! The cost of one renew as leader (`try_acquire_or_renew`, the fast path: one PUT) against the embedded
//! API server, beside a raw ureq PUT of the same Lease on the same kind of connection, plain HTTP and TLS.
//! The ratio renew / raw PUT is our overhead (target ≤ 1.10).
//!
//!     cargo bench --bench renew
//!     KUBE_ELECTOR_RATIO_ONLY=1 taskset -c 0 cargo bench --bench renew   # stable ratio, see README
//!
//! On a 2-core VM, each connection's latency is bimodal: ~35 µs when the server thread that owns it
//! wakes on the client's core, ~100 µs when it wakes on the other. Which mode a connection gets is luck,
//! so unpinned ratios can be off by 3× either way; pinning the process to one core removes it.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use kube_elector::Timing;
use kube_elector::election::Elector;
use kube_elector::lock::LeaseLock;
use kube_elector::testing::ApiServer;
use serde_json::Value;
use ureq::Agent;

fn timing() -> Timing {
    // Long enough that the deadline never interferes with the measurement.
    Timing {
        lease_duration: Duration::from_secs(600),
        renew_deadline: Duration::from_secs(300),
        retry_period: Duration::from_secs(1),
    }
}

/// A raw client: one ureq agent, the same TLS roots, PUTting the Lease back with its resourceVersion.
struct RawPut {
    agent: Agent,
    url: String,
    auth: Option<String>,
    object: Value,
}

impl RawPut {
    fn new(server: &ApiServer, token: Option<&str>, name: &str) -> Self {
        let mut tls = ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::Rustls)
            .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()));
        if let Some(ca) = server.ca_pem() {
            let certs: Vec<_> = ureq::tls::parse_pem(ca.as_bytes())
                .filter_map(|i| match i.ok()? {
                    ureq::tls::PemItem::Certificate(c) => Some(c),
                    _ => None,
                })
                .collect();
            tls = tls.root_certs(ureq::tls::RootCerts::from(certs));
        }
        let agent: Agent = Agent::config_builder()
            .http_status_as_error(false)
            .tls_config(tls.build())
            .build()
            .into();
        let base = format!(
            "{}/apis/coordination.k8s.io/v1/namespaces/default/leases",
            server.url()
        );
        let mut raw = RawPut {
            agent,
            url: format!("{base}/{name}"),
            auth: token.map(|t| format!("Bearer {t}")),
            object: Value::Null,
        };
        // The same Lease as the elector's, annotation included (each elector writes its incarnation
        // beside its record), so the two PUTs carry the same bytes.
        let lease = serde_json::json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "namespace": "default",
                         "annotations": {"kube-elector/incarnation": "0123456789abcdef"}},
            "spec": {"holderIdentity": "raw", "leaseDurationSeconds": 600, "leaseTransitions": 0,
                     "acquireTime": "2026-01-02T03:04:05.123456Z", "renewTime": "2026-01-02T03:04:05.123456Z"}
        });
        let mut req = raw
            .agent
            .post(&base)
            .header("Content-Type", "application/json");
        if let Some(a) = &raw.auth {
            req = req.header("Authorization", a);
        }
        let mut resp = req.send(serde_json::to_vec(&lease).unwrap()).unwrap();
        raw.object = serde_json::from_slice(&resp.body_mut().read_to_vec().unwrap()).unwrap();
        raw
    }

    fn put(&mut self) {
        self.object["spec"]["renewTime"] = Value::String(
            kube_elector::record::time::format_micro_time(&chrono::Utc::now()),
        );
        let mut req = self
            .agent
            .put(&self.url)
            .header("Content-Type", "application/json");
        if let Some(a) = &self.auth {
            req = req.header("Authorization", a);
        }
        let mut resp = req.send(serde_json::to_vec(&self.object).unwrap()).unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        self.object = serde_json::from_slice(&resp.body_mut().read_to_vec().unwrap()).unwrap();
    }
}

struct Setup {
    _server: ApiServer,
    elector: Elector<LeaseLock>,
    raw: RawPut,
}

fn setup(tls: bool) -> Setup {
    // Tokens are never sent over plain HTTP, so only the TLS server authenticates.
    let builder = ApiServer::builder().tls(tls);
    let server = if tls { builder.token("bench") } else { builder }
        .start()
        .unwrap();
    let config = if tls {
        server.config_for("bench")
    } else {
        server.config()
    };
    let lock = LeaseLock::new(&config, "default", "bench-elector", "bench").unwrap();
    let mut elector = Elector::new(lock, timing()).unwrap();
    assert!(elector.try_acquire_or_renew().unwrap());
    let raw = RawPut::new(&server, tls.then_some("bench"), "bench-raw");
    Setup {
        _server: server,
        elector,
        raw,
    }
}

fn bench_renew(c: &mut Criterion) {
    for (label, tls) in [("plain", false), ("tls", true)] {
        let mut s = setup(tls);
        let mut group = c.benchmark_group(format!("renew/{label}"));
        group.bench_function("raw_ureq_put", |b| b.iter(|| s.raw.put()));
        group.bench_function("try_acquire_or_renew", |b| {
            b.iter(|| assert!(black_box(s.elector.try_acquire_or_renew().unwrap())))
        });
        group.finish();
    }
}

/// Interleaved runs of both, so drift on a shared machine hits them alike; prints the ratio.
fn print_ratios(iterations: u32) {
    for (label, tls) in [("plain", false), ("tls", true)] {
        let mut s = setup(tls);
        let (mut ours, mut raw) = (Vec::new(), Vec::new());
        // Alternate the order (ABBA): the first request after a pause is slower on a shared VM, and
        // that position bias must hit both sides alike.
        for i in 0..iterations {
            let mut renew = || {
                let t0 = Instant::now();
                let r = s.elector.try_acquire_or_renew().unwrap();
                let t = t0.elapsed();
                assert!(r);
                t
            };
            if i % 2 == 0 {
                ours.push(renew());
                let t = Instant::now();
                s.raw.put();
                raw.push(t.elapsed());
            } else {
                let t = Instant::now();
                s.raw.put();
                raw.push(t.elapsed());
                ours.push(renew());
            }
        }
        ours.sort();
        raw.sort();
        let median = |v: &Vec<Duration>| v[v.len() / 2];
        println!(
            "renew/{label}: median renew {:?}, median raw PUT {:?}, ratio {:.3} (n = {iterations})",
            median(&ours),
            median(&raw),
            median(&ours).as_secs_f64() / median(&raw).as_secs_f64()
        );
    }
}

fn main() {
    // KUBE_ELECTOR_RATIO_ONLY=1: skip criterion, print only the interleaved ratio (quick, for pinned runs).
    if std::env::var_os("KUBE_ELECTOR_RATIO_ONLY").is_some() {
        print_ratios(2000);
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    bench_renew(&mut c);
    print_ratios(2000);
    c.final_summary();
}
