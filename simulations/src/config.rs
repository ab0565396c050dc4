//! [`SimConfig`]: everything a run does, drawn from its seed (swarm testing: each fault kind
//! the command line allows is switched on or off per seed, and its intensity drawn), so one
//! seed names one run. Printed at the start of every run.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use grove_raft::mutation::Mutation;
use grove_rpc::Faults as NetworkFaults;

use crate::disk::DiskFaults;
use crate::rng::{stream, uniform};
use crate::watchdog::RUN_BUDGET_DEFAULT;

/// A kind of fault the simulator can inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// A member crashes (unsynced writes lost) and restarts later.
    Crash,
    /// A minority of members is cut off from the rest (both ways).
    Minority,
    /// The current leader is cut off from everyone.
    IsolateLeader,
    /// Some links are cut in one direction only.
    OneWay,
    /// Two halves that reach each other only through one bridge member.
    Bridge,
    /// Messages are lost.
    Loss,
    /// Messages are delayed.
    Delay,
    /// Some messages are delayed more, so later ones overtake them.
    Reorder,
    /// Requests are delivered twice.
    Duplicate,
    /// Disk reads, writes and syncs fail (the member's Raft stops; it is restarted).
    DiskError,
    /// A crash keeps part of the first unsynced batch.
    TornWrite,
    /// Members' clocks run at different rates (timers scaled per member).
    Skew,
    /// `buggify!()` sites in production code fire.
    Buggify,
    /// A member's process stops for a while (no task of it runs; its clock goes on), then
    /// resumes where it was.
    Pause,
    /// Voters are removed from the group and added back (as a learner, then promoted) while
    /// the workload writes.
    Membership,
}

impl Fault {
    pub const ALL: [Fault; 15] = [
        Fault::Crash,
        Fault::Minority,
        Fault::IsolateLeader,
        Fault::OneWay,
        Fault::Bridge,
        Fault::Loss,
        Fault::Delay,
        Fault::Reorder,
        Fault::Duplicate,
        Fault::DiskError,
        Fault::TornWrite,
        Fault::Skew,
        Fault::Buggify,
        Fault::Pause,
        Fault::Membership,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::Crash => "crash",
            Fault::Minority => "minority",
            Fault::IsolateLeader => "isolate-leader",
            Fault::OneWay => "one-way",
            Fault::Bridge => "bridge",
            Fault::Loss => "loss",
            Fault::Delay => "delay",
            Fault::Reorder => "reorder",
            Fault::Duplicate => "duplicate",
            Fault::DiskError => "disk-error",
            Fault::TornWrite => "torn-write",
            Fault::Skew => "skew",
            Fault::Buggify => "buggify",
            Fault::Pause => "pause",
            Fault::Membership => "membership",
        }
    }

    pub fn is_partition(self) -> bool {
        matches!(
            self,
            Fault::Minority | Fault::IsolateLeader | Fault::OneWay | Fault::Bridge
        )
    }
}

impl FromStr for Fault {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        Fault::ALL
            .into_iter()
            .find(|fault| fault.name() == text)
            .ok_or_else(|| {
                let names: Vec<_> = Fault::ALL.iter().map(|f| f.name()).collect();
                format!(
                    "unknown fault '{text}' (known: {}, all, none)",
                    names.join(", ")
                )
            })
    }
}

/// Parses a fault list: comma-separated names, `all` or `none`.
pub fn parse_faults(text: &str) -> Result<BTreeSet<Fault>, String> {
    match text.trim() {
        "all" => Ok(Fault::ALL.into_iter().collect()),
        "none" | "" => Ok(BTreeSet::new()),
        list => list.split(',').map(|name| name.trim().parse()).collect(),
    }
}

/// Parses a wall-clock duration: a number with `ms`, `s`, `m` or `h` (`90s`, `10m`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration (a number and ms, s, m or h)"))?;
    let ms = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(format!("'{text}': the unit must be ms, s, m or h")),
    };
    Ok(Duration::from_millis(number.saturating_mul(ms)))
}

