//! Every reproduce line `grove-sim` prints replays the failure it was printed for: the same
//! first violation and the same trace hash. Failing runs come from a liveness bound of zero
//! (every run fails it when healing starts, after a full safety phase), from a sweep whose
//! seeds draw their member count, and from the shrinker, whose smaller run must itself fail.

use std::process::Command;

/// One failure as printed: its first violation, its trace hash, its reproduce arguments.
#[derive(Debug, PartialEq)]
struct Failure {
    violation: String,
    trace_hash: String,
    args: Vec<String>,
}

fn grove_sim(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_grove-sim"))
        .args(args)
        .output()
        .expect("grove-sim runs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Every failure block of `stdout`, in order.
fn failures(stdout: &str) -> Vec<Failure> {
    let mut found = Vec::new();
    let mut violation = None;
    let mut trace_hash = None;
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("VIOLATION ") {
            violation.get_or_insert_with(|| rest.to_string());
        } else if let Some(rest) = line.strip_prefix("failed trace-hash: ") {
            trace_hash = Some(rest.to_string());
        } else if let Some(rest) = line.strip_prefix("reproduce: ") {
            let (_, args) = rest
                .split_once(" -- run ")
                .unwrap_or_else(|| panic!("a reproduce line runs grove-sim: {rest}"));
            found.push(Failure {
                violation: violation
                    .take()
                    .expect("a violation before the reproduce line"),
                trace_hash: trace_hash
                    .take()
                    .expect("a trace hash before the reproduce line"),
                args: args.split_whitespace().map(str::to_string).collect(),
            });
        }
    }
    found
}

/// Replays each printed failure through its own reproduce line.
fn replay_each(printed: &[Failure]) {
    for failure in printed {
        let mut args = vec!["run"];
        args.extend(failure.args.iter().map(String::as_str));
        let stdout = grove_sim(&args);
        let replayed = failures(&stdout);
        assert!(
            !replayed.is_empty(),
            "{:?} did not fail again:\n{stdout}",
            failure.args
        );
        assert_eq!(replayed[0], *failure, "replay of {:?}", failure.args);
    }
}

#[test]
fn every_reproduce_line_of_a_sweep_replays_its_failure() {
    let stdout = grove_sim(&[
        "sweep",
        "--seeds",
        "20..24",
        "--steps",
        "40",
        "--liveness-ms",
        "0",
    ]);
    let printed = failures(&stdout);
    assert_eq!(printed.len(), 4, "every seed fails:\n{stdout}");
    assert!(
        printed.iter().any(|f| f.args[3] != "3"),
        "some seed drew more than 3 members (its reproduce line overrides the draw)"
    );
    replay_each(&printed);
}

#[test]
fn the_shrunk_run_fails_and_its_reproduce_line_replays_it() {
    let stdout = grove_sim(&[
        "run",
        "--seed",
        "31",
        "--steps",
        "40",
        "--liveness-ms",
        "0",
        "--shrink",
    ]);
    let printed = failures(&stdout);
    assert_eq!(printed.len(), 2, "the run and its shrunk run:\n{stdout}");
    assert!(stdout.contains("shrunk in"), "{stdout}");
    replay_each(&printed);
}

#[test]
fn a_run_that_stops_time_fails_by_the_watchdog_and_replays() {
    let stdout = grove_sim(&[
        "run",
        "--seed",
        "3",
        "--steps",
        "40",
        "--stall-at-step",
        "10",
    ]);
    let printed = failures(&stdout);
    assert_eq!(printed.len(), 1, "{stdout}");
    assert!(
        printed[0]
            .violation
            .starts_with("watchdog: simulated time stopped"),
        "{stdout}"
    );
    assert!(printed[0].args.contains(&"--stall-at-step".to_string()));
    replay_each(&printed);
}

#[test]
fn a_run_past_its_wall_clock_budget_fails_by_the_watchdog() {
    let stdout = grove_sim(&["run", "--seed", "3", "--steps", "40", "--run-budget", "0s"]);
    let printed = failures(&stdout);
    assert_eq!(printed.len(), 1, "{stdout}");
    assert!(
        printed[0]
            .violation
            .starts_with("watchdog: the wall-clock budget"),
        "{stdout}"
    );
}
