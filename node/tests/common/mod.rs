//! Shared by the HTTP tests: the real `grove` binary started on a free port with its own data
//! directory, and small blocking HTTP helpers.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// How long a server may take to come up, and a task to end.
const STARTUP_LIMIT: Duration = Duration::from_secs(60);
const TASK_LIMIT: Duration = Duration::from_secs(120);

/// A running `grove serve` or `grove quickstart`; killed when dropped.
pub struct Server {
    child: Child,
    pub url: String,
    agent: ureq::Agent,
    /// Every line the server printed so far.
    stdout: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts `grove <command> --dir <dir> --port 0` and waits until `/status/health` is true.
    pub fn start(command: &str, dir: &Path) -> Server {
        Server::start_with(command, dir, &[])
    }

    /// [`Server::start`] with more command-line arguments (limits).
    pub fn start_with(command: &str, dir: &Path, args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_grove"))
            .args([command, "--dir"])
            .arg(dir)
            .args(["--port", "0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting grove");
        let stdout = child.stdout.take().expect("grove's stdout");
        let (sender, receiver) = std::sync::mpsc::channel();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&lines);
        // Reads the announced address, then keeps draining stdout so the server never blocks.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("grove is listening on ") {
                    let url = rest.split_whitespace().next().unwrap_or_default();
                    let _ = sender.send(url.to_owned());
                }
                kept.lock().expect("stdout lines").push(line);
            }
        });
        let url = receiver
            .recv_timeout(STARTUP_LIMIT)
            .expect("grove did not announce its address");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let server = Server {
            child,
            url,
            agent,
            stdout: lines,
        };
        let started = Instant::now();
        loop {
            if let Ok((200, health)) = server.try_get("/status/health")
                && health == json!(true)
            {
                return server;
            }
            assert!(
                started.elapsed() < STARTUP_LIMIT,
                "grove never became healthy"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The lines the server printed so far.
    pub fn printed(&self) -> Vec<String> {
        self.stdout.lock().expect("stdout lines").clone()
    }

    /// Waits (up to a minute) until the server prints a line containing `needle`; returns it.
    pub fn wait_printed(&self, needle: &str) -> String {
        let started = Instant::now();
        loop {
            if let Some(line) = self.printed().into_iter().find(|l| l.contains(needle)) {
                return line;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the server never printed '{needle}'; it printed {:#?}",
                self.printed()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's process id (its resident memory is read from `/proc`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `DELETE`s `path`; returns the status.
    pub fn delete(&self, path: &str) -> u16 {
        self.agent
            .delete(&format!("{}{path}", self.url))
            .call()
            .expect("DELETE")
            .status()
            .as_u16()
    }

    fn try_get(&self, path: &str) -> Result<(u16, Value), ureq::Error> {
        let response = self.agent.get(&format!("{}{path}", self.url)).call()?;
        Ok(read(response))
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        self.try_get(path).expect("GET")
    }

    /// POSTs `body` as is (it need not be valid JSON); returns the status and the JSON answer
    /// (`Value::String` with the raw text when the answer is not JSON).
    pub fn post(&self, path: &str, body: &str) -> (u16, Value) {
        let response = self
            .agent
            .post(&format!("{}{path}", self.url))
            .header("Content-Type", "application/json")
            .send(body)
            .expect("POST");
        read(response)
    }

    /// [`Server::post`] with extra request headers.
    pub fn post_with_headers(
        &self,
        path: &str,
        body: &str,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut request = self
            .agent
            .post(&format!("{}{path}", self.url))
            .header("Content-Type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        read(request.send(body).expect("POST"))
    }

    /// Submits a task and waits for it to end; returns its status object.
    pub fn run_task(&self, spec: &Value) -> Value {
        let (status, answer) = self.post("/druid/indexer/v1/task", &spec.to_string());
        assert_eq!(status, 200, "{answer}");
        let id = answer["task"].as_str().expect("a task id").to_owned();
        self.wait_task(&id)
    }

    /// Polls a task's status until it is no longer RUNNING.
    pub fn wait_task(&self, id: &str) -> Value {
        let started = Instant::now();
        loop {
            let (code, answer) = self.get(&format!("/druid/indexer/v1/task/{id}/status"));
            assert_eq!(code, 200, "{answer}");
            assert_eq!(answer["task"], id);
            if answer["status"]["status"] != "RUNNING" {
                return answer["status"].clone();
            }
            assert!(started.elapsed() < TASK_LIMIT, "task {id} did not end");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read(mut response: ureq::http::Response<ureq::Body>) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

/// Ten edits on 2024-01-01 and 2024-01-02 (two daily segments), inline.
pub fn edits_task(data_source: &str) -> Value {
    let pages = ["a", "b", "a", "c", "b", "a", "d", "a", "c", "b"];
    let data: String = pages
        .iter()
        .enumerate()
        .map(|(i, page)| {
            format!(
                "{{\"ts\":\"2024-01-0{}T{:02}:00:00Z\",\"page\":\"{page}\",\"added\":{}}}\n",
                1 + i / 5,
                i,
                i * 10
            )
        })
        .collect();
    json!({
        "type": "index_parallel",
        "spec": {
            "dataSchema": {
                "dataSource": data_source,
                "timestampSpec": {"column": "ts", "format": "iso"},
                "dimensionsSpec": {"dimensions": ["page"]},
                "metricsSpec": [
                    {"type": "count", "name": "count"},
                    {"type": "longSum", "name": "added", "fieldName": "added"}
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
                "inputSource": {"type": "inline", "data": data},
                "inputFormat": {"type": "json"}
            }
        }
    })
}

/// Asserts a Druid error body: the four fields, and a message containing `needle`.
pub fn assert_druid_error(body: &Value, needle: &str) {
    for field in ["error", "errorMessage", "errorClass", "host"] {
        assert!(body.get(field).is_some(), "no {field} in {body}");
    }
    assert!(
        body["error"].is_string() && body["errorClass"].is_string(),
        "{body}"
    );
    let message = body["errorMessage"].as_str().unwrap_or_default();
    assert!(
        message.contains(needle),
        "'{message}' does not mention '{needle}'"
    );
}

/// Writes `rows` rows of one day (2024-01-01) to `dir/rows.csv` — `ts,user,session,v` with
/// about `rows / 2` users and `rows / 3` sessions, so grouping by both makes about one group
/// per row — and returns the task that ingests them (roll-up off) into `data_source`, cut into
/// `segment_granularity` segments.
pub fn high_cardinality_task(
    dir: &Path,
    data_source: &str,
    rows: u64,
    segment_granularity: &str,
) -> Value {
    use std::io::Write;
    let path = dir.join("rows.csv");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).expect("rows.csv"));
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move |below: u64| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % below.max(1)
    };
    let day_ms = 86_400_000u64;
    for i in 0..rows {
        let ts = 1_704_067_200_000 + i * day_ms / rows.max(1);
        let user = next(rows / 2 + 1);
        let session = next(rows / 3 + 1);
        writeln!(out, "{ts},u{user},s{session},{}", next(1000)).expect("writing rows.csv");
    }
    out.flush().expect("writing rows.csv");
    json!({
        "type": "index_parallel",
        "spec": {
            "dataSchema": {
                "dataSource": data_source,
                "timestampSpec": {"column": "ts", "format": "millis"},
                "dimensionsSpec": {"dimensions": ["user", "session"]},
                "metricsSpec": [
                    {"type": "count", "name": "count"},
                    {"type": "longSum", "name": "v", "fieldName": "v"}
                ],
                "granularitySpec": {
                    "segmentGranularity": segment_granularity,
                    "queryGranularity": "none",
                    "rollup": false
                }
            },
            "ioConfig": {
                "type": "index_parallel",
                "inputSource": {"type": "local", "baseDir": dir, "filter": "rows.csv"},
                "inputFormat": {"type": "csv", "columns": ["ts", "user", "session", "v"]}
            },
            "tuningConfig": {"type": "index_parallel", "maxRowsPerSegment": 5_000_000}
        }
    })
}
