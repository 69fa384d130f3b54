//! The HTTP/JSON API (spec/server.md, docs/server.md): routes, request parsing, status
//! codes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use parking_lot::Mutex;
use serde_json::{Map, Value as Json, json};
use sixfold_sql::ClusterVolume;
use tokio::sync::Semaphore;

use crate::ServerOptions;
use crate::exec::{Databases, ExecError, Outcome, Params, STAGE_WRITING, Statement, code_name};
use crate::metrics::Metrics;
use crate::values::from_json;

/// What every handler shares.
pub struct App {
    pub volume: Arc<ClusterVolume>,
    pub databases: Arc<Databases>,
    pub metrics: Arc<Metrics>,
    pub options: ServerOptions,
    /// H8: at most `max_sessions` requests run SQL at once; the rest wait their turn.
    pub sessions: Arc<Semaphore>,
    pub started: Instant,
    pub address: SocketAddr,
}

pub fn router(app: Arc<App>) -> Router {
    let limit = app.options.max_body_bytes;
    Router::new()
        .route("/v1/db", get(list_databases).post(create_database))
        .route("/v1/db/{name}", post(execute))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(app)
}

/// H11: every error is `{"error": {"kind", "message", ...}}` with its status code.
fn error(status: StatusCode, kind: &str, message: impl Into<String>) -> Response {
    error_with(status, kind, message, Map::new())
}

fn error_with(
    status: StatusCode,
    kind: &str,
    message: impl Into<String>,
    mut extra: Map<String, Json>,
) -> Response {
    extra.insert("kind".into(), kind.into());
    extra.insert("message".into(), message.into().into());
    (status, axum::Json(json!({ "error": extra }))).into_response()
}

async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint; see docs/server.md (POST /v1/db/NAME, GET /v1/db, /metrics, /status)",
    )
}

/// H2, H13: the body as JSON, or why not: too large (413) or not JSON (400).
fn json_body(body: Result<Bytes, BytesRejection>) -> Result<Json, Box<Response>> {
    let bytes = body.map_err(|rejection| {
        let status = rejection.status();
        let kind = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "too_large"
        } else {
            "bad_request"
        };
        Box::new(error(status, kind, rejection.body_text()))
    })?;
    serde_json::from_slice(&bytes).map_err(|parse| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            "bad_json",
            format!("the body is not valid JSON: {parse}"),
        ))
    })
}

/// H3: `{"sql": ..., "params": ...}` or `{"statements": [SQL or {"sql", "params"}, ...]}`.
pub fn parse_statements(body: &Json) -> Result<Vec<Statement>, String> {
    let Json::Object(fields) = body else {
        return Err("the body must be a JSON object with \"sql\" or \"statements\"".into());
    };
    if let Some(unknown) = fields
        .keys()
        .find(|key| !matches!(key.as_str(), "sql" | "params" | "statements"))
    {
        return Err(format!(
            "unknown field {unknown:?} (fields: sql, params, statements)"
        ));
    }
    match (fields.get("statements"), fields.get("sql")) {
        (Some(_), Some(_)) => Err("give \"sql\" or \"statements\", not both".into()),
        (None, Some(_)) => Ok(vec![parse_statement(0, body)?]),
        (Some(Json::Array(list)), None) if !list.is_empty() => list
            .iter()
            .enumerate()
            .map(|(index, item)| parse_statement(index, item))
            .collect(),
        (Some(_), None) => Err("\"statements\" must be a non-empty array".into()),
        (None, None) => Err("the body needs \"sql\" or \"statements\"".into()),
    }
}

fn parse_statement(index: usize, item: &Json) -> Result<Statement, String> {
    let (sql, params) = match item {
        Json::String(sql) => (sql.clone(), None),
        Json::Object(fields) => match fields.get("sql") {
            Some(Json::String(sql)) => (sql.clone(), fields.get("params")),
            _ => return Err(format!("statement {index}: \"sql\" must be a string")),
        },
        _ => {
            return Err(format!(
                "statement {index}: a string or {{\"sql\": ..., \"params\": ...}}"
            ));
        }
    };
    let value = |json: &Json| from_json(json).map_err(|e| format!("statement {index}: {e}"));
    let params = match params {
        None | Some(Json::Null) => Params::Positional(Vec::new()),
        Some(Json::Array(list)) => {
            Params::Positional(list.iter().map(value).collect::<Result<_, _>>()?)
        }
        Some(Json::Object(named)) => Params::Named(
            named
                .iter()
                .map(|(name, json)| Ok((parameter_name(name), value(json)?)))
                .collect::<Result<_, String>>()?,
        ),
        Some(_) => {
            return Err(format!(
                "statement {index}: \"params\" must be an array or an object"
            ));
        }
    };
    Ok(Statement { sql, params })
}

