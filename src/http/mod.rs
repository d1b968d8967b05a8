//! HTTP: the router, the middleware every request passes (request id, tracing, metrics, body
//! limit, timeout), health checks and `/metrics`.
//!
//! Error bodies carry a stable code and a human message ([`ApiError`]); the store's own error
//! text goes to the log, never to the client.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::json;
use tower::ServiceBuilder;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};

use crate::config::{AdminConfig, Config, HttpConfig, ScimConfig};
use crate::directory::{DirectoryError, DirectoryService};
use crate::store::{SchemaState, Store};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What handlers share. The directory arrives after start-up (the database may be down when
/// the listener is already bound), so it sits in a cell that `/readyz` watches.
#[derive(Clone)]
pub struct AppState {
    pub directory: Arc<OnceLock<DirectoryService>>,
    /// Sync runs the console starts (set with the directory).
    pub sync: Arc<OnceLock<crate::sync::SyncService>>,
    pub metrics: PrometheusHandle,
    pub scim: Arc<ScimConfig>,
    pub admin: Arc<AdminConfig>,
    /// The whole configuration, for the console's overview pages.
    pub config: Arc<Config>,
    pub max_body_bytes: usize,
    /// When `/metrics` last counted the directory's objects.
    pub counts_at: Arc<std::sync::Mutex<Option<Instant>>>,
}

impl AppState {
    pub fn new(cfg: &Config) -> AppState {
        AppState {
            directory: Arc::new(OnceLock::new()),
            sync: Arc::new(OnceLock::new()),
            metrics: prometheus(),
            scim: Arc::new(cfg.scim.clone()),
            admin: Arc::new(cfg.admin.clone()),
            config: Arc::new(cfg.clone()),
            max_body_bytes: cfg.http.max_body_bytes,
            counts_at: Default::default(),
        }
    }

    fn store(&self) -> Option<&Arc<dyn Store>> {
        self.directory.get().map(DirectoryService::store)
    }
}

/// The process-wide Prometheus recorder (installed once; every app in the process shares it).
/// Its upkeep (draining histogram samples into their buckets) runs every [`UPKEEP`] on a thread
/// of its own and before each scrape, so recorded samples never pile up between scrapes.
fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets(&[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
                .expect("bucket list is not empty")
                .install_recorder()
                .expect("no other metrics recorder is installed");
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP);
                        upkeep.run_upkeep();
                    }
                })
                .expect("a thread for the metrics upkeep");
            handle
        })
        .clone()
}

const UPKEEP: Duration = Duration::from_secs(5);

/// How old the directory's object counts on `/metrics` may be: they are counted at most this
/// often, in the background, never once per scrape.
const COUNTS_MAX_AGE: Duration = Duration::from_secs(60);

/// The method as a metric label: one of a fixed set, so a client inventing methods cannot grow
/// the label space.
fn method_label(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The whole HTTP surface with its middleware.
pub fn router(state: AppState, cfg: &HttpConfig) -> Router {
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .nest("/scim/v2", crate::scim::router(state.clone()))
        .merge(admin(&state))
        .fallback(not_found)
        .with_state(state);
    with_layers(router, cfg)
}

/// The console under `/admin` when `admin.enabled`.
fn admin(state: &AppState) -> Router<AppState> {
    if !state.admin.enabled {
        return Router::new();
    }
    Router::new()
        .route("/admin/", get(|| async { axum::response::Redirect::permanent("/admin") }))
        .nest("/admin", crate::admin::router(state.clone()))
}

/// Middleware for every route, outermost first: a request id (kept from the client or made up),
/// a tracing span carrying it, the id echoed in the response, metrics, the request timeout
/// (408) and the body limit (413).
pub fn with_layers(router: Router, cfg: &HttpConfig) -> Router {
    router
        .layer(RequestBodyLimitLayer::new(cfg.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(cfg.request_timeout_secs),
        ))
        .layer(middleware::from_fn(error_bodies))
        .layer(middleware::from_fn(track_metrics))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(|req: &Request| {
                            let id = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
                            tracing::info_span!("http", method = %req.method(), uri = %req.uri().path(), request_id = %id)
                        })
                        // A 503 from /readyz while the database is down is news, not an error.
                        .on_failure(DefaultOnFailure::new().level(tracing::Level::WARN)),
                )
                .layer(PropagateRequestIdLayer::new(REQUEST_ID)),
        )
}

/// The body limit and the timeout answer with plain text; give their answers the same JSON
/// error form as everything else (the SCIM error form under `/scim/`).
async fn error_bodies(req: Request, next: Next) -> Response {
    let scim = req.uri().path().starts_with("/scim/");
    let response = next.run(req).await;
    let status = response.status();
    let plain = !response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.to_str().is_ok_and(|v| v.contains("json")));
    let (code, message) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => ("too_large", "the request body is too large"),
        StatusCode::REQUEST_TIMEOUT => ("timeout", "the request took too long"),
        _ => return response,
    };
    if !plain {
        return response;
    }
    if scim {
        return crate::scim::ScimError::new(status, None, message).into_response();
    }
    ApiError::new(status, code, message).into_response()
}

