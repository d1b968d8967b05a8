//! Login management: the sign-in policy (rules in order, the default, a what-if form) for an
//! unscoped *manage login policy* grant; the login log (filtered by member, unit, outcome and
//! time, paged by cursor, as CSV) for *manage login policy* holders, scoped ones seeing their
//! subtrees' members; and every member's own sign-ins.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use super::{Errors, Reply, opt};
use crate::access::login::{LoginEntry, LoginFilter, Outcome, RuleRow};
use crate::access::policy::{Client, RuleSpec, Who};
use crate::admin::views::{Chrome, html, when};
use crate::admin::{Console, Failure, Principal, ready, see_other};
use crate::directory::model::Permission;

const PAGE: i64 = 100;

/// A rule as the page shows it.
pub struct RuleView {
    pub id: Uuid,
    pub allow: bool,
    pub who: String,
    pub spec: RuleSpec,
}

#[derive(Template)]
#[template(path = "sign_in.html", config = "src/admin/askama.toml")]
pub struct PolicyPage {
    pub c: Chrome,
    pub default_allow: bool,
    pub rules: Vec<RuleView>,
    /// The rule form: empty for a new rule, or the rule being edited.
    pub form: RuleForm,
    pub editing: Option<Uuid>,
    pub errors: Errors,
    pub what_if: WhatIfQuery,
    pub answer: Option<String>,
}

#[derive(Debug, Default, Deserialize, Clone)]
pub struct RuleForm {
    #[serde(default)]
    pub effect: String,
    /// enterprise, unit, group, member
    #[serde(default)]
    pub who_kind: String,
    /// A unit path, a group name or id, a member's number or login name.
    #[serde(default)]
    pub who: String,
    #[serde(default)]
    pub networks: String,
    #[serde(default)]
    pub windows: String,
    #[serde(default)]
    pub exceptions: String,
    #[serde(default)]
    pub clients: String,
    #[serde(default)]
    pub time_zone: String,
    #[serde(default)]
    pub note: String,
}

#[derive(Debug, Default, Deserialize, Clone)]
pub struct WhatIfQuery {
    #[serde(default)]
    pub account: String,
    #[serde(default)]
    pub ip: String,
    /// `YYYY-MM-DDTHH:MM` in `zone`.
    #[serde(default)]
    pub at: String,
    #[serde(default)]
    pub zone: String,
    /// console, ldap:NAME, api:KIND
    #[serde(default)]
    pub client: String,
    /// The flash after a change.
    #[serde(default)]
    pub done: Option<String>,
}

fn lines(s: &str) -> Vec<String> {
    s.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect()
}

async fn who_text(r: &crate::admin::Ready, row: &RuleRow) -> Result<String, Failure> {
    let d = r.directory.store();
    Ok(match (row.who_kind.as_str(), row.who_id) {
        ("unit", Some(id)) => super::members::unit_path(&r.directory, Some(id)).await?,
        ("group", Some(id)) => d.group(id).await?.map(|g| g.name).unwrap_or_else(|| id.to_string()),
        ("member", Some(id)) => d
            .member(id)
            .await?
            .map(|m| format!("{} {}", m.account_number, m.login_name))
            .unwrap_or_else(|| id.to_string()),
        _ => String::new(),
    })
}

async fn page(
    r: &crate::admin::Ready,
    p: &Principal,
    form: RuleForm,
    editing: Option<Uuid>,
    errors: Errors,
    what_if: WhatIfQuery,
    answer: Option<String>,
) -> Result<PolicyPage, Failure> {
    let (default_allow, rows) = r.sign_in.rules().await.map_err(|e| Failure::from_directory(&e))?;
    let mut rules = Vec::new();
    for row in &rows {
        let who =
            format!("{} {}", p.lang.t(&format!("signin.who_{}", row.who_kind)), who_text(r, row).await?);
        rules.push(RuleView { id: row.id, allow: row.spec.allow, who, spec: row.spec.clone() });
    }
    let c = p.chrome(p.lang.t("menu.sign_in")).at("/admin/sign-in").flash(what_if.done.as_deref());
    Ok(PolicyPage { c, default_allow, rules, form, editing, errors, what_if, answer })
}

