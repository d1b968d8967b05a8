//! Office attendance: a unit's month (*manage login policy* at that unit), a member's month,
//! CSV, the shifts and their assignment (an unscoped grant), and a member's own month.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use chrono::{Datelike, NaiveDate, Utc};
use serde::Deserialize;
use uuid::Uuid;

use super::{Errors, Reply, opt};
use crate::access::attendance::{DayResult, ShiftSpec, Status};
use crate::admin::views::{Chrome, html, when};
use crate::admin::{Console, Failure, Principal, ready, see_other};
use crate::directory::model::{Member, MemberState, Permission};
use crate::directory::query::{Expr, Field, Query as DirQuery};

/// The most members a unit's month shows.
const MAX_MEMBERS: i64 = 1000;

#[derive(Debug, Default, Deserialize, Clone)]
pub struct MonthQuery {
    /// A unit path.
    #[serde(default)]
    pub unit: String,
    /// `YYYY-MM` (default: this month).
    #[serde(default)]
    pub month: String,
    #[serde(default)]
    pub done: Option<String>,
    /// A shift to edit in the form.
    #[serde(default)]
    pub shift: Option<Uuid>,
}

pub struct MemberMonth {
    pub id: Uuid,
    pub name: String,
    pub cells: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "attendance.html", config = "src/admin/askama.toml")]
pub struct UnitPage {
    pub c: Chrome,
    pub q: MonthQuery,
    pub month: String,
    pub days: Vec<u32>,
    pub rows: Vec<MemberMonth>,
    pub shifts: Vec<(Uuid, String)>,
    pub assignments: Vec<(String, String)>,
    pub form: ShiftForm,
    pub errors: Errors,
    pub manage: bool,
}

impl UnitPage {
    /// The shift form's fields: (name, label, value, placeholder).
    pub fn fields(&self) -> Vec<(&'static str, &'static str, String, &'static str)> {
        let f = &self.form;
        vec![
            ("name", "attendance.name", f.name.clone(), "Office"),
            ("time_zone", "signin.time_zone", f.time_zone.clone(), "Asia/Shanghai"),
            ("start", "attendance.start", f.start.clone(), "09:00"),
            ("end", "attendance.end", f.end.clone(), "18:00"),
            ("window_before", "attendance.window_before", f.window_before.clone(), "120"),
            ("window_after", "attendance.window_after", f.window_after.clone(), "240"),
            ("late_after", "attendance.late_after", f.late_after.clone(), "0"),
            ("serious_after", "attendance.serious_after", f.serious_after.clone(), "30"),
            ("absent_after", "attendance.absent_after", f.absent_after.clone(), "120"),
            ("early_leave_before", "attendance.early_leave_before", f.early_leave_before.clone(), "0"),
            ("rest_days", "attendance.rest_days", f.rest_days.clone(), "sat sun"),
            ("holidays", "attendance.holidays", f.holidays.clone(), "2026-10-01"),
            ("workdays", "attendance.workdays", f.workdays.clone(), "2026-10-10"),
        ]
    }
}

#[derive(Template)]
#[template(path = "attendance_member.html", config = "src/admin/askama.toml")]
pub struct MemberPage {
    pub c: Chrome,
    pub month: String,
    pub name: String,
    pub days: Vec<DayView>,
}

pub struct DayView {
    pub day: String,
    pub status: String,
    pub code: String,
    pub first: String,
    pub last: String,
    pub late: i64,
    pub final_: bool,
}

#[derive(Debug, Default, Deserialize, Clone)]
pub struct ShiftForm {
    /// The shift being edited (empty: a new one).
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub time_zone: String,
    #[serde(default)]
    pub start: String,
    #[serde(default)]
    pub end: String,
    #[serde(default)]
    pub window_before: String,
    #[serde(default)]
    pub window_after: String,
    #[serde(default)]
    pub late_after: String,
    #[serde(default)]
    pub serious_after: String,
    #[serde(default)]
    pub absent_after: String,
    #[serde(default)]
    pub early_leave_before: String,
    /// `sat sun`
    #[serde(default)]
    pub rest_days: String,
    #[serde(default)]
    pub holidays: String,
    #[serde(default)]
    pub workdays: String,
}

fn month_of(s: &str) -> Result<(NaiveDate, NaiveDate), ()> {
    let first = match opt(s) {
        None => {
            let t = Utc::now().date_naive();
            NaiveDate::from_ymd_opt(t.year(), t.month(), 1).ok_or(())?
        }
        Some(m) => NaiveDate::parse_from_str(&format!("{m}-01"), "%Y-%m-%d").map_err(|_| ())?,
    };
    let next = if first.month() == 12 {
        NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)
    }
    .ok_or(())?;
    Ok((first, next.pred_opt().ok_or(())?))
}

