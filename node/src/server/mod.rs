//! The single-process server behind `grove serve` and `grove quickstart`: every role in one
//! process, with a Druid-compatible HTTP API (actix-web).
//!
//! State ([`Node`]): the metadata store (a single-member Raft group, under `DIR/metadata`; see
//! [`metadata`]), local deep storage
//! (`DIR/deep-storage`), the [`SegmentCache`] (`DIR/segment-cache`) and the task runner's
//! scratch space (`DIR/tasks`). At start every used segment in the metadata store is loaded, and
//! tasks left RUNNING by a previous process are marked FAILED.
//!
//! Routes (Druid's paths): `POST /druid/v2` native queries, `POST /druid/v2/sql`,
//! `GET /druid/v2/datasources[/{ds}]`, `GET /status`, `GET /status/health`,
//! `POST /druid/indexer/v1/task`, `GET /druid/indexer/v1/task/{id}/status`,
//! `GET /druid/indexer/v1/task/{id}/reports`, `GET /druid/indexer/v1/tasks`,
//! `GET|POST /druid/coordinator/v1/rules[/{ds}]`, `GET .../rules[/{ds}]/history`.
//!
//! Limits: request bodies one by one ([`NodeConfig::request_bytes_max`], a 413) and together
//! ([`NodeConfig::request_bytes_in_flight_max`], a 429; see [`body`]), concurrent queries
//! ([`NodeConfig::queries_running_max`], a 429 past it; of those,
//! [`NodeConfig::queries_processing_max`] process at once and the rest wait their turn by
//! `context.priority`, then in arrival order, until their deadline), running tasks
//! ([`NodeConfig::tasks_running_max`], a 429 past it), the default and maximum query timeouts,
//! and each answer's rows and bytes ([`NodeConfig::scan_rows_max`],
//! [`NodeConfig::result_bytes_max`]). Queries and ingestion run on blocking threads so the HTTP
//! workers stay responsive; a query's slot and turn stay with its work until it stops (see
//! [`running`]), which `DELETE /druid/v2/{queryId}` or its client going away asks it to do.
//! Unknown routes and malformed query strings or paths answer with Druid's error body.

mod body;
mod control;
mod coordinator_api;
mod error;
pub mod metadata;
mod query_api;
mod running;
pub mod segments;
mod sql_format;
mod task_api;
mod tasks;
mod turns;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use anyhow::Context;
use grove_raft::metadata::{MetadataError, MetadataStore};
use grove_segment::deep_storage::LocalDeepStorage;
use grove_segment::time::format_iso;

pub use error::ApiError;
use metadata::MetadataGroup;
use segments::SegmentCache;
pub use tasks::submit as submit_task;

/// Limits and defaults of one server.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The largest request body accepted (a 413 past it).
    pub request_bytes_max: usize,
    /// Bytes of request bodies the server holds at once, being read, parsed or run (a 429 for
    /// a body that does not fit).
    pub request_bytes_in_flight_max: u64,
    /// Queries running at once; more are refused with a 429.
    pub queries_running_max: usize,
    /// Of the running queries, those processing at once (0: one more than the cores); the
    /// rest wait by `context.priority` (higher first), then in arrival order. Time-slicing
    /// every running query over the cores makes each take as long as all of them; taking turns
    /// keeps the slowest answers close to the typical ones (on two cores with eight dashboard
    /// clients, p99 fell by a fifth to a quarter for about the same throughput). The one extra
    /// keeps a core busy while a finishing query writes its answer. A long query holds its
    /// turn until it ends; priorities decide who goes next, not who stops.
    pub queries_processing_max: usize,
    /// Ingestion tasks running at once; more are refused with a 429.
    pub tasks_running_max: usize,
    /// The timeout of a query whose context sets none (ms; 0 = the maximum).
    pub query_timeout_ms_default: u64,
    /// The longest any query may run (ms), `timeout: 0` included; a larger `context.timeout`
    /// is refused (a 400).
    pub query_timeout_ms_max: u64,
    /// Rows a scan may return unless its context raises `maxScanRows`.
    pub scan_rows_max: u64,
    /// Bytes of one answer's text; a query whose answer would pass it fails naming it.
    pub result_bytes_max: u64,
    /// HTTP worker threads.
    pub http_workers: usize,
    /// Longest a metadata read or write waits for the metadata group (ms); past it the call
    /// fails as unavailable (a 503).
    pub metadata_timeout_ms: u64,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            request_bytes_max: 64 << 20,
            request_bytes_in_flight_max: 256 << 20,
            queries_running_max: 64,
            queries_processing_max: 0,
            tasks_running_max: 2,
            query_timeout_ms_default: 300_000,
            query_timeout_ms_max: 3_600_000,
            scan_rows_max: grove_query::QueryLimits::DEFAULT.scan_rows_max,
            result_bytes_max: grove_query::QueryLimits::DEFAULT.result_bytes_max,
            http_workers: 2,
            metadata_timeout_ms: 5_000,
        }
    }
}

