//! Members: search, detail (with roles and history), add (showing the account number the
//! directory handed out), edit (refused when someone else changed the member meanwhile),
//! suspend and resume, delete (a tombstone).

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use serde::Deserialize;
use uuid::Uuid;

use super::org::{MemberList, PAGE_SIZE};
use super::{Errors, Reply, opt, uuid};
use crate::admin::Console;
use crate::admin::views::{Chrome, html, when};
use crate::admin::{Failure, Principal, directory, see_other};
use crate::directory::DirectoryService;
use crate::directory::model::{AuditEntry, Email, Member, MemberState, Permission, Role};
use crate::directory::query::{Expr, Field, Query as Q};
use crate::directory::{Applied, Change, MemberPatch, NewMember};
use crate::secret::Secret;

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    page: Option<i64>,
    #[serde(default)]
    done: Option<String>,
}

#[derive(Template)]
#[template(path = "members.html", config = "src/admin/askama.toml")]
pub struct ListPage {
    pub c: Chrome,
    pub list: MemberList,
}

/// Searches every member the principal may manage.
pub async fn list(State(state): State<Console>, p: Principal, Query(q): Query<ListQuery>) -> Reply {
    let d = directory(&state)?;
    p.require(d, p.has(Permission::ManageMembers), "member.view").await?;
    let page = q.page.unwrap_or(1).max(1);
    let mut filter = Expr::search_box(&q.q);
    if let Some(scopes) = p.scopes(Permission::ManageMembers) {
        // A scoped manager: members whose primary unit is in one of the subtrees (walked in the
        // store: a subtree of thousands of units is one recursive query, not one term each).
        let in_scope = Expr::PrimaryUnitUnder(scopes);
        filter = Some(match filter {
            Some(f) => Expr::And(Box::new(in_scope), Box::new(f)),
            None => in_scope,
        });
    }
    let found = d
        .store()
        .search_members(&Q {
            filter,
            sort: Some((Field::AccountNumber, false)),
            offset: (page - 1) * PAGE_SIZE,
            limit: PAGE_SIZE,
        })
        .await?;
    let list = MemberList {
        pages: ((found.total + PAGE_SIZE - 1) / PAGE_SIZE).max(1),
        total: found.total,
        items: found.items,
        page,
        q: q.q.clone(),
    };
    let c = p.chrome(p.lang.t("menu.members")).at("/admin/members").flash(q.done.as_deref());
    Ok(html(&ListPage { c, list }).into_response())
}

pub struct GrantView {
    pub role: Role,
    pub scope: String,
}

#[derive(Template)]
#[template(path = "member.html", config = "src/admin/askama.toml")]
pub struct DetailPage {
    pub c: Chrome,
    pub m: Member,
    pub unit_path: String,
    pub owned: bool,
    pub grants: Vec<GrantView>,
    pub history: Vec<AuditEntry>,
    /// Values the member's source sent that another member holds (kept aside).
    pub quarantined: Vec<crate::directory::store::Quarantined>,
}

impl DetailPage {
    pub fn when(&self, e: &AuditEntry) -> String {
        when(&e.at)
    }
    pub fn since(&self, q: &crate::directory::store::Quarantined) -> String {
        when(&q.since)
    }
}

/// A member the principal may see, or 404/403.
async fn managed(d: &DirectoryService, p: &Principal, id: &str, what: &str) -> Result<Member, Failure> {
    let m = d.store().member(uuid(id)?).await?.ok_or(Failure::NotFound)?;
    p.require(d, p.has_for_member(d, Permission::ManageMembers, &m).await?, what).await?;
    Ok(m)
}

/// A member the principal may change. A member who holds a role is changed by the super admin
/// only: otherwise a manager could reset the password of someone with more power and sign in
/// as them.
async fn changeable(d: &DirectoryService, p: &Principal, id: &str, what: &str) -> Result<Member, Failure> {
    let m = managed(d, p, id, what).await?;
    let holds_role = !d.store().member_grants(m.id).await?.is_empty();
    p.require(d, p.is_super() || !holds_role, what).await?;
    Ok(m)
}

/// A unit's path of names (`Sales/East`).
pub async fn unit_path(d: &DirectoryService, unit: Option<Uuid>) -> Result<String, Failure> {
    let Some(unit) = unit else { return Ok(String::new()) };
    let path = super::org::crumbs(d, &d.store().org_unit_ancestors(unit).await?).await?;
    Ok(path.into_iter().map(|c| c.name).collect::<Vec<_>>().join("/"))
}

