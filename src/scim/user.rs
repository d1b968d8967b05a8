//! The User resource: members as SCIM users (core schema, Enterprise extension, Roster extension).
//!
//! PUT replaces what the identity provider manages (names, title, e-mails, phone, employee
//! number, manager, department) and leaves alone what it may not know: `active` (a PUT without
//! it never suspends or reactivates anybody), the password (unless sent), and org units (unless
//! sent in the Roster extension or derived from `department`).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::query::{Resource, list_query};
use super::{
    Call, ENTERPRISE_USER, ListParams, ROSTER_USER, ScimError, USER, as_bool, check_if_match, etag,
    json_body, list_response, lower_keys, project, resource,
};
use crate::directory::model::{Email, Member, MemberState, Phone};
use crate::directory::{Applied, Change, MemberPatch, NewMember, NewOrgUnit};
use crate::secret::Secret;

/// What a client sent for a user, read from a body whose keys are lower-cased.
#[derive(Debug, Default)]
pub struct UserInput {
    pub user_name: String,
    pub external_id: Option<String>,
    pub display_name: String,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub title: Option<String>,
    pub active: Option<bool>,
    pub emails: Vec<Email>,
    pub mobile: Option<String>,
    /// Phone numbers besides the mobile, as sent.
    pub phones: Vec<Phone>,
    pub password: Option<Secret>,
    pub employee_number: Option<String>,
    pub department: Option<String>,
    pub organization: Option<String>,
    pub division: Option<String>,
    pub cost_center: Option<String>,
    pub manager: Option<Uuid>,
    /// `(id, primary)` from the Roster extension; `None` when not sent.
    pub org_units: Option<Vec<(Uuid, bool)>>,
}

fn invalid(detail: impl Into<String>) -> ScimError {
    ScimError::bad("invalidValue", detail)
}

/// An optional string attribute: absent or null is `None`; other types are an error.
fn opt_str(v: &Value, name: &str) -> Result<Option<String>, ScimError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone()).filter(|s| !s.trim().is_empty())),
        Value::Number(n) => Ok(Some(n.to_string())),
        _ => Err(invalid(format!("{name} must be a string"))),
    }
}

/// Checks `schemas`: every URN must be one this server knows.
pub fn check_schemas(v: &Value, allowed: &[&str]) -> Result<(), ScimError> {
    match &v["schemas"] {
        Value::Null => Ok(()),
        Value::Array(items) => {
            for s in items {
                let s = s.as_str().ok_or_else(|| invalid("schemas must be a list of URNs"))?;
                if !allowed.iter().any(|a| a.eq_ignore_ascii_case(s)) {
                    return Err(invalid(format!("unknown schema {s}")));
                }
            }
            Ok(())
        }
        _ => Err(invalid("schemas must be a list of URNs")),
    }
}

