//! The seeds that found real bugs (`grove_sim::regressions`) keep passing. With each bug
//! injected they fail: `tests/mutations.rs`, `--features mutations`.

use grove_sim::regressions::REGRESSIONS;
use grove_sim::run::run;

#[test]
fn the_seeds_that_found_bugs_pass() {
    for regression in REGRESSIONS {
        let config = regression.config(false);
        let report = run(&config, false);
        assert!(
            report.passed(),
            "seed {} ({}) fails: {}\n  reproduce: {}",
            regression.seed,
            regression.bug,
            report.violations[0],
            config.reproduce_command()
        );
    }
}