/// One letter a status, for the month grid.
fn code(s: Status) -> &'static str {
    match s {
        Status::Normal => "✓",
        Status::Late => "L",
        Status::SeriouslyLate => "S",
        Status::Absent => "A",
        Status::EarlyLeave => "E",
        Status::NotSigned => "N",
        Status::Rest => "-",
    }
}

fn view(p: &Principal, d: &DayResult) -> DayView {
    let t = |x: &Option<chrono::DateTime<Utc>>| x.as_ref().map(when).unwrap_or_default();
    DayView {
        day: d.day.to_string(),
        status: p.lang.t(&format!("attendance.{}", d.status.as_str())).to_owned(),
        code: code(d.status).to_owned(),
        first: t(&d.first),
        last: t(&d.last),
        late: d.late_minutes,
        final_: d.final_,
    }
}

async fn unit_members(r: &crate::admin::Ready, unit: Uuid) -> Result<Vec<Member>, Failure> {
    let q = DirQuery {
        filter: Some(Expr::PrimaryUnitUnder(vec![unit])),
        sort: Some((Field::AccountNumber, false)),
        offset: 0,
        limit: MAX_MEMBERS,
    };
    Ok(r.directory
        .store()
        .search_members(&q)
        .await?
        .items
        .into_iter()
        .filter(|m| m.state == MemberState::Active)
        .collect())
}

/// A unit's month, and (for an unscoped grant) the shifts.
pub async fn unit_month(State(state): State<Console>, p: Principal, Query(q): Query<MonthQuery>) -> Reply {
    let r = ready(&state)?;
    p.require(&r.directory, p.has(Permission::ManageLoginPolicy), "attendance.view").await?;
    let mut form = ShiftForm::default();
    if let Some(id) = q.shift {
        let (shifts, _) = r.attendance.shifts().await.map_err(|e| Failure::from_directory(&e))?;
        let s = &shifts.iter().find(|s| s.id == id).ok_or(Failure::NotFound)?.spec;
        form = ShiftForm {
            id: id.to_string(),
            name: s.name.clone(),
            time_zone: s.time_zone.clone(),
            start: s.start.clone(),
            end: s.end.clone(),
            window_before: s.window_before.to_string(),
            window_after: s.window_after.to_string(),
            late_after: s.late_after.to_string(),
            serious_after: s.serious_after.to_string(),
            absent_after: s.absent_after.to_string(),
            early_leave_before: s.early_leave_before.to_string(),
            rest_days: s.rest_days.join(" "),
            holidays: s.holidays.join(" "),
            workdays: s.workdays.join(" "),
        };
    }
    render(r, &p, q, form, Errors::default()).await
}

async fn render(
    r: &crate::admin::Ready,
    p: &Principal,
    q: MonthQuery,
    form: ShiftForm,
    mut errors: Errors,
) -> Reply {
    let (first, last) = match month_of(&q.month) {
        Ok(m) => m,
        Err(()) => {
            errors.fields.push(("month".into(), "YYYY-MM".into()));
            month_of("").map_err(|_| Failure::Bad("month".into()))?
        }
    };
    let mut rows = Vec::new();
    if opt(&q.unit).is_some() {
        match super::org::resolve_path(&r.directory, &q.unit).await? {
            Ok(Some(unit)) => {
                let path = r.directory.store().org_unit_ancestors(unit).await?;
                p.require(&r.directory, p.has_at(Permission::ManageLoginPolicy, &path), "attendance.view")
                    .await?;
                let now = Utc::now();
                for m in unit_members(r, unit).await? {
                    let days = r
                        .attendance
                        .member_days(&m, first, last, now)
                        .await
                        .map_err(|e| Failure::from_directory(&e))?;
                    let cells =
                        days.iter().map(|d| (d.day.day().to_string(), code(d.status).to_owned())).collect();
                    rows.push(MemberMonth {
                        id: m.id,
                        name: format!("{} {}", m.account_number, m.display_name),
                        cells,
                    });
                }
            }
            _ => errors.fields.push(("unit".into(), p.lang.t("signin.no_unit").into())),
        }
    }
    let (shifts, assignments) = r.attendance.shifts().await.map_err(|e| Failure::from_directory(&e))?;
    let mut assigned = Vec::new();
    for (unit, shift) in &assignments {
        let name = shifts.iter().find(|s| s.id == *shift).map(|s| s.spec.name.clone()).unwrap_or_default();
        assigned.push((super::members::unit_path(&r.directory, Some(*unit)).await?, name));
    }
    let shifts: Vec<(Uuid, String)> = shifts
        .iter()
        .map(|s| (s.id, format!("{} ({}-{} {})", s.spec.name, s.spec.start, s.spec.end, s.spec.time_zone)))
        .collect();
    let days = (1..=last.day()).collect();
    let c = p.chrome(p.lang.t("menu.attendance")).at("/admin/attendance").flash(q.done.as_deref());
    let status =
        if errors.is_empty() { axum::http::StatusCode::OK } else { axum::http::StatusCode::BAD_REQUEST };
    let month = first.format("%Y-%m").to_string();
    let manage = p.has_everywhere(Permission::ManageLoginPolicy);
    let page = UnitPage { c, q, month, days, rows, shifts, assignments: assigned, form, errors, manage };
    Ok((status, html(&page)).into_response())
}

