//! Query endpoints: `POST /druid/v2` (native JSON; `?pretty` pretty-prints), `POST /druid/v2/sql`
//! (a Druid SQL request with `resultFormat`, `header`, `typesHeader`, `sqlTypesHeader`),
//! `DELETE /druid/v2/{queryId}` and `DELETE /druid/v2/sql/{sqlQueryId}` (cancel), and
//! `GET /druid/v2/datasources[/{ds}]`.
//!
//! A query takes a slot (a 429 when `queries_running_max` run), waits its turn (by
//! `context.priority`, then arrival; giving up at its deadline or when cancelled), and runs on
//! a blocking thread under a [`Deadline`]: its timeout, its cancellation flag and the server's
//! bounds on its answer, which is written to text on the same turn. The slot, the turn and the
//! request body's share of the body budget move with the work and are given back when it
//! stops. Its id (`context.queryId` / `context.sqlQueryId`, or a fresh one) comes back in
//! `X-Druid-Query-Id` / `X-Druid-SQL-Query-Id`. Failures use the engine's Druid error bodies.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};
use grove_query::sql::SqlRequest;
use grove_query::{ErrorKind, QueryError, QueryLimits, run_native, sql};
use serde::Deserialize;
use serde_json::Value;

use super::control::{Bounds, Cancel, Deadline, Stop};
use super::running::{Ticket, new_query_id};
use super::sql_format::{Headers, ResultFormat, render_bounded};
use super::{ApiError, Node, read_body};

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/druid/v2", web::post().to(native))
        .route("/druid/v2/", web::post().to(native))
        .route("/druid/v2/sql", web::post().to(sql_query))
        .route("/druid/v2/sql/", web::post().to(sql_query))
        .route("/druid/v2/sql/{id}", web::delete().to(cancel_sql))
        .route("/druid/v2/datasources", web::get().to(data_sources))
        .route("/druid/v2/datasources/{name}", web::get().to(data_source))
        .route("/druid/v2/{id}", web::delete().to(cancel_native));
}

