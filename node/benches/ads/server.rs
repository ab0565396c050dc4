//! The real `grove serve` process for the benchmarks: started on a free port with its own data
//! directory, fed the CSV through an `index_parallel` task, queried over HTTP.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const STARTUP_LIMIT: Duration = Duration::from_secs(60);
/// Ingesting 10M rows on a busy two-core machine takes minutes; this only catches a hang.
const INGEST_LIMIT: Duration = Duration::from_secs(3600);
/// The datasource sorted by advertiser first (what `in_filter_qps` queries).
pub const DATA_SOURCE: &str = "ad_events";
/// The same rows in Druid's default order, time first.
pub const DATA_SOURCE_TIME: &str = "ad_events_time";

/// A running `grove serve`; killed when dropped.
pub struct Grove {
    child: Child,
    pub url: String,
    agent: ureq::Agent,
    dir: tempfile::TempDir,
}

/// An HTTP client for one thread: keep-alive, errors as statuses.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(600)))
        .build()
        .into()
}

impl Grove {
    /// Starts the `grove` binary built with this bench (`serve --dir <tmp> --port 0`) and waits
    /// until `/status/health` answers true.
    pub fn start() -> Grove {
        let dir = tempfile::Builder::new()
            .prefix("grove-bench-")
            .tempdir()
            .expect("a temporary data directory");
        let binary = env!("CARGO_BIN_EXE_grove");
        let mut child = Command::new(binary)
            .arg("serve")
            .arg("--dir")
            .arg(dir.path())
            .args(["--port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {binary}: {e}"));
        let stdout = child.stdout.take().expect("grove's stdout");
        let (sender, receiver) = std::sync::mpsc::channel();
        // Reads the announced address, then keeps draining stdout so the server never blocks.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("grove is listening on ") {
                    let url = rest.split_whitespace().next().unwrap_or_default();
                    let _ = sender.send(url.to_owned());
                }
            }
        });
        let url = receiver
            .recv_timeout(STARTUP_LIMIT)
            .expect("grove did not announce its address");
        let grove = Grove {
            child,
            url,
            agent: agent(),
            dir,
        };
        let started = Instant::now();
        while grove.get("/status/health").ok() != Some((200, json!(true))) {
            assert!(
                started.elapsed() < STARTUP_LIMIT,
                "grove never became healthy"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        grove
    }

    fn get(&self, path: &str) -> Result<(u16, Value), ureq::Error> {
        let mut response = self.agent.get(&format!("{}{path}", self.url)).call()?;
        let text = response.body_mut().read_to_string()?;
        Ok((response.status().as_u16(), parse(&text)))
    }

    /// POSTs a JSON body; returns the status and the answer's text.
    pub fn post_text(&self, agent: &ureq::Agent, path: &str, body: &str) -> (u16, String) {
        let mut response = agent
            .post(&format!("{}{path}", self.url))
            .header("Content-Type", "application/json")
            .send(body)
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let text = response
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_string()
            .unwrap_or_else(|e| panic!("reading the answer of POST {path}: {e}"));
        (response.status().as_u16(), text)
    }

    /// Ingests the JSON file into `data_source` with roll-up off, sorted by advertiser first
    /// (`by_advertiser`) or by time first, and waits for the task; returns the wall time taken.
    pub fn ingest(&self, data: &Path, data_source: &str, by_advertiser: bool) -> Duration {
        let started = Instant::now();
        let spec = ingest_spec(data, data_source, by_advertiser);
        let (status, text) =
            self.post_text(&self.agent, "/druid/indexer/v1/task", &spec.to_string());
        assert_eq!(status, 200, "submitting the ingestion task: {text}");
        let id = parse(&text)["task"]
            .as_str()
            .unwrap_or_else(|| panic!("no task id in {text}"))
            .to_owned();
        loop {
            let (code, answer) = self
                .get(&format!("/druid/indexer/v1/task/{id}/status"))
                .expect("task status");
            assert_eq!(code, 200, "task status: {answer}");
            match answer["status"]["status"].as_str() {
                Some("RUNNING") => {}
                Some("SUCCESS") => return started.elapsed(),
                _ => panic!("ingestion task {id} did not succeed: {answer}"),
            }
            assert!(started.elapsed() < INGEST_LIMIT, "task {id} did not end");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Grove {
    /// Checks that a count over everything sees all `rows` rows (the server serves a task's
    /// segments as it reports SUCCESS; this waits briefly should that ever lag). Returns the wait.
    pub fn wait_queryable(&self, rows: u64, data_source: &str) -> Duration {
        let started = Instant::now();
        let query = json!({
            "queryType": "timeseries", "dataSource": data_source, "granularity": "all",
            "intervals": ["1000-01-01/3000-01-01"],
            "aggregations": [{"type": "count", "name": "rows"}]
        })
        .to_string();
        loop {
            let (status, text) = self.post_text(&self.agent, "/druid/v2", &query);
            assert_eq!(status, 200, "count: {text}");
            let seen = parse(&text)[0]["result"]["rows"].as_u64().unwrap_or(0);
            if seen == rows {
                return started.elapsed();
            }
            assert!(
                seen < rows && started.elapsed() < INGEST_LIMIT,
                "the server serves {seen} rows of {rows}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Grove {
    /// The segment files of `data_source` in the server's deep storage.
    pub fn segment_files(&self, data_source: &str) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![self.dir.path().join("deep-storage").join(data_source)];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    out.push(path);
                }
            }
        }
        out.sort();
        out
    }
}

impl Drop for Grove {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::String(text.to_owned()))
}

/// The `index_parallel` task: the JSON lines, millisecond timestamps, six string dimensions, a
/// count and four sums, daily segments, no roll-up. With `by_advertiser` rows sort by
/// advertiser, then time (`forceSegmentSortByTime: false`, `__time` listed second): the layout
/// a Druid user picks for per-advertiser dashboards, so each advertiser's rows are one
/// time-sorted run; else Druid's default order, time first.
fn ingest_spec(data: &Path, data_source: &str, by_advertiser: bool) -> Value {
    let data = data
        .canonicalize()
        .unwrap_or_else(|e| panic!("{}: {e}", data.display()));
    let base_dir = data.parent().expect("the data file has a directory");
    let file = data.file_name().expect("the data file has a name");
    let sum = |kind: &str, name: &str| json!({"type": kind, "name": name, "fieldName": name});
    let strings = ["campaign", "country", "device", "data_pack", "status_code"];
    let dimensions_spec = if by_advertiser {
        let mut dims = vec![
            json!("advertiser"),
            json!({"type": "long", "name": "__time"}),
        ];
        dims.extend(strings.iter().map(|d| json!(d)));
        json!({"dimensions": dims, "forceSegmentSortByTime": false})
    } else {
        let mut dims = vec![json!("advertiser")];
        dims.extend(strings.iter().map(|d| json!(d)));
        json!({"dimensions": dims})
    };
    json!({
        "type": "index_parallel",
        "spec": {
            "dataSchema": {
                "dataSource": data_source,
                "timestampSpec": {"column": "timestamp", "format": "millis"},
                "dimensionsSpec": dimensions_spec,
                "metricsSpec": [
                    {"type": "count", "name": "count"},
                    sum("longSum", "impressions"),
                    sum("longSum", "clicks"),
                    sum("longSum", "latency"),
                    sum("doubleSum", "spend"),
                ],
                "granularitySpec": {
                    "type": "uniform",
                    "segmentGranularity": "day",
                    "queryGranularity": "none",
                    "rollup": false
                }
            },
            "ioConfig": {
                "type": "index_parallel",
                "inputSource": {
                    "type": "local",
                    "baseDir": base_dir.to_string_lossy(),
                    "filter": file.to_string_lossy(),
                },
                "inputFormat": {"type": "json"},
                "appendToExisting": false
            },
            "tuningConfig": {"type": "index_parallel", "maxParseExceptions": 0}
        }
    })
}
