//! The simulator catches real bugs by itself: each bug injected into grove-raft
//! (`grove_raft::mutation`, only in builds with `--features mutations`) fails grove-sim.
//!
//! ```text
//! cargo test -p grove-sim --features mutations --test mutations
//! ```
//! The pinned seeds (`grove_sim::regressions`) fail with their bug injected, with the
//! invariant that caught it first.

use grove_sim::regressions::REGRESSIONS;
use grove_sim::run::run;

#[test]
fn each_pinned_seed_fails_with_its_bug_injected() {
    for regression in REGRESSIONS {
        let config = regression.config(true);
        let report = run(&config, false);
        assert!(
            !report.passed(),
            "seed {} passes with {} injected",
            regression.seed,
            regression.mutation
        );
        assert_eq!(
            report.violations[0].invariant, regression.invariant,
            "seed {} with {}: {}",
            regression.seed, regression.mutation, report.violations[0]
        );
    }
}
