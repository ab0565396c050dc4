//! `grove ingest SPEC.json`: submits a Druid task to a running server and follows its status
//! with a spinner until it ends; prints the row counts, or fails with the task's error.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};

use super::Client;

/// How often the task status is polled.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

pub fn ingest(spec_path: &Path, url: &str) -> anyhow::Result<()> {
    let spec = std::fs::read_to_string(spec_path)
        .with_context(|| format!("reading {}", spec_path.display()))?;
    let client = Client::new(url);
    let submitted = client.post("/druid/indexer/v1/task", &spec)?;
    let id = submitted["task"]
        .as_str()
        .context("the server did not name the task it started")?
        .to_owned();
    let progress = ProgressBar::new_spinner();
    progress.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    progress.enable_steady_tick(Duration::from_millis(100));
    let started = Instant::now();
    let status = loop {
        let answer = client.get(&format!("/druid/indexer/v1/task/{id}/status"))?;
        let state = answer["status"]["status"]
            .as_str()
            .unwrap_or("UNKNOWN")
            .to_owned();
        progress.set_message(format!("task {id}: {state}"));
        if state != "RUNNING" {
            break answer;
        }
        std::thread::sleep(POLL_INTERVAL);
    };
    progress.finish_and_clear();
    let state = status["status"]["status"].as_str().unwrap_or("UNKNOWN");
    let report = client
        .get(&format!("/druid/indexer/v1/task/{id}/reports"))
        .ok();
    let payload = report
        .as_ref()
        .map(|r| &r["ingestionStatsAndErrors"]["payload"]);
    let rows = payload.map(|p| &p["rowStats"]["buildSegments"]);
    let count = |name: &str| rows.and_then(|r| r[name].as_u64()).unwrap_or(0);
    if state != "SUCCESS" {
        let error = status["status"]["errorMsg"]
            .as_str()
            .unwrap_or("no error message");
        bail!("task {id} {state}: {error}");
    }
    println!(
        "task {id} SUCCESS in {:.1}s: {} rows ingested into {} segment(s); {} unparseable, {} thrown away",
        started.elapsed().as_secs_f64(),
        count("processed"),
        payload
            .and_then(|p| p["segmentsPublished"].as_u64())
            .unwrap_or(0),
        count("unparseable"),
        count("thrownAway"),
    );
    for error in payload
        .and_then(|p| p["unparseableEvents"]["buildSegments"].as_array())
        .into_iter()
        .flatten()
    {
        println!("  parse error: {}", error.as_str().unwrap_or_default());
    }
    Ok(())
}