/// Reads a user from a lower-cased body.
pub fn parse_user(v: &Value) -> Result<UserInput, ScimError> {
    check_schemas(v, &[USER, ENTERPRISE_USER, ROSTER_USER])?;
    let user_name = opt_str(&v["username"], "userName")?.ok_or_else(|| invalid("userName is required"))?;
    let name = &v["name"];
    if !(name.is_null() || name.is_object()) {
        return Err(invalid("name must be an object"));
    }
    let given_name = opt_str(&name["givenname"], "name.givenName")?;
    let family_name = opt_str(&name["familyname"], "name.familyName")?;
    let formatted = opt_str(&name["formatted"], "name.formatted")?;
    let display_name = opt_str(&v["displayname"], "displayName")?
        .or(formatted)
        .or_else(|| {
            let parts: Vec<&str> =
                [given_name.as_deref(), family_name.as_deref()].into_iter().flatten().collect();
            (!parts.is_empty()).then(|| parts.join(" "))
        })
        .unwrap_or_else(|| user_name.split('@').next().unwrap_or(&user_name).to_owned());
    let active = match &v["active"] {
        Value::Null => None,
        other => Some(as_bool(other).ok_or_else(|| invalid("active must be a boolean"))?),
    };
    let emails = match &v["emails"] {
        Value::Null => Vec::new(),
        Value::Array(items) => items
            .iter()
            .map(|e| {
                let address = opt_str(&e["value"], "emails.value")?
                    .ok_or_else(|| invalid("emails[].value is required"))?;
                let kind = opt_str(&e["type"], "emails.type")?.unwrap_or_else(|| "work".into());
                let primary = match &e["primary"] {
                    Value::Null => false,
                    p => as_bool(p).ok_or_else(|| invalid("emails[].primary must be a boolean"))?,
                };
                Ok(Email { address, kind, primary })
            })
            .collect::<Result<_, ScimError>>()?,
        _ => return Err(invalid("emails must be a list")),
    };
    // Every number is kept: the mobile (the first of type `mobile`, else the first without a
    // type), which SMS go to, and the others as sent (value, type, primary).
    let (mobile, phones) = match &v["phonenumbers"] {
        Value::Null => (None, Vec::new()),
        Value::Array(items) => {
            let kind =
                |p: &Value| p["type"].as_str().map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned);
            let valued = |p: &Value| p["value"].as_str().is_some_and(|v| !v.trim().is_empty());
            let is_mobile = |p: &Value| kind(p).is_some_and(|t| t.eq_ignore_ascii_case("mobile"));
            // The mobile: a primary one of type mobile, else the first of type mobile, else the
            // first untyped number that is a valid mobile number.
            let pick = items
                .iter()
                .position(|p| valued(p) && is_mobile(p) && as_bool(&p["primary"]) == Some(true))
                .or_else(|| items.iter().position(|p| valued(p) && is_mobile(p)))
                .or_else(|| {
                    items.iter().position(|p| {
                        valued(p)
                            && kind(p).is_none()
                            && crate::directory::validate::mobile(p["value"].as_str())
                                .is_ok_and(|m| m.is_some())
                    })
                });
            let mut mobile = None;
            let mut phones = Vec::new();
            for (i, p) in items.iter().enumerate() {
                if !p.is_object() {
                    return Err(invalid("phoneNumbers must be a list of objects"));
                }
                let Some(number) = opt_str(&p["value"], "phoneNumbers.value")? else { continue };
                if Some(i) == pick {
                    mobile = Some(number);
                } else {
                    let primary = as_bool(&p["primary"]).unwrap_or(false);
                    phones.push(Phone { number, kind: kind(p).unwrap_or_else(|| "other".into()), primary });
                }
            }
            (mobile, phones)
        }
        _ => return Err(invalid("phoneNumbers must be a list")),
    };
    let ext = &v[ENTERPRISE_USER.to_lowercase().as_str()];
    let manager = match &ext["manager"] {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s.clone()),
        Value::Object(m) => {
            m.get("value").and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned)
        }
        _ => return Err(invalid("manager must be an object with a value")),
    };
    let manager = manager
        .map(|m| Uuid::parse_str(&m).map_err(|_| invalid(format!("manager {m} is not a user id"))))
        .transpose()?;
    let roster = &v[ROSTER_USER.to_lowercase().as_str()];
    if !roster["accountnumber"].is_null() && !roster["accountnumber"].is_number() {
        return Err(invalid("accountNumber must be an integer"));
    }
    let org_units = match &roster["orgunits"] {
        Value::Null => None,
        Value::Array(items) => Some(
            items
                .iter()
                .map(|u| {
                    let id = u["value"]
                        .as_str()
                        .and_then(|s| Uuid::parse_str(s).ok())
                        .ok_or_else(|| invalid("orgUnits[].value must be an org unit id"))?;
                    Ok((id, as_bool(&u["primary"]).unwrap_or(false)))
                })
                .collect::<Result<Vec<_>, ScimError>>()?,
        ),
        _ => return Err(invalid("orgUnits must be a list")),
    };
    Ok(UserInput {
        user_name,
        external_id: opt_str(&v["externalid"], "externalId")?,
        display_name,
        given_name,
        family_name,
        title: opt_str(&v["title"], "title")?,
        active,
        emails,
        mobile,
        phones,
        password: opt_str(&v["password"], "password")?.map(Secret),
        employee_number: opt_str(&ext["employeenumber"], "employeeNumber")?,
        department: opt_str(&ext["department"], "department")?,
        organization: opt_str(&ext["organization"], "organization")?,
        division: opt_str(&ext["division"], "division")?,
        cost_center: opt_str(&ext["costcenter"], "costCenter")?,
        manager,
        org_units,
    })
}