/// A named parameter without its sigil means `:name`.
fn parameter_name(name: &str) -> String {
    if name.starts_with([':', '@', '$']) {
        name.to_string()
    } else {
        format!(":{name}")
    }
}

/// Counts a request while it is served.
struct InFlight(Arc<Metrics>);

impl InFlight {
    fn new(metrics: &Arc<Metrics>) -> InFlight {
        metrics.requests.inc();
        metrics.in_flight.inc();
        InFlight(metrics.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

async fn execute(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let _counted = InFlight::new(&app.metrics);
    // H14: a task of its own, so a client that goes away after sending its request does
    // not cancel it half way: it runs to its end, commit or rollback.
    let task = {
        let app = app.clone();
        tokio::spawn(async move { execute_request(&app, name, body).await })
    };
    let response = task.await.unwrap_or_else(|join| {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("the request's task failed: {join}"),
        )
    });
    if !response.status().is_success() {
        app.metrics.request_errors.inc();
    }
    response
}

async fn execute_request(
    app: &Arc<App>,
    name: String,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match json_body(body) {
        Ok(body) => body,
        Err(response) => return *response,
    };
    if let Err(invalid) = sixfold_sql::validate_name(&name) {
        return error(StatusCode::BAD_REQUEST, "bad_request", invalid.to_string());
    }
    let statements = match parse_statements(&body) {
        Ok(statements) => statements,
        Err(message) => return error(StatusCode::BAD_REQUEST, "bad_request", message),
    };
    let Ok(permit) = app.sessions.clone().acquire_owned().await else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "shutting down",
        );
    };
    let stage = Arc::new(AtomicU8::new(crate::exec::STAGE_READING));
    let interrupt = Arc::new(Mutex::new(None));
    let task = {
        let (databases, stage, interrupt) =
            (app.databases.clone(), stage.clone(), interrupt.clone());
        // H14: the transaction is committed or rolled back whole, never left half done.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            databases.execute(&name, &statements, &stage, &interrupt)
        })
    };
    match tokio::time::timeout(app.options.commit_wait, task).await {
        Ok(Ok(result)) => respond(app, result),
        Ok(Err(join)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("the request's worker failed: {join}"),
        ),
        Err(_elapsed) if stage.load(Ordering::SeqCst) == STAGE_WRITING => {
            // H10: the transaction may still commit after this answer.
            app.metrics.outcome_unknown.inc();
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "outcome_unknown",
                format!(
                    "the transaction did not finish within {:?} (no write quorum, or \
                     waiting for locks); it may or may not commit",
                    app.options.commit_wait
                ),
            )
        }
        Err(_elapsed) => {
            // Under the lock: the connection cannot go back to the pool meanwhile.
            if let Some(handle) = interrupt.lock().as_ref() {
                handle.interrupt();
            }
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                format!(
                    "the read did not finish within {:?}; nothing was written",
                    app.options.commit_wait
                ),
            )
        }
    }
}