async fn require_policy(r: &crate::admin::Ready, p: &Principal, what: &str) -> Result<(), Failure> {
    p.require(&r.directory, p.has_everywhere(Permission::ManageLoginPolicy), what).await
}

/// The policy page; `?account=...` also answers the what-if form.
pub async fn policy(State(state): State<Console>, p: Principal, Query(q): Query<WhatIfQuery>) -> Reply {
    let r = ready(&state)?;
    require_policy(r, &p, "sign_in.policy").await?;
    let (answer, errors) =
        if q.account.trim().is_empty() { (None, Errors::default()) } else { what_if(r, &p, &q).await? };
    let status =
        if errors.is_empty() { axum::http::StatusCode::OK } else { axum::http::StatusCode::BAD_REQUEST };
    let page = page(
        r,
        &p,
        RuleForm { effect: "allow".into(), who_kind: "enterprise".into(), ..Default::default() },
        None,
        errors,
        q,
        answer,
    )
    .await?;
    Ok((status, html(&page)).into_response())
}

async fn what_if(
    r: &crate::admin::Ready,
    p: &Principal,
    q: &WhatIfQuery,
) -> Result<(Option<String>, Errors), Failure> {
    let Some(id) = r.archive.member_named(q.account.trim()).await.map_err(|e| Failure::from_directory(&e))?
    else {
        return Ok((None, Errors::field("account", p.lang.t("signin.no_member"))));
    };
    let Some(member) = r.directory.store().member(id).await? else {
        return Ok((None, Errors::field("account", p.lang.t("signin.no_member"))));
    };
    let ip = match opt(&q.ip) {
        None => None,
        Some(s) => match s.parse::<std::net::IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => return Ok((None, Errors::field("ip", p.lang.t("signin.bad_ip")))),
        },
    };
    let zone: chrono_tz::Tz = match opt(&q.zone) {
        None => chrono_tz::Tz::UTC,
        Some(z) => match z.parse() {
            Ok(z) => z,
            Err(_) => return Ok((None, Errors::field("zone", p.lang.t("signin.bad_zone")))),
        },
    };
    let at = match opt(&q.at) {
        None => Utc::now(),
        Some(s) => match NaiveDateTime::parse_from_str(&s, "%Y-%m-%dT%H:%M") {
            Ok(t) => match t.and_local_timezone(zone).earliest() {
                Some(t) => t.with_timezone(&Utc),
                None => return Ok((None, Errors::field("at", p.lang.t("signin.bad_time")))),
            },
            Err(_) => return Ok((None, Errors::field("at", p.lang.t("signin.bad_time")))),
        },
    };
    let client = match q.client.trim().split_once(':') {
        _ if q.client.trim() == "console" || q.client.trim().is_empty() => Client::Console,
        Some(("ldap", name)) => Client::Ldap(name.trim().to_owned()),
        Some(("api", kind)) => Client::Api { token: String::new(), kind: kind.trim().to_owned() },
        None if q.client.trim() == "ldap" => Client::Ldap(String::new()),
        _ => return Ok((None, Errors::field("client", p.lang.t("signin.bad_client")))),
    };
    let d = r.sign_in.what_if(&member, ip, at, &client).await.map_err(|e| Failure::from_directory(&e))?;
    let effect = p.lang.t(if d.allow { "signin.allowed" } else { "signin.denied" });
    let by = match d.rule {
        Some(id) => format!("{} {id}", p.lang.t("signin.by_rule")),
        None => p.lang.t("signin.by_default").to_owned(),
    };
    Ok((Some(format!("{} {}: {effect} ({by})", member.account_number, member.login_name)), Errors::default()))
}