/// Finds (or, when allowed, creates) the org unit a `department` path names. New units are
/// returned as changes to apply in the same set as the member.
async fn department_unit(
    ctx: &Call,
    path: &str,
    changes: &mut Vec<Change>,
) -> Result<Option<Uuid>, ScimError> {
    let mut parent: Option<Uuid> = None;
    let mut creating = false;
    for name in path.split('/').map(str::trim).filter(|n| !n.is_empty()) {
        let existing = if creating {
            None
        } else {
            let children = ctx.directory.store().org_unit_children(parent).await?;
            children.into_iter().find(|u| u.name.eq_ignore_ascii_case(name)).map(|u| u.id)
        };
        parent = Some(match existing {
            Some(id) => id,
            None if ctx.cfg.create_departments => {
                creating = true;
                let id = Uuid::now_v7();
                changes.push(Change::CreateOrgUnit(NewOrgUnit {
                    id: Some(id),
                    parent_id: parent,
                    name: name.to_owned(),
                    ..Default::default()
                }));
                id
            }
            None => return Ok(None),
        });
    }
    Ok(parent)
}

/// Org unit fields from the input: the Roster extension wins, then `department`.
async fn units(
    ctx: &Call,
    u: &UserInput,
    changes: &mut Vec<Change>,
) -> Result<Option<(Option<Uuid>, Vec<Uuid>)>, ScimError> {
    if let Some(list) = &u.org_units {
        let primary = list.iter().find(|(_, p)| *p).or(list.first()).map(|(id, _)| *id);
        let others = list.iter().map(|(id, _)| *id).filter(|id| Some(*id) != primary).collect();
        return Ok(Some((primary, others)));
    }
    if let Some(dept) = &u.department
        && let Some(unit) = department_unit(ctx, dept, changes).await?
    {
        return Ok(Some((Some(unit), Vec::new())));
    }
    Ok(None)
}

/// A member as a SCIM user. `departments` caches org unit paths across a page.
pub async fn to_scim(
    ctx: &Call,
    m: &Member,
    departments: &mut HashMap<Uuid, String>,
) -> Result<Value, ScimError> {
    let mut r = Map::new();
    r.insert("schemas".into(), json!([USER, ENTERPRISE_USER, ROSTER_USER]));
    r.insert("id".into(), json!(m.id));
    if m.source == *ctx.client.source()
        && let Some(a) = &m.anchor
    {
        r.insert("externalId".into(), json!(a));
    }
    r.insert("userName".into(), json!(m.login_name));
    let mut name = Map::new();
    name.insert("formatted".into(), json!(m.display_name));
    if let Some(g) = &m.given_name {
        name.insert("givenName".into(), json!(g));
    }
    if let Some(f) = &m.family_name {
        name.insert("familyName".into(), json!(f));
    }
    r.insert("name".into(), Value::Object(name));
    r.insert("displayName".into(), json!(m.display_name));
    if let Some(t) = &m.title {
        r.insert("title".into(), json!(t));
    }
    r.insert("active".into(), json!(m.state == MemberState::Active));
    if !m.emails.is_empty() {
        let emails: Vec<Value> = m
            .emails
            .iter()
            .map(|e| json!({ "value": e.address, "type": e.kind, "primary": e.primary }))
            .collect();
        r.insert("emails".into(), json!(emails));
    }
    // The mobile first (primary unless another number is), then the others as they were sent.
    let mut phones: Vec<Value> = Vec::new();
    if let Some(p) = &m.mobile {
        let primary = !m.phones.iter().any(|p| p.primary);
        phones.push(json!({ "value": p, "type": "mobile", "primary": primary }));
    }
    phones
        .extend(m.phones.iter().map(|p| json!({ "value": p.number, "type": p.kind, "primary": p.primary })));
    if !phones.is_empty() {
        r.insert("phoneNumbers".into(), json!(phones));
    }
    let mut ent = Map::new();
    if let Some(e) = &m.employee_number {
        ent.insert("employeeNumber".into(), json!(e));
    }
    // The org unit's path when the member has one, else the text the client sent.
    match (m.primary_org_unit_id, &m.department) {
        (Some(unit), _) => {
            ent.insert("department".into(), json!(department_path(ctx, unit, departments).await?));
        }
        (None, Some(text)) => {
            ent.insert("department".into(), json!(text));
        }
        (None, None) => {}
    }
    for (key, value) in
        [("organization", &m.organization), ("division", &m.division), ("costCenter", &m.cost_center)]
    {
        if let Some(v) = value {
            ent.insert(key.into(), json!(v));
        }
    }
    if let Some(mgr) = m.manager_id {
        ent.insert("manager".into(), json!({ "value": mgr, "$ref": format!("{}/Users/{mgr}", ctx.base) }));
    }
    if !ent.is_empty() {
        r.insert(ENTERPRISE_USER.into(), Value::Object(ent));
    }
    let mut units: Vec<Value> =
        m.primary_org_unit_id.iter().map(|u| json!({ "value": u, "primary": true })).collect();
    units.extend(m.org_unit_ids.iter().map(|u| json!({ "value": u, "primary": false })));
    r.insert(
        ROSTER_USER.into(),
        json!({ "accountNumber": m.account_number, "orgUnits": units, "mailbox": m.login_name }),
    );
    r.insert(
        "meta".into(),
        json!({
            "resourceType": "User",
            "created": m.created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "lastModified": m.updated_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "location": format!("{}/Users/{}", ctx.base, m.id),
            "version": etag(m.version),
        }),
    );
    Ok(Value::Object(r))
}

