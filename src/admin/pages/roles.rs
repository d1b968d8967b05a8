//! Roles and permissions (super admin only): named sets of permissions, granted to members
//! over the whole enterprise or an org subtree.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use serde::Deserialize;
use uuid::Uuid;

use super::members::unit_path;
use super::{Done, Errors, Reply, opt, uuid};
use crate::admin::Console;
use crate::admin::views::{Chrome, html};
use crate::admin::{Failure, Principal, directory, see_other};
use crate::directory::DirectoryService;
use crate::directory::model::{Member, Permission, Role};
use crate::directory::{Applied, Change, NewRole};

#[derive(Template)]
#[template(path = "roles.html", config = "src/admin/askama.toml")]
pub struct ListPage {
    pub c: Chrome,
    pub roles: Vec<Role>,
    pub all: Vec<Permission>,
    pub errors: Errors,
    pub typed: String,
    /// The permissions ticked on a refused form.
    pub checked: Vec<Permission>,
}

pub struct GrantRow {
    pub member: Member,
    pub scope: String,
}

#[derive(Template)]
#[template(path = "role.html", config = "src/admin/askama.toml")]
pub struct DetailPage {
    pub c: Chrome,
    pub role: Role,
    pub all: Vec<Permission>,
    pub grants: Vec<GrantRow>,
    pub errors: Errors,
    /// The name and permissions of a refused edit, shown instead of the stored ones.
    pub typed: Option<(String, Vec<Permission>)>,
}

impl DetailPage {
    pub fn name_value(&self) -> &str {
        self.typed.as_ref().map(|t| t.0.as_str()).unwrap_or(&self.role.name)
    }
    pub fn is_checked(&self, p: &Permission) -> bool {
        match &self.typed {
            Some((_, list)) => list.contains(p),
            None => self.role.permissions.contains(*p),
        }
    }
}

impl ListPage {
    pub fn perm_names(&self, r: &Role) -> String {
        r.permissions
            .0
            .iter()
            .map(|p| self.c.t(&format!("perm.{}", p.as_str())))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The checked permissions of a role form (`perm=manage_org&perm=...`), read from the raw form
/// because a plain struct cannot take a repeated key.
fn permissions_of(form: &[(String, String)]) -> Vec<Permission> {
    form.iter().filter(|(k, _)| k == "perm").filter_map(|(_, v)| Permission::parse(v)).collect()
}

fn value<'a>(form: &'a [(String, String)], key: &str) -> &'a str {
    form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).unwrap_or("")
}

async fn require_super(d: &DirectoryService, p: &Principal, what: &str) -> Result<(), Failure> {
    p.require(d, p.is_super(), what).await
}

pub async fn list(State(state): State<Console>, p: Principal, Query(q): Query<Done>) -> Reply {
    let d = directory(&state)?;
    require_super(d, &p, "role.view").await?;
    let c = p.chrome(p.lang.t("menu.roles")).at("/admin/roles").flash(q.done.as_deref());
    let page = ListPage {
        c,
        roles: d.store().roles().await?,
        all: Permission::ALL.to_vec(),
        errors: Errors::default(),
        typed: String::new(),
        checked: Vec::new(),
    };
    Ok(html(&page).into_response())
}

pub async fn create(
    State(state): State<Console>,
    p: Principal,
    axum::Form(form): axum::Form<Vec<(String, String)>>,
) -> Reply {
    let d = directory(&state)?;
    require_super(d, &p, "role.create").await?;
    let name = value(&form, "name").to_owned();
    let change =
        Change::CreateRole(NewRole { id: None, name: name.clone(), permissions: permissions_of(&form) });
    match d.apply_one(&p.actor(), change).await {
        Ok(Applied::Role(r)) => Ok(see_other(&format!("/admin/roles/{}?done=role.saved", r.id))),
        Ok(_) => Err(Failure::Unavailable),
        Err(e) => {
            let c = p.chrome(p.lang.t("menu.roles")).at("/admin/roles");
            let errors = Errors::from_directory(e)?;
            let page = ListPage {
                c,
                roles: d.store().roles().await?,
                all: Permission::ALL.to_vec(),
                errors,
                typed: name,
                checked: permissions_of(&form),
            };
            Ok((axum::http::StatusCode::UNPROCESSABLE_ENTITY, html(&page)).into_response())
        }
    }
}