/// Everything the HTTP handlers and the task runner share.
pub struct Node {
    pub store: Arc<dyn MetadataStore>,
    /// Keeps the metadata group's runtime alive as long as the node.
    _metadata: MetadataGroup,
    pub deep_storage: Arc<LocalDeepStorage>,
    pub segments: Arc<SegmentCache>,
    pub config: NodeConfig,
    /// `host:port` the API listens on, for error bodies and task locations.
    pub host: String,
    tasks_dir: PathBuf,
    /// Query slots taken ([`NodeConfig::queries_running_max`]), held by each query's work.
    queries_running: Arc<AtomicUsize>,
    /// Running queries by id, for `DELETE /druid/v2/{queryId}`.
    running: Arc<running::RunningQueries>,
    /// Bytes of request bodies held ([`NodeConfig::request_bytes_in_flight_max`]).
    bodies: Arc<body::BodyBudget>,
    tasks_running: AtomicUsize,
    /// The machine's cores, which running queries share.
    cores: usize,
    /// Turns to process a query ([`NodeConfig::queries_processing_max`]), taken by priority,
    /// then in arrival order.
    processing: Arc<turns::Turns>,
    /// The last segment version handed out (ms), so versions strictly increase.
    last_version_ms: AtomicI64,
}

impl Node {
    /// Opens the node's state under `dir` and loads every used segment.
    pub fn open(dir: &Path, config: NodeConfig, host: String) -> anyhow::Result<Node> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let metadata = MetadataGroup::open(
            &dir.join("metadata"),
            std::time::Duration::from_millis(config.metadata_timeout_ms),
        )?;
        let deep_storage = Arc::new(LocalDeepStorage::new(dir.join("deep-storage")));
        let segments = Arc::new(SegmentCache::new(
            deep_storage.clone(),
            dir.join("segment-cache"),
        ));
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let turns = match config.queries_processing_max {
            0 => cores + 1,
            n => n,
        };
        let node = Node {
            store: metadata.store.clone(),
            _metadata: metadata,
            deep_storage,
            segments,
            host,
            tasks_dir: dir.join("tasks"),
            queries_running: Arc::default(),
            running: Arc::default(),
            bodies: body::BodyBudget::new(config.request_bytes_in_flight_max),
            config,
            tasks_running: AtomicUsize::new(0),
            cores,
            processing: Arc::new(turns::Turns::new(turns)),
            last_version_ms: AtomicI64::new(0),
        };
        tasks::fail_interrupted(&node)?;
        coordinator_api::seed_default_rules(node.store.as_ref())?;
        let mut loaded = 0;
        for record in node.store.all_used_segments()? {
            match node.segments.load(&record) {
                Ok(()) => loaded += 1,
                // Serve what can be served; the segment shows as unavailable in sys.segments.
                Err(e) => eprintln!("warning: not serving {e}"),
            }
        }
        if loaded > 0 {
            println!("loaded {loaded} segment(s)");
        }
        Ok(node)
    }

    /// A segment version for a new task: the current time, strictly after the last one.
    fn next_version(&self) -> String {
        let now = now_ms();
        let previous = self
            .last_version_ms
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
                Some(now.max(last + 1))
            })
            .unwrap_or(now);
        format_iso(now.max(previous + 1))
    }
}

/// A slot in a bounded pool (running queries or tasks), given back on drop.
pub(crate) struct Slot<'a>(&'a AtomicUsize);