/// Formats a fault set as [`parse_faults`] reads it.
pub fn format_faults(faults: &BTreeSet<Fault>) -> String {
    if faults.is_empty() {
        return "none".into();
    }
    faults
        .iter()
        .map(|fault| fault.name())
        .collect::<Vec<_>>()
        .join(",")
}

/// What the command line fixes; the rest is drawn from the seed.
///
/// An override replaces a drawn value after the draw: every value is drawn, in one fixed
/// order, whatever is overridden, so a run's reproduce line (which names every override)
/// replays the very run it came from, and overriding one value never shifts another.
#[derive(Clone, Debug)]
pub struct Overrides {
    pub nodes: Option<usize>,
    pub steps: Option<u64>,
    /// Fault kinds allowed (each still switched on or off by the seed).
    pub faults: BTreeSet<Fault>,
    /// How long the liveness phase may take (default [`LIVENESS_BOUND_DEFAULT`]).
    pub liveness_bound: Option<Duration>,
    /// The run's wall-clock budget (default [`RUN_BUDGET_DEFAULT`]); not part of the run
    /// itself, so not in its reproduce line.
    pub wall_budget: Option<Duration>,
    /// At this step the driver starts a task that never lets time pass (a check of the
    /// watchdog; in the reproduce line when set).
    pub stall_at_step: Option<u64>,
    /// A bug injected into grove-raft for the run (builds with the `mutations` feature only).
    pub mutation: Option<Mutation>,
}

impl Default for Overrides {
    fn default() -> Self {
        Overrides {
            nodes: None,
            steps: None,
            faults: Fault::ALL.into_iter().collect(),
            liveness_bound: None,
            wall_budget: None,
            stall_at_step: None,
            mutation: None,
        }
    }
}

/// The most members a run may have (`--nodes`); clock rates are drawn for this many, always.
pub const MEMBERS_MAX: usize = 9;
/// The liveness bound when the command line does not say.
pub const LIVENESS_BOUND_DEFAULT: Duration = Duration::from_secs(20);

/// Steps of the safety phase when the command line does not say.
pub const STEPS_DEFAULT: u64 = 150;
/// Virtual time of one step.
pub const STEP: Duration = Duration::from_millis(10);

/// One run, fully determined by `seed` and the overrides.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    /// The fault kinds the command line allowed (the reproduce line repeats them).
    pub allowed: BTreeSet<Fault>,
    pub nodes: usize,
    /// Steps of the safety phase (each [`STEP`] of virtual time).
    pub steps: u64,
    /// Fault kinds on in this run.
    pub faults: BTreeSet<Fault>,
    /// Per step: chance that a running member crashes.
    pub crash_per_step: f64,
    /// Per step: chance that a crashed member restarts.
    pub restart_per_step: f64,
    /// Per step: chance that a running, unpaused member pauses.
    pub pause_per_step: f64,
    /// The longest pause.
    pub pause_ms_max: u64,
    /// Per step, with no membership change under way: chance that one starts.
    pub membership_per_step: f64,
    /// Per step, with no partition in place: chance that one starts.
    pub partition_per_step: f64,
    pub partition_ms_max: u64,
    pub network: NetworkFaults,
    pub disk: DiskFaults,
    /// Per member: the rate of its clock (its Raft timers are divided by it).
    pub clock_rates: Vec<f64>,
    pub buggify_probability: f64,
    /// Competing replica writers per datasource.
    pub replicas: usize,
    pub data_sources: usize,
    pub readers: usize,
    /// Mean think time of a client between operations.
    pub think_ms: u64,
    /// How long the liveness phase may take to converge.
    pub liveness_bound: Duration,
    /// Wall-clock time the run may take before the watchdog stops it.
    pub wall_budget: Duration,
    /// See [`Overrides::stall_at_step`].
    pub stall_at_step: Option<u64>,
    /// See [`Overrides::mutation`].
    pub mutation: Option<Mutation>,
}

