//! The other costs of an election, each beside its baseline in the same run:
//! - a follower's acquire attempt (one GET and a decision) vs a raw ureq GET of the same Lease;
//! - `is_leader()` from 1 thread and from 8 at once, vs reading an atomic (the floor);
//! - encoding and decoding a Lease and an annotation record.
//!
//! ```text
//! cargo bench --bench elector
//! taskset -c 0 cargo bench --bench elector -- acquire   # stable loopback numbers, see README
//! ```

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::Criterion;
use kube_elector::election::Elector;
use kube_elector::lock::LeaseLock;
use kube_elector::lock::{decode_annotation, encode_annotation};
use kube_elector::record::LeaderElectionRecord;
use kube_elector::testing::ApiServer;
use kube_elector::{LeaderElector, Timing};
use serde_json::{Value, json};

fn timing() -> Timing {
    Timing {
        lease_duration: Duration::from_secs(600),
        renew_deadline: Duration::from_secs(300),
        retry_period: Duration::from_secs(1),
    }
}

fn bench_acquire_attempt(c: &mut Criterion) {
    let server = ApiServer::start().unwrap();
    // Held by someone else for a long time: every attempt is one GET and "not yet".
    server.put_lease_raw(
        "default",
        "held",
        json!({"metadata": {"name": "held"}, "spec": {"holderIdentity": "other", "leaseDurationSeconds": 600,
               "renewTime": "2026-01-02T03:04:05.123456Z", "acquireTime": "2026-01-02T03:04:05.123456Z", "leaseTransitions": 3}}),
    );
    let lock = LeaseLock::new(&server.config(), "default", "held", "me").unwrap();
    let mut elector = Elector::new(lock, timing()).unwrap();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let url = format!(
        "{}/apis/coordination.k8s.io/v1/namespaces/default/leases/held",
        server.url()
    );
    let mut group = c.benchmark_group("acquire_attempt");
    group.bench_function("raw_ureq_get", |b| {
        b.iter(|| {
            let mut r = agent.get(&url).call().unwrap();
            let v: Value = serde_json::from_slice(&r.body_mut().read_to_vec().unwrap()).unwrap();
            black_box(v);
        })
    });
    group.bench_function("try_acquire_or_renew", |b| {
        b.iter(|| assert!(!elector.try_acquire_or_renew().unwrap()))
    });
    group.finish();
}

fn bench_is_leader(c: &mut Criterion) {
    let server = ApiServer::start().unwrap();
    let handle = LeaderElector::builder(server.config(), "hot")
        .lease_duration(Duration::from_secs(15))
        .renew_deadline(Duration::from_secs(10))
        .retry_period(Duration::from_secs(2))
        .start()
        .unwrap();
    let start = Instant::now();
    while !handle.is_leader() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(handle.is_leader());
    let floor = AtomicU64::new(1);
    let mut group = c.benchmark_group("is_leader");
    group.bench_function("atomic_load_baseline", |b| {
        b.iter(|| black_box(floor.load(Ordering::Acquire)))
    });
    group.bench_function("instant_now_baseline", |b| {
        b.iter(|| black_box(Instant::now()))
    });
    group.bench_function("is_leader_1_thread", |b| {
        b.iter(|| black_box(handle.is_leader()))
    });
    group.finish();

    // Eight threads at once: the cost per call when every core is asking.
    let status = handle.status();
    let per_thread = 2_000_000u64;
    let t = Instant::now();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let s = status.clone();
            std::thread::spawn(move || {
                let mut n = 0u64;
                for _ in 0..per_thread {
                    n += u64::from(black_box(s.is_leader()));
                }
                n
            })
        })
        .collect();
    let leading: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let elapsed = t.elapsed();
    println!(
        "is_leader/8_threads: {:.1} ns per call per thread ({} calls, {} true, {:?} wall)",
        elapsed.as_nanos() as f64 / per_thread as f64,
        8 * per_thread,
        leading,
        elapsed
    );
    handle.stop().unwrap();
}

fn bench_codecs(c: &mut Criterion) {
    let server = ApiServer::start().unwrap();
    let lock = LeaseLock::new(&server.config(), "default", "codec", "me").unwrap();
    let mut e = Elector::new(lock, timing()).unwrap();
    assert!(e.try_acquire_or_renew().unwrap());
    let lease_text = serde_json::to_string(&server.lease("default", "codec").unwrap()).unwrap();
    let lease = server.lease("default", "codec").unwrap();
    let record = LeaderElectionRecord::from_json_object(
        lease["spec"].as_object().unwrap(),
        "leaseTransitions",
    )
    .unwrap();
    let annotation = encode_annotation(&record);
    let cm =
        json!({"metadata": {"annotations": {kube_elector::lock::LEADER_ANNOTATION: annotation}}});
    let mut group = c.benchmark_group("codec");
    group.bench_function("lease_json_parse_baseline", |b| {
        b.iter(|| black_box(serde_json::from_str::<Value>(&lease_text).unwrap()))
    });
    group.bench_function("lease_decode", |b| {
        b.iter(|| {
            let v: Value = serde_json::from_str(&lease_text).unwrap();
            black_box(
                LeaderElectionRecord::from_json_object(
                    v["spec"].as_object().unwrap(),
                    "leaseTransitions",
                )
                .unwrap(),
            )
        })
    });
    group.bench_function("annotation_encode", |b| {
        b.iter(|| black_box(encode_annotation(&record)))
    });
    group.bench_function("annotation_decode", |b| {
        b.iter(|| black_box(decode_annotation(&cm).unwrap()))
    });
    group.finish();
    assert!(e.release().unwrap());
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench_acquire_attempt(&mut c);
    bench_is_leader(&mut c);
    bench_codecs(&mut c);
    c.final_summary();
}
