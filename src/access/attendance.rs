//! Office attendance, derived from sign-ins and punches.
//!
//! A shift has a start and an end in a time zone (an end at or before the start crosses
//! midnight), a punch window around them, and thresholds in the style of DingTalk's: a first
//! punch after `late_after` minutes past the start is late, after `serious_after` seriously
//! late, after `absent_after` absent; a last punch more than `early_leave_before` minutes
//! before the end is an early leave. Shifts are assigned to org subtrees (the nearest
//! assignment wins) and have rest weekdays, holidays and make-up working days.
//!
//! The events of a member's day are their successful sign-ins from the login log and the
//! punches clocks and apps post (`POST /api/v1/attendance/punches`, idempotent per punch id).
//! Results are per member id (never per account number: a reused number inherits nothing),
//! and a day is final only once its punch window and `grace` have passed; the
//! `access:attendance` job stores results, final ones once.

use async_trait::async_trait;
use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::directory::DirectoryError;
use crate::directory::model::AuditRecord;
use crate::directory::store::Result;

use super::store::Sealed;

/// A shift as written (the console's form, the store's row).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShiftSpec {
    pub name: String,
    pub time_zone: String,
    /// `HH:MM`
    pub start: String,
    pub end: String,
    /// Minutes before the start the punch window opens, and after the end it closes.
    pub window_before: i64,
    pub window_after: i64,
    pub late_after: i64,
    pub serious_after: i64,
    pub absent_after: i64,
    pub early_leave_before: i64,
    /// `sat`, `sun`, ...
    pub rest_days: Vec<String>,
    /// `YYYY-MM-DD`: days off.
    pub holidays: Vec<String>,
    /// `YYYY-MM-DD`: working days that would be rest days.
    pub workdays: Vec<String>,
}

/// A checked shift.
#[derive(Debug, Clone, PartialEq)]
pub struct Shift {
    pub id: Uuid,
    pub spec: ShiftSpec,
    pub zone: Tz,
    pub start: NaiveTime,
    pub end: NaiveTime,
    rest: [bool; 7],
    holidays: Vec<NaiveDate>,
    workdays: Vec<NaiveDate>,
}

text_enum! {
    /// A member's day.
    pub enum Status as "attendance status" {
        Normal = "normal",
        Late = "late",
        SeriouslyLate = "seriously_late",
        Absent = "absent",
        EarlyLeave = "early_leave",
        /// One punch only: the check-in or the check-out is missing.
        NotSigned = "not_signed",
        Rest = "rest",
    }
}

/// A member's day as computed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DayResult {
    pub day: NaiveDate,
    pub status: Status,
    pub first: Option<DateTime<Utc>>,
    pub last: Option<DateTime<Utc>>,
    /// Minutes after the start of the first punch (0 when on time).
    pub late_minutes: i64,
    /// Whether the day's window and the grace period have passed.
    pub final_: bool,
}