impl SimConfig {
    /// Draws the run of `seed` (stream `config`).
    pub fn draw(seed: u64, overrides: &Overrides) -> SimConfig {
        let mut rng = stream(seed, "config");
        // Drawn whether or not it is overridden: the draws after it stay where they are.
        let drawn_nodes = [3, 3, 4, 5, 5][rng.between(0, 4) as usize];
        let nodes = overrides.nodes.unwrap_or(drawn_nodes);
        let steps = overrides.steps.unwrap_or(STEPS_DEFAULT);
        // Swarm testing: every allowed kind is on for 3 seeds in 4.
        // Every kind draws, allowed or not, so narrowing the list (shrinking) keeps the other
        // kinds' draws.
        let faults: BTreeSet<Fault> = Fault::ALL
            .into_iter()
            .filter(|fault| rng.chance(0.75) && overrides.faults.contains(fault))
            .collect();
        let on = |fault| faults.contains(&fault);
        let draw = |rng: &mut crate::rng::SplitMix64, fault: Fault, low: f64, high: f64| {
            let value = uniform(rng, low, high);
            if on(fault) { value } else { 0.0 }
        };
        let crash_per_step = draw(&mut rng, Fault::Crash, 0.002, 0.02);
        let restart_per_step = 0.02 + draw(&mut rng, Fault::Crash, 0.0, 0.1);
        let partition_per_step = uniform(&mut rng, 0.005, 0.03);
        let partition_per_step = if faults.iter().any(|f| f.is_partition()) {
            partition_per_step
        } else {
            0.0
        };
        let partition_ms_max = rng.between(200, 1_500);
        // Every message takes some time (a network never delivers instantly, and a retry loop
        // must move the virtual clock); the delay fault widens the range.
        let base_us = rng.between(100, 1_000);
        let spread_us = rng.between(1_000, 30_000);
        let delay_max_us = base_us + if on(Fault::Delay) { spread_us } else { base_us };
        let network = NetworkFaults {
            drop_probability: draw(&mut rng, Fault::Loss, 0.0, 0.1),
            duplicate_probability: draw(&mut rng, Fault::Duplicate, 0.0, 0.1),
            delay_min: Duration::from_micros(base_us),
            delay_max: Duration::from_micros(delay_max_us),
            reorder_probability: draw(&mut rng, Fault::Reorder, 0.0, 0.2),
            reorder_delay_max: Duration::from_millis(if on(Fault::Reorder) { 50 } else { 0 }),
        };
        let disk = DiskFaults {
            read_error_probability: draw(&mut rng, Fault::DiskError, 0.0, 0.003),
            write_error_probability: draw(&mut rng, Fault::DiskError, 0.0, 0.003),
            sync_error_probability: draw(&mut rng, Fault::DiskError, 0.0, 0.003),
            torn_write_probability: draw(&mut rng, Fault::TornWrite, 0.2, 1.0),
        };
        let skew = draw(&mut rng, Fault::Skew, 0.0, 0.25);
        // A rate for every member a run may have, so the member count shifts no later draw.
        let mut clock_rates: Vec<f64> = (0..MEMBERS_MAX)
            .map(|_| 1.0 + uniform(&mut rng, -skew, skew))
            .collect();
        clock_rates.truncate(nodes);
        let buggify_probability = draw(&mut rng, Fault::Buggify, 0.01, 0.1);
        let pause_per_step = draw(&mut rng, Fault::Pause, 0.002, 0.02);
        // From shorter than an election timeout to several of them.
        let pause_ms_max = rng.between(50, 2_000);
        let membership_per_step = draw(&mut rng, Fault::Membership, 0.005, 0.05);
        SimConfig {
            seed,
            allowed: overrides.faults.clone(),
            nodes,
            steps,
            faults,
            crash_per_step,
            restart_per_step,
            pause_per_step,
            pause_ms_max,
            membership_per_step,
            partition_per_step,
            partition_ms_max,
            network,
            disk,
            clock_rates,
            buggify_probability,
            replicas: rng.between(2, 3) as usize,
            data_sources: rng.between(1, 2) as usize,
            readers: rng.between(1, 2) as usize,
            think_ms: rng.between(2, 30),
            liveness_bound: overrides.liveness_bound.unwrap_or(LIVENESS_BOUND_DEFAULT),
            wall_budget: overrides.wall_budget.unwrap_or(RUN_BUDGET_DEFAULT),
            stall_at_step: overrides.stall_at_step,
            mutation: overrides.mutation,
        }
    }

