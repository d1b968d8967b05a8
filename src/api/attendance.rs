//! `POST /api/v1/attendance/punches`: time clocks and apps post punches with a token of kind
//! `attendance`. Each punch is answered `stored`, `duplicate` (its id was posted before by
//! this token: retries are safe) or `refused` with a code; a bad punch never keeps the good
//! ones out.
//!
//! ```json
//! {"punches": [{"id": "clock-7:991", "account": "10001", "at": "2026-12-03T08:57:12+08:00", "device": "lobby"}]}
//! ```

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde::Deserialize;
use serde_json::json;

use super::{Api, authenticate, bearer};
use crate::access::attendance::PunchIn;
use crate::access::store::TokenKind;
use crate::http::ApiError;

/// The most punches one request may carry.
pub const MAX_PUNCHES: usize = 5_000;

pub fn router(api: Api) -> axum::Router {
    axum::Router::new()
        .route("/attendance/punches", post(punches))
        .layer(axum::extract::DefaultBodyLimit::max(2 * 1024 * 1024))
        .with_state(api)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Punches {
    punches: Vec<PunchIn>,
}

async fn punches(
    State(api): State<Api>,
    headers: HeaderMap,
    body: Result<Json<Punches>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let r = api.ready()?;
    let token = authenticate(&r.access, bearer(&headers), TokenKind::Attendance).await?;
    let Json(body) =
        body.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", e.body_text()))?;
    if body.punches.len() > MAX_PUNCHES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_punches",
            format!("at most {MAX_PUNCHES} punches a request"),
        ));
    }
    let results = r.attendance.post_punches(&token.name, body.punches).await?;
    let stored = results.iter().filter(|r| r.status == "stored").count();
    metrics::counter!("roster_attendance_punches_total", "outcome" => "stored").increment(stored as u64);
    Ok(Json(json!({ "results": results })))
}