impl<'a> Slot<'a> {
    /// Takes a slot if fewer than `max` are taken.
    fn take(counter: &'a AtomicUsize, max: usize) -> Option<Slot<'a>> {
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(counter))
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The request body, within [`NodeConfig::request_bytes_max`] and the server's budget for
/// bodies in flight; its share of the budget is held as long as the returned [`body::Body`].
pub(crate) async fn read_body(
    node: &Node,
    request: &HttpRequest,
    payload: web::Payload,
) -> Result<body::Body, ApiError> {
    body::read_body(
        request,
        payload,
        node.config.request_bytes_max,
        &node.bodies,
    )
    .await
}

/// Runs a (blocking) metadata call on a blocking thread; its error carries the node's host.
pub(crate) async fn metadata_call<T: Send + 'static>(
    node: &web::Data<Node>,
    call: impl FnOnce(&Node) -> Result<T, MetadataError> + Send + 'static,
) -> Result<T, ApiError> {
    let shared = node.clone().into_inner();
    web::block(move || call(&shared))
        .await
        .map_err(|e| ApiError::internal(format!("the metadata thread failed: {e}")))?
        .map_err(|e| ApiError::from(e).with_host(&node.host))
}

/// Wall-clock time in ms since the epoch: read at the edge (HTTP and the task runner) and
/// passed into the metadata store, which never reads a clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Binds `host:port` (port 0 picks a free one), opens the node under `dir`, then calls
/// `on_ready` on a blocking thread (quickstart submits its sample there) and serves until the
/// process is stopped.
pub fn run(
    dir: &Path,
    host: &str,
    port: u16,
    config: NodeConfig,
    on_ready: impl FnOnce(&Arc<Node>) -> anyhow::Result<()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind((host, port))
        .with_context(|| format!("binding the HTTP API to {host}:{port}"))?;
    let address = listener.local_addr()?;
    let node = Arc::new(Node::open(dir, config, address.to_string())?);
    actix_web::rt::System::new().block_on(async move {
        let workers = node.config.http_workers.max(1);
        let data = web::Data::from(node.clone());
        let server = HttpServer::new(move || App::new().app_data(data.clone()).configure(routes))
            .workers(workers)
            // A client that closes its connection while its query runs ends the handler, which
            // cancels the query (clients do not half-close HTTP/1 connections to wait for an
            // answer).
            .h1_allow_half_closed(false)
            .listen(listener)?
            .run();
        println!(
            "grove is listening on http://{address} (data in {})",
            dir.display()
        );
        // On a blocking thread: it may call the (blocking) metadata store.
        let ready = node.clone();
        actix_web::rt::task::spawn_blocking(move || on_ready(&ready))
            .await
            .context("the start-up thread failed")??;
        server.await.context("HTTP server")
    })
}

fn routes(config: &mut web::ServiceConfig) {
    config
        .app_data(web::QueryConfig::default().error_handler(|e, request| {
            druid_error(
                request,
                ApiError::malformed(format!("the query string: {e}")),
            )
        }))
        .app_data(web::PathConfig::default().error_handler(|e, request| {
            druid_error(request, ApiError::malformed(format!("the path: {e}")))
        }))
        .route("/status", web::get().to(status))
        .route("/status/health", web::get().to(health))
        .configure(query_api::routes)
        .configure(task_api::routes)
        .configure(coordinator_api::routes)
        .default_service(web::to(unknown_route));
}

/// `error` with this server's host, as an extractor's error.
fn druid_error(request: &HttpRequest, error: ApiError) -> actix_web::Error {
    match request.app_data::<web::Data<Node>>() {
        Some(node) => error.with_host(&node.host).into(),
        None => error.into(),
    }
}

/// Any path or method no route serves: Druid's error body, 404.
async fn unknown_route(request: HttpRequest) -> Result<HttpResponse, actix_web::Error> {
    Err(druid_error(
        &request,
        ApiError::not_found(format!(
            "no endpoint serves {} {}",
            request.method(),
            request.path()
        )),
    ))
}

async fn status(node: web::Data<Node>) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "modules": [],
        "product": "grove",
        "host": node.host,
        "roles": ["coordinator", "overlord", "broker", "historical", "indexer", "router"],
    }))
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(true)
}