pub async fn detail(
    State(state): State<Console>,
    p: Principal,
    Path(id): Path<String>,
    Query(q): Query<ListQuery>,
) -> Reply {
    let d = directory(&state)?;
    let m = managed(d, &p, &id, "member.view").await?;
    let mut grants = Vec::new();
    for g in d.store().member_grants(m.id).await? {
        if let Some(role) = d.store().role(g.role_id).await? {
            let scope = match g.scope_unit_id {
                Some(u) => unit_path(d, Some(u)).await?,
                None => p.lang.t("role.scope_all").to_owned(),
            };
            grants.push(GrantView { role, scope });
        }
    }
    let mut history = d.store().audit_for("member", &m.id.to_string()).await?;
    history.reverse();
    history.truncate(20);
    let mut c = p.chrome(&m.display_name).at("/admin/members").flash(q.done.as_deref());
    if q.done.as_deref() == Some("member.created") {
        c.flash = Some(format!("{} {}", p.lang.t("member.created"), m.account_number));
    }
    let page = DetailPage {
        c,
        unit_path: unit_path(d, m.primary_org_unit_id).await?,
        owned: m.source.as_str() == "console",
        quarantined: d.store().member_quarantine(m.id).await?,
        m,
        grants,
        history,
    };
    Ok(html(&page).into_response())
}

/// The member form's fields, as typed.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
pub struct MemberForm {
    #[serde(default)]
    pub login_name: String,
    #[serde(default)]
    pub display_name: String,
    #[serde(default)]
    pub mobile: String,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub employee_number: String,
    /// The primary unit as a path of names.
    #[serde(default)]
    pub unit_path: String,
    #[serde(default)]
    pub password: String,
    #[serde(default)]
    pub version: i64,
}

impl MemberForm {
    fn of(m: &Member, unit_path: String) -> MemberForm {
        MemberForm {
            login_name: m.login_name.clone(),
            display_name: m.display_name.clone(),
            mobile: m.mobile.clone().unwrap_or_default(),
            email: m
                .emails
                .iter()
                .find(|e| e.primary)
                .or(m.emails.first())
                .map(|e| e.address.clone())
                .unwrap_or_default(),
            title: m.title.clone().unwrap_or_default(),
            employee_number: m.employee_number.clone().unwrap_or_default(),
            unit_path,
            password: String::new(),
            version: m.version,
        }
    }

    fn emails(&self) -> Vec<Email> {
        opt(&self.email)
            .map(|a| vec![Email { address: a, kind: "work".into(), primary: true }])
            .unwrap_or_default()
    }
}

#[derive(Template)]
#[template(path = "member_form.html", config = "src/admin/askama.toml")]
pub struct FormPage {
    pub c: Chrome,
    /// `None`: a new member.
    pub id: Option<Uuid>,
    pub f: MemberForm,
    pub errors: Errors,
}

#[derive(Debug, Default, Deserialize)]
pub struct NewQuery {
    #[serde(default)]
    unit: Option<String>,
}

pub async fn new_page(State(state): State<Console>, p: Principal, Query(q): Query<NewQuery>) -> Reply {
    let d = directory(&state)?;
    let unit = match q.unit.as_deref().and_then(opt) {
        Some(u) => Some(uuid(&u)?),
        None => None,
    };
    p.require(d, p.has_at_unit(d, Permission::ManageMembers, unit).await?, "member.create").await?;
    let f = MemberForm { unit_path: unit_path(d, unit).await?, ..Default::default() };
    let c = p.chrome(p.lang.t("member.new")).at("/admin/members");
    Ok(html(&FormPage { c, id: None, f, errors: Errors::default() }).into_response())
}

fn form_refused(p: &Principal, id: Option<Uuid>, f: MemberForm, errors: Errors) -> Reply {
    let title = if id.is_some() { p.lang.t("common.edit") } else { p.lang.t("member.new") };
    let c = p.chrome(title).at("/admin/members");
    let page = FormPage { c, id, f: MemberForm { password: String::new(), ..f }, errors };
    Ok((axum::http::StatusCode::UNPROCESSABLE_ENTITY, html(&page)).into_response())
}

pub async fn create(State(state): State<Console>, p: Principal, Form(f): Form<MemberForm>) -> Reply {
    let d = directory(&state)?;
    let unit = match super::org::resolve_path(d, &f.unit_path).await? {
        Ok(u) => u,
        Err(msg) => return form_refused(&p, None, f, Errors::field("unit_path", msg)),
    };
    p.require(d, p.has_at_unit(d, Permission::ManageMembers, unit).await?, "member.create").await?;
    let n = NewMember {
        login_name: f.login_name.clone(),
        display_name: f.display_name.clone(),
        mobile: opt(&f.mobile),
        emails: f.emails(),
        title: opt(&f.title),
        employee_number: opt(&f.employee_number),
        primary_org_unit_id: unit,
        password: opt(&f.password).map(Secret),
        ..Default::default()
    };
    if let Some(pw) = &n.password
        && let Err(e) = crate::directory::validate::password(&pw.0)
    {
        return form_refused(&p, None, f, Errors::from_directory(e)?);
    }
    match d.apply_one(&p.actor(), Change::CreateMember(n)).await {
        Ok(Applied::Member(m)) => Ok(see_other(&format!("/admin/members/{}?done=member.created", m.id))),
        Ok(_) => Err(Failure::Unavailable),
        Err(e) => form_refused(&p, None, f, Errors::from_directory(e)?),
    }
}