impl Shift {
    /// Checks a shift; an error names the field.
    pub fn parse(id: Uuid, spec: &ShiftSpec) -> std::result::Result<Shift, DirectoryError> {
        let bad = |f: &str, m: &str| DirectoryError::invalid(f, m.to_owned());
        let name = spec.name.trim();
        if name.is_empty() || name.chars().count() > 64 {
            return Err(bad("name", "1-64 characters"));
        }
        let zone: Tz = spec
            .time_zone
            .trim()
            .parse()
            .map_err(|_| bad("time_zone", "an IANA time zone (Asia/Shanghai)"))?;
        let time = |f: &str, s: &str| {
            NaiveTime::parse_from_str(s.trim(), "%H:%M").map_err(|_| bad(f, "a time such as 09:00"))
        };
        let (start, end) = (time("start", &spec.start)?, time("end", &spec.end)?);
        for (f, v) in [
            ("window_before", spec.window_before),
            ("window_after", spec.window_after),
            ("late_after", spec.late_after),
            ("serious_after", spec.serious_after),
            ("absent_after", spec.absent_after),
            ("early_leave_before", spec.early_leave_before),
        ] {
            if !(0..=24 * 60).contains(&v) {
                return Err(bad(f, "minutes between 0 and 1440"));
            }
        }
        if !(spec.late_after <= spec.serious_after && spec.serious_after <= spec.absent_after) {
            return Err(bad("serious_after", "late <= seriously late <= absent"));
        }
        let mut rest = [false; 7];
        for d in &spec.rest_days {
            let day: chrono::Weekday =
                d.trim().parse().map_err(|_| bad("rest_days", "weekdays such as sat, sun"))?;
            rest[day.num_days_from_monday() as usize] = true;
        }
        let dates = |f: &str, v: &[String]| -> std::result::Result<Vec<NaiveDate>, DirectoryError> {
            v.iter()
                .map(|d| {
                    NaiveDate::parse_from_str(d.trim(), "%Y-%m-%d")
                        .map_err(|_| bad(f, "dates such as 2026-10-01"))
                })
                .collect()
        };
        let holidays = dates("holidays", &spec.holidays)?;
        let workdays = dates("workdays", &spec.workdays)?;
        let mut spec = spec.clone();
        spec.name = name.to_owned();
        spec.time_zone = zone.name().to_owned();
        Ok(Shift { id, spec, zone, start, end, rest, holidays, workdays })
    }

    pub fn is_rest(&self, day: NaiveDate) -> bool {
        if self.workdays.contains(&day) {
            return false;
        }
        self.holidays.contains(&day) || self.rest[day.weekday().num_days_from_monday() as usize]
    }

    fn at(&self, day: NaiveDate, t: NaiveTime) -> DateTime<Utc> {
        // A time the zone skips (a DST gap) is taken an hour later.
        let local = day.and_time(t);
        self.zone
            .from_local_datetime(&local)
            .earliest()
            .or_else(|| self.zone.from_local_datetime(&(local + Duration::hours(1))).earliest())
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|| local.and_utc())
    }

    /// The shift's start and end on `day` (the end on the next day when it crosses midnight).
    pub fn bounds(&self, day: NaiveDate) -> (DateTime<Utc>, DateTime<Utc>) {
        let start = self.at(day, self.start);
        let end_day = if self.end <= self.start { day.succ_opt().unwrap_or(day) } else { day };
        (start, self.at(end_day, self.end))
    }

    /// The punch window on `day`.
    pub fn window(&self, day: NaiveDate) -> (DateTime<Utc>, DateTime<Utc>) {
        let (s, e) = self.bounds(day);
        (s - Duration::minutes(self.spec.window_before), e + Duration::minutes(self.spec.window_after))
    }

    /// The day's result from its events (any order; those outside the window are ignored).
    pub fn evaluate(
        &self,
        day: NaiveDate,
        events: &[DateTime<Utc>],
        now: DateTime<Utc>,
        grace: Duration,
    ) -> DayResult {
        let (from, to) = self.window(day);
        let final_ = now >= to + grace;
        if self.is_rest(day) {
            return DayResult { day, status: Status::Rest, first: None, last: None, late_minutes: 0, final_ };
        }
        let mut inside: Vec<DateTime<Utc>> =
            events.iter().copied().filter(|t| *t >= from && *t <= to).collect();
        inside.sort();
        let (first, last) = (inside.first().copied(), inside.last().copied());
        let (start, end) = self.bounds(day);
        let Some(first_at) = first else {
            return DayResult { day, status: Status::Absent, first, last, late_minutes: 0, final_ };
        };
        let late = ((first_at - start).num_seconds().max(0) + 59) / 60;
        let middle = start + (end - start) / 2;
        let one = inside.len() == 1 || last.is_some_and(|l| l - first_at < Duration::minutes(1));
        let status = if one && first_at >= middle {
            // One punch after the middle of the shift: a check-out without a check-in.
            Status::NotSigned
        } else if late > self.spec.absent_after {
            Status::Absent
        } else if late > self.spec.serious_after {
            Status::SeriouslyLate
        } else if late > self.spec.late_after {
            Status::Late
        } else if one {
            Status::NotSigned
        } else if last.is_some_and(|l| l < end - Duration::minutes(self.spec.early_leave_before)) {
            Status::EarlyLeave
        } else {
            Status::Normal
        };
        DayResult { day, status, first, last, late_minutes: late, final_ }
    }

    /// The local day a moment belongs to (for the events of "today").
    pub fn local_day(&self, t: DateTime<Utc>) -> NaiveDate {
        t.with_timezone(&self.zone).date_naive()
    }
}