/// The unit's month as CSV: one row a member and day.
pub async fn unit_csv(State(state): State<Console>, p: Principal, Query(q): Query<MonthQuery>) -> Reply {
    let r = ready(&state)?;
    p.require(&r.directory, p.has(Permission::ManageLoginPolicy), "attendance.view").await?;
    let (first, last) = month_of(&q.month).map_err(|_| Failure::Bad("month: YYYY-MM".into()))?;
    let unit = match super::org::resolve_path(&r.directory, &q.unit).await? {
        Ok(Some(u)) => u,
        _ => return Err(Failure::Bad(p.lang.t("signin.no_unit").into())),
    };
    let path = r.directory.store().org_unit_ancestors(unit).await?;
    p.require(&r.directory, p.has_at(Permission::ManageLoginPolicy, &path), "attendance.view").await?;
    let mut w = csv::Writer::from_writer(Vec::new());
    let bad = |e: csv::Error| Failure::Bad(e.to_string());
    w.write_record([
        "member_id",
        "account_number",
        "name",
        "day",
        "status",
        "first",
        "last",
        "late_minutes",
        "final",
    ])
    .map_err(bad)?;
    let now = Utc::now();
    for m in unit_members(r, unit).await? {
        for d in
            r.attendance.member_days(&m, first, last, now).await.map_err(|e| Failure::from_directory(&e))?
        {
            let t = |x: Option<chrono::DateTime<Utc>>| x.map(|t| t.to_rfc3339()).unwrap_or_default();
            let name = if m.display_name.starts_with(['=', '+', '-', '@']) {
                format!("'{}", m.display_name)
            } else {
                m.display_name.clone()
            };
            w.write_record([
                m.id.to_string(),
                m.account_number.to_string(),
                name,
                d.day.to_string(),
                d.status.as_str().to_owned(),
                t(d.first),
                t(d.last),
                d.late_minutes.to_string(),
                d.final_.to_string(),
            ])
            .map_err(bad)?;
        }
    }
    let body = w.into_inner().map_err(|e| Failure::Bad(e.to_string()))?;
    let detail = serde_json::json!({ "unit": unit, "month": first.format("%Y-%m").to_string() });
    r.directory
        .record(&p.actor(), "attendance.export", "org_unit", Some(unit.to_string()), detail)
        .await
        .map_err(|e| Failure::from_directory(&e))?;
    Ok(super::csv_download("attendance.csv", body))
}

async fn member_page(r: &crate::admin::Ready, p: &Principal, m: &Member, month: &str) -> Reply {
    let (first, last) = month_of(month).map_err(|_| Failure::Bad("month: YYYY-MM".into()))?;
    let days = r
        .attendance
        .member_days(m, first, last, Utc::now())
        .await
        .map_err(|e| Failure::from_directory(&e))?;
    let days = days.iter().map(|d| view(p, d)).collect();
    let c = p.chrome(p.lang.t("menu.attendance")).at("/admin/attendance");
    let name = format!("{} {}", m.account_number, m.display_name);
    Ok(html(&MemberPage { c, month: first.format("%Y-%m").to_string(), name, days }).into_response())
}

/// A member's month (*manage login policy* at the member's unit).
pub async fn member_month(
    State(state): State<Console>,
    p: Principal,
    Path(id): Path<Uuid>,
    Query(q): Query<MonthQuery>,
) -> Reply {
    let r = ready(&state)?;
    let m = r.directory.store().member(id).await?.ok_or(Failure::NotFound)?;
    let path = match m.primary_org_unit_id {
        Some(u) => r.directory.store().org_unit_ancestors(u).await?,
        None => Vec::new(),
    };
    p.require(&r.directory, p.has_at(Permission::ManageLoginPolicy, &path), "attendance.view").await?;
    member_page(r, &p, &m, &q.month).await
}

