//! Coordinator rule endpoints, as Druid's: `GET /druid/coordinator/v1/rules` (every
//! datasource's rules, `_default` included), `GET .../rules/{ds}` (`?full` appends the
//! default rules), `POST .../rules/{ds}` (a JSON array of rules; the `X-Druid-Author` and
//! `X-Druid-Comment` headers are audited), `GET .../rules/{ds}/history` and
//! `GET .../rules/history` (`?count=n`: the latest n, newest first; `?interval=a/b`: those in
//! it, oldest first; neither: the last week, oldest first).
//!
//! Rules are checked by the metadata store's apply step (an unknown rule type is a 400 naming
//! it). At first start the node sets Druid's default rule (`loadForever`, two replicants in
//! `_default_tier`), as Druid's coordinator does.

use std::collections::BTreeMap;

use actix_web::{HttpRequest, HttpResponse, web};
use grove_raft::metadata::{
    AuditEntry, AuditInfo, Command, DEFAULT_RULES, MetadataError, MetadataStore,
};
use grove_segment::time::{Interval, format_iso};
use serde_json::{Value, json};

use super::{ApiError, Node, metadata_call, now_ms, read_body};

/// How far back a history without `count` or `interval` reaches (Druid's default: a week).
const HISTORY_DEFAULT_MS: i64 = 7 * 24 * 60 * 60 * 1000;

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/druid/coordinator/v1/rules", web::get().to(all_rules))
        .route(
            "/druid/coordinator/v1/rules/history",
            web::get().to(all_history),
        )
        .route(
            "/druid/coordinator/v1/rules/{ds}",
            web::get().to(data_source_rules),
        )
        .route(
            "/druid/coordinator/v1/rules/{ds}",
            web::post().to(set_rules),
        )
        .route(
            "/druid/coordinator/v1/rules/{ds}/history",
            web::get().to(data_source_history),
        );
}

/// Sets Druid's default rules if none are set (a node's first start).
pub fn seed_default_rules(store: &dyn MetadataStore) -> Result<(), MetadataError> {
    if store.rules(DEFAULT_RULES)?.is_some() {
        return Ok(());
    }
    store.apply(Command::SetRules {
        data_source: DEFAULT_RULES.into(),
        rules: vec![json!({"type": "loadForever", "tieredReplicants": {"_default_tier": 2}})],
        audit: AuditInfo {
            author: "grove".into(),
            comment: "default rule".into(),
        },
        changed_ms: now_ms(),
    })
}

async fn all_rules(node: web::Data<Node>) -> Result<HttpResponse, ApiError> {
    let records = metadata_call(&node, |node| node.store.all_rules()).await?;
    let map: BTreeMap<String, Vec<Value>> = records
        .into_iter()
        .map(|record| (record.data_source, record.rules))
        .collect();
    Ok(HttpResponse::Ok().json(map))
}

async fn data_source_rules(
    node: web::Data<Node>,
    ds: web::Path<String>,
    query: web::Query<BTreeMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let ds = ds.into_inner();
    let full = query.contains_key("full");
    let rules = metadata_call(&node, move |node| {
        let mut rules = node.store.rules(&ds)?.map(|r| r.rules).unwrap_or_default();
        if full && ds != DEFAULT_RULES {
            let default = node.store.rules(DEFAULT_RULES)?;
            rules.extend(default.map(|r| r.rules).unwrap_or_default());
        }
        Ok(rules)
    })
    .await?;
    Ok(HttpResponse::Ok().json(rules))
}

async fn set_rules(
    node: web::Data<Node>,
    ds: web::Path<String>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(&node, &request, payload)
        .await
        .map_err(|e| e.with_host(&node.host))?;
    let rules: Vec<Value> = match serde_json::from_str(&body.text) {
        Ok(Value::Array(rules)) => rules,
        Ok(_) => {
            return Err(ApiError::malformed("the rules must be a JSON array").with_host(&node.host));
        }
        Err(e) => {
            return Err(
                ApiError::malformed(format!("the rules are not valid JSON: {e}"))
                    .with_host(&node.host),
            );
        }
    };
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let command = Command::SetRules {
        data_source: ds.into_inner(),
        rules,
        audit: AuditInfo {
            author: header("X-Druid-Author"),
            comment: header("X-Druid-Comment"),
        },
        changed_ms: now_ms(),
    };
    metadata_call(&node, move |node| node.store.apply(command)).await?;
    Ok(HttpResponse::Ok().finish())
}

async fn data_source_history(
    node: web::Data<Node>,
    ds: web::Path<String>,
    query: web::Query<BTreeMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    history(node, Some(ds.into_inner()), &query).await
}

async fn all_history(
    node: web::Data<Node>,
    query: web::Query<BTreeMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    history(node, None, &query).await
}

/// Which audit entries a history request asks for.
enum Selection {
    Latest(usize),
    Within(Interval),
}

async fn history(
    node: web::Data<Node>,
    ds: Option<String>,
    query: &BTreeMap<String, String>,
) -> Result<HttpResponse, ApiError> {
    let selection = selection(query).map_err(|e| e.with_host(&node.host))?;
    let mut entries =
        metadata_call(&node, move |node| node.store.audit("rules", ds.as_deref())).await?;
    match selection {
        Selection::Latest(count) => {
            entries.reverse();
            entries.truncate(count);
        }
        Selection::Within(interval) => entries.retain(|e| interval.contains(e.created_ms)),
    }
    let body: Vec<Value> = entries.iter().map(audit_json).collect();
    Ok(HttpResponse::Ok().json(body))
}

fn selection(query: &BTreeMap<String, String>) -> Result<Selection, ApiError> {
    if let Some(count) = query.get("count") {
        return match count.parse::<usize>() {
            Ok(n) if n > 0 => Ok(Selection::Latest(n)),
            _ => Err(ApiError::invalid_input(format!(
                "count '{count}' is not a positive integer"
            ))),
        };
    }
    match query.get("interval") {
        Some(text) => Interval::parse(text)
            .map(Selection::Within)
            .map_err(|e| ApiError::invalid_input(format!("interval '{text}': {e}"))),
        None => {
            let now = now_ms();
            Ok(Selection::Within(Interval::new(
                now - HISTORY_DEFAULT_MS,
                now + 1,
            )))
        }
    }
}

/// Druid's audit entry: the payload is the rules as JSON text.
fn audit_json(entry: &AuditEntry) -> Value {
    json!({
        "key": entry.key,
        "type": entry.audit_type,
        "auditInfo": {"author": entry.audit.author, "comment": entry.audit.comment},
        "payload": entry.payload.to_string(),
        "auditTime": format_iso(entry.created_ms),
    })
}