/// A RUNNING `index` task record, for the node's unit tests.
#[cfg(test)]
pub(crate) fn running_task(id: &str, data_source: &str) -> grove_raft::metadata::TaskRecord {
    use grove_raft::metadata::{TaskRecord, TaskState};
    TaskRecord {
        id: id.into(),
        task_type: "index".into(),
        data_source: data_source.into(),
        spec: serde_json::json!({}),
        state: TaskState::Running,
        error: None,
        created_ms: 1,
        started_ms: Some(1),
        ended_ms: None,
        report: None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use actix_web::test::{TestRequest, call_service, init_service, read_body_json};
    use serde_json::Value;

    use super::*;

    /// A task whose intervals overlap a time chunk another running task has locked fails,
    /// naming the holder; once the holder ends, the chunk can be locked again.
    #[actix_web::test]
    async fn a_task_over_a_locked_time_chunk_fails_naming_the_holder() {
        use grove_raft::metadata::{Command, TaskRecord, TaskState};
        use grove_segment::time::{Interval, parse_iso_timestamp};

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_owned();
        let node = web::block(move || {
            Arc::new(Node::open(&path, NodeConfig::default(), "localhost:0".into()).unwrap())
        })
        .await
        .unwrap();
        let day = |text: &str| parse_iso_timestamp(text).unwrap();
        let holder = running_task("holder", "edits");
        let lock = Command::AcquireTaskLock {
            task_id: "holder".into(),
            data_source: "edits".into(),
            interval: Interval::new(day("2024-01-02T00:00:00Z"), day("2024-01-03T00:00:00Z")),
            version: "v0".into(),
            acquired_ms: 2,
        };
        let task = serde_json::json!({
            "type": "index_parallel",
            "spec": {
                "dataSchema": {
                    "dataSource": "edits",
                    "timestampSpec": {"column": "ts", "format": "iso"},
                    "dimensionsSpec": {"dimensions": ["page"]},
                    "granularitySpec": {
                        "segmentGranularity": "day",
                        "intervals": ["2024-01-01T12:00:00Z/2024-01-02T01:00:00Z"]
                    }
                },
                "ioConfig": {
                    "type": "index_parallel",
                    "inputSource": {"type": "inline", "data": "{\"ts\": \"2024-01-01T13:00:00Z\", \"page\": \"a\"}"},
                    "inputFormat": {"type": "json"}
                }
            }
        })
        .to_string();
        let shared = node.clone();
        let (failed, after) = web::block(move || {
            shared
                .store
                .apply(Command::CreateTask {
                    task: holder.clone(),
                })
                .unwrap();
            shared.store.apply(lock).unwrap();
            let failed = wait_task(&shared, &submit_task(&shared, &task).unwrap());
            // The holder ends: its lock goes with it, and the same task now runs.
            let ended = TaskRecord {
                state: TaskState::Failed,
                ended_ms: Some(3),
                ..holder
            };
            shared
                .store
                .apply(Command::UpdateTask { task: ended })
                .unwrap();
            let after = wait_task(&shared, &submit_task(&shared, &task).unwrap());
            (failed, after)
        })
        .await
        .unwrap();
        assert_eq!(failed.state, TaskState::Failed);
        let error = failed.error.unwrap();
        assert!(error.contains("locked by task 'holder'"), "{error}");
        assert_eq!(after.state, TaskState::Success, "{:?}", after.error);
    }

    /// Polls task `id` until it ends.
    fn wait_task(node: &Node, id: &str) -> grove_raft::metadata::TaskRecord {
        let started = Instant::now();
        loop {
            let task = node.store.task(id).unwrap();
            if task.state.is_finished() {
                return task;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "task {id} did not end"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A node under `dir` with `config`, opened on a blocking thread.
    async fn open_node(dir: &Path, config: NodeConfig) -> Node {
        let path = dir.to_owned();
        web::block(move || Node::open(&path, config, "localhost:0".into()).unwrap())
            .await
            .unwrap()
    }

    /// Unknown paths and methods, and paths or query strings that do not decode, answer with
    /// Druid's error body (not actix's empty or plain-text ones).
    #[actix_web::test]
    async fn unknown_routes_and_undecodable_requests_answer_with_druids_error_body() {
        let dir = tempfile::tempdir().unwrap();
        let node = open_node(dir.path(), NodeConfig::default()).await;
        // A route with typed query and path parameters, as endpoints that take numbers have.
        async fn typed(
            _: web::Path<u32>,
            _: web::Query<std::collections::BTreeMap<String, u32>>,
        ) -> HttpResponse {
            HttpResponse::Ok().finish()
        }
        let app = init_service(
            App::new()
                .app_data(web::Data::new(node))
                .route("/typed/{n}", web::get().to(typed))
                .configure(routes),
        )
        .await;
        let cases = [
            (
                TestRequest::get().uri("/druid/v3/nothing"),
                404,
                "GET /druid/v3/nothing",
            ),
            (TestRequest::get().uri("/druid/v2"), 404, "GET /druid/v2"),
            (TestRequest::put().uri("/status"), 404, "PUT /status"),
            (
                TestRequest::get().uri("/typed/7?count=x"),
                400,
                "the query string",
            ),
            (TestRequest::get().uri("/typed/seven"), 400, "the path"),
            (TestRequest::get().uri("/typed/7?count=3"), 200, ""),
            (
                TestRequest::get().uri("/druid/coordinator/v1/rules/history?count=x"),
                400,
                "count 'x'",
            ),
        ];
        for (request, status, needle) in cases {
            let response = call_service(&app, request.to_request()).await;
            assert_eq!(response.status().as_u16(), status, "{needle}");
            if status == 200 {
                continue;
            }
            let body: Value = read_body_json(response).await;
            for field in ["error", "errorMessage", "errorClass"] {
                assert!(body[field].is_string(), "{needle}: {body}");
            }
            assert_eq!(body["host"], "localhost:0", "{body}");
            let message = body["errorMessage"].as_str().unwrap();
            assert!(message.contains(needle), "{needle}: {body}");
        }
    }

    /// Bodies are bounded one by one (413) and together: while bodies holding the budget are
    /// in flight, another that does not fit is refused (429) before it is read; once they are
    /// done it fits again.
    #[actix_web::test]
    async fn request_bodies_are_bounded_in_aggregate() {
        let dir = tempfile::tempdir().unwrap();
        let config = NodeConfig {
            request_bytes_max: 1_000,
            request_bytes_in_flight_max: 1_500,
            ..NodeConfig::default()
        };
        let node = web::Data::new(open_node(dir.path(), config).await);
        let app = init_service(App::new().app_data(node.clone()).configure(routes)).await;
        let post = |body: String| {
            TestRequest::post()
                .uri("/druid/v2/sql")
                .insert_header(("Content-Type", "application/json"))
                .set_payload(body)
                .to_request()
        };
        let sql = |pad: usize| {
            format!(
                r#"{{"query": "SELECT 1 FROM missing", "context": {{"pad": "{}"}}}}"#,
                "x".repeat(pad)
            )
        };
        let response = call_service(&app, post(sql(1_200))).await;
        assert_eq!(response.status().as_u16(), 413);
        let body: Value = read_body_json(response).await;
        assert!(
            body["errorMessage"]
                .as_str()
                .unwrap()
                .contains("--request-bytes-max"),
            "{body}"
        );
        // Another request holds 900 bytes of the budget (as a body being read or run would).
        let mut holding = node.bodies.share();
        let held = body::tests::grow(&mut holding, 900);
        assert!(held.is_ok());
        let response = call_service(&app, post(sql(700))).await;
        assert_eq!(response.status().as_u16(), 429);
        let body: Value = read_body_json(response).await;
        let message = body["errorMessage"].as_str().unwrap();
        assert!(message.contains("--request-bytes-in-flight-max"), "{body}");
        assert!(message.contains("hold 900 bytes"), "{body}");
        drop(holding);
        let response = call_service(&app, post(sql(700))).await;
        assert_eq!(response.status().as_u16(), 400, "the query itself is bad");
        assert_eq!(node.bodies.held(), 0, "every share came back");
    }

    /// With its metadata group unable to answer, the API answers 503 with Druid's error body
    /// within the metadata timeout, on reads and writes alike.
    #[actix_web::test]
    async fn metadata_that_cannot_answer_in_time_is_a_503_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_owned();
        let config = NodeConfig {
            metadata_timeout_ms: 300,
            ..NodeConfig::default()
        };
        let node = web::block(move || {
            let node = Node::open(&path, config, "localhost:0".into()).unwrap();
            node._metadata.stop();
            node
        })
        .await
        .unwrap();
        let app = init_service(App::new().app_data(web::Data::new(node)).configure(routes)).await;
        let requests = [
            TestRequest::get().uri("/druid/indexer/v1/tasks"),
            TestRequest::get().uri("/druid/indexer/v1/task/t1/status"),
            TestRequest::get().uri("/druid/coordinator/v1/rules"),
            TestRequest::post()
                .uri("/druid/coordinator/v1/rules/wiki")
                .set_payload(r#"[{"type": "loadForever"}]"#),
        ];
        for request in requests {
            let started = Instant::now();
            let response = call_service(&app, request.to_request()).await;
            let elapsed = started.elapsed();
            assert_eq!(response.status().as_u16(), 503);
            assert!(
                elapsed < Duration::from_secs(3),
                "answered after {elapsed:?}"
            );
            let body: Value = read_body_json(response).await;
            assert_eq!(body["error"], "Service unavailable", "{body}");
            assert_eq!(body["host"], "localhost:0", "{body}");
            assert!(
                body["errorMessage"]
                    .as_str()
                    .unwrap()
                    .starts_with("metadata unavailable:"),
                "{body}"
            );
        }
    }
}
