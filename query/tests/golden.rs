//! Golden query files: every `tests/golden/*.json` holds cases of a native query and the exact
//! result Druid users should get, over the hand-checked events of `tests/native.rs` (two
//! segments: a memory-mapped file and an in-memory index snapshot). Add a case by adding JSON.

mod common;

use serde_json::Value as Json;

use common::native as run_native;
use common::{Fixed, segments};
use grove_query::Unbounded;

#[test]
fn every_golden_case_gives_its_expected_result() {
    let provider = Fixed(segments(&common::events::events(), |day| day == 0));
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut checked = 0;
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let doc: Json = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: not JSON: {e}", file.display()));
        for case in doc["cases"].as_array().expect("cases") {
            let name = case["name"].as_str().unwrap_or("?");
            match run_native(&case["query"], &provider, &Unbounded) {
                Ok(got) if got == case["expected"] => {}
                Ok(got) => failures.push(format!(
                    "{} / {name}:\n  expected {}\n  got      {}",
                    file.display(),
                    case["expected"],
                    got
                )),
                Err(e) => failures.push(format!("{} / {name}: failed: {e}", file.display())),
            }
            checked += 1;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        checked >= 20,
        "only {checked} golden cases found in {}",
        dir.display()
    );
}