/// A stored day result.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DayRow {
    pub member_id: Uuid,
    pub day: String,
    pub shift_id: Uuid,
    pub status: String,
    pub first_at: Option<DateTime<Utc>>,
    pub last_at: Option<DateTime<Utc>>,
    pub late_minutes: i64,
    pub final_: bool,
}

/// A punch as posted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Punch {
    /// The client's id (unique per token).
    pub id: String,
    pub source: String,
    pub member_id: Uuid,
    pub at: DateTime<Utc>,
    pub device: String,
}

#[async_trait]
pub trait AttendanceStore: Send + Sync + 'static {
    /// Every shift (`(id, spec)`) and every assignment `(unit, shift)`.
    async fn shifts(&self) -> Result<(Vec<(Uuid, ShiftSpec)>, Vec<(Uuid, Uuid)>)>;
    /// Adds or replaces a shift, audited in the same transaction.
    async fn shift_put(
        &self,
        key: &Sealed,
        id: Uuid,
        spec: &ShiftSpec,
        at: DateTime<Utc>,
        audit: &AuditRecord,
    ) -> Result<()>;
    /// Deletes a shift and its assignments, audited; false when there was none. Stored days
    /// keep the shift's id.
    async fn shift_delete(&self, key: &Sealed, id: Uuid, audit: &AuditRecord) -> Result<bool>;
    /// Assigns `shift` to `unit` (`None`: removes the unit's assignment), audited.
    async fn shift_assign(
        &self,
        key: &Sealed,
        unit: Uuid,
        shift: Option<Uuid>,
        audit: &AuditRecord,
    ) -> Result<()>;
    /// Stores punches, audited (one row a request, `audit` made from how many were new) in
    /// the same transaction; returns for each whether it was new (false: a duplicate of its id).
    async fn punches_insert(
        &self,
        key: &Sealed,
        punches: &[Punch],
        received: DateTime<Utc>,
        audit: &(dyn Fn(usize) -> AuditRecord + Send + Sync),
    ) -> Result<Vec<bool>>;
    /// A member's punch times and successful sign-in times in `[from, to)`.
    async fn events(
        &self,
        member: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<DateTime<Utc>>>;
    /// Stores day results; a stored final result is never replaced.
    async fn days_put(&self, rows: &[DayRow]) -> Result<u64>;
    /// A member's stored results from `from` to `to` (inclusive, `YYYY-MM-DD`).
    async fn days(&self, member: Uuid, from: &str, to: &str) -> Result<Vec<DayRow>>;
}

/// One punch as a clock or app posts it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PunchIn {
    /// The client's id for the punch (a retry sends the same).
    pub id: String,
    /// The member: account number or login name.
    pub account: String,
    /// RFC 3339.
    pub at: String,
    #[serde(default)]
    pub device: String,
}

/// What became of one posted punch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PunchOutcome {
    pub id: String,
    /// `stored`, `duplicate`, `refused`
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Attendance: shifts and their assignment (audited), punches, results. Cheap to clone.
#[derive(Clone)]
pub struct Attendance {
    directory: crate::directory::DirectoryService,
    store: std::sync::Arc<dyn AttendanceStore>,
    grace: Duration,
}

impl Attendance {
    pub fn new(
        directory: crate::directory::DirectoryService,
        store: std::sync::Arc<dyn AttendanceStore>,
        grace_minutes: i64,
    ) -> Attendance {
        Attendance { directory, store, grace: Duration::minutes(grace_minutes) }
    }

