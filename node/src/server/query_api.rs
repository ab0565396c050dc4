//! Query endpoints: `POST /druid/v2` (native JSON; `?pretty` pretty-prints), `POST /druid/v2/sql`
//! (a Druid SQL request with `resultFormat`, `header`, `typesHeader`, `sqlTypesHeader`), and
//! `GET /druid/v2/datasources[/{ds}]`.
//!
//! A query waits its turn (by `context.priority`, then arrival) and runs on a blocking thread
//! under a [`Deadline`] from its `context.timeout`, within the
//! server's bound on concurrent queries. Failures use the engine's Druid error bodies.

use actix_web::{HttpRequest, HttpResponse, web};
use grove_query::sql::SqlRequest;
use grove_query::{QueryControl, QueryError, run_native, sql};
use serde::Deserialize;
use serde_json::Value;

use super::control::Deadline;
use super::sql_format::{Headers, ResultFormat, render};
use super::{ApiError, Node, Slot, read_body};

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/druid/v2", web::post().to(native))
        .route("/druid/v2/", web::post().to(native))
        .route("/druid/v2/sql", web::post().to(sql_query))
        .route("/druid/v2/sql/", web::post().to(sql_query))
        .route("/druid/v2/datasources", web::get().to(data_sources))
        .route("/druid/v2/datasources/{name}", web::get().to(data_source));
}

async fn native(
    node: web::Data<Node>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let answer = async {
        let body = read_body(payload, node.config.request_bytes_max).await?;
        let query: Value = serde_json::from_str(&body)
            .map_err(|e| ApiError::malformed(format!("the query is not valid JSON: {e}")))?;
        if !query.is_object() {
            return Err(ApiError::malformed("a native query must be a JSON object"));
        }
        let deadline = Deadline::from_context(query.get("context"), timeout_default(&node))?;
        let pretty = request
            .query_string()
            .split('&')
            .any(|pair| pair == "pretty" || pair.starts_with("pretty="));
        // The answer is written on the query's turn too: its cost is part of the query's.
        let priority = priority(query.get("context"));
        let text = run_query(&node, priority, move |node, cores| {
            let deadline = deadline.on_cores(cores);
            let result = run_native(&query, node.segments.as_ref(), &deadline)?;
            // A query that ran past its deadline fails even if the engine did not notice.
            deadline.check()?;
            if pretty {
                serde_json::to_string_pretty(&result.into_json())
                    .map_err(|e| QueryError::internal(format!("writing the result: {e}")))
            } else {
                Ok(result.to_text())
            }
        })
        .await?;
        Ok(HttpResponse::Ok()
            .content_type("application/json")
            .body(text))
    };
    answer.await.map_err(|e: ApiError| e.with_host(&node.host))
}

/// `POST /druid/v2/sql`'s body: the SQL request and how to write its result.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SqlHttpRequest {
    #[serde(flatten)]
    request: SqlRequest,
    #[serde(default)]
    result_format: Option<String>,
    #[serde(default)]
    header: bool,
    #[serde(default)]
    types_header: bool,
    #[serde(default)]
    sql_types_header: bool,
}

async fn sql_query(node: web::Data<Node>, payload: web::Payload) -> Result<HttpResponse, ApiError> {
    let answer = async {
        let body = read_body(payload, node.config.request_bytes_max).await?;
        let http: SqlHttpRequest = serde_json::from_str(&body)
            .map_err(|e| ApiError::malformed(format!("the SQL request is not valid: {e}")))?;
        let format = match &http.result_format {
            Some(name) => ResultFormat::parse(name).map_err(ApiError::invalid_input)?,
            None => ResultFormat::Object,
        };
        let headers = Headers {
            names: http.header,
            types: http.types_header,
            sql_types: http.sql_types_header,
        };
        let context = Value::Object(http.request.context.clone());
        let deadline = Deadline::from_context(Some(&context), timeout_default(&node))?;
        let request = http.request;
        let priority = priority(Some(&context));
        let result = run_query(&node, priority, move |node, cores| {
            let deadline = deadline.on_cores(cores);
            let segments = node.segments.as_ref();
            let result = sql::execute(&request, segments, segments, &deadline)?;
            deadline.check().map(|()| result)
        })
        .await?;
        let mut response = HttpResponse::Ok();
        response.content_type(format.content_type());
        if headers.names {
            response.insert_header(("X-Druid-SQL-Header-Included", "yes"));
        }
        Ok(response.body(render(&result, format, headers)))
    };
    answer.await.map_err(|e: ApiError| e.with_host(&node.host))
}

/// A query's `context.priority` (a whole number, or a string of one, as Druid takes it; 0 when
/// absent). Only orders the wait for a turn; a malformed one is the query model's to refuse.
fn priority(context: Option<&Value>) -> i64 {
    match context.and_then(|c| c.get("priority")) {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        Some(Value::String(s)) => s.trim().parse().unwrap_or(0),
        _ => 0,
    }
}

fn timeout_default(node: &Node) -> u64 {
    node.config.query_timeout_ms_default
}

/// Runs `query` on a blocking thread, holding one of the server's query slots, with its share
/// of the cores: all of them for a query alone, one each when as many queries run as there
/// are cores (more threads would only take turns, at the cost of spawning them).
async fn run_query<T: Send + 'static>(
    node: &web::Data<Node>,
    priority: i64,
    query: impl FnOnce(&Node, usize) -> Result<T, QueryError> + Send + 'static,
) -> Result<T, ApiError> {
    let max = node.config.queries_running_max;
    let slot = Slot::take(&node.queries_running, max).ok_or_else(|| {
        ApiError::capacity(format!(
            "{max} queries are already running (the limit, queries_running_max); retry later"
        ))
    })?;
    let cores = (node.cores / slot.taken()).max(1);
    let _turn = node.processing.take(priority).await;
    let shared = node.clone().into_inner();
    let result = web::block(move || query(&shared, cores))
        .await
        .map_err(|e| ApiError::internal(format!("the query thread failed: {e}")))?;
    Ok(result?)
}

async fn data_sources(node: web::Data<Node>) -> HttpResponse {
    HttpResponse::Ok().json(node.segments.data_sources())
}

async fn data_source(
    node: web::Data<Node>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let schema = node.segments.schema(&name).ok_or_else(|| {
        ApiError::not_found(format!("datasource '{name}' has no queryable segments"))
            .with_host(&node.host)
    })?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "dimensions": schema.dimensions.iter().map(|d| &d.name).collect::<Vec<_>>(),
        "metrics": schema.metrics.iter().map(|m| &m.name).collect::<Vec<_>>(),
    })))
}
