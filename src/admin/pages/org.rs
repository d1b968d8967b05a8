//! Org structure: the tree (expanded with htmx), a unit with its sub-units and its members
//! (searched and paged in the store, so a 30,000-member unit is one indexed page), and
//! create, rename, move and delete of units.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use serde::Deserialize;
use uuid::Uuid;

use super::{Errors, Reply, opt, uuid};
use crate::admin::Console;
use crate::admin::views::{Chrome, html};
use crate::admin::{Failure, Principal, directory, see_other};
use crate::directory::DirectoryService;
use crate::directory::model::{Member, OrgUnit, Permission};
use crate::directory::query::{Expr, Field, Op, Query as Q, Val};
use crate::directory::{Applied, Change, NewOrgUnit};

pub const PAGE_SIZE: i64 = 50;

#[derive(Debug, Default, Deserialize)]
pub struct OrgQuery {
    #[serde(default)]
    unit: Option<String>,
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    page: Option<i64>,
    #[serde(default)]
    done: Option<String>,
}

pub struct Crumb {
    pub id: Uuid,
    pub name: String,
}

pub struct MemberList {
    pub items: Vec<Member>,
    pub total: i64,
    pub page: i64,
    pub pages: i64,
    pub q: String,
}

impl MemberList {
    pub fn has_prev(&self) -> bool {
        self.page > 1
    }
    pub fn has_next(&self) -> bool {
        self.page < self.pages
    }
}

pub struct UnitView {
    pub unit: OrgUnit,
    pub path: Vec<Crumb>,
    pub children: Vec<OrgUnit>,
    pub members: Option<MemberList>,
    pub can_manage: bool,
    pub parent_path: String,
}

#[derive(Template)]
#[template(path = "org.html", config = "src/admin/askama.toml")]
pub struct OrgPage {
    pub c: Chrome,
    pub roots: Vec<OrgUnit>,
    pub selected: Option<UnitView>,
    pub can_create_root: bool,
    pub errors: Errors,
    /// Which form was refused (`new`, `rename`, `move`, `delete`): its errors show there.
    pub form: &'static str,
    /// What the user typed into the refused form, to show again.
    pub typed: Vec<(&'static str, String)>,
}

impl OrgPage {
    /// The value typed into `field` of the refused form.
    pub fn typed(&self, field: &str) -> Option<&str> {
        self.typed.iter().find(|(f, _)| *f == field).map(|(_, v)| v.as_str())
    }