    pub async fn shifts(&self) -> crate::directory::DirectoryResult<(Vec<Shift>, Vec<(Uuid, Uuid)>)> {
        let (rows, assignments) = self.store.shifts().await?;
        let mut shifts = Vec::new();
        for (id, spec) in rows {
            match Shift::parse(id, &spec) {
                Ok(s) => shifts.push(s),
                Err(e) => {
                    tracing::error!(shift = %id, error = %e, "a stored shift could not be read; skipped")
                }
            }
        }
        Ok((shifts, assignments))
    }

    /// Adds a shift (`id` none) or replaces shift `id`; returns its id. Audited.
    pub async fn save_shift(
        &self,
        actor: &crate::directory::model::Actor,
        id: Option<Uuid>,
        spec: &ShiftSpec,
    ) -> crate::directory::DirectoryResult<Uuid> {
        let id = id.unwrap_or_else(Uuid::now_v7);
        let shift = Shift::parse(id, spec)?;
        let at = Utc::now();
        let after = serde_json::to_value(&shift.spec).unwrap_or_default();
        let audit = AuditRecord::new(
            actor,
            at,
            "attendance.shift_save",
            ("shift", Some(id.to_string())),
            None,
            Some(&after),
        );
        self.store.shift_put(&Sealed::new(), id, &shift.spec, at, &audit).await?;
        Ok(id)
    }

    /// Deletes a shift (and its assignments). Audited.
    pub async fn delete_shift(
        &self,
        actor: &crate::directory::model::Actor,
        id: Uuid,
    ) -> crate::directory::DirectoryResult<()> {
        let audit = AuditRecord::new::<()>(
            actor,
            Utc::now(),
            "attendance.shift_delete",
            ("shift", Some(id.to_string())),
            None,
            None,
        );
        if !self.store.shift_delete(&Sealed::new(), id, &audit).await? {
            return Err(DirectoryError::NotFound { kind: "shift", id: id.to_string() });
        }
        Ok(())
    }

    /// Assigns a shift to an org subtree (`None`: removes the assignment). Audited.
    pub async fn assign(
        &self,
        actor: &crate::directory::model::Actor,
        unit: Uuid,
        shift: Option<Uuid>,
    ) -> crate::directory::DirectoryResult<()> {
        if let Some(s) = shift
            && !self.store.shifts().await?.0.iter().any(|(id, _)| *id == s)
        {
            return Err(DirectoryError::NotFound { kind: "shift", id: s.to_string() });
        }
        let after = serde_json::json!({ "unit": unit, "shift": shift });
        let audit = AuditRecord::new(
            actor,
            Utc::now(),
            "attendance.assign",
            ("org_unit", Some(unit.to_string())),
            None,
            Some(&after),
        );
        self.store.shift_assign(&Sealed::new(), unit, shift, &audit).await?;
        Ok(())
    }

    /// The shift a member works: the nearest assignment up their primary unit's ancestors.
    pub async fn shift_of(
        &self,
        member: &crate::directory::model::Member,
        shifts: &[Shift],
        assignments: &[(Uuid, Uuid)],
    ) -> crate::directory::DirectoryResult<Option<Shift>> {
        let Some(unit) = member.primary_org_unit_id else { return Ok(None) };
        for u in self.directory.store().org_unit_ancestors(unit).await? {
            if let Some((_, s)) = assignments.iter().find(|(a, _)| *a == u) {
                return Ok(shifts.iter().find(|x| x.id == *s).cloned());
            }
        }
        Ok(None)
    }