/// The signed-in member's own month.
pub async fn mine(State(state): State<Console>, p: Principal, Query(q): Query<MonthQuery>) -> Reply {
    let r = ready(&state)?;
    let id = p.member_id().ok_or(Failure::NotFound)?;
    let m = r.directory.store().member(id).await?.ok_or(Failure::NotFound)?;
    member_page(r, &p, &m, &q.month).await
}

fn minutes(f: &str, v: &str, default: i64, errors: &mut Errors) -> i64 {
    match opt(v) {
        None => default,
        Some(s) => s.parse().unwrap_or_else(|_| {
            errors.fields.push((f.into(), "minutes".into()));
            default
        }),
    }
}

/// Deletes a shift and its assignments (an unscoped grant).
pub async fn delete_shift(State(state): State<Console>, p: Principal, Path(id): Path<Uuid>) -> Reply {
    let r = ready(&state)?;
    p.require(&r.directory, p.has_everywhere(Permission::ManageLoginPolicy), "attendance.shift").await?;
    r.attendance.delete_shift(&p.actor(), id).await.map_err(|e| Failure::from_directory(&e))?;
    Ok(see_other("/admin/attendance?done=signin.saved"))
}

/// Adds a shift, or saves the one the form edits (an unscoped grant).
pub async fn create_shift(
    State(state): State<Console>,
    p: Principal,
    axum::Form(f): axum::Form<ShiftForm>,
) -> Reply {
    let r = ready(&state)?;
    p.require(&r.directory, p.has_everywhere(Permission::ManageLoginPolicy), "attendance.shift").await?;
    let mut errors = Errors::default();
    let words = |s: &str| {
        s.split([' ', ',', '\n'])
            .map(str::trim)
            .filter(|w| !w.is_empty())
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let spec = ShiftSpec {
        name: f.name.clone(),
        time_zone: f.time_zone.clone(),
        start: f.start.clone(),
        end: f.end.clone(),
        window_before: minutes("window_before", &f.window_before, 120, &mut errors),
        window_after: minutes("window_after", &f.window_after, 240, &mut errors),
        late_after: minutes("late_after", &f.late_after, 0, &mut errors),
        serious_after: minutes("serious_after", &f.serious_after, 30, &mut errors),
        absent_after: minutes("absent_after", &f.absent_after, 120, &mut errors),
        early_leave_before: minutes("early_leave_before", &f.early_leave_before, 0, &mut errors),
        rest_days: words(&f.rest_days),
        holidays: words(&f.holidays),
        workdays: words(&f.workdays),
    };
    let id = match opt(&f.id) {
        None => None,
        Some(s) => Some(Uuid::parse_str(&s).map_err(|_| Failure::Bad("id: a shift id".into()))?),
    };
    if errors.is_empty() {
        match r.attendance.save_shift(&p.actor(), id, &spec).await {
            Ok(_) => return Ok(see_other("/admin/attendance?done=signin.saved")),
            Err(e) => errors = Errors::from_directory(e)?,
        }
    }
    let q = MonthQuery::default();
    let page = render(r, &p, q, f, errors).await?;
    let (mut parts, body) = page.into_parts();
    parts.status = axum::http::StatusCode::BAD_REQUEST;
    Ok(axum::response::Response::from_parts(parts, body))
}

#[derive(Debug, Default, Deserialize)]
pub struct AssignForm {
    #[serde(default)]
    pub unit: String,
    /// A shift id; empty removes the unit's assignment.
    #[serde(default)]
    pub shift: String,
}

/// Assigns a shift to an org subtree (an unscoped grant).
pub async fn assign(
    State(state): State<Console>,
    p: Principal,
    axum::Form(f): axum::Form<AssignForm>,
) -> Reply {
    let r = ready(&state)?;
    p.require(&r.directory, p.has_everywhere(Permission::ManageLoginPolicy), "attendance.shift").await?;
    let unit = match super::org::resolve_path(&r.directory, &f.unit).await? {
        Ok(Some(u)) => u,
        _ => return Err(Failure::Bad(p.lang.t("signin.no_unit").into())),
    };
    let shift = match opt(&f.shift) {
        None => None,
        Some(s) => Some(Uuid::parse_str(&s).map_err(|_| Failure::Bad("shift: choose a shift".into()))?),
    };
    r.attendance.assign(&p.actor(), unit, shift).await.map_err(|e| Failure::from_directory(&e))?;
    Ok(see_other("/admin/attendance?done=signin.saved"))
}
