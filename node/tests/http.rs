//! The HTTP API of the real `grove` binary: ingestion through the overlord endpoints, the
//! datasource endpoints, Druid-shaped errors with the right statuses, and restarts that keep
//! what was ingested. (Query results are tested in `http_queries.rs`.)

mod common;

use common::{Server, assert_druid_error, edits_task};
use serde_json::json;

#[test]
fn ingested_data_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start("serve", dir.path());
    let (code, datasources) = server.get("/druid/v2/datasources");
    assert_eq!((code, datasources), (200, json!([])));

    let status = server.run_task(&edits_task("edits"));
    assert_eq!(status["status"], "SUCCESS", "{status}");
    assert_eq!(status["statusCode"], "SUCCESS");
    assert_eq!(status["dataSource"], "edits");
    assert!(status["duration"].as_i64().unwrap() >= 0);
    let id = status["id"].as_str().unwrap().to_owned();

    let (code, report) = server.get(&format!("/druid/indexer/v1/task/{id}/reports"));
    assert_eq!(code, 200);
    let payload = &report["ingestionStatsAndErrors"]["payload"];
    assert_eq!(payload["rowStats"]["buildSegments"]["processed"], 10);
    assert_eq!(payload["segmentsPublished"], 2);

    let (_, datasources) = server.get("/druid/v2/datasources");
    assert_eq!(datasources, json!(["edits"]));
    let (code, schema) = server.get("/druid/v2/datasources/edits");
    assert_eq!(code, 200);
    assert_eq!(
        schema,
        json!({"dimensions": ["page"], "metrics": ["count", "added"]})
    );
    let (_, tasks) = server.get("/druid/indexer/v1/tasks");
    assert_eq!(tasks.as_array().unwrap().len(), 1);
    assert_eq!(tasks[0]["id"], id.as_str());
    let (_, running) = server.get("/druid/indexer/v1/tasks?state=running");
    assert_eq!(running, json!([]));

    drop(server);
    let server = Server::start("serve", dir.path());
    let (_, datasources) = server.get("/druid/v2/datasources");
    assert_eq!(datasources, json!(["edits"]));
    let (code, status) = server.get(&format!("/druid/indexer/v1/task/{id}/status"));
    assert_eq!(code, 200);
    assert_eq!(status["status"]["status"], "SUCCESS");
}

#[test]
fn errors_are_druid_shaped_with_the_right_status() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start("serve", dir.path());

    let (code, body) = server.post("/druid/v2", "{\"queryType\": ");
    assert_eq!(code, 400, "{body}");
    assert_druid_error(&body, "not valid JSON");
    assert_eq!(body["host"], server.url.trim_start_matches("http://"));

    let (code, body) = server.post("/druid/v2", "[1, 2]");
    assert_eq!(code, 400, "{body}");
    assert_druid_error(&body, "JSON object");

    let (code, body) = server.post("/druid/v2/sql", "{\"query\": \"SELECT 1\"");
    assert_eq!(code, 400, "{body}");
    assert_druid_error(&body, "not valid");

    let (code, body) = server.post("/druid/v2/sql", "{\"sql\": \"SELECT 1\"}");
    assert_eq!(code, 400, "{body}");
    assert_druid_error(&body, "query");

    let (code, body) = server.post(
        "/druid/v2/sql",
        &json!({"query": "SELECT 1", "resultFormat": "xml"}).to_string(),
    );
    assert_eq!(code, 400, "{body}");
    assert_druid_error(&body, "resultFormat 'xml'");

    let (code, body) = server.post(
        "/druid/v2",
        &json!({"queryType": "timeseries", "context": {"timeout": "soon"}}).to_string(),
    );
    assert_eq!(code, 400, "{body}");
    assert_druid_error(&body, "context.timeout");

    // A bad ingestion spec names the problem, and starts no task (unknown properties are
    // ignored, as Druid's JSON mapper does; a malformed value of a known one is named).
    let mut spec = edits_task("edits");
    spec["spec"]["dataSchema"]["dimensionsSpec"] = json!({"dimensions": 5});
    let (code, body) = server.post("/druid/indexer/v1/task", &spec.to_string());
    assert_eq!(code, 400, "{body}");
    assert_druid_error(&body, "dimensionsSpec");
    let (code, body) = server.post("/druid/indexer/v1/task", "not json");
    assert_eq!(code, 400, "{body}");
    assert_druid_error(&body, "invalid ingestion spec");
    let mut spec = edits_task("edits");
    spec["id"] = json!("../escape");
    let (code, body) = server.post("/druid/indexer/v1/task", &spec.to_string());
    assert_eq!(code, 400, "{body}");
    assert_druid_error(&body, "must not");
    let (_, tasks) = server.get("/druid/indexer/v1/tasks");
    assert_eq!(tasks, json!([]));

    let (code, body) = server.get("/druid/indexer/v1/task/no_such_task/status");
    assert_eq!(code, 404, "{body}");
    assert_druid_error(&body, "unknown task 'no_such_task'");
    let (code, body) = server.get("/druid/v2/datasources/nothing");
    assert_eq!(code, 404, "{body}");
    assert_druid_error(&body, "nothing");
}