    /// The error of `field`, when `form` is the refused one.
    pub fn error(&self, form: &str, field: &str) -> Option<&str> {
        (self.form == form).then(|| self.errors.get(field)).flatten()
    }
}

#[derive(Template)]
#[template(path = "org_tree.html", config = "src/admin/askama.toml")]
pub struct TreeChildren {
    pub c: Chrome,
    pub units: Vec<OrgUnit>,
}

/// The units a principal's org permissions start from: the top of the tree, or their scopes.
async fn roots(d: &DirectoryService, p: &Principal) -> Result<Vec<OrgUnit>, Failure> {
    let org = p.scopes(Permission::ManageOrg);
    let members = p.scopes(Permission::ManageMembers);
    if org.is_none() || members.is_none() {
        return Ok(d.store().org_unit_children(None).await?);
    }
    let mut ids: Vec<Uuid> = org.into_iter().chain(members).flatten().collect();
    ids.sort();
    ids.dedup();
    let mut out = Vec::new();
    for id in ids {
        if let Some(u) = d.store().org_unit(id).await? {
            out.push(u);
        }
    }
    Ok(out)
}

fn can_view(p: &Principal, path: &[Uuid]) -> bool {
    p.has_at(Permission::ManageOrg, path) || p.has_at(Permission::ManageMembers, path)
}

pub async fn org_page(State(state): State<Console>, p: Principal, Query(q): Query<OrgQuery>) -> Reply {
    let d = directory(&state)?;
    p.require(d, p.has(Permission::ManageOrg) || p.has(Permission::ManageMembers), "org.view").await?;
    let selected = match q.unit.as_deref().filter(|u| !u.is_empty()) {
        Some(id) => {
            Some(unit_view(d, &p, uuid(id)?, q.q.as_deref().unwrap_or(""), q.page.unwrap_or(1)).await?)
        }
        None => None,
    };
    let page = OrgPage {
        c: p.chrome(p.lang.t("menu.org")).at("/admin/org").flash(q.done.as_deref()),
        roots: roots(d, &p).await?,
        selected,
        can_create_root: p.has_everywhere(Permission::ManageOrg),
        errors: Errors::default(),
        form: "",
        typed: Vec::new(),
    };
    Ok(html(&page).into_response())
}

async fn unit_view(
    d: &DirectoryService,
    p: &Principal,
    id: Uuid,
    q: &str,
    page: i64,
) -> Result<UnitView, Failure> {
    let unit = d.store().org_unit(id).await?.ok_or(Failure::NotFound)?;
    let ancestors = d.store().org_unit_ancestors(id).await?;
    p.require(d, can_view(p, &ancestors), "org.view").await?;
    let path = crumbs(d, &ancestors).await?;
    let parent_path =
        path[..path.len().saturating_sub(1)].iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join("/");
    let members = if p.has_at(Permission::ManageMembers, &ancestors) {
        Some(members_of(d, id, q, page).await?)
    } else {
        None
    };
    Ok(UnitView {
        children: d.store().org_unit_children(Some(id)).await?,
        can_manage: p.has_at(Permission::ManageOrg, &ancestors) && unit.source.as_str() == "console",
        unit,
        path,
        members,
        parent_path,
    })
}

/// The units of a path of ancestors (nearest first, as the store gives them), top first.
pub async fn crumbs(d: &DirectoryService, ancestors: &[Uuid]) -> Result<Vec<Crumb>, Failure> {
    let mut path = Vec::with_capacity(ancestors.len());
    for a in ancestors.iter().rev() {
        if let Some(u) = d.store().org_unit(*a).await? {
            path.push(Crumb { id: u.id, name: u.name });
        }
    }
    Ok(path)
}

/// One page of a unit's members (primary unit), by account number, optionally searched.
pub async fn members_of(d: &DirectoryService, unit: Uuid, q: &str, page: i64) -> Result<MemberList, Failure> {
    let mut filter = Expr::Cmp(Field::PrimaryOrgUnitId, Op::Eq, Val::Uuid(unit));
    if let Some(s) = Expr::search_box(q) {
        filter = Expr::And(Box::new(filter), Box::new(s));
    }
    let page = page.max(1);
    let found = d
        .store()
        .search_members(&Q {
            filter: Some(filter),
            sort: Some((Field::AccountNumber, false)),
            offset: (page - 1) * PAGE_SIZE,
            limit: PAGE_SIZE,
        })
        .await?;
    Ok(MemberList {
        pages: ((found.total + PAGE_SIZE - 1) / PAGE_SIZE).max(1),
        total: found.total,
        items: found.items,
        page,
        q: q.to_owned(),
    })
}

#[derive(Debug, Default, Deserialize)]
pub struct TreeQuery {
    #[serde(default)]
    parent: String,
}

/// The children of a unit, for the tree (an htmx partial).
pub async fn tree_children(State(state): State<Console>, p: Principal, Query(q): Query<TreeQuery>) -> Reply {
    let d = directory(&state)?;
    let parent = uuid(&q.parent)?;
    let ancestors = d.store().org_unit_ancestors(parent).await?;
    p.require(d, can_view(&p, &ancestors), "org.view").await?;
    let units = d.store().org_unit_children(Some(parent)).await?;
    Ok(html(&TreeChildren { c: p.chrome(""), units }).into_response())
}

/// Finds a unit by its path of names (`Sales/East`); blank is the top level.
pub async fn resolve_path(d: &DirectoryService, path: &str) -> Result<Result<Option<Uuid>, String>, Failure> {
    let mut at: Option<Uuid> = None;
    for name in path.split('/').map(str::trim).filter(|n| !n.is_empty()) {
        let children = d.store().org_unit_children(at).await?;
        match children.into_iter().find(|u| u.name == name) {
            Some(u) => at = Some(u.id),
            None => return Ok(Err(format!("no unit named {name:?} at that place in the tree"))),
        }
    }
    Ok(Ok(at))
}

/// Re-renders the org page with a refused form's errors (and what was typed).
async fn refused(
    d: &DirectoryService,
    p: &Principal,
    unit: Option<Uuid>,
    errors: Errors,
    form: &'static str,
    typed: Vec<(&'static str, String)>,
) -> Reply {
    let selected = match unit {
        Some(id) => Some(unit_view(d, p, id, "", 1).await?),
        None => None,
    };
    let page = OrgPage {
        c: p.chrome(p.lang.t("menu.org")).at("/admin/org"),
        roots: roots(d, p).await?,
        selected,
        can_create_root: p.has_everywhere(Permission::ManageOrg),
        errors,
        form,
        typed,
    };
    Ok((axum::http::StatusCode::UNPROCESSABLE_ENTITY, html(&page)).into_response())
}

#[derive(Debug, Deserialize)]
pub struct NewUnitForm {
    #[serde(default)]
    parent: String,
    #[serde(default)]
    name: String,
}

pub async fn create_unit(State(state): State<Console>, p: Principal, Form(f): Form<NewUnitForm>) -> Reply {
    let d = directory(&state)?;
    let parent = match opt(&f.parent) {
        Some(id) => Some(uuid(&id)?),
        None => None,
    };
    p.require(d, p.has_at_unit(d, Permission::ManageOrg, parent).await?, "org_unit.create").await?;
    let change =
        Change::CreateOrgUnit(NewOrgUnit { parent_id: parent, name: f.name.clone(), ..Default::default() });
    match d.apply_one(&p.actor(), change).await {
        Ok(Applied::OrgUnit(u)) => Ok(see_other(&format!("/admin/org?unit={}&done=org.unit_created", u.id))),
        Ok(_) => Err(Failure::Unavailable),
        Err(e) => refused(d, &p, parent, Errors::from_directory(e)?, "new", vec![("new", f.name)]).await,
    }
}

#[derive(Debug, Deserialize)]
pub struct RenameForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    version: i64,
}

async fn require_unit(d: &DirectoryService, p: &Principal, id: Uuid, what: &str) -> Result<(), Failure> {
    d.store().org_unit(id).await?.ok_or(Failure::NotFound)?;
    let path = d.store().org_unit_ancestors(id).await?;
    p.require(d, p.has_at(Permission::ManageOrg, &path), what).await
}

pub async fn rename_unit(
    State(state): State<Console>,
    p: Principal,
    Path(id): Path<String>,
    Form(f): Form<RenameForm>,
) -> Reply {
    let d = directory(&state)?;
    let id = uuid(&id)?;
    require_unit(d, &p, id, "org_unit.rename").await?;
    let changes = vec![
        Change::ExpectVersion { kind: "org_unit".into(), id, version: f.version },
        Change::UpdateOrgUnit { id, name: Some(f.name.clone()), anchor: None },
    ];
    match d.apply(&p.actor(), changes).await {
        Ok(_) => Ok(see_other(&format!("/admin/org?unit={id}&done=org.unit_saved"))),
        Err(e) => refused(d, &p, Some(id), Errors::from_change(e)?, "rename", vec![("rename", f.name)]).await,
    }
}

#[derive(Debug, Deserialize)]
pub struct MoveForm {
    /// The new parent as a path of names; blank: the top level.
    #[serde(default)]
    parent_path: String,
    #[serde(default)]
    position: String,
    #[serde(default)]
    version: i64,
}

pub async fn move_unit(
    State(state): State<Console>,
    p: Principal,
    Path(id): Path<String>,
    Form(f): Form<MoveForm>,
) -> Reply {
    let d = directory(&state)?;
    let id = uuid(&id)?;
    require_unit(d, &p, id, "org_unit.move").await?;
    let parent = match resolve_path(d, &f.parent_path).await? {
        Ok(parent) => parent,
        Err(msg) => {
            let typed = vec![("parent_path", f.parent_path.clone()), ("position", f.position.clone())];
            return refused(d, &p, Some(id), Errors::field("parent_path", msg), "move", typed).await;
        }
    };
    // Moving needs the permission where the unit goes, too.
    p.require(d, p.has_at_unit(d, Permission::ManageOrg, parent).await?, "org_unit.move").await?;
    let position = match opt(&f.position).map(|s| s.parse::<i64>()) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => {
            return refused(
                d,
                &p,
                Some(id),
                Errors::field("position", "must be a whole number"),
                "move",
                vec![("parent_path", f.parent_path.clone()), ("position", f.position.clone())],
            )
            .await;
        }
    };
    let changes = vec![
        Change::ExpectVersion { kind: "org_unit".into(), id, version: f.version },
        Change::MoveOrgUnit { id, parent_id: parent, position },
    ];
    match d.apply(&p.actor(), changes).await {
        Ok(_) => Ok(see_other(&format!("/admin/org?unit={id}&done=org.unit_saved"))),
        Err(e) => {
            let typed = vec![("parent_path", f.parent_path), ("position", f.position)];
            refused(d, &p, Some(id), Errors::from_change(e)?, "move", typed).await
        }
    }
}

pub async fn delete_unit(State(state): State<Console>, p: Principal, Path(id): Path<String>) -> Reply {
    let d = directory(&state)?;
    let id = uuid(&id)?;
    require_unit(d, &p, id, "org_unit.delete").await?;
    let parent = d.store().org_unit(id).await?.and_then(|u| u.parent_id);
    match d.apply_one(&p.actor(), Change::DeleteOrgUnit { id }).await {
        Ok(_) => {
            let to = match parent {
                Some(pid) => format!("/admin/org?unit={pid}&done=org.unit_deleted"),
                None => "/admin/org?done=org.unit_deleted".to_owned(),
            };
            Ok(see_other(&to))
        }
        Err(e) => refused(d, &p, Some(id), Errors::from_directory(e)?, "delete", Vec::new()).await,
    }
}