    /// Stores punches posted by `source` (the token's name), each resolved to the member who
    /// holds the account now.
    pub async fn post_punches(
        &self,
        source: &str,
        punches: Vec<PunchIn>,
    ) -> crate::directory::DirectoryResult<Vec<PunchOutcome>> {
        let e = self.directory.store().enterprise().await?.ok_or(DirectoryError::NoEnterprise)?;
        let mut out = Vec::with_capacity(punches.len());
        let mut ok = Vec::new();
        let refuse = |id: &str, code: &'static str, message: String| PunchOutcome {
            id: id.to_owned(),
            status: "refused",
            code: Some(code),
            message: Some(message),
        };
        for p in punches {
            if p.id.is_empty() || p.id.len() > 128 {
                out.push(refuse(&p.id, "invalid_id", "id: 1-128 characters".into()));
                continue;
            }
            let Ok(at) = DateTime::parse_from_rfc3339(p.at.trim()) else {
                out.push(refuse(
                    &p.id,
                    "invalid_time",
                    "at: an RFC 3339 time such as 2026-12-03T09:01:00+08:00".into(),
                ));
                continue;
            };
            let account = p.account.trim().to_lowercase();
            let member = match account.parse::<i64>() {
                Ok(n) => self.directory.store().member_by_number(n).await?,
                Err(_) => match crate::directory::validate::login_name(&account, &e.mail_domain) {
                    Ok(l) => self.directory.store().member_by_login(&l).await?,
                    Err(_) => None,
                },
            };
            let Some(member) = member else {
                out.push(refuse(
                    &p.id,
                    "unknown_account",
                    format!("account {:?}: no such member", p.account),
                ));
                continue;
            };
            out.push(PunchOutcome { id: p.id.clone(), status: "stored", code: None, message: None });
            ok.push((
                out.len() - 1,
                Punch {
                    id: p.id,
                    source: source.to_owned(),
                    member_id: member.id,
                    at: at.with_timezone(&Utc),
                    device: p.device.chars().take(128).collect(),
                },
            ));
        }
        let punches: Vec<Punch> = ok.iter().map(|(_, p)| p.clone()).collect();
        let (received, posted, refused) = (Utc::now(), out.len(), out.len() - punches.len());
        let actor = crate::directory::model::Actor::new(
            crate::directory::model::Source::parse(&format!("api:{source}"))
                .unwrap_or_else(crate::directory::model::Source::system),
            source.to_owned(),
        );
        let audit = move |stored: usize| {
            let after = serde_json::json!({ "posted": posted, "stored": stored, "refused": refused });
            AuditRecord::new(&actor, received, "attendance.punches", ("attendance", None), None, Some(&after))
        };
        let fresh = self.store.punches_insert(&Sealed::new(), &punches, received, &audit).await?;
        for ((i, _), new) in ok.iter().zip(fresh) {
            if !new {
                out[*i].status = "duplicate";
            }
        }
        Ok(out)
    }

    /// A member's days from `from` to `to` (inclusive): stored final results, the rest computed
    /// now (not final until their window and the grace period have passed).
    pub async fn member_days(
        &self,
        member: &crate::directory::model::Member,
        from: NaiveDate,
        to: NaiveDate,
        now: DateTime<Utc>,
    ) -> crate::directory::DirectoryResult<Vec<DayResult>> {
        let (shifts, assignments) = self.shifts().await?;
        let Some(shift) = self.shift_of(member, &shifts, &assignments).await? else { return Ok(Vec::new()) };
        self.days_on(member.id, &shift, from, to, now).await
    }

    /// A member's days on `shift` (see [`Self::member_days`]).
    async fn days_on(
        &self,
        member: Uuid,
        shift: &Shift,
        from: NaiveDate,
        to: NaiveDate,
        now: DateTime<Utc>,
    ) -> crate::directory::DirectoryResult<Vec<DayResult>> {
        let stored = self.store.days(member, &from.to_string(), &to.to_string()).await?;
        let (window_from, _) = shift.window(from);
        let (_, window_to) = shift.window(to);
        let events = self.store.events(member, window_from, window_to + Duration::seconds(1)).await?;
        let mut out = Vec::new();
        let mut day = from;
        while day <= to {
            let kept = stored.iter().find(|r| r.day == day.to_string() && r.final_);
            let r = match kept {
                Some(r) => DayResult {
                    day,
                    status: Status::parse(&r.status).unwrap_or(Status::Absent),
                    first: r.first_at,
                    last: r.last_at,
                    late_minutes: r.late_minutes,
                    final_: true,
                },
                None => shift.evaluate(day, &events, now, self.grace),
            };
            // A day that has not begun yet says nothing.
            if shift.window(day).0 <= now {
                out.push(r);
            }
            match day.succ_opt() {
                Some(d) => day = d,
                None => break,
            }
        }
        Ok(out)
    }

    /// The scheduled work: results of the last `days` days for every active member with a
    /// shift, stored (final ones once).
    pub async fn settle(&self, now: DateTime<Utc>, days: i64) -> crate::directory::DirectoryResult<u64> {
        let (shifts, assignments) = self.shifts().await?;
        if shifts.is_empty() || assignments.is_empty() {
            return Ok(0);
        }
        let d = self.directory.store();
        // Each unit's shift (the nearest assignment up its ancestors), worked out once in memory.
        let units = d.org_units_all().await?;
        let parent: std::collections::HashMap<Uuid, Option<Uuid>> =
            units.iter().map(|u| (u.id, u.parent_id)).collect();
        let shift_of_unit = |unit: Uuid| -> Option<&Shift> {
            let mut at = Some(unit);
            for _ in 0..=units.len() {
                let u = at?;
                if let Some((_, s)) = assignments.iter().find(|(a, _)| *a == u) {
                    return shifts.iter().find(|x| x.id == *s);
                }
                at = parent.get(&u).copied().flatten();
            }
            None
        };
        let mut stored = 0;
        let mut after = 0;
        loop {
            let page = d.members_page(after, 500).await?;
            let Some(last) = page.last() else { break };
            after = last.account_number;
            let mut rows = Vec::new();
            for m in page.iter().filter(|m| m.state == crate::directory::model::MemberState::Active) {
                let Some(shift) = m.primary_org_unit_id.and_then(shift_of_unit) else { continue };
                let today = shift.local_day(now);
                let from = today - Duration::days(days);
                for r in self.days_on(m.id, shift, from, today, now).await? {
                    rows.push(DayRow {
                        member_id: m.id,
                        day: r.day.to_string(),
                        shift_id: shift.id,
                        status: r.status.as_str().to_owned(),
                        first_at: r.first,
                        last_at: r.last,
                        late_minutes: r.late_minutes,
                        final_: r.final_,
                    });
                }
            }
            stored += self.store.days_put(&rows).await?;
        }
        Ok(stored)
    }
}