#[test]
fn failed_tasks_report_why_and_ids_are_unique() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start("serve", dir.path());
    let mut spec = edits_task("bad");
    spec["spec"]["ioConfig"]["inputSource"]["data"] = json!("{\"ts\": \"yesterday\"}\n");
    let status = server.run_task(&spec);
    assert_eq!(status["status"], "FAILED", "{status}");
    assert!(
        status["errorMsg"].as_str().unwrap().contains("unparseable"),
        "{status}"
    );
    let (_, datasources) = server.get("/druid/v2/datasources");
    assert_eq!(datasources, json!([]));

    let mut spec = edits_task("edits");
    spec["id"] = json!("my-task");
    assert_eq!(server.run_task(&spec)["status"], "SUCCESS");
    let (code, body) = server.post("/druid/indexer/v1/task", &spec.to_string());
    assert_eq!(code, 400, "{body}");
    assert_druid_error(&body, "task 'my-task' already exists");
    // Ingesting the same data again (a new version) replaces the old segments.
    spec["id"] = json!("my-task-again");
    assert_eq!(server.run_task(&spec)["status"], "SUCCESS");
    let (_, datasources) = server.get("/druid/v2/datasources");
    assert_eq!(datasources, json!(["edits"]));
}

#[test]
fn quickstart_ingests_its_sample_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start("quickstart", dir.path());
    let (_, tasks) = server.get("/druid/indexer/v1/tasks");
    let id = tasks[0]["id"].as_str().expect("the sample task").to_owned();
    let status = server.wait_task(&id);
    assert_eq!(status["status"], "SUCCESS", "{status}");
    assert_eq!(status["dataSource"], "wikipedia");
    let (_, report) = server.get(&format!("/druid/indexer/v1/task/{id}/reports"));
    assert_eq!(
        report["ingestionStatsAndErrors"]["payload"]["rowStats"]["buildSegments"]["processed"],
        30_000
    );
    // The example queries it prints work as printed: each `curl ... URL` line is followed by
    // a `-d 'BODY'` line.
    let printed = server.printed();
    let mut examples = 0;
    for pair in printed.windows(2) {
        let (Some(url), Some(body)) = (
            pair[0]
                .split_whitespace()
                .find(|w| w.trim_matches('\'').starts_with("http")),
            pair[1]
                .trim()
                .strip_prefix("-d '")
                .and_then(|b| b.strip_suffix('\'')),
        ) else {
            continue;
        };
        let path = url.trim_matches('\'').trim_start_matches(&server.url);
        let (status, answer) = server.post(path, body);
        assert_eq!(status, 200, "{path} {body}: {answer}");
        assert!(
            answer.as_array().is_some_and(|rows| !rows.is_empty()),
            "{path} {body}: {answer}"
        );
        examples += 1;
    }
    assert_eq!(examples, 2, "{printed:#?}");
    drop(server);
    let server = Server::start("quickstart", dir.path());
    let (_, tasks) = server.get("/druid/indexer/v1/tasks");
    assert_eq!(tasks.as_array().unwrap().len(), 1, "{tasks}");
    let (_, datasources) = server.get("/druid/v2/datasources");
    assert_eq!(datasources, json!(["wikipedia"]));
}
