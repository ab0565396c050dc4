//! The coordinator's rule endpoints on the real `grove` binary: Druid's default rule at first
//! start, rules set per datasource with audited history, Druid-shaped 400s for bad rules and
//! history parameters, and rules kept across a restart.

mod common;

use common::{Server, assert_druid_error};
use serde_json::{Value, json};

const RULES: &str = "/druid/coordinator/v1/rules";

#[test]
fn rules_are_set_audited_and_kept_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start("serve", dir.path());
    let default_rule = json!({"type": "loadForever", "tieredReplicants": {"_default_tier": 2}});
    assert_eq!(
        server.get(RULES),
        (200, json!({"_default": [default_rule]}))
    );
    assert_eq!(server.get(&format!("{RULES}/wiki")), (200, json!([])));

    let month =
        json!({"type": "loadByPeriod", "period": "P1M", "tieredReplicants": {"_default_tier": 1}});
    let drop_all = json!({"type": "dropForever"});
    let author = [
        ("X-Druid-Author", "ops"),
        ("X-Druid-Comment", "keep a month"),
    ];
    let (code, body) = server.post_with_headers(
        &format!("{RULES}/wiki"),
        &json!([month, drop_all]).to_string(),
        &author,
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        server.get(&format!("{RULES}/wiki")),
        (200, json!([month, drop_all]))
    );
    assert_eq!(
        server.get(&format!("{RULES}/wiki?full")),
        (200, json!([month, drop_all, default_rule]))
    );

    // Bad rules are refused, naming the problem, and change nothing.
    let (code, body) = server.post(&format!("{RULES}/wiki"), r#"[{"type": "keepSome"}]"#);
    assert_eq!(code, 400, "{body}");
    assert_druid_error(&body, "unknown rule type 'keepSome'");
    let (code, body) = server.post(&format!("{RULES}/wiki"), r#"{"type": "loadForever"}"#);
    assert_eq!(code, 400, "{body}");
    assert_druid_error(&body, "JSON array");

    let second = [
        ("X-Druid-Author", "ops"),
        ("X-Druid-Comment", "load it all"),
    ];
    let (code, _) = server.post_with_headers(
        &format!("{RULES}/wiki"),
        &json!([{"type": "loadForever"}]).to_string(),
        &second,
    );
    assert_eq!(code, 200);

    let (code, history) = server.get(&format!("{RULES}/wiki/history"));
    assert_eq!(code, 200, "{history}");
    let comments: Vec<&Value> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["auditInfo"]["comment"])
        .collect();
    assert_eq!(comments, [&json!("keep a month"), &json!("load it all")]);
    assert_eq!(history[0]["key"], "wiki");
    assert_eq!(history[0]["type"], "rules");
    assert_eq!(history[0]["auditInfo"]["author"], "ops");
    let payload: Value = serde_json::from_str(history[0]["payload"].as_str().unwrap()).unwrap();
    assert_eq!(payload, json!([month, drop_all]));
    assert!(history[0]["auditTime"].as_str().unwrap().ends_with('Z'));

    let (_, latest) = server.get(&format!("{RULES}/wiki/history?count=1"));
    assert_eq!(latest.as_array().unwrap().len(), 1);
    assert_eq!(latest[0]["auditInfo"]["comment"], "load it all");
    let (_, everything) = server.get(&format!("{RULES}/history?count=10"));
    let keys: Vec<&Value> = everything
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["key"])
        .collect();
    assert_eq!(keys, [&json!("wiki"), &json!("wiki"), &json!("_default")]);
    let (_, none) = server.get(&format!(
        "{RULES}/wiki/history?interval=2000-01-01/2000-01-02"
    ));
    assert_eq!(none, json!([]));
    let (code, body) = server.get(&format!("{RULES}/wiki/history?count=0"));
    assert_eq!(code, 400, "{body}");
    assert_druid_error(&body, "count '0'");
    let (code, body) = server.get(&format!("{RULES}/history?interval=yesterday"));
    assert_eq!(code, 400, "{body}");
    assert_druid_error(&body, "interval 'yesterday'");

    drop(server);
    let server = Server::start("serve", dir.path());
    assert_eq!(
        server.get(&format!("{RULES}/wiki")),
        (200, json!([{"type": "loadForever"}]))
    );
    // The default rule is not set again (its history has one entry).
    let (_, everything) = server.get(&format!("{RULES}/history?count=10"));
    assert_eq!(everything.as_array().unwrap().len(), 3);
}