/// H11: the status code of each outcome.
fn respond(app: &App, result: Result<Outcome, ExecError>) -> Response {
    match result {
        Ok(outcome) => {
            if outcome.commit_lsn.is_some() {
                app.metrics.transactions.inc();
            }
            (StatusCode::OK, axum::Json(outcome)).into_response()
        }
        Err(ExecError::NoSuchDatabase(name)) => error(
            StatusCode::NOT_FOUND,
            "no_such_database",
            format!("no database named {name:?}; create it with POST /v1/db"),
        ),
        Err(ExecError::BadRequest(message)) => {
            error(StatusCode::BAD_REQUEST, "bad_request", message)
        }
        Err(ExecError::Sql {
            statement,
            code,
            message,
        }) => {
            let retry = matches!(
                code & 0xff,
                rusqlite::ffi::SQLITE_BUSY
                    | rusqlite::ffi::SQLITE_LOCKED
                    | rusqlite::ffi::SQLITE_IOERR
                    | rusqlite::ffi::SQLITE_INTERRUPT
            );
            let status = if retry {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            let mut extra = Map::new();
            extra.insert("statement".into(), json!(statement));
            extra.insert("code".into(), json!(code));
            extra.insert("code_name".into(), json!(code_name(code)));
            error_with(status, "sql_error", message, extra)
        }
        Err(ExecError::OutcomeUnknown(message)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "outcome_unknown",
            format!("the commit's outcome is unknown: {message}"),
        ),
        Err(ExecError::Internal(message)) => {
            error(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
        }
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ExecError> + Send + 'static,
) -> Result<T, ExecError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|join| ExecError::Internal(join.to_string()))?
}

async fn list_databases(State(app): State<Arc<App>>) -> Response {
    let databases = app.databases.clone();
    match blocking(move || databases.list()).await {
        Ok(list) => {
            let list: Vec<Json> = list
                .into_iter()
                .map(|info| json!({"name": info.name, "id": info.db_id}))
                .collect();
            axum::Json(json!({ "databases": list })).into_response()
        }
        Err(failure) => respond(&app, Err(failure)),
    }
}

async fn create_database(
    State(app): State<Arc<App>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match json_body(body) {
        Ok(body) => body,
        Err(response) => return *response,
    };
    let Some(name) = body.get("name").and_then(Json::as_str).map(str::to_string) else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the body must be {\"name\": \"...\"}",
        );
    };
    let databases = app.databases.clone();
    let created = {
        let name = name.clone();
        blocking(move || databases.create(&name)).await
    };
    match created {
        Ok(true) => (StatusCode::CREATED, axum::Json(json!({"created": name}))).into_response(),
        Ok(false) => (StatusCode::OK, axum::Json(json!({"exists": name}))).into_response(),
        Err(failure) => respond(&app, Err(failure)),
    }
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let usable = not_ready_reason(&app.volume).is_none();
    let text = app.metrics.render(app.volume.stats().as_ref(), usable);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// H16: alive as long as the process answers.
async fn healthz() -> &'static str {
    "ok\n"
}

/// H16: ready while the writer accepts reads and commits.
async fn readyz(State(app): State<Arc<App>>) -> Response {
    match not_ready_reason(&app.volume) {
        None => (StatusCode::OK, "ready\n").into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        )
            .into_response(),
    }
}

/// H16: why the writer cannot serve: crashed, poisoned by an unknown outcome, or fenced
/// by a newer writer (E3) even before a commit found out.
pub fn not_ready_reason(volume: &ClusterVolume) -> Option<String> {
    if let Some(reason) = volume.unusable_reason() {
        return Some(reason);
    }
    let fenced_by = volume.stats().and_then(|stats| stats.fenced_by)?;
    Some(format!(
        "writer fenced by epoch {}: a newer writer took over (E3)",
        fenced_by.0
    ))
}

/// H17: the writer and the server as one JSON object.
async fn status(State(app): State<Arc<App>>) -> Response {
    let stats = app.volume.stats();
    let metrics = &app.metrics;
    let writer = match &stats {
        Some(stats) => json!({
            "usable": stats.fenced_by.is_none(),
            "fenced_by": stats.fenced_by.map(|epoch| epoch.0),
            "epoch": stats.epoch.0,
            "vdl": stats.vdl.0,
            "vcl": stats.vcl.0,
            "waiting_commits": stats.waiting_commits,
            "pgs": stats.pgs,
            "connected_nodes": stats.connected_nodes,
            "geometry_epoch": stats.geometry_epoch,
        }),
        None => json!({"usable": false, "reason": app.volume.unusable_reason()}),
    };
    let commits = metrics.commits.get();
    let pages = metrics.commit_pages.get();
    let bytes_per_commit = if commits == 0 {
        0.0
    } else {
        (pages * crate::metrics::PAGE_BYTES) as f64 / commits as f64
    };
    axum::Json(json!({
        "address": app.address.to_string(),
        "uptime_seconds": app.started.elapsed().as_secs_f64(),
        "writer": writer,
        "commits": commits,
        "commit_failures": metrics.commit_failures.get(),
        "commit_outcome_unknown": metrics.outcome_unknown.get(),
        "page_bytes_per_commit": bytes_per_commit,
        "requests": metrics.requests.get(),
        "request_errors": metrics.request_errors.get(),
        "requests_in_flight": metrics.in_flight.get(),
    }))
    .into_response()
}

/// How long a blocking worker may take to finish once the server stops.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