/// The edit form of one rule.
pub async fn edit(State(state): State<Console>, p: Principal, Path(id): Path<Uuid>) -> Reply {
    let r = ready(&state)?;
    require_policy(r, &p, "sign_in.policy").await?;
    let (_, rows) = r.sign_in.rules().await.map_err(|e| Failure::from_directory(&e))?;
    let row = rows.iter().find(|x| x.id == id).ok_or(Failure::NotFound)?;
    let who = match (row.who_kind.as_str(), row.who_id) {
        ("unit", Some(u)) => super::members::unit_path(&r.directory, Some(u)).await?,
        ("group", Some(g)) => g.to_string(),
        ("member", Some(m)) => {
            r.directory.store().member(m).await?.map(|m| m.account_number.to_string()).unwrap_or_default()
        }
        _ => String::new(),
    };
    let form = RuleForm {
        effect: if row.spec.allow { "allow".into() } else { "deny".into() },
        who_kind: row.who_kind.clone(),
        who,
        networks: row.spec.networks.join("\n"),
        windows: row.spec.windows.join("\n"),
        exceptions: row.spec.exceptions.join("\n"),
        clients: row.spec.clients.join("\n"),
        time_zone: row.spec.time_zone.clone(),
        note: row.spec.note.clone(),
    };
    Ok(html(&page(r, &p, form, Some(id), Errors::default(), WhatIfQuery::default(), None).await?)
        .into_response())
}

/// Adds a rule (`id` none) or saves rule `id`.
async fn save(state: &Console, p: &Principal, id: Option<Uuid>, f: RuleForm) -> Reply {
    let r = ready(state)?;
    require_policy(r, p, "sign_in.policy").await?;
    let refuse = |errors: Errors, f: RuleForm| async move {
        let page = page(r, p, f, id, errors, WhatIfQuery::default(), None).await?;
        Ok((axum::http::StatusCode::BAD_REQUEST, html(&page)).into_response())
    };
    let who = match f.who_kind.as_str() {
        "enterprise" => Who::Enterprise,
        "unit" => match super::org::resolve_path(&r.directory, &f.who).await? {
            Ok(Some(u)) => Who::Unit(u),
            _ => return refuse(Errors::field("who", p.lang.t("signin.no_unit")), f).await,
        },
        "group" => {
            let g = match Uuid::parse_str(f.who.trim()) {
                Ok(id) => r.directory.store().group(id).await?.map(|g| g.id),
                Err(_) => {
                    let (groups, _) = r.directory.store().groups_all().await?;
                    let named: Vec<Uuid> =
                        groups.iter().filter(|g| g.name == f.who.trim()).map(|g| g.id).collect();
                    // Names may repeat: only a name that is one group's.
                    if named.len() == 1 { named.first().copied() } else { None }
                }
            };
            match g {
                Some(g) => Who::Group(g),
                None => return refuse(Errors::field("who", p.lang.t("signin.no_group")), f).await,
            }
        }
        "member" => {
            match r.archive.member_named(f.who.trim()).await.map_err(|e| Failure::from_directory(&e))? {
                Some(m) => Who::Member(m),
                None => return refuse(Errors::field("who", p.lang.t("signin.no_member")), f).await,
            }
        }
        _ => return refuse(Errors::field("who_kind", p.lang.t("signin.bad_who")), f).await,
    };
    let spec = RuleSpec {
        allow: f.effect == "allow",
        networks: lines(&f.networks),
        windows: lines(&f.windows),
        exceptions: lines(&f.exceptions),
        clients: lines(&f.clients),
        time_zone: f.time_zone.trim().to_owned(),
        note: f.note.trim().to_owned(),
    };
    match r.sign_in.save_rule(&p.actor(), id, who, &spec).await {
        Ok(_) => Ok(see_other("/admin/sign-in?done=signin.saved")),
        Err(e) => {
            let mut errors = Errors::from_directory(e)?;
            // `networks[2]` is the networks box's third line.
            for (field, msg) in &mut errors.fields {
                if let Some((name, rest)) = field.split_once('[') {
                    let line = rest.trim_end_matches(']').parse::<usize>().map(|n| n + 1).unwrap_or(0);
                    *msg = format!("{} {line}: {msg}", p.lang.t("signin.line"));
                    *field = name.to_owned();
                }
            }
            refuse(errors, f).await
        }
    }
}