/// `Sales/East/Shanghai` for a unit.
async fn department_path(
    ctx: &Call,
    unit: Uuid,
    cache: &mut HashMap<Uuid, String>,
) -> Result<String, ScimError> {
    if let Some(p) = cache.get(&unit) {
        return Ok(p.clone());
    }
    let mut names = Vec::new();
    let mut next = Some(unit);
    while let Some(id) = next.take() {
        if names.len() > 64 {
            break;
        }
        match ctx.directory.store().org_unit(id).await? {
            Some(u) => {
                names.push(u.name);
                next = u.parent_id;
            }
            None => break,
        }
    }
    names.reverse();
    let path = names.join("/");
    cache.insert(unit, path.clone());
    Ok(path)
}

pub(crate) fn parse_id(id: &str) -> Result<Uuid, ScimError> {
    Uuid::parse_str(id).map_err(|_| ScimError::not_found("user", id))
}

pub(crate) async fn load(ctx: &Call, id: &str) -> Result<Member, ScimError> {
    let uuid = parse_id(id)?;
    ctx.directory.store().member(uuid).await?.ok_or_else(|| ScimError::not_found("user", id))
}

fn member_of(applied: Vec<Applied>) -> Member {
    applied
        .into_iter()
        .rev()
        .find_map(|a| match a {
            Applied::Member(m) => Some(m),
            _ => None,
        })
        .expect("a member change returns the member")
}

/// The member a userName names (`alice` means `alice@<mail domain>`).
async fn find_by_user_name(ctx: &Call, user_name: &str) -> Result<Option<Member>, ScimError> {
    let store = ctx.directory.store();
    let login = user_name.trim().to_lowercase();
    let login = match login.contains('@') {
        true => login,
        false => match store.enterprise().await? {
            Some(e) => format!("{login}@{}", e.mail_domain),
            None => login,
        },
    };
    Ok(store.member_by_login(&login).await?)
}

/// POST /Users: a new member with the next account number; or, for a client allowed to
/// adopt, an existing member of another source with this userName.
pub async fn create_user(ctx: &Call, body: Value) -> Result<(StatusCode, Value), ScimError> {
    let u = parse_user(&lower_keys(body))?;
    let mut changes = Vec::new();
    let units = units(ctx, &u, &mut changes).await?;
    if let Some(existing) = find_by_user_name(ctx, &u.user_name).await? {
        if existing.source == *ctx.client.source() || !ctx.client.adopt_existing {
            return Err(ScimError::new(
                StatusCode::CONFLICT,
                Some("uniqueness"),
                format!("userName {} is already in use", existing.login_name),
            ));
        }
        changes.push(Change::AdoptMember { id: existing.id, anchor: u.external_id.clone() });
        changes.push(Change::UpdateMember { id: existing.id, patch: replace_patch(&u, units) });
        let m = member_of(ctx.directory.apply(&ctx.client.actor, changes).await?);
        return Ok((StatusCode::OK, to_scim(ctx, &m, &mut HashMap::new()).await?));
    }
    let (primary, others) = units.unwrap_or_default();
    changes.push(Change::CreateMember(NewMember {
        login_name: u.user_name,
        display_name: u.display_name,
        given_name: u.given_name,
        family_name: u.family_name,
        emails: u.emails,
        mobile: u.mobile,
        phones: u.phones,
        title: u.title,
        employee_number: u.employee_number,
        department: u.department,
        organization: u.organization,
        division: u.division,
        cost_center: u.cost_center,
        primary_org_unit_id: primary,
        org_unit_ids: others,
        manager_id: u.manager,
        state: if u.active == Some(false) { MemberState::Suspended } else { MemberState::Active },
        anchor: u.external_id,
        password: u.password,
        ..Default::default()
    }));
    let m = member_of(ctx.directory.apply(&ctx.client.actor, changes).await?);
    Ok((StatusCode::CREATED, to_scim(ctx, &m, &mut HashMap::new()).await?))
}

