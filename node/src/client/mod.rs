//! The command-line clients of a running server: `grove ingest` (submit a task, follow it) and
//! `grove sql` (run a query, print a table). They speak the same Druid HTTP API as any other
//! client, through a small blocking HTTP client (ureq).

mod ingest;
mod sql;

use std::time::Duration;

use anyhow::{Context, bail};

pub use ingest::ingest;
pub use sql::sql;

/// The largest response body read (a SQL result printed as a table stays far below it).
const RESPONSE_BYTES_MAX: u64 = 256 << 20;

/// A connection to one server's API.
pub struct Client {
    agent: ureq::Agent,
    url: String,
}

impl Client {
    pub fn new(url: &str) -> Client {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .build()
            .into();
        Client {
            agent,
            url: url.trim_end_matches('/').to_owned(),
        }
    }

    /// POSTs a JSON body; returns the JSON answer, or the server's error message.
    pub fn post(&self, path: &str, body: &str) -> anyhow::Result<serde_json::Value> {
        let url = format!("{}{path}", self.url);
        let response = self
            .agent
            .post(&url)
            .header("Content-Type", "application/json")
            .send(body)
            .with_context(|| format!("POST {url}"))?;
        read_json(response, &url)
    }

    /// GETs a JSON answer, or the server's error message.
    pub fn get(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let url = format!("{}{path}", self.url);
        let response = self
            .agent
            .get(&url)
            .call()
            .with_context(|| format!("GET {url}"))?;
        read_json(response, &url)
    }
}

fn read_json(
    mut response: ureq::http::Response<ureq::Body>,
    url: &str,
) -> anyhow::Result<serde_json::Value> {
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .with_config()
        .limit(RESPONSE_BYTES_MAX)
        .read_to_string()
        .with_context(|| format!("reading the answer of {url}"))?;
    let json: Option<serde_json::Value> = serde_json::from_str(&text).ok();
    if !(200..300).contains(&status) {
        // Druid's error body names the problem in errorMessage.
        let message = json
            .as_ref()
            .and_then(|j| j.get("errorMessage"))
            .and_then(|m| m.as_str())
            .map(str::to_owned)
            .unwrap_or(text);
        bail!("{message} (HTTP {status})");
    }
    json.with_context(|| format!("{url} did not answer JSON"))
}