pub async fn create(
    State(state): State<Console>,
    p: Principal,
    axum::Form(f): axum::Form<RuleForm>,
) -> Reply {
    save(&state, &p, None, f).await
}

pub async fn update(
    State(state): State<Console>,
    p: Principal,
    Path(id): Path<Uuid>,
    axum::Form(f): axum::Form<RuleForm>,
) -> Reply {
    save(&state, &p, Some(id), f).await
}

pub async fn delete(State(state): State<Console>, p: Principal, Path(id): Path<Uuid>) -> Reply {
    let r = ready(&state)?;
    require_policy(r, &p, "sign_in.policy").await?;
    r.sign_in.delete_rule(&p.actor(), id).await.map_err(|e| Failure::from_directory(&e))?;
    Ok(see_other("/admin/sign-in?done=signin.saved"))
}

#[derive(Debug, Default, Deserialize)]
pub struct MoveForm {
    #[serde(default)]
    pub dir: String,
}

pub async fn move_rule(
    State(state): State<Console>,
    p: Principal,
    Path(id): Path<Uuid>,
    axum::Form(f): axum::Form<MoveForm>,
) -> Reply {
    let r = ready(&state)?;
    require_policy(r, &p, "sign_in.policy").await?;
    r.sign_in.move_rule(&p.actor(), id, f.dir == "up").await.map_err(|e| Failure::from_directory(&e))?;
    Ok(see_other("/admin/sign-in?done=signin.saved"))
}

#[derive(Debug, Default, Deserialize)]
pub struct DefaultForm {
    #[serde(default)]
    pub effect: String,
}

pub async fn set_default(
    State(state): State<Console>,
    p: Principal,
    axum::Form(f): axum::Form<DefaultForm>,
) -> Reply {
    let r = ready(&state)?;
    require_policy(r, &p, "sign_in.policy").await?;
    r.sign_in.set_default(&p.actor(), f.effect == "allow").await.map_err(|e| Failure::from_directory(&e))?;
    Ok(see_other("/admin/sign-in?done=signin.saved"))
}

// ---- the login log ----

#[derive(Debug, Default, Deserialize, Clone)]
pub struct LogQuery {
    #[serde(default)]
    pub member: String,
    /// A unit path.
    #[serde(default)]
    pub unit: String,
    #[serde(default)]
    pub outcome: String,
    /// `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM` (UTC).
    #[serde(default)]
    pub since: String,
    #[serde(default)]
    pub until: String,
    #[serde(default)]
    pub before: Option<String>,
}

/// A log row as shown.
pub struct LogRow {
    pub at: String,
    pub who: String,
    pub e: LoginEntry,
}

#[derive(Template)]
#[template(path = "sign_in_log.html", config = "src/admin/askama.toml")]
pub struct LogPage {
    pub c: Chrome,
    pub q: LogQuery,
    pub rows: Vec<LogRow>,
    pub next: Option<i64>,
    pub errors: Errors,
    /// The query string without `before` (for the next page and the CSV link).
    pub query: String,
    /// A member's own page: no filters.
    pub own: bool,
}

fn time(s: &str, end: bool) -> Result<Option<DateTime<Utc>>, ()> {
    let Some(s) = opt(s) else { return Ok(None) };
    if let Ok(t) = NaiveDateTime::parse_from_str(&s, "%Y-%m-%dT%H:%M") {
        return Ok(Some(t.and_utc()));
    }
    let d = chrono::NaiveDate::parse_from_str(&s, "%Y-%m-%d").map_err(|_| ())?;
    let d = if end { d.succ_opt().ok_or(())? } else { d };
    Ok(Some(d.and_hms_opt(0, 0, 0).ok_or(())?.and_utc()))
}

