//! `grove-sim`: run one seed, or sweep a range of seeds.
//!
//! ```text
//! grove-sim run --seed S [--nodes N] [--steps N] [--faults LIST] [--liveness-ms MS] [--run-budget D] [--trace] [--shrink]
//! grove-sim sweep --seeds A..B [--nodes N] [--steps N] [--faults LIST] [--liveness-ms MS]
//! ```
//! A run prints its configuration first and ends with `trace-hash: <hex>`. A failure prints
//! the invariant, the tail of the trace, its trace hash and the command that reproduces it
//! (the same trace hash); `--shrink` then looks for a smaller failing run (fewer steps,
//! members and fault kinds) and prints it the same way.

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use grove_raft::mutation::Mutation;
use grove_sim::config::{Overrides, SimConfig, parse_duration, parse_faults};
use grove_sim::run::{RunReport, run};
use grove_sim::shrink::shrink;

#[derive(Parser)]
#[command(name = "grove-sim", about = "Grove's deterministic cluster simulator")]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Run one seed.
    Run {
        #[arg(long)]
        seed: u64,
        #[command(flatten)]
        shape: Shape,
        /// Print every trace event.
        #[arg(long)]
        trace: bool,
        /// On failure, look for a smaller failing run.
        #[arg(long)]
        shrink: bool,
    },
    /// Run every seed of a range `A..B` (B excluded).
    Sweep {
        #[arg(long)]
        seeds: String,
        #[command(flatten)]
        shape: Shape,
    },
}

#[derive(Args)]
struct Shape {
    /// Members (default: drawn from the seed, 3 to 5).
    #[arg(long)]
    nodes: Option<usize>,
    /// Safety-phase steps of 10 ms (default 150).
    #[arg(long)]
    steps: Option<u64>,
    /// Fault kinds allowed: a comma-separated list, `all` or `none`.
    #[arg(long, default_value = "all")]
    faults: String,
    /// How long the liveness phase may take to converge, in ms (default 20,000).
    #[arg(long)]
    liveness_ms: Option<u64>,
    /// Wall-clock time one run may take before the watchdog fails it (`90s`, `10m`; default
    /// 5m).
    #[arg(long)]
    run_budget: Option<String>,
    /// Start a task that never lets time pass at this step (checks the watchdog).
    #[arg(long, hide = true)]
    stall_at_step: Option<u64>,
    /// Inject a bug into grove-raft (builds with `--features mutations` only).
    #[arg(long)]
    mutation: Option<String>,
}

impl Shape {
    fn overrides(&self) -> Result<Overrides, String> {
        if self.nodes.is_some_and(|n| !(1..=9).contains(&n)) {
            return Err("--nodes must be 1 to 9".into());
        }
        Ok(Overrides {
            nodes: self.nodes,
            steps: self.steps,
            faults: parse_faults(&self.faults)?,
            liveness_bound: self.liveness_ms.map(std::time::Duration::from_millis),
            wall_budget: self.run_budget.as_deref().map(parse_duration).transpose()?,
            stall_at_step: self.stall_at_step,
            mutation: self.mutation()?,
        })
    }

    fn mutation(&self) -> Result<Option<Mutation>, String> {
        let Some(name) = &self.mutation else {
            return Ok(None);
        };
        if !grove_raft::mutation::ENABLED {
            return Err(
                "--mutation needs a build with `--features mutations` (cargo run -p grove-sim \
                 --features mutations -- ...)"
                    .into(),
            );
        }
        name.parse().map(Some)
    }
}

fn print_failure(report: &RunReport) {
    for violation in &report.violations {
        println!("VIOLATION {violation}");
    }
    println!("trace tail:");
    for line in &report.tail {
        println!("  {line}");
    }
    println!("failed trace-hash: {:016x}", report.trace_hash);
    println!("reproduce: {}", report.config.reproduce_command());
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Commands::Run {
            seed,
            shape,
            trace,
            shrink: want_shrink,
        } => {
            let overrides = match shape.overrides() {
                Ok(overrides) => overrides,
                Err(e) => {
                    eprintln!("grove-sim: {e}");
                    return ExitCode::from(2);
                }
            };
            let config = SimConfig::draw(seed, &overrides);
            println!("{config}");
            let started = std::time::Instant::now();
            let report = run(&config, trace);
            let wall = started.elapsed();
            println!("{}", report.summary);
            println!(
                "virtual {:.3} s in {:.3} s wall ({:.0}x); converged {:?} after healing; {} events",
                report.sim_time.as_secs_f64(),
                wall.as_secs_f64(),
                report.sim_time.as_secs_f64() / wall.as_secs_f64().max(1e-9),
                report.converged_after,
                report.events
            );
            let passed = report.passed();
            if !passed {
                print_failure(&report);
                if want_shrink {
                    let (smaller, runs) = shrink(&report);
                    println!("shrunk in {runs} runs to:");
                    println!("{}", smaller.config);
                    print_failure(&smaller);
                }
            } else {
                println!("all invariants hold");
            }
            println!("trace-hash: {:016x}", report.trace_hash);
            if passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Commands::Sweep { seeds, shape } => {
            let overrides = match shape.overrides() {
                Ok(overrides) => overrides,
                Err(e) => {
                    eprintln!("grove-sim: {e}");
                    return ExitCode::from(2);
                }
            };
            let Some((from, to)) = seeds
                .split_once("..")
                .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)))
            else {
                eprintln!("grove-sim: --seeds must be A..B");
                return ExitCode::from(2);
            };
            let mut failed = 0;
            for seed in from..to {
                let config = SimConfig::draw(seed, &overrides);
                let report = run(&config, false);
                if report.passed() {
                    println!("seed {seed}: ok  trace-hash: {:016x}", report.trace_hash);
                } else {
                    failed += 1;
                    println!("seed {seed}: FAILED");
                    println!("{config}");
                    print_failure(&report);
                }
            }
            println!("{} seeds, {failed} failed", to.saturating_sub(from));
            if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