async fn track_metrics(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = method_label(req.method());
    let start = Instant::now();
    let response = next.run(req).await;
    let labels =
        [("method", method.to_owned()), ("route", route), ("status", response.status().as_u16().to_string())];
    metrics::counter!("roster_http_requests_total", &labels).increment(1);
    metrics::histogram!("roster_http_request_duration_seconds", &labels)
        .record(start.elapsed().as_secs_f64());
    response
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(state): State<AppState>) -> Response {
    let unready = |detail: &str| {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "unavailable", "detail": detail })))
            .into_response()
    };
    let Some(store) = state.store() else {
        return unready("the database is not connected yet");
    };
    if let Err(e) = store.ping().await {
        tracing::warn!(error = %e, "readiness: database unreachable");
        return unready("the database is unreachable");
    }
    match store.schema_state().await {
        Ok(SchemaState::Current) => Json(json!({ "status": "ok", "store": store.backend() })).into_response(),
        Ok(SchemaState::Behind) => unready("database migrations are pending"),
        Ok(SchemaState::Ahead) => unready("the database schema is newer than this rosterd"),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: cannot read the schema version");
            unready("the database is unreachable")
        }
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    if let Some(store) = state.store() {
        refresh_counts(&state.counts_at, store.clone()).await;
    }
    state.metrics.run_upkeep();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render()).into_response()
}

/// Counts the directory's objects for the gauges when the last count is older than
/// [`COUNTS_MAX_AGE`]: in the background (the scrape shows the previous count), except for the
/// first scrape, which waits for it. However often `/metrics` is scraped, `COUNT(*)` over the
/// big tables runs at most once in that time.
async fn refresh_counts(counted_at: &std::sync::Mutex<Option<Instant>>, store: Arc<dyn Store>) {
    let first = {
        let mut last = counted_at.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|t| t.elapsed() < COUNTS_MAX_AGE) {
            return;
        }
        last.replace(Instant::now()).is_none()
    };
    let count = async move {
        metrics::counter!("roster_metrics_counts_total").increment(1);
        match store.counts().await {
            Ok(c) => {
                metrics::gauge!("roster_members").set(c.members as f64);
                metrics::gauge!("roster_org_units").set(c.org_units as f64);
                metrics::gauge!("roster_groups").set(c.groups as f64);
                metrics::gauge!("roster_tombstones").set(c.tombstones as f64);
            }
            Err(e) => tracing::warn!(error = %e, "metrics: cannot count directory objects"),
        }
        match store.quarantine_counts().await {
            Ok(counts) => {
                for field in ["mobile", "email"] {
                    let n = counts.iter().find(|(f, _)| f == field).map_or(0, |(_, n)| *n);
                    metrics::gauge!("roster_quarantined_values", "field" => field).set(n as f64);
                }
            }
            Err(e) => tracing::warn!(error = %e, "metrics: cannot count the values kept aside"),
        }
    };
    if first {
        count.await;
    } else {
        tokio::spawn(count);
    }
}

/// A message left on `channel`.
pub fn metrics_delivery_sent(channel: &str) {
    metrics::counter!("roster_deliveries_sent_total", "channel" => channel.to_owned()).increment(1);
}

/// Messages by channel and state, as the dispatcher last counted them.
pub fn metrics_delivery_counts(counts: &[(String, String, i64)]) {
    for (channel, state, n) in counts {
        metrics::gauge!("roster_deliveries", "channel" => channel.clone(), "state" => state.clone())
            .set(*n as f64);
    }
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such resource")
}

/// An error as clients see it: a status, a stable code, and a message meant for people.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into() }
    }
}

impl From<DirectoryError> for ApiError {
    fn from(e: DirectoryError) -> ApiError {
        let status = match &e {
            DirectoryError::Invalid { .. } => StatusCode::BAD_REQUEST,
            DirectoryError::NotFound { .. } => StatusCode::NOT_FOUND,
            DirectoryError::Conflict { .. }
            | DirectoryError::Cycle { .. }
            | DirectoryError::NotEmpty { .. }
            | DirectoryError::NumberUnavailable { .. } => StatusCode::CONFLICT,
            DirectoryError::Stale { .. } => StatusCode::PRECONDITION_FAILED,
            DirectoryError::NotOwner { .. } | DirectoryError::Protected { .. } => StatusCode::FORBIDDEN,
            DirectoryError::NumbersExhausted { .. } | DirectoryError::NoEnterprise => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            DirectoryError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        let message = match &e {
            // The store's text may name tables and constraints: log it, say something general.
            DirectoryError::Store(inner) => {
                tracing::error!(error = %inner, "store error");
                "the directory store is not available; nothing was changed".to_owned()
            }
            other => other.to_string(),
        };
        ApiError { status, code: e.code(), message }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.code, "message": self.message }))).into_response()
    }
}