/// The rows a filter finds that the principal may see (scoped holders: members under their
/// subtrees), newest first, at most [`PAGE`].
async fn visible_rows(
    r: &crate::admin::Ready,
    p: &Principal,
    mut f: LoginFilter,
    scopes: Option<Vec<Uuid>>,
) -> Result<Vec<LoginEntry>, Failure> {
    let mut out = Vec::new();
    for _ in 0..20 {
        let page = r.sign_in.log(&f).await.map_err(|e| Failure::from_directory(&e))?;
        let done = (page.len() as i64) < f.limit;
        f.before = page.last().map(|e| e.id);
        out.extend(page.into_iter().filter(|e| match &scopes {
            None => true,
            Some(s) => s.iter().any(|u| e.unit_path.contains(&format!("/{u}/"))),
        }));
        if done || out.len() as i64 >= PAGE {
            break;
        }
    }
    let _ = p;
    out.truncate(PAGE as usize);
    Ok(out)
}

async fn log_filter(
    r: &crate::admin::Ready,
    p: &Principal,
    q: &LogQuery,
) -> Result<(LoginFilter, Errors), Failure> {
    let mut errors = Errors::default();
    let mut f = LoginFilter { limit: PAGE, ..Default::default() };
    if let Some(m) = opt(&q.member) {
        match r.archive.member_named(&m).await.map_err(|e| Failure::from_directory(&e))? {
            Some(id) => f.member = Some(id),
            None => errors.fields.push(("member".into(), p.lang.t("signin.no_member").into())),
        }
    }
    if opt(&q.unit).is_some() {
        match super::org::resolve_path(&r.directory, &q.unit).await? {
            Ok(Some(u)) => f.unit = Some(u),
            _ => errors.fields.push(("unit".into(), p.lang.t("signin.no_unit").into())),
        }
    }
    if let Some(o) = opt(&q.outcome) {
        match Outcome::parse(&o) {
            Some(o) => f.outcome = Some(o),
            None => errors.fields.push(("outcome".into(), p.lang.t("signin.bad_outcome").into())),
        }
    }
    match time(&q.since, false) {
        Ok(t) => f.from = t,
        Err(()) => errors.fields.push(("since".into(), "YYYY-MM-DD[THH:MM]".into())),
    }
    match time(&q.until, true) {
        Ok(t) => f.to = t,
        Err(()) => errors.fields.push(("until".into(), "YYYY-MM-DD[THH:MM]".into())),
    }
    f.before = q.before.as_deref().and_then(|b| b.parse().ok());
    Ok((f, errors))
}

async fn rows_of(r: &crate::admin::Ready, entries: Vec<LoginEntry>) -> Result<Vec<LogRow>, Failure> {
    let ids: Vec<Uuid> = entries.iter().filter_map(|e| e.member_id).collect();
    let who = r.archive.who(ids).await.map_err(|e| Failure::from_directory(&e))?;
    Ok(entries
        .into_iter()
        .map(|e| {
            let name = e
                .member_id
                .and_then(|id| who.get(&id))
                .map(|w| {
                    format!("{} {}", w.account_number.map(|n| n.to_string()).unwrap_or_default(), w.name)
                })
                .unwrap_or_else(|| e.typed.clone());
            LogRow { at: when(&e.at), who: name, e }
        })
        .collect())
}

fn query_string(q: &LogQuery) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("member", &q.member)
        .append_pair("unit", &q.unit)
        .append_pair("outcome", &q.outcome)
        .append_pair("since", &q.since)
        .append_pair("until", &q.until)
        .finish()
}