/// The patch a full replacement makes (see the module comment for what it leaves alone).
fn replace_patch(u: &UserInput, units: Option<(Option<Uuid>, Vec<Uuid>)>) -> MemberPatch {
    let (primary, others) = match units {
        Some((p, o)) => (Some(p), Some(o)),
        None => (None, None),
    };
    MemberPatch {
        login_name: Some(u.user_name.clone()),
        display_name: Some(u.display_name.clone()),
        given_name: Some(u.given_name.clone()),
        family_name: Some(u.family_name.clone()),
        emails: Some(u.emails.clone()),
        mobile: Some(u.mobile.clone()),
        phones: Some(u.phones.clone()),
        title: Some(u.title.clone()),
        employee_number: Some(u.employee_number.clone()),
        department: Some(u.department.clone()),
        organization: Some(u.organization.clone()),
        division: Some(u.division.clone()),
        cost_center: Some(u.cost_center.clone()),
        primary_org_unit_id: primary,
        org_unit_ids: others,
        manager_id: Some(u.manager),
        state: u.active.map(|a| if a { MemberState::Active } else { MemberState::Suspended }),
        anchor: Some(u.external_id.clone()),
        password: u.password.clone(),
        keep_session: None,
    }
}

/// PUT /Users/{id}.
pub async fn replace_user(
    ctx: &Call,
    id: &str,
    body: Value,
    headers: &HeaderMap,
) -> Result<Value, ScimError> {
    let current = load(ctx, id).await?;
    check_if_match(headers, current.version)?;
    let mut body = lower_keys(body);
    // A client may echo read-only attributes back; they must not differ.
    let roster_key = ROSTER_USER.to_lowercase();
    if let Some(n) = body[roster_key.as_str()]["accountnumber"].as_i64()
        && n != current.account_number
    {
        return Err(ScimError::bad("mutability", "accountNumber is read-only"));
    }
    if let Some(obj) = body.as_object_mut() {
        obj.remove("id");
        obj.remove("meta");
    }
    let u = parse_user(&body)?;
    let mut changes = Vec::new();
    let units = units(ctx, &u, &mut changes).await?;
    changes.push(Change::UpdateMember { id: current.id, patch: replace_patch(&u, units) });
    let m = member_of(ctx.directory.apply(&ctx.client.actor, changes).await?);
    to_scim(ctx, &m, &mut HashMap::new()).await
}

/// PATCH /Users/{id}: the operations are applied to the user's SCIM form, and the result is
/// written like a PUT.
pub async fn patch_user(ctx: &Call, id: &str, body: Value, headers: &HeaderMap) -> Result<Value, ScimError> {
    let current = load(ctx, id).await?;
    check_if_match(headers, current.version)?;
    let ops = super::patch::parse_ops(&body)?;
    let before = lower_keys(to_scim(ctx, &current, &mut HashMap::new()).await?);
    let after = super::patch::apply_to_user(before.clone(), &ops)?;
    if after == before {
        return to_scim(ctx, &current, &mut HashMap::new()).await;
    }
    let mut after = after;
    // Our display name is name.formatted: a client that changed only one of them changed both.
    if after["name"]["formatted"] != before["name"]["formatted"]
        && after["displayname"] == before["displayname"]
    {
        after["displayname"] = after["name"]["formatted"].clone();
    }
    let u = parse_user(&after)?;
    let roster = ROSTER_USER.to_lowercase();
    let enterprise = ENTERPRISE_USER.to_lowercase();
    let units_changed = after[roster.as_str()]["orgunits"] != before[roster.as_str()]["orgunits"];
    let department_changed =
        after[enterprise.as_str()]["department"] != before[enterprise.as_str()]["department"];
    // Org units follow the Roster extension when it changed, else a changed department.
    let u = if units_changed { u } else { UserInput { org_units: None, ..u } };
    let mut changes = Vec::new();
    let units = if units_changed || department_changed { units(ctx, &u, &mut changes).await? } else { None };
    // A PATCH that left e-mails or phone numbers alone does not send them: what it read back
    // lacks any value kept aside, and sending that would let the kept ones go.
    let emails_untouched = after["emails"] == before["emails"];
    let phones_untouched = after["phonenumbers"] == before["phonenumbers"];
    finish_patch(ctx, &current, u, units, changes, emails_untouched, phones_untouched).await
}

