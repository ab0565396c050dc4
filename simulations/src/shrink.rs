//! Shrinking a failing run: the same seed with fewer members, fewer safety steps and fewer
//! fault kinds, as long as the same invariant still fails. Greedy: first the fewest steps that
//! still fail (binary search), then fewer members, then fault kinds dropped one at a time.
//! Every draw is made whatever the overrides (see [`crate::config::Overrides`]), so each try
//! is a full deterministic run that replays with its own reproduce line; the result is always
//! a run that was seen to fail — the input itself when nothing smaller fails.

use crate::config::{Overrides, SimConfig};
use crate::run::{RunReport, run};

/// The smallest failing run found from `failing` (whose first violation names the invariant
/// to keep), and how many runs it took.
pub fn shrink(failing: &RunReport) -> (RunReport, usize) {
    let invariant = failing.violations[0].invariant;
    let still_fails =
        |report: &RunReport| report.violations.iter().any(|v| v.invariant == invariant);
    let seed = failing.config.seed;
    let mut overrides = failing.config.overrides();
    let mut best: Option<RunReport> = None;
    let mut runs = 0;
    let mut attempt = |overrides: &Overrides| {
        runs += 1;
        let report = run(&SimConfig::draw(seed, overrides), false);
        still_fails(&report).then_some(report)
    };
    // Fewest steps: binary search over [0, steps).
    let steps = failing.config.steps;
    let (mut low, mut high) = (0, steps);
    while low < high {
        let middle = (low + high) / 2;
        let tried = Overrides {
            steps: Some(middle),
            ..overrides.clone()
        };
        match attempt(&tried) {
            Some(report) => {
                high = middle;
                best = Some(report);
            }
            None => low = middle + 1,
        }
    }
    overrides.steps = Some(high);
    // Fewer members: the fewest (from 3) that still fail.
    for nodes in 3..failing.config.nodes {
        let tried = Overrides {
            nodes: Some(nodes),
            ..overrides.clone()
        };
        if let Some(report) = attempt(&tried) {
            overrides = tried;
            best = Some(report);
            break;
        }
    }
    // Fewer fault kinds: drop each one that is not needed.
    for fault in failing.config.allowed.clone() {
        let mut faults = overrides.faults.clone();
        faults.remove(&fault);
        let tried = Overrides {
            faults,
            ..overrides.clone()
        };
        if let Some(report) = attempt(&tried) {
            overrides = tried;
            best = Some(report);
        }
    }
    // Nothing smaller failed: the input run is the answer (it failed; it is not re-run).
    let best = best.unwrap_or_else(|| failing.clone());
    assert!(still_fails(&best), "a shrunk run is a failing run");
    (best, runs)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_failing_run_shrinks_to_fewer_steps_and_faults() {
        // A liveness bound of zero fails every run, whatever its steps and faults: the
        // shrinker must get down to no steps, 3 members and no fault kinds.
        let config = SimConfig::draw(
            7,
            &Overrides {
                steps: Some(40),
                liveness_bound: Some(Duration::ZERO),
                ..Overrides::default()
            },
        );
        let failing = run(&config, false);
        assert_eq!(failing.violations[0].invariant, "liveness");
        let (smaller, runs) = shrink(&failing);
        assert_eq!(smaller.config.steps, 0);
        assert_eq!(smaller.config.nodes, 3);
        assert!(
            smaller.config.allowed.is_empty(),
            "{:?}",
            smaller.config.allowed
        );
        assert_eq!(smaller.violations[0].invariant, "liveness");
        assert!(runs > 1);
        // Its reproduce line's overrides replay it: the same trace.
        let replayed = run(&SimConfig::draw(7, &smaller.config.overrides()), false);
        assert_eq!(replayed.trace_hash, smaller.trace_hash);
    }
}
