//! The deterministic simulation (see `kube_elector::testing::sim`): many seeds, every lock kind and both
//! migrations, faults, drifting clocks and jumping wall clocks, against the real election core and pacing.
//!
//! - `cargo test --test simulation` runs at least 1,000,000 election steps across seeds.
//! - `KUBE_ELECTOR_SIM_TOTAL_STEPS=100000000 cargo test --release --test simulation -- --nocapture` is
//!   the soak (100× more).
//! - `KUBE_ELECTOR_SIM_SEED=N cargo test --test simulation -- --nocapture replay` prints one seed's
//!   history: every request, answer, fault and leadership change.

use std::time::Instant;

use kube_elector::testing::sim::{SimConfig, SimReport, simulate};

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// A failing seed's report, with the history that led to its first violation.
fn explain(r: &SimReport) -> String {
    let traced = simulate(&SimConfig {
        seed: r.seed,
        trace: true,
        ..SimConfig::default()
    })
    .up_to_first_violation(60);
    format!(
        "{traced}\nreplay: KUBE_ELECTOR_SIM_SEED={} cargo test --test simulation -- --nocapture replay",
        r.seed
    )
}

#[test]
fn a_million_steps_of_faults_break_no_invariant() {
    let total = env("KUBE_ELECTOR_SIM_TOTAL_STEPS").unwrap_or(1_000_000);
    let start = Instant::now();
    let (mut steps, mut seeds, mut terms, mut faults, mut excused) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut seed = env("KUBE_ELECTOR_SIM_FIRST_SEED").unwrap_or(0);
    while steps < total {
        let r = simulate(&SimConfig {
            seed,
            steps: 5_000,
            ..SimConfig::default()
        });
        assert!(r.violations.is_empty(), "{}", explain(&r));
        steps += r.steps;
        terms += r.terms;
        faults += r.faults;
        excused += r.excused_blind_creates + r.excused_blind_clears;
        seeds += 1;
        seed += 1;
    }
    println!(
        "{steps} election steps over {seeds} seeds in {:?}: {terms} terms, {faults} faults, {excused} blind takeovers after deletes and clears, 0 violations",
        start.elapsed()
    );
}

#[test]
fn a_healthy_server_elects_a_leader_within_the_bound_every_time() {
    for seed in 0..40 {
        let r = simulate(&SimConfig {
            seed,
            steps: 3_000,
            faults: false,
            ..SimConfig::default()
        });
        assert!(r.violations.is_empty(), "{}", explain(&r));
        assert!(r.terms >= 1, "seed {seed}: nobody ever led");
    }
}

#[test]
fn a_seed_replays_the_same_history() {
    let config = SimConfig {
        seed: 424_242,
        steps: 3_000,
        trace: true,
        ..SimConfig::default()
    };
    let (a, b) = (simulate(&config), simulate(&config));
    assert_eq!((a.steps, a.terms, a.faults), (b.steps, b.terms, b.faults));
    assert!(a.history.len() > 1_000);
    assert_eq!(a.history, b.history);
}

#[test]
fn replay() {
    let Some(seed) = env("KUBE_ELECTOR_SIM_SEED") else {
        return;
    };
    let r = simulate(&SimConfig {
        seed,
        trace: true,
        ..SimConfig::default()
    });
    println!("{r}");
}