async fn detail_page(
    d: &DirectoryService,
    p: &Principal,
    id: Uuid,
    errors: Errors,
    typed: Option<(String, Vec<Permission>)>,
    done: Option<&str>,
) -> Reply {
    let role = d.store().role(id).await?.ok_or(Failure::NotFound)?;
    let mut grants = Vec::new();
    for g in d.store().role_grants(id).await? {
        if let Some(member) = d.store().member(g.member_id).await? {
            let scope = match g.scope_unit_id {
                Some(u) => unit_path(d, Some(u)).await?,
                None => p.lang.t("role.scope_all").to_owned(),
            };
            grants.push(GrantRow { member, scope });
        }
    }
    let status = if errors.is_empty() {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::UNPROCESSABLE_ENTITY
    };
    let c = p.chrome(&role.name).at("/admin/roles").flash(done);
    Ok((status, html(&DetailPage { c, role, all: Permission::ALL.to_vec(), grants, errors, typed }))
        .into_response())
}

pub async fn detail(
    State(state): State<Console>,
    p: Principal,
    Path(id): Path<String>,
    Query(q): Query<Done>,
) -> Reply {
    let d = directory(&state)?;
    require_super(d, &p, "role.view").await?;
    detail_page(d, &p, uuid(&id)?, Errors::default(), None, q.done.as_deref()).await
}

pub async fn update(
    State(state): State<Console>,
    p: Principal,
    Path(id): Path<String>,
    axum::Form(form): axum::Form<Vec<(String, String)>>,
) -> Reply {
    let d = directory(&state)?;
    require_super(d, &p, "role.update").await?;
    let id = uuid(&id)?;
    let version = value(&form, "version").parse().unwrap_or(0);
    let changes = vec![
        Change::ExpectVersion { kind: "role".into(), id, version },
        Change::UpdateRole {
            id,
            name: Some(value(&form, "name").to_owned()),
            permissions: Some(permissions_of(&form)),
        },
    ];
    match d.apply(&p.actor(), changes).await {
        Ok(_) => Ok(see_other(&format!("/admin/roles/{id}?done=role.saved"))),
        Err(e) => {
            let typed = Some((value(&form, "name").to_owned(), permissions_of(&form)));
            detail_page(d, &p, id, Errors::from_change(e)?, typed, None).await
        }
    }
}

pub async fn delete(State(state): State<Console>, p: Principal, Path(id): Path<String>) -> Reply {
    let d = directory(&state)?;
    require_super(d, &p, "role.delete").await?;
    let id = uuid(&id)?;
    d.apply_one(&p.actor(), Change::DeleteRole { id }).await.map_err(|e| Failure::from_directory(&e))?;
    Ok(see_other("/admin/roles?done=role.saved"))
}

#[derive(Debug, Deserialize)]
pub struct GrantForm {
    #[serde(default)]
    member: String,
    /// The scope as a path of names; blank: the whole enterprise.
    #[serde(default)]
    scope: String,
}

/// A member by account number or login name.
pub async fn find_member(d: &DirectoryService, who: &str) -> Result<Option<Member>, Failure> {
    let who = who.trim();
    if let Ok(n) = who.parse::<i64>() {
        return Ok(d.store().member_by_number(n).await?);
    }
    let Some(e) = d.store().enterprise().await? else { return Ok(None) };
    match crate::directory::validate::login_name(who, &e.mail_domain) {
        Ok(login) => Ok(d.store().member_by_login(&login).await?),
        Err(_) => Ok(None),
    }
}

pub async fn grant(
    State(state): State<Console>,
    p: Principal,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<GrantForm>,
) -> Reply {
    let d = directory(&state)?;
    require_super(d, &p, "role.grant").await?;
    let id = uuid(&id)?;
    let Some(member) = find_member(d, &f.member).await? else {
        return detail_page(
            d,
            &p,
            id,
            Errors::field("member", format!("no member {:?}", f.member.trim())),
            None,
            None,
        )
        .await;
    };
    let scope = match opt(&f.scope) {
        None => None,
        Some(path) => match super::org::resolve_path(d, &path).await? {
            Ok(u) => u,
            Err(msg) => return detail_page(d, &p, id, Errors::field("scope", msg), None, None).await,
        },
    };
    let change = Change::GrantRole { role_id: id, member_id: member.id, scope_unit_id: scope };
    match d.apply_one(&p.actor(), change).await {
        Ok(_) => Ok(see_other(&format!("/admin/roles/{id}?done=role.saved"))),
        Err(e) => detail_page(d, &p, id, Errors::from_directory(e)?, None, None).await,
    }
}

pub async fn revoke(
    State(state): State<Console>,
    p: Principal,
    Path((id, member)): Path<(String, String)>,
) -> Reply {
    let d = directory(&state)?;
    require_super(d, &p, "role.revoke").await?;
    let (id, member) = (uuid(&id)?, uuid(&member)?);
    d.apply_one(&p.actor(), Change::RevokeRole { role_id: id, member_id: member })
        .await
        .map_err(|e| Failure::from_directory(&e))?;
    Ok(see_other(&format!("/admin/roles/{id}?done=role.saved")))
}