    /// The overrides that replay this run: every value the command line may fix, as this
    /// run has it.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            nodes: Some(self.nodes),
            steps: Some(self.steps),
            faults: self.allowed.clone(),
            liveness_bound: Some(self.liveness_bound),
            wall_budget: Some(self.wall_budget),
            stall_at_step: self.stall_at_step,
            mutation: self.mutation,
        }
    }

    /// The network without faults: only its base latency (while the group forms and in the
    /// liveness phase), so every message still takes virtual time.
    pub fn calm_network(&self) -> NetworkFaults {
        NetworkFaults {
            delay_min: self.network.delay_min,
            delay_max: self.network.delay_min,
            ..NetworkFaults::none()
        }
    }

    pub fn has(&self, fault: Fault) -> bool {
        self.faults.contains(&fault)
    }

    /// The partition kinds on in this run.
    pub fn partitions(&self) -> Vec<Fault> {
        self.faults
            .iter()
            .copied()
            .filter(|f| f.is_partition())
            .collect()
    }

    /// The command that replays this run: the seed and every value the command line may
    /// fix (the liveness bound only when it is not the default).
    pub fn reproduce_command(&self) -> String {
        let features = if self.mutation.is_some() {
            " --features mutations"
        } else {
            ""
        };
        format!(
            "cargo run -p grove-sim{features} -- run {}",
            self.reproduce_args().join(" ")
        )
    }

    /// The arguments of `grove-sim run` that replay this run.
    pub fn reproduce_args(&self) -> Vec<String> {
        let mut args = vec![
            "--seed".to_string(),
            self.seed.to_string(),
            "--nodes".into(),
            self.nodes.to_string(),
            "--steps".into(),
            self.steps.to_string(),
            "--faults".into(),
            format_faults(&self.allowed),
        ];
        if self.liveness_bound != LIVENESS_BOUND_DEFAULT {
            args.push("--liveness-ms".into());
            args.push(self.liveness_bound.as_millis().to_string());
        }
        if let Some(step) = self.stall_at_step {
            args.push("--stall-at-step".into());
            args.push(step.to_string());
        }
        if let Some(mutation) = self.mutation {
            args.push("--mutation".into());
            args.push(mutation.to_string());
        }
        args
    }
}

