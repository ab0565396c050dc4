//! Shrinking a failing run: the same seed with fewer safety steps and fewer fault kinds, as
//! long as the same invariant still fails. Greedy: first halve the steps (binary search for
//! the fewest that still fail), then drop fault kinds one at a time. Each try is a full
//! deterministic run, so the result replays with its own command line.

use crate::config::{Overrides, SimConfig};
use crate::run::{RunReport, run};

/// The smallest failing run found from `failing` (whose first violation names the invariant
/// to keep), and how many runs it took.
pub fn shrink(failing: &RunReport) -> (RunReport, usize) {
    let invariant = failing.violations[0].invariant;
    let still_fails =
        |report: &RunReport| report.violations.iter().any(|v| v.invariant == invariant);
    let config = &failing.config;
    let mut overrides = Overrides {
        nodes: Some(config.nodes),
        steps: Some(config.steps),
        faults: config.allowed.clone(),
    };
    let mut best: Option<RunReport> = None;
    let mut runs = 0;
    // The seed draws the rest; settings not drawn from it are kept.
    let configure = |overrides: &Overrides| SimConfig {
        liveness_bound: config.liveness_bound,
        ..SimConfig::draw(config.seed, overrides)
    };
    let attempt = |overrides: &Overrides, runs: &mut usize| {
        *runs += 1;
        let report = run(&configure(overrides), false);
        still_fails(&report).then_some(report)
    };
    // Fewest steps: binary search over [0, steps].
    let (mut low, mut high) = (0, config.steps);
    while low < high {
        let middle = (low + high) / 2;
        let tried = Overrides {
            steps: Some(middle),
            ..overrides.clone()
        };
        match attempt(&tried, &mut runs) {
            Some(report) => {
                high = middle;
                best = Some(report);
            }
            None => low = middle + 1,
        }
    }
    overrides.steps = Some(high);
    // Fewer fault kinds: drop each one that is not needed.
    for fault in config.allowed.clone() {
        let mut faults = overrides.faults.clone();
        faults.remove(&fault);
        let tried = Overrides {
            faults,
            ..overrides.clone()
        };
        if let Some(report) = attempt(&tried, &mut runs) {
            overrides = tried;
            best = Some(report);
        }
    }
    let best = best.unwrap_or_else(|| run(&configure(&overrides), false));
    (best, runs)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_failing_run_shrinks_to_fewer_steps_and_faults() {
        // A liveness bound of zero fails every run, whatever its steps and faults: the
        // shrinker must get down to no steps and no fault kinds.
        let config = SimConfig {
            liveness_bound: Duration::ZERO,
            ..SimConfig::draw(
                7,
                &Overrides {
                    nodes: Some(3),
                    steps: Some(40),
                    ..Overrides::default()
                },
            )
        };
        let failing = run(&config, false);
        assert_eq!(failing.violations[0].invariant, "liveness");
        let (smaller, runs) = shrink(&failing);
        assert_eq!(smaller.config.steps, 0);
        assert!(
            smaller.config.allowed.is_empty(),
            "{:?}",
            smaller.config.allowed
        );
        assert_eq!(smaller.violations[0].invariant, "liveness");
        assert!(runs > 1);
    }
}
