//! HTTP plumbing every adapter shares: the middleware every request passes (request id,
//! tracing, metrics, body limit, timeout), health checks and `/metrics`, and the JSON error form
//! ([`ApiError`]). The adapters' routers (`scim`, `admin`) are mounted by [`crate::app`]; this
//! module imports none of them.
//!
//! Error bodies carry a stable code and a human message ([`ApiError`]); the store's own error
//! text goes to the log, never to the client.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};

use crate::config::HttpConfig;
use crate::directory::DirectoryError;
use crate::directory::store::DirectoryRead;
use crate::store::{SchemaState, Store};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What the health and metrics routes read. The store arrives after start-up (the database may
/// be down when the listener is already bound), so it sits in a cell that `/readyz` watches.
#[derive(Clone)]
pub struct Health {
    pub store: Arc<OnceLock<Arc<dyn Store>>>,
    pub metrics: PrometheusHandle,
    /// When `/metrics` last counted the directory's objects.
    pub counts_at: Arc<std::sync::Mutex<Option<Instant>>>,
}

impl Health {
    pub fn new() -> Health {
        Health {
            store: Default::default(),
            metrics: crate::telemetry::prometheus(),
            counts_at: Default::default(),
        }
    }
}

impl Default for Health {
    fn default() -> Health {
        Health::new()
    }
}

/// The error form of an adapter whose clients expect their own (SCIM's), for the answers
/// middleware gives before the adapter runs (body limit, timeout): `(path prefix, form)`.
pub type ErrorForm = (&'static str, fn(StatusCode, &str) -> Response);

/// `/healthz`, `/readyz` and `/metrics`.
pub fn routes(health: Health) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(health)
}

/// Middleware for every route, outermost first: a request id (kept from the client or made up),
/// a tracing span carrying it (the path only: a query string may carry a token), the id echoed
/// in the response, metrics, and the request timeout (408). Body limits (413) are the routers'
/// own ([`crate::app::AppState::router`]).
pub fn with_layers(router: Router, cfg: &HttpConfig, forms: &'static [ErrorForm]) -> Router {
    router
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(cfg.request_timeout_secs),
        ))
        .layer(middleware::from_fn_with_state(forms, error_bodies))
        .layer(middleware::from_fn(crate::telemetry::track_http))
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
/// error form as everything else (an adapter's own form under its prefix, see [`ErrorForm`]).
async fn error_bodies(State(forms): State<&'static [ErrorForm]>, req: Request, next: Next) -> Response {
    let form = forms.iter().find(|(prefix, _)| req.uri().path().starts_with(prefix)).map(|f| f.1);
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
    if let Some(form) = form {
        return form(status, message);
    }
    ApiError::new(status, code, message).into_response()
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(state): State<Health>) -> Response {
    let unready = |detail: &str| {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "unavailable", "detail": detail })))
            .into_response()
    };
    let Some(store) = state.store.get() else {
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

async fn metrics(State(state): State<Health>) -> Response {
    if let Some(store) = state.store.get() {
        let read: Arc<dyn DirectoryRead> = store.clone();
        crate::telemetry::refresh_counts(&state.counts_at, read).await;
    }
    state.metrics.run_upkeep();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render()).into_response()
}

/// The answer for a path no router has.
pub async fn not_found() -> ApiError {
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

/// Stored bytes as a response (a message's attachment): the type sniffed from them, never
/// rendered as a page (`nosniff`, a sandboxing CSP). Inline only when `inline` is asked and the
/// type is a raster image; SVG, HTML and everything else is a download.
pub fn blob_response(sha256: &str, mime: &str, bytes: Vec<u8>, inline: bool) -> Response {
    let raster = matches!(mime, "image/png" | "image/jpeg" | "image/gif" | "image/webp" | "image/bmp");
    let shown = inline && raster;
    let mime = if shown || !inline { mime } else { "application/octet-stream" };
    let disposition = if shown {
        "inline".to_owned()
    } else {
        format!("attachment; filename=\"{}\"", &sha256[..sha256.len().min(16)])
    };
    let mut r = (StatusCode::OK, bytes).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(mime).unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; sandbox"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=3600"));
    r
}

/// The one byte range a `Range` header asks of a `len`-byte file: `Ok(None)` for the whole file
/// (no header, or one this does not serve: several ranges, another unit), `Err(())` when the
/// range lies past the end (416).
pub fn byte_range(headers: &axum::http::HeaderMap, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) =
        headers.get(header::RANGE).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("bytes="))
    else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.trim().split_once('-') else { return Ok(None) };
    let (start, end) = match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(s), Ok(e)) if s <= e => (s, e.min(len.saturating_sub(1))),
        (Ok(s), Err(_)) if b.is_empty() => (s, len.saturating_sub(1)),
        (Err(_), Ok(n)) if a.is_empty() && n > 0 => (len.saturating_sub(n), len.saturating_sub(1)),
        _ => return Ok(None),
    };
    if len == 0 || start >= len {
        return Err(());
    }
    Ok(Some((start, end)))
}

/// A file download that resumes: `Accept-Ranges`, `206 Partial Content` for a single byte
/// range, `416` for one past the end; streamed from disk in constant memory.
pub async fn file_response(
    path: &std::path::Path,
    headers: &axum::http::HeaderMap,
    content_type: &'static str,
    filename: &str,
) -> Response {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut file = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(_) => {
            return ApiError::new(StatusCode::NOT_FOUND, "not_found", "the file is gone").into_response();
        }
    };
    let len = match file.metadata().await {
        Ok(m) => m.len(),
        Err(_) => {
            return ApiError::new(StatusCode::NOT_FOUND, "not_found", "the file is gone").into_response();
        }
    };
    let range = match byte_range(headers, len) {
        Ok(r) => r,
        Err(()) => {
            let mut r = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return r;
        }
    };
    let (status, start, count) = match range {
        Some((s, e)) => (StatusCode::PARTIAL_CONTENT, s, e - s + 1),
        None => (StatusCode::OK, 0, len),
    };
    if start > 0 && file.seek(std::io::SeekFrom::Start(start)).await.is_err() {
        return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "io", "the file could not be read")
            .into_response();
    }
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(file.take(count)));
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    if let Some((s, e)) = range
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {s}-{e}/{len}"))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    r
}