/// The `access:attendance` job: every ten minutes, settle the last two days.
pub fn jobs(attendance: &Attendance) -> Vec<crate::jobs::Job> {
    let a = attendance.clone();
    let every: cron::Schedule = "0 */10 * * * *".parse().expect("a valid cron expression");
    vec![crate::jobs::Job::new("access:attendance", every, move || {
        let a = a.clone();
        async move {
            let n = a.settle(Utc::now(), 2).await?;
            tracing::debug!(stored = n, "attendance settled");
            Ok(())
        }
    })]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shift(start: &str, end: &str) -> Shift {
        Shift::parse(
            Uuid::nil(),
            &ShiftSpec {
                name: "Office".into(),
                time_zone: "Asia/Shanghai".into(),
                start: start.into(),
                end: end.into(),
                window_before: 120,
                window_after: 240,
                late_after: 5,
                serious_after: 30,
                absent_after: 120,
                early_leave_before: 0,
                rest_days: vec!["sat".into(), "sun".into()],
                holidays: vec!["2026-12-25".into()],
                workdays: vec!["2026-12-26".into()],
            },
        )
        .expect("a valid shift")
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("a time").with_timezone(&Utc)
    }

    fn status(s: &Shift, day: &str, events: &[&str]) -> Status {
        let day = NaiveDate::parse_from_str(day, "%Y-%m-%d").unwrap();
        let events: Vec<DateTime<Utc>> = events.iter().map(|e| t(e)).collect();
        s.evaluate(day, &events, t("2027-01-01T00:00:00Z"), Duration::minutes(60)).status
    }

    #[test]
    fn thresholds_decide_the_day() {
        let s = shift("09:00", "18:00");
        let d = "2026-12-03"; // a Thursday
        assert_eq!(
            status(&s, d, &["2026-12-03T08:55:00+08:00", "2026-12-03T18:05:00+08:00"]),
            Status::Normal
        );
        assert_eq!(
            status(&s, d, &["2026-12-03T09:04:00+08:00", "2026-12-03T18:05:00+08:00"]),
            Status::Normal
        );
        assert_eq!(status(&s, d, &["2026-12-03T09:06:00+08:00", "2026-12-03T18:05:00+08:00"]), Status::Late);
        assert_eq!(
            status(&s, d, &["2026-12-03T09:45:00+08:00", "2026-12-03T18:05:00+08:00"]),
            Status::SeriouslyLate
        );
        assert_eq!(
            status(&s, d, &["2026-12-03T11:30:00+08:00", "2026-12-03T18:05:00+08:00"]),
            Status::Absent
        );
        assert_eq!(
            status(&s, d, &["2026-12-03T08:55:00+08:00", "2026-12-03T17:00:00+08:00"]),
            Status::EarlyLeave
        );
        assert_eq!(status(&s, d, &["2026-12-03T08:55:00+08:00"]), Status::NotSigned, "no check-out");
        assert_eq!(status(&s, d, &["2026-12-03T18:10:00+08:00"]), Status::NotSigned, "no check-in");
        assert_eq!(status(&s, d, &[]), Status::Absent);
        assert_eq!(
            status(&s, d, &["2026-12-03T03:00:00+08:00", "2026-12-03T23:30:00+08:00"]),
            Status::Absent,
            "outside the window"
        );
        assert_eq!(status(&s, "2026-12-05", &[]), Status::Rest, "a Saturday");
        assert_eq!(status(&s, "2026-12-25", &[]), Status::Rest, "a holiday");
        assert_eq!(status(&s, "2026-12-26", &[]), Status::Absent, "a make-up working Saturday");
    }

    #[test]
    fn a_night_shift_crosses_midnight_and_is_final_after_its_grace() {
        let s = shift("22:00", "06:00");
        let d = "2026-12-03";
        let events = ["2026-12-03T21:58:00+08:00", "2026-12-04T06:02:00+08:00"];
        assert_eq!(status(&s, d, &events), Status::Normal);
        let day = NaiveDate::from_ymd_opt(2026, 12, 3).unwrap();
        let ev: Vec<_> = events.iter().map(|e| t(e)).collect();
        // The window closes at 10:00 on the 4th; final an hour later.
        assert!(!s.evaluate(day, &ev, t("2026-12-04T10:59:00+08:00"), Duration::minutes(60)).final_);
        assert!(s.evaluate(day, &ev, t("2026-12-04T11:00:00+08:00"), Duration::minutes(60)).final_);
    }

    #[test]
    fn bad_shifts_are_named_by_field() {
        let field = |f: &dyn Fn(&mut ShiftSpec)| {
            let mut spec = shift("09:00", "18:00").spec;
            f(&mut spec);
            match Shift::parse(Uuid::nil(), &spec) {
                Err(DirectoryError::Invalid { field, .. }) => field,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(field(&|s| s.start = "9am".into()), "start");
        assert_eq!(field(&|s| s.time_zone = "Nowhere".into()), "time_zone");
        assert_eq!(field(&|s| s.late_after = 40), "serious_after");
        assert_eq!(field(&|s| s.rest_days = vec!["someday".into()]), "rest_days");
        assert_eq!(field(&|s| s.holidays = vec!["2026-02-30".into()]), "holidays");
        assert_eq!(field(&|s| s.window_after = -1), "window_after");
    }
}
