//! `/api/v1/archive`: ingest (`archive` tokens) and the read API (`archive-read` tokens).
//!
//! | route | token | what |
//! |---|---|---|
//! | `POST /messages` | archive | JSON Lines; per-line outcome |
//! | `PUT /blobs/{sha256}` | archive | attachment bytes, checked against the hash |
//! | `POST /xmpp?token=SECRET` | archive | one stanza from ejabberd's `mod_post_log` |
//! | `GET /messages` | archive-read | search and page, oldest first |
//! | `GET /blobs/{sha256}` | archive-read | attachment bytes (download) |
//!
//! `mod_post_log` cannot send headers of its own, so its token travels in the query string:
//! the request log and the metrics record the path and the route only, never the query.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use chrono::{DateTime, TimeZone, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{Api, authenticate, bearer};
use crate::access::store::TokenKind;
use crate::archive::ingest::{Line, Outcome, Status};
use crate::archive::store::MessageRow;
use crate::archive::{Archive, BlobError, Cursor, Search, Viewer, xmpp};
use crate::directory::model::{Actor, Source};
use crate::http::ApiError;

/// The archive's routes, with their own body limit (`archive.max_request_bytes`).
pub fn router(api: Api, max_request_bytes: usize) -> Router {
    Router::new()
        .route("/archive/messages", post(post_messages).get(get_messages))
        .route("/archive/blobs/{sha256}", put(put_blob).get(get_blob))
        .route("/archive/xmpp", post(post_xmpp))
        .layer(DefaultBodyLimit::max(max_request_bytes))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(max_request_bytes))
        .with_state(api)
}

fn writer(info: &crate::access::store::TokenInfo) -> Actor {
    let source = TokenKind::Archive.source(&info.name).expect("token names are valid source names");
    Actor::new(source, info.name.clone())
}

fn reader(info: &crate::access::store::TokenInfo) -> Viewer {
    let source = Source::parse(&format!("api:{}", info.name)).expect("token names are valid source names");
    Viewer { actor: Actor::new(source, info.name.clone()), units: None }
}

/// Parses a JSON Lines body: each non-blank line a message or the reason it is not one.
pub fn parse_lines(body: &[u8]) -> Vec<(usize, Result<Line, Outcome>)> {
    body.split(|b| *b == b'\n')
        .enumerate()
        .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
        .map(|(i, raw)| {
            let n = i + 1;
            let text = match std::str::from_utf8(raw) {
                Ok(t) => t,
                Err(_) => return (n, Err(Outcome::refused(n, None, "malformed", "the line is not UTF-8"))),
            };
            let value: Value = match serde_json::from_str(text) {
                Ok(v) => v,
                Err(e) => return (n, Err(Outcome::refused(n, None, "malformed", format!("not JSON: {e}")))),
            };
            let id = value.get("id").and_then(Value::as_str).map(str::to_owned);
            match serde_json::from_value::<Line>(value) {
                Ok(line) => (n, Ok(line)),
                Err(e) => (n, Err(Outcome::refused(n, id, "malformed", format!("not a message: {e}")))),
            }
        })
        .collect()
}

fn summary(results: &[Outcome]) -> Value {
    let count = |s: Status| results.iter().filter(|o| o.status == s).count();
    json!({
        "stored": count(Status::Stored),
        "duplicates": count(Status::Duplicate),
        "refused": count(Status::Refused),
        "results": results,
    })
}

async fn post_messages(
    State(api): State<Api>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let ready = api.ready()?;
    let info = authenticate(&ready.access, bearer(&headers), TokenKind::Archive).await?;
    let lines = parse_lines(&body);
    if lines.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "empty",
            "the body holds no lines (JSON Lines, one message a line)",
        ));
    }
    let results = ready.archive.ingest(&writer(&info), lines).await?;
    Ok(Json(summary(&results)).into_response())
}

async fn post_xmpp(
    State(api): State<Api>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let ready = api.ready()?;
    let token = query.as_deref().and_then(|q| {
        form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "token").map(|(_, v)| v.into_owned())
    });
    let info =
        authenticate(&ready.access, token.as_deref().filter(|t| !t.is_empty()), TokenKind::Archive).await?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "not_a_stanza", "the body is not UTF-8 XML"))?;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let line = match xmpp::line(
        text,
        header("x-message-from").as_deref(),
        header("x-message-to").as_deref(),
        Utc::now(),
    ) {
        Ok(line) => line,
        Err(xmpp::Refusal::NotAStanza(why)) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "not_a_stanza",
                format!("not an XMPP message stanza: {why}"),
            ));
        }
        Err(xmpp::Refusal::Nothing(what)) => {
            return Ok(Json(json!({ "status": "ignored", "reason": what })).into_response());
        }
    };
    let result = ready.archive.ingest_one(&writer(&info), line).await?;
    let status =
        if result.status == Status::Refused { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    Ok((status, Json(result)).into_response())
}