async fn native(
    node: web::Data<Node>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let answer = async {
        let body = read_body(&node, &request, payload).await?;
        let query: Value = serde_json::from_str(&body.text)
            .map_err(|e| ApiError::malformed(format!("the query is not valid JSON: {e}")))?;
        if !query.is_object() {
            return Err(ApiError::malformed("a native query must be a JSON object"));
        }
        let context = query.get("context");
        let query_id = match context.and_then(|c| c.get("queryId")) {
            Some(Value::String(id)) if !id.is_empty() => id.clone(),
            _ => new_query_id(),
        };
        let cancel = Arc::new(Cancel::default());
        let deadline =
            Deadline::from_context(context, bounds(&node), cancel.clone(), query_id.clone())?;
        let pretty = request
            .query_string()
            .split('&')
            .any(|pair| pair == "pretty" || pair.starts_with("pretty="));
        let priority = priority(context);
        let bytes_max = node.config.result_bytes_max;
        // The answer is written on the query's turn too: its cost is part of the query's.
        let text = run_query(
            &node,
            vec![query_id.clone()],
            priority,
            deadline,
            cancel,
            body.held,
            move |node, deadline| {
                let result = run_native(&query, node.segments.as_ref(), deadline)?;
                // A query that ran past its deadline fails even if the engine did not notice.
                grove_query::QueryControl::check(deadline)?;
                let text = result.into_text_bounded(bytes_max)?;
                if !pretty {
                    return Ok(text);
                }
                let tree: Value = serde_json::from_str(&text)
                    .map_err(|e| QueryError::internal(format!("reading the result: {e}")))?;
                let text = serde_json::to_string_pretty(&tree)
                    .map_err(|e| QueryError::internal(format!("writing the result: {e}")))?;
                if text.len() as u64 > bytes_max {
                    return Err(too_large(bytes_max));
                }
                Ok(text)
            },
        )
        .await?;
        Ok(HttpResponse::Ok()
            .content_type("application/json")
            .insert_header(("X-Druid-Query-Id", query_id))
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

async fn sql_query(
    node: web::Data<Node>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let answer = async {
        let body = read_body(&node, &request, payload).await?;
        let http: SqlHttpRequest = serde_json::from_str(&body.text)
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
        let text_id = |key: &str| match context.get(key) {
            Some(Value::String(id)) if !id.is_empty() => Some(id.clone()),
            _ => None,
        };
        let sql_query_id = text_id("sqlQueryId").unwrap_or_else(new_query_id);
        let mut ids = vec![sql_query_id.clone()];
        ids.extend(text_id("queryId").filter(|id| *id != sql_query_id));
        let cancel = Arc::new(Cancel::default());
        let deadline = Deadline::from_context(
            Some(&context),
            bounds(&node),
            cancel.clone(),
            sql_query_id.clone(),
        )?;
        let request = http.request;
        let priority = priority(Some(&context));
        let bytes_max = node.config.result_bytes_max;
        let text = run_query(
            &node,
            ids,
            priority,
            deadline,
            cancel,
            body.held,
            move |node, deadline| {
                let segments = node.segments.as_ref();
                let result = sql::execute(&request, segments, segments, deadline)?;
                grove_query::QueryControl::check(deadline)?;
                render_bounded(&result, format, headers, bytes_max)
                    .ok_or_else(|| too_large(bytes_max))
            },
        )
        .await?;
        let mut response = HttpResponse::Ok();
        response
            .content_type(format.content_type())
            .insert_header(("X-Druid-SQL-Query-Id", sql_query_id));
        if headers.names {
            response.insert_header(("X-Druid-SQL-Header-Included", "yes"));
        }
        Ok(response.body(text))
    };
    answer.await.map_err(|e: ApiError| e.with_host(&node.host))
}

/// `DELETE /druid/v2/{queryId}`: stops every running query with that id. Accepted (202) whether
/// or not one runs, as Druid answers.
async fn cancel_native(node: web::Data<Node>, id: web::Path<String>) -> HttpResponse {
    node.running.cancel(&id);
    HttpResponse::Accepted().finish()
}

/// `DELETE /druid/v2/sql/{sqlQueryId}`: stops the SQL query with that id: 202, or 404 when none
/// runs (Druid's SQL endpoint answers so).
async fn cancel_sql(
    node: web::Data<Node>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    match node.running.cancel(&id) {
        0 => Err(
            ApiError::not_found(format!("no running query has the id '{id}'"))
                .with_host(&node.host),
        ),
        _ => Ok(HttpResponse::Accepted().finish()),
    }
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

fn bounds(node: &Node) -> Bounds {
    Bounds {
        timeout_ms_default: node.config.query_timeout_ms_default,
        timeout_ms_max: node.config.query_timeout_ms_max,
        limits: QueryLimits {
            scan_rows_max: node.config.scan_rows_max,
            result_bytes_max: node.config.result_bytes_max,
            ..QueryLimits::DEFAULT
        },
    }
}

fn too_large(bytes_max: u64) -> QueryError {
    QueryError::resource_limit(format!(
        "the query's result is larger than {} bytes (the server's result-bytes-max): narrow the \
         query (a limit, fewer groups or columns, shorter intervals) or raise --result-bytes-max",
        grove_query::error::thousands(bytes_max)
    ))
}

/// Stops the query when dropped armed: its handler went away before the answer (the client
/// disconnected), so nobody waits for the work.
struct StopOnDrop(Option<Arc<Cancel>>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Some(cancel) = self.0.take() {
            cancel.stop(Stop::Disconnected);
        }
    }
}

/// Runs `work` on a blocking thread with its share of the cores: all of them for a query
/// alone, one each when as many queries run as there are cores (more threads would only take
/// turns). The query's slot, its processing turn and `held` (its body's share of the budget)
/// go with the work and are dropped when it stops; until its turn comes it waits, giving up at
/// its deadline or when cancelled.
async fn run_query<T: Send + 'static>(
    node: &web::Data<Node>,
    ids: Vec<String>,
    priority: i64,
    deadline: Deadline,
    cancel: Arc<Cancel>,
    held: impl Send + 'static,
    work: impl FnOnce(&Node, &Deadline) -> Result<T, QueryError> + Send + 'static,
) -> Result<T, ApiError> {
    let max = node.config.queries_running_max;
    let query_id = ids[0].clone();
    let ticket =
        Ticket::take(&node.running, &node.queries_running, max, ids, &cancel).ok_or_else(|| {
            ApiError::capacity(format!(
                "{max} queries are already running (the limit, queries_running_max); retry later"
            ))
        })?;
    let mut armed = StopOnDrop(Some(cancel.clone()));
    let turn = tokio::select! {
        turn = node.processing.take(priority) => turn,
        () = tokio::time::sleep_until(deadline.until().into()) => {
            let expired = deadline.expired();
            return Err(QueryError::timeout(format!(
                "{} while waiting for its turn to process",
                expired.message
            ))
            .into());
        }
        () = cancel.wait() => {
            armed.0 = None;
            return Err(cancel.error(&query_id).expect("stopped").into());
        }
    };
    let cores = (node.cores / ticket.slots_taken()).max(1);
    let shared = node.clone().into_inner();
    let result = web::block(move || {
        let deadline = deadline.on_cores(cores);
        let started = std::time::Instant::now();
        let result = work(&shared, &deadline);
        if let Err(e) = &result
            && e.kind == ErrorKind::Cancelled
        {
            println!(
                "{} (stopped after {} ms)",
                e.message,
                started.elapsed().as_millis()
            );
        }
        // What the work held is given back only now that it has stopped.
        drop((turn, ticket, held));
        result
    })
    .await
    .map_err(|e| ApiError::internal(format!("the query thread failed: {e}")))?;
    armed.0 = None;
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
