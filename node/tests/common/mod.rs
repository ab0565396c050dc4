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
        let mut child = Command::new(env!("CARGO_BIN_EXE_grove"))
            .args([command, "--dir"])
            .arg(dir)
            .args(["--port", "0"])
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