async fn finish_patch(
    ctx: &Call,
    current: &Member,
    u: UserInput,
    units: Option<(Option<Uuid>, Vec<Uuid>)>,
    mut changes: Vec<Change>,
    emails_untouched: bool,
    phones_untouched: bool,
) -> Result<Value, ScimError> {
    let mut patch = replace_patch(&u, units);
    if u.active.is_none() {
        patch.state = None;
    }
    if emails_untouched {
        patch.emails = None;
    }
    if phones_untouched {
        (patch.mobile, patch.phones) = (None, None);
    }
    changes.push(Change::UpdateMember { id: current.id, patch });
    let m = member_of(ctx.directory.apply(&ctx.client.actor, changes).await?);
    to_scim(ctx, &m, &mut HashMap::new()).await
}

/// DELETE /Users/{id}: the member becomes a tombstone.
pub async fn delete_user(ctx: &Call, id: &str, headers: &HeaderMap) -> Result<(), ScimError> {
    let current = load(ctx, id).await?;
    check_if_match(headers, current.version)?;
    let reason = format!("deleted by SCIM client {}", ctx.client.actor.who);
    ctx.directory.apply_one(&ctx.client.actor, Change::DeleteMember { id: current.id, reason }).await?;
    Ok(())
}

/// Runs a list or search.
async fn run_list(ctx: &Call, p: ListParams) -> Result<Response, ScimError> {
    let (q, start) = list_query(&p, Resource::User, ctx.client.source(), ctx.cfg.max_results)?;
    let page = ctx.directory.store().search_members(&q).await?;
    let mut cache = HashMap::new();
    let mut out = Vec::with_capacity(page.items.len());
    for m in &page.items {
        let r = to_scim(ctx, m, &mut cache).await?;
        out.push(project(r, p.attributes.as_deref(), p.excluded_attributes.as_deref()));
    }
    Ok(list_response(page.total, start, out))
}

// --- HTTP handlers -------------------------------------------------------------------------

pub async fn list(ctx: Call, Query(p): Query<ListParams>) -> Result<Response, ScimError> {
    run_list(&ctx, p).await
}

pub async fn search(ctx: Call, headers: HeaderMap, body: Bytes) -> Result<Response, ScimError> {
    let v = json_body(&headers, &body)?;
    run_list(&ctx, ListParams::from_search_body(&v)?).await
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Projection {
    pub attributes: Option<String>,
    pub excluded_attributes: Option<String>,
}

pub async fn get(
    ctx: Call,
    Path(id): Path<String>,
    Query(p): Query<Projection>,
) -> Result<Response, ScimError> {
    let m = load(&ctx, &id).await?;
    let r = to_scim(&ctx, &m, &mut HashMap::new()).await?;
    Ok(resource(StatusCode::OK, project(r, p.attributes.as_deref(), p.excluded_attributes.as_deref())))
}

pub async fn create(ctx: Call, headers: HeaderMap, body: Bytes) -> Result<Response, ScimError> {
    let (status, r) = create_user(&ctx, json_body(&headers, &body)?).await?;
    Ok(resource(status, r))
}

pub async fn replace(
    ctx: Call,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ScimError> {
    let r = replace_user(&ctx, &id, json_body(&headers, &body)?, &headers).await?;
    Ok(resource(StatusCode::OK, r))
}

pub async fn patch(
    ctx: Call,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ScimError> {
    let r = patch_user(&ctx, &id, json_body(&headers, &body)?, &headers).await?;
    Ok(resource(StatusCode::OK, r))
}

pub async fn delete(ctx: Call, Path(id): Path<String>, headers: HeaderMap) -> Result<StatusCode, ScimError> {
    delete_user(&ctx, &id, &headers).await?;
    Ok(StatusCode::NO_CONTENT)
}
