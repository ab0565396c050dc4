//! `cargo bench -p grove-sim --bench sim`: how fast the simulator runs a 5-member Raft group
//! under faults, in simulated seconds per wall second (goal: at least 100, i.e. 100x real
//! time). Runs seeds with 5 members, every fault kind allowed, a 300-step (3 s) safety phase,
//! until at least `GROVE_BENCH_SIM_SECONDS` (default 10) wall seconds have passed.
//!
//! Figures (written to `$CARGO_TARGET_DIR/grove-bench/sim.json`):
//! - `sim_seconds_per_wall_second`: virtual time covered by all runs / their wall time.
//! - `runs`, `sim_seconds`, `wall_seconds`, `failed_runs` (should be 0).

// Shared with the segment benches; not every helper is used here.
#[allow(dead_code)]
#[path = "../../segment/benches/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use grove_sim::config::{Overrides, SimConfig};
use grove_sim::run::run;

fn main() {
    let budget = std::env::var("GROVE_BENCH_SIM_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(10.0);
    let overrides = Overrides {
        nodes: Some(5),
        steps: Some(300),
        ..Overrides::default()
    };
    let started = Instant::now();
    let (mut runs, mut failed) = (0u64, 0u64);
    let mut simulated = Duration::ZERO;
    let mut wall = Duration::ZERO;
    let mut seed = 0u64;
    while started.elapsed().as_secs_f64() < budget {
        let config = SimConfig::draw(seed, &overrides);
        let run_started = Instant::now();
        let report = run(&config, false);
        wall += run_started.elapsed();
        simulated += report.sim_time;
        runs += 1;
        failed += u64::from(!report.passed());
        seed += 1;
    }
    let ratio = simulated.as_secs_f64() / wall.as_secs_f64();
    println!(
        "sim: {runs} runs of 5 members under faults, {:.1} simulated s in {:.2} wall s: {ratio:.0}x real time ({failed} failed)",
        simulated.as_secs_f64(),
        wall.as_secs_f64()
    );
    let path = common::write_bench_json(
        "sim",
        &[
            ("sim_seconds_per_wall_second", ratio),
            ("runs", runs as f64),
            ("sim_seconds", simulated.as_secs_f64()),
            ("wall_seconds", wall.as_secs_f64()),
            ("failed_runs", failed as f64),
        ],
    );
    println!("wrote {}", path.display());
}