impl fmt::Display for SimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seed {}: {} members, {} safety steps of {} ms, liveness bound {} s",
            self.seed,
            self.nodes,
            self.steps,
            STEP.as_millis(),
            self.liveness_bound.as_secs()
        )?;
        writeln!(f, "  faults on: {}", format_faults(&self.faults))?;
        writeln!(
            f,
            "  crash/step {:.4}, restart/step {:.4}, partition/step {:.4} (up to {} ms), pause/step {:.4} (up to {} ms), membership change/step {:.4}",
            self.crash_per_step,
            self.restart_per_step,
            self.partition_per_step,
            self.partition_ms_max,
            self.pause_per_step,
            self.pause_ms_max,
            self.membership_per_step
        )?;
        let net = &self.network;
        writeln!(
            f,
            "  network: loss {:.3}, duplicate {:.3}, delay {:?}..{:?}, reorder {:.3} (+{:?})",
            net.drop_probability,
            net.duplicate_probability,
            net.delay_min,
            net.delay_max,
            net.reorder_probability,
            net.reorder_delay_max
        )?;
        let disk = &self.disk;
        writeln!(
            f,
            "  disk: read errors {:.5}, write errors {:.5}, sync errors {:.5}, torn writes {:.2}",
            disk.read_error_probability,
            disk.write_error_probability,
            disk.sync_error_probability,
            disk.torn_write_probability
        )?;
        let rates: Vec<String> = self.clock_rates.iter().map(|r| format!("{r:.3}")).collect();
        writeln!(f, "  clock rates: {}", rates.join(" "))?;
        write!(
            f,
            "  buggify {:.3}; workload: {} datasources x {} replica writers, {} readers, think {} ms",
            self.buggify_probability, self.data_sources, self.replicas, self.readers, self.think_ms
        )?;
        if let Some(step) = self.stall_at_step {
            write!(
                f,
                "\n  a task that never lets time pass starts at step {step}"
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_draws_one_config_and_narrowing_the_faults_keeps_the_other_draws() {
        let all = Overrides::default();
        let a = SimConfig::draw(42, &all);
        assert_eq!(a.to_string(), SimConfig::draw(42, &all).to_string());
        assert_ne!(a.to_string(), SimConfig::draw(43, &all).to_string());
        assert!((3..=5).contains(&a.nodes));
        // Dropping one kind from the allowed list leaves the others as they were drawn.
        let dropped = *a.faults.iter().next().expect("seed 42 has faults on");
        let mut fewer = all.clone();
        fewer.faults.remove(&dropped);
        let b = SimConfig::draw(42, &fewer);
        let expected: BTreeSet<Fault> =
            a.faults.iter().copied().filter(|f| *f != dropped).collect();
        assert_eq!(b.faults, expected);
        assert_eq!(a.nodes, b.nodes);
        assert_eq!(a.think_ms, b.think_ms);
    }

    #[test]
    fn overriding_the_member_count_shifts_no_other_draw() {
        for seed in 0..50 {
            let drawn = SimConfig::draw(seed, &Overrides::default());
            // The reproduce line's overrides give the very same run.
            let replayed = SimConfig::draw(seed, &drawn.overrides());
            assert_eq!(drawn.to_string(), replayed.to_string(), "seed {seed}");
            // Another member count changes the members only.
            let nine = SimConfig::draw(
                seed,
                &Overrides {
                    nodes: Some(MEMBERS_MAX),
                    ..Overrides::default()
                },
            );
            assert_eq!(nine.clock_rates[..drawn.nodes], drawn.clock_rates[..]);
            assert_eq!(
                (nine.faults.clone(), nine.network.clone(), nine.think_ms),
                (drawn.faults.clone(), drawn.network.clone(), drawn.think_ms),
                "seed {seed}"
            );
        }
    }

    #[test]
    fn fault_lists_parse_and_print_back() {
        let faults = parse_faults("crash,loss,torn-write").unwrap();
        assert_eq!(format_faults(&faults), "crash,loss,torn-write");
        assert_eq!(parse_faults("all").unwrap().len(), Fault::ALL.len());
        assert!(parse_faults("none").unwrap().is_empty());
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("10").unwrap_err().contains("unit"));
        assert!(parse_duration("s").is_err());
        assert!(
            parse_faults("crash,gremlins")
                .unwrap_err()
                .contains("gremlins")
        );
        let config = SimConfig::draw(
            1,
            &Overrides {
                nodes: Some(4),
                steps: Some(7),
                faults,
                ..Overrides::default()
            },
        );
        assert!(
            config
                .reproduce_command()
                .ends_with("run --seed 1 --nodes 4 --steps 7 --faults crash,loss,torn-write")
        );
        assert!(
            config
                .faults
                .is_subset(&parse_faults("crash,loss,torn-write").unwrap())
        );
    }
}
