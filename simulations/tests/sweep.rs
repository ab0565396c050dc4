//! The simulator in the default test run: a sweep of 100 seeds with every fault kind allowed
//! (each seed draws its own mix), and the determinism check — a batch of seeds run twice in
//! this process must give identical trace hashes (CI also compares two processes: see
//! ARCHITECTURE.md). Longer sweeps: `cargo run -p grove-sim --release -- sweep --seeds 0..10000`.

use grove_sim::config::{Overrides, SimConfig, parse_faults};
use grove_sim::run::run;

/// Seeds the default test run sweeps.
const SWEEP_SEEDS: u64 = 100;

#[test]
fn a_hundred_seeds_keep_every_invariant() {
    let overrides = Overrides::default();
    let mut failures = Vec::new();
    for seed in 0..SWEEP_SEEDS {
        let config = SimConfig::draw(seed, &overrides);
        let report = run(&config, false);
        if !report.passed() {
            failures.push(format!(
                "seed {seed}: {}\n  reproduce: {}",
                report.violations[0],
                config.reproduce_command()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_same_seed_gives_the_same_trace_hash() {
    let overrides = Overrides::default();
    for seed in [3, 17, 31, 64, 1_000_003] {
        let config = SimConfig::draw(seed, &overrides);
        let first = run(&config, false);
        let second = run(&config, false);
        assert_eq!(
            first.trace_hash, second.trace_hash,
            "seed {seed} replayed differently"
        );
        assert!(first.events > 100, "seed {seed}: a run records its events");
    }
    let a = run(&SimConfig::draw(5, &overrides), false);
    let b = run(&SimConfig::draw(6, &overrides), false);
    assert_ne!(
        a.trace_hash, b.trace_hash,
        "different seeds, different runs"
    );
}

#[test]
fn a_fault_free_run_converges_at_once_and_answers_writes() {
    let overrides = Overrides {
        nodes: Some(3),
        steps: Some(100),
        faults: parse_faults("none").unwrap(),
        ..Overrides::default()
    };
    let report = run(&SimConfig::draw(9, &overrides), false);
    assert!(report.passed(), "{:?}", report.violations);
    let converged = report.converged_after.expect("converged");
    assert!(
        converged.as_millis() < 1_000,
        "converged after {converged:?}"
    );
    assert!(report.summary.contains("answered"), "{}", report.summary);
}

#[test]
fn two_processes_print_the_same_trace_hash() {
    let hash = |seed: &str| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_grove-sim"))
            .args(["run", "--seed", seed, "--steps", "100"])
            .output()
            .expect("grove-sim runs");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "seed {seed} failed:\n{stdout}");
        let last = stdout.lines().last().unwrap_or_default().to_string();
        assert!(last.starts_with("trace-hash: "), "last line: {last}");
        last
    };
    for seed in ["11", "12"] {
        assert_eq!(
            hash(seed),
            hash(seed),
            "seed {seed} differs between processes"
        );
    }
}
