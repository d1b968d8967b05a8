//! The audit log, filtered by who, what and when, newest first, paged by id.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::IntoResponse;
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::Deserialize;

use super::{Errors, Reply, opt};
use crate::admin::Console;
use crate::admin::views::{Chrome, html, when};
use crate::admin::{Principal, directory};
use crate::directory::model::{AuditEntry, Permission};
use crate::directory::store::AuditFilter;

const PAGE: i64 = 100;

#[derive(Debug, Default, Deserialize)]
pub struct AuditQuery {
    #[serde(default)]
    pub actor: String,
    #[serde(default)]
    pub action: String,
    #[serde(default)]
    pub since: String,
    #[serde(default)]
    pub until: String,
    /// The next page: rows older than this id (ignored unless a number).
    #[serde(default)]
    pub before: Option<String>,
}

#[derive(Template)]
#[template(path = "audit.html", config = "src/admin/askama.toml")]
pub struct AuditPage {
    pub c: Chrome,
    pub q: AuditQuery,
    pub rows: Vec<AuditEntry>,
    pub next: Option<i64>,
    pub errors: Errors,
}

impl AuditPage {
    pub fn at(&self, e: &AuditEntry) -> String {
        when(&e.at)
    }
    pub fn json(&self, v: &Option<serde_json::Value>) -> String {
        v.as_ref().map(|v| v.to_string()).unwrap_or_default()
    }
}

/// `YYYY-MM-DD` as the start of that day (UTC), for years 1970-9999 (chrono parses years up to
/// ±262143, where adding the `until` day overflows, and the stores keep four-digit years).
fn day(s: &str) -> Result<Option<DateTime<Utc>>, ()> {
    match opt(s) {
        None => Ok(None),
        Some(s) => NaiveDate::parse_from_str(&s, "%Y-%m-%d")
            .ok()
            .filter(|d| (1970..=9999).contains(&d.year()))
            .map(|d| Some(d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc()))
            .ok_or(()),
    }
}

pub async fn audit(State(state): State<Console>, p: Principal, Query(q): Query<AuditQuery>) -> Reply {
    let d = directory(&state)?;
    p.require(d, p.has(Permission::ViewAudit), "audit.view").await?;
    let mut errors = Errors::default();
    let since = day(&q.since).unwrap_or_else(|_| {
        errors.fields.push(("since".into(), "YYYY-MM-DD, 1970-9999".into()));
        None
    });
    let until = day(&q.until).unwrap_or_else(|_| {
        errors.fields.push(("until".into(), "YYYY-MM-DD, 1970-9999".into()));
        None
    });
    let rows = if errors.is_empty() {
        let f = AuditFilter {
            actor: opt(&q.actor),
            action: opt(&q.action),
            object_id: None,
            since,
            // The whole `until` day is included; the last day there is bounds nothing (its next
            // day would have five digits, which the stores do not order as times).
            until: until.filter(|u| u.year() < 9999).map(|u| u + chrono::Duration::days(1)),
            before_id: q.before.as_deref().and_then(|b| b.parse().ok()),
            limit: PAGE,
        };
        d.store().audit_search(&f).await?
    } else {
        Vec::new()
    };
    let next = (rows.len() as i64 == PAGE).then(|| rows.last().map(|r| r.id)).flatten();
    let c = p.chrome(p.lang.t("menu.audit")).at("/admin/audit");
    let status =
        if errors.is_empty() { axum::http::StatusCode::OK } else { axum::http::StatusCode::BAD_REQUEST };
    Ok((status, html(&AuditPage { c, q, rows, next, errors })).into_response())
}
