//! Overlord endpoints: `POST /druid/indexer/v1/task` (a Druid `index_parallel` / `index` task;
//! answers `{"task": id}` at once and runs it in the background), `GET .../task/{id}/status`,
//! `GET .../task/{id}/reports` and `GET /druid/indexer/v1/tasks` (`?state=` running | complete,
//! `?datasource=`), newest first.

use std::collections::BTreeMap;

use actix_web::{HttpRequest, HttpResponse, web};

use super::tasks::{report_json, status_json, submit};
use super::{ApiError, Node, metadata_call, read_body};

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/druid/indexer/v1/task", web::post().to(submit_task))
        .route(
            "/druid/indexer/v1/task/{id}/status",
            web::get().to(task_status),
        )
        .route(
            "/druid/indexer/v1/task/{id}/reports",
            web::get().to(task_reports),
        )
        .route("/druid/indexer/v1/tasks", web::get().to(tasks));
}

async fn submit_task(
    node: web::Data<Node>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let answer = async {
        let body = read_body(&node, &request, payload).await?;
        let shared = node.clone().into_inner();
        let id = web::block(move || submit(&shared, &body.text))
            .await
            .map_err(|e| ApiError::internal(format!("the submitting thread failed: {e}")))??;
        Ok(HttpResponse::Ok().json(serde_json::json!({ "task": id })))
    };
    answer.await.map_err(|e: ApiError| e.with_host(&node.host))
}

async fn task_status(
    node: web::Data<Node>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let task = metadata_call(&node, move |node| node.store.task(&id)).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "task": task.id,
        "status": status_json(&task, &node.host),
    })))
}

async fn task_reports(
    node: web::Data<Node>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let task = metadata_call(&node, move |node| node.store.task(&id)).await?;
    Ok(HttpResponse::Ok().json(report_json(&task)))
}

async fn tasks(
    node: web::Data<Node>,
    query: web::Query<BTreeMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let state = match query
        .get("state")
        .map(|s| s.to_ascii_lowercase())
        .as_deref()
    {
        None => None,
        Some("running") => Some(false),
        Some("complete") => Some(true),
        Some(other) => {
            return Err(ApiError::invalid_input(format!(
                "state '{other}' is not one of running, complete"
            ))
            .with_host(&node.host));
        }
    };
    let mut tasks = metadata_call(&node, |node| node.store.tasks()).await?;
    tasks.retain(|t| {
        state.is_none_or(|finished| t.state.is_finished() == finished)
            && query
                .get("datasource")
                .is_none_or(|ds| *ds == t.data_source)
    });
    tasks.sort_by(|a, b| {
        b.created_ms
            .cmp(&a.created_ms)
            .then_with(|| a.id.cmp(&b.id))
    });
    let list: Vec<_> = tasks.iter().map(|t| status_json(t, &node.host)).collect();
    Ok(HttpResponse::Ok().json(list))
}