pub async fn edit_page(State(state): State<Console>, p: Principal, Path(id): Path<String>) -> Reply {
    let d = directory(&state)?;
    let m = changeable(d, &p, &id, "member.update").await?;
    let f = MemberForm::of(&m, unit_path(d, m.primary_org_unit_id).await?);
    let c = p.chrome(p.lang.t("common.edit")).at("/admin/members");
    Ok(html(&FormPage { c, id: Some(m.id), f, errors: Errors::default() }).into_response())
}

pub async fn update(
    State(state): State<Console>,
    p: Principal,
    Path(id): Path<String>,
    Form(f): Form<MemberForm>,
) -> Reply {
    let d = directory(&state)?;
    let m = changeable(d, &p, &id, "member.update").await?;
    let unit = match super::org::resolve_path(d, &f.unit_path).await? {
        Ok(u) => u,
        Err(msg) => return form_refused(&p, Some(m.id), f, Errors::field("unit_path", msg)),
    };
    if unit != m.primary_org_unit_id {
        // Moving a member needs the permission where it goes, too.
        p.require(d, p.has_at_unit(d, Permission::ManageMembers, unit).await?, "member.move").await?;
    }
    // A member of another source keeps its directory fields there; the console sets only the
    // password (when those fields come back unchanged).
    let unchanged = MemberForm {
        password: f.password.clone(),
        version: f.version,
        ..MemberForm::of(&m, f.unit_path.clone())
    };
    let foreign = m.source.as_str() != crate::directory::model::Source::CONSOLE;
    let patch = if foreign && !f.password.is_empty() && unchanged == f && unit == m.primary_org_unit_id {
        MemberPatch { password: Some(Secret(f.password.clone())), ..Default::default() }
    } else {
        MemberPatch {
            login_name: Some(f.login_name.clone()),
            display_name: Some(f.display_name.clone()),
            mobile: Some(opt(&f.mobile)),
            emails: Some(f.emails()),
            title: Some(opt(&f.title)),
            employee_number: Some(opt(&f.employee_number)),
            primary_org_unit_id: Some(unit),
            password: opt(&f.password).map(Secret),
            ..Default::default()
        }
    };
    if let Some(pw) = &patch.password
        && let Err(e) = crate::directory::validate::password(&pw.0)
    {
        return form_refused(&p, Some(m.id), f, Errors::from_directory(e)?);
    }
    let changes = vec![
        Change::ExpectVersion { kind: "member".into(), id: m.id, version: f.version },
        Change::UpdateMember { id: m.id, patch },
    ];
    // A new password ends the member's sessions, in the change's own transaction.
    match d.apply(&p.actor(), changes).await {
        Ok(_) => Ok(see_other(&format!("/admin/members/{}?done=member.saved", m.id))),
        Err(e) => form_refused(&p, Some(m.id), f, Errors::from_change(e)?),
    }
}

#[derive(Debug, Deserialize)]
pub struct StateForm {
    state: String,
    #[serde(default)]
    version: i64,
}

pub async fn set_state(
    State(state): State<Console>,
    p: Principal,
    Path(id): Path<String>,
    Form(f): Form<StateForm>,
) -> Reply {
    let d = directory(&state)?;
    let m = changeable(d, &p, &id, "member.suspend").await?;
    let new_state = MemberState::parse(&f.state).ok_or_else(|| Failure::Bad("unknown state".into()))?;
    let changes = vec![
        Change::ExpectVersion { kind: "member".into(), id: m.id, version: f.version },
        Change::UpdateMember {
            id: m.id,
            patch: MemberPatch { state: Some(new_state), ..Default::default() },
        },
    ];
    d.apply(&p.actor(), changes).await.map_err(|e| Failure::from_directory(&e.error))?;
    Ok(see_other(&format!("/admin/members/{}?done=member.saved", m.id)))
}

#[derive(Debug, Deserialize)]
pub struct DeleteForm {
    #[serde(default)]
    reason: String,
    /// The version the page showed; the delete is refused if the member changed since.
    #[serde(default)]
    version: Option<i64>,
}

pub async fn delete(
    State(state): State<Console>,
    p: Principal,
    Path(id): Path<String>,
    Form(f): Form<DeleteForm>,
) -> Reply {
    let d = directory(&state)?;
    let m = changeable(d, &p, &id, "member.delete").await?;
    let reason = opt(&f.reason).unwrap_or_else(|| "deleted in the console".into());
    let mut changes = Vec::new();
    if let Some(version) = f.version {
        changes.push(Change::ExpectVersion { kind: "member".into(), id: m.id, version });
    }
    changes.push(Change::DeleteMember { id: m.id, reason });
    d.apply(&p.actor(), changes).await.map_err(|e| Failure::from_directory(&e.error))?;
    Ok(see_other("/admin/members?done=member.deleted"))
}