pub async fn log(State(state): State<Console>, p: Principal, Query(q): Query<LogQuery>) -> Reply {
    let r = ready(&state)?;
    p.require(&r.directory, p.has(Permission::ManageLoginPolicy), "sign_in.log").await?;
    let (f, errors) = log_filter(r, &p, &q).await?;
    let entries = if errors.is_empty() {
        visible_rows(r, &p, f, p.scopes(Permission::ManageLoginPolicy)).await?
    } else {
        Vec::new()
    };
    let next = (entries.len() as i64 == PAGE).then(|| entries.last().map(|e| e.id)).flatten();
    let rows = rows_of(r, entries).await?;
    let c = p.chrome(p.lang.t("menu.sign_in_log")).at("/admin/sign-in/log");
    let status =
        if errors.is_empty() { axum::http::StatusCode::OK } else { axum::http::StatusCode::BAD_REQUEST };
    let query = query_string(&q);
    Ok((status, html(&LogPage { c, q, rows, next, errors, query, own: false })).into_response())
}

/// The same filter as CSV: every matching row (pages of the log, in order).
pub async fn log_csv(State(state): State<Console>, p: Principal, Query(q): Query<LogQuery>) -> Reply {
    let r = ready(&state)?;
    p.require(&r.directory, p.has(Permission::ManageLoginPolicy), "sign_in.log").await?;
    let (mut f, errors) = log_filter(r, &p, &q).await?;
    if !errors.is_empty() {
        return Err(Failure::Bad(
            errors.fields.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join("; "),
        ));
    }
    let scopes = p.scopes(Permission::ManageLoginPolicy);
    let mut w = csv::Writer::from_writer(Vec::new());
    let bad = |e: csv::Error| Failure::Bad(e.to_string());
    w.write_record(["id", "at", "member_id", "account", "client", "app", "ip", "outcome", "rule", "reason"])
        .map_err(bad)?;
    f.limit = 1000;
    loop {
        let page = r.sign_in.log(&f).await.map_err(|e| Failure::from_directory(&e))?;
        let Some(last) = page.last() else { break };
        f.before = Some(last.id);
        for e in &page {
            if let Some(s) = &scopes
                && !s.iter().any(|u| e.unit_path.contains(&format!("/{u}/")))
            {
                continue;
            }
            let defuse =
                |v: &str| if v.starts_with(['=', '+', '-', '@']) { format!("'{v}") } else { v.to_owned() };
            w.write_record([
                e.id.to_string(),
                e.at.to_rfc3339(),
                e.member_id.map(|m| m.to_string()).unwrap_or_default(),
                defuse(&e.typed),
                e.client.clone(),
                defuse(&e.app),
                e.ip.clone().unwrap_or_default(),
                e.outcome.clone(),
                e.rule_id.map(|r| r.to_string()).unwrap_or_default(),
                e.reason.clone(),
            ])
            .map_err(bad)?;
        }
        if (page.len() as i64) < f.limit {
            break;
        }
    }
    let body = w.into_inner().map_err(|e| Failure::Bad(e.to_string()))?;
    let audit = serde_json::json!({ "filter": query_string(&q) });
    r.directory
        .record(&p.actor(), "sign_in.log_export", "login_log", None, audit)
        .await
        .map_err(|e| Failure::from_directory(&e))?;
    Ok(super::csv_download("login-log.csv", body))
}

/// A member's own sign-ins (every signed-in member; the super admin has none).
pub async fn mine(State(state): State<Console>, p: Principal, Query(q): Query<LogQuery>) -> Reply {
    let r = ready(&state)?;
    let entries = match p.member_id() {
        Some(id) => {
            let f = LoginFilter {
                member: Some(id),
                before: q.before.as_deref().and_then(|b| b.parse().ok()),
                limit: PAGE,
                ..Default::default()
            };
            r.sign_in.log(&f).await.map_err(|e| Failure::from_directory(&e))?
        }
        None => Vec::new(),
    };
    let next = (entries.len() as i64 == PAGE).then(|| entries.last().map(|e| e.id)).flatten();
    let rows = rows_of(r, entries).await?;
    let c = p.chrome(p.lang.t("menu.my_sign_ins")).at("/admin/sign-in/mine");
    Ok(html(&LogPage {
        c,
        q: LogQuery::default(),
        rows,
        next,
        errors: Errors::default(),
        query: String::new(),
        own: true,
    })
    .into_response())
}