async fn put_blob(
    State(api): State<Api>,
    Path(sha256): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let ready = api.ready()?;
    authenticate(&ready.access, bearer(&headers), TokenKind::Archive).await?;
    match ready.archive.put_blob(&sha256, body.to_vec()).await {
        Ok((created, mime)) => {
            let status = if created { StatusCode::CREATED } else { StatusCode::OK };
            Ok((status, Json(json!({ "sha256": sha256.to_ascii_lowercase(), "size": body.len(), "mime": mime, "created": created }))).into_response())
        }
        Err(e) => Err(match e {
            BlobError::BadHash => ApiError::new(StatusCode::BAD_REQUEST, "invalid_hash", e.to_string()),
            BlobError::Mismatch(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "hash_mismatch", e.to_string())
            }
            BlobError::TooLarge(..) => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", e.to_string())
            }
            BlobError::Type(_) => {
                ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "attachment_type", e.to_string())
            }
            BlobError::Store(e) => e.into(),
        }),
    }
}

async fn get_blob(
    State(api): State<Api>,
    Path(sha256): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let ready = api.ready()?;
    let info = authenticate(&ready.access, bearer(&headers), TokenKind::ArchiveRead).await?;
    let viewer = reader(&info);
    let sha256 = sha256.to_ascii_lowercase();
    let blob =
        ready.archive.store().archive_blob(&sha256).await.map_err(crate::directory::DirectoryError::from)?;
    let Some(blob) = blob else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such blob"));
    };
    ready
        .archive
        .audit_view(
            &viewer,
            "archive.blob",
            ("archive_blob", Some(sha256.clone())),
            json!({ "size": blob.size }),
        )
        .await?;
    Ok(crate::http::blob_response(&blob.sha256, &blob.mime, blob.bytes, false))
}

/// `GET /messages` query parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadQuery {
    member: Option<String>,
    counterpart: Option<String>,
    group: Option<i64>,
    conversation: Option<i64>,
    q: Option<String>,
    from: Option<String>,
    to: Option<String>,
    kind: Option<String>,
    cursor: Option<String>,
    limit: Option<usize>,
}

fn bad(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid", format!("{field}: {}", message.into()))
}

/// A time parameter: RFC 3339, or a date (midnight UTC).
pub fn parse_time(field: &str, s: &str) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map(|d| Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight")))
        .map_err(|_| bad(field, "a time is RFC 3339 (2026-12-03T10:00:00Z) or a date (2026-12-03)"))
}

/// A member parameter: a member identity (UUID), a current account number or login name.
pub async fn parse_member(archive: &Archive, s: &str) -> Result<Uuid, ApiError> {
    archive
        .member_named(s)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no member is named {s:?}")))
}

async fn get_messages(
    State(api): State<Api>,
    headers: HeaderMap,
    query: Result<Query<ReadQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let ready = api.ready()?;
    let info = authenticate(&ready.access, bearer(&headers), TokenKind::ArchiveRead).await?;
    let Query(q) = query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid", e.body_text()))?;
    let member = match &q.member {
        Some(m) => Some(parse_member(&ready.archive, m).await?),
        None => None,
    };
    let search = Search {
        member,
        counterpart: q.counterpart.clone(),
        conversation: q.conversation,
        group: q.group,
        from: q.from.as_deref().map(|s| parse_time("from", s)).transpose()?,
        to: q.to.as_deref().map(|s| parse_time("to", s)).transpose()?,
        kind: q.kind.clone(),
        text: q.q.clone(),
        cursor: q
            .cursor
            .as_deref()
            .map(|c| Cursor::parse(c).ok_or_else(|| bad("cursor", "not a cursor this API gave")))
            .transpose()?,
        limit: q.limit.unwrap_or(100).min(500),
    };
    let viewer = reader(&info);
    let page = ready.archive.search(&viewer, &search).await?;
    let messages = render(&ready.archive, &page.messages).await?;
    Ok(Json(
        json!({ "messages": messages, "next_cursor": page.next_cursor, "prev_cursor": page.prev_cursor }),
    )
    .into_response())
}

/// Messages as the read API shows them (the exports' JSON Lines form).
pub async fn render(archive: &Archive, rows: &[MessageRow]) -> Result<Vec<Value>, ApiError> {
    let rendered = crate::archive::export::Renderer::default().render(archive, rows).await?;
    Ok(rendered.into_iter().map(|r| r.json).collect())
}
