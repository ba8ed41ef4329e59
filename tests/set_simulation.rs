//! The deterministic simulation of elector sets (see `kube_elector::testing::sim::sets`): three to five
//! members, each running the set's real state machine, under faults, crashes, stops, restarts and joins,
//! with per-shard invariants.
//!
//! - `cargo test --test set_simulation` runs at least 1,000,000 lock steps across seeds.
//! - `KUBE_ELECTOR_SET_SIM_TOTAL_STEPS=100000000 cargo test --release --test set_simulation -- --nocapture`
//!   is the soak (100× more).
//! - `KUBE_ELECTOR_SET_SIM_SEED=N cargo test --test set_simulation -- --nocapture replay` prints one
//!   seed's history.

use std::time::Instant;

use kube_elector::testing::sim::SimReport;
use kube_elector::testing::sim::sets::{SetSimConfig, simulate_set};

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

const STEPS_PER_SEED: u64 = 50_000;

/// A failing seed's report, with the history that led to its first violation.
fn explain(r: &SimReport) -> String {
    let traced = simulate_set(&SetSimConfig {
        seed: r.seed,
        steps: STEPS_PER_SEED,
        trace: true,
        ..SetSimConfig::default()
    })
    .up_to_first_violation(80);
    format!(
        "{traced}\nreplay: KUBE_ELECTOR_SET_SIM_SEED={} cargo test --test set_simulation -- --nocapture replay",
        r.seed
    )
}

#[test]
fn a_million_steps_of_sets_under_faults_break_no_shard_invariant() {
    let total = env("KUBE_ELECTOR_SET_SIM_TOTAL_STEPS").unwrap_or(1_000_000);
    let start = Instant::now();
    let (mut steps, mut seeds, mut terms, mut faults, mut simulated) =
        (0u64, 0u64, 0u64, 0u64, 0f64);
    let mut checks = 0u64;
    let mut seed = env("KUBE_ELECTOR_SET_SIM_FIRST_SEED").unwrap_or(0);
    while steps < total {
        let r = simulate_set(&SetSimConfig {
            seed,
            steps: STEPS_PER_SEED,
            ..SetSimConfig::default()
        });
        assert!(r.violations.is_empty(), "{}", explain(&r));
        assert!(r.steps > 0 && r.terms > 0, "seed {seed}: nothing ran");
        steps += r.steps;
        terms += r.terms;
        faults += r.faults;
        simulated += r.simulated.as_secs_f64();
        checks += r.balance_checks;
        checks += r.balance_checks;
        seeds += 1;
        seed += 1;
    }
    // The quiet spells must be long enough, often enough, for the balance to be judged at all.
    assert!(
        checks >= seeds * 10,
        "{checks} balance checks over {seeds} seeds"
    );
    println!(
        "{steps} lock steps over {seeds} seeds ({simulated:.0} s simulated) in {:?}: {terms} terms, {faults} faults, {checks} balance checks, 0 violations",
        start.elapsed()
    );
}

#[test]
fn replay() {
    let Some(seed) = env("KUBE_ELECTOR_SET_SIM_SEED") else {
        return;
    };
    let r = simulate_set(&SetSimConfig {
        seed,
        steps: STEPS_PER_SEED,
        trace: true,
        ..SetSimConfig::default()
    });
    println!("{r}");
}
