//! The Group resource: enterprise groups. Membership changes touch only the members named:
//! adding one member to a 30,000-member group writes one row, never the whole list.

use std::collections::HashSet;

use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};
use uuid::Uuid;

use super::patch::{OpKind, matches, parse_ops};
use super::query::{Resource, list_query};
use super::user::{Projection, check_schemas};
use super::{
    Call, GROUP, ListParams, ScimError, check_if_match, etag, json_body, list_response, lower_keys, project,
    resource,
};
use crate::directory::model::Group;
use crate::directory::{Applied, Change, NewGroup};

fn invalid(detail: impl Into<String>) -> ScimError {
    ScimError::bad("invalidValue", detail)
}

/// Member ids from `[{"value": "<id>"}, ...]` (or a single such object).
fn member_ids(v: &Value) -> Result<Vec<Uuid>, ScimError> {
    let items = match v {
        Value::Null => return Ok(Vec::new()),
        Value::Array(items) => items.clone(),
        one @ Value::Object(_) => vec![one.clone()],
        _ => return Err(invalid("members must be a list of {\"value\": id}")),
    };
    items
        .iter()
        .map(|m| {
            let id = m["value"].as_str().ok_or_else(|| invalid("members[].value must be a user id"))?;
            Uuid::parse_str(id).map_err(|_| invalid(format!("{id} is not a user id")))
        })
        .collect()
}

async fn to_scim(ctx: &Call, g: &Group, with_members: bool) -> Result<Value, ScimError> {
    let mut r = json!({
        "schemas": [GROUP],
        "id": g.id,
        "displayName": g.name,
        "meta": {
            "resourceType": "Group",
            "created": g.created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "lastModified": g.updated_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "location": format!("{}/Groups/{}", ctx.base, g.id),
            "version": etag(g.version),
        },
    });
    if g.source == *ctx.client.source()
        && let Some(a) = &g.anchor
    {
        r["externalId"] = json!(a);
    }
    if with_members {
        let ids = ctx.directory.store().group_member_ids(g.id).await?;
        let members: Vec<Value> = ids
            .iter()
            .map(|id| json!({ "value": id, "type": "User", "$ref": format!("{}/Users/{id}", ctx.base) }))
            .collect();
        r["members"] = json!(members);
    }
    Ok(r)
}

fn wants_members(p: &Projection) -> bool {
    let named = |list: &Option<String>| {
        list.as_deref().is_some_and(|l| l.split(',').any(|a| a.trim().eq_ignore_ascii_case("members")))
    };
    !named(&p.excluded_attributes) && (p.attributes.is_none() || named(&p.attributes))
}

async fn load(ctx: &Call, id: &str) -> Result<Group, ScimError> {
    let uuid = Uuid::parse_str(id).map_err(|_| ScimError::not_found("group", id))?;
    ctx.directory.store().group(uuid).await?.ok_or_else(|| ScimError::not_found("group", id))
}

fn display_name(v: &Value) -> Result<Option<String>, ScimError> {
    match &v["displayname"] {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err(invalid("displayName must be a string")),
    }
}

pub async fn create_group(ctx: &Call, body: Value) -> Result<(StatusCode, Value), ScimError> {
    let v = lower_keys(body);
    check_schemas(&v, &[GROUP])?;
    let name = display_name(&v)?.ok_or_else(|| invalid("displayName is required"))?;
    let anchor = v["externalid"].as_str().map(str::to_owned);
    let members = member_ids(&v["members"])?;
    let change = Change::CreateGroup(NewGroup { name, members, anchor, ..Default::default() });
    let Applied::Group(g) = ctx.directory.apply_one(&ctx.client.actor, change).await? else {
        unreachable!("creating a group returns it")
    };
    Ok((StatusCode::CREATED, to_scim(ctx, &g, true).await?))
}

/// The changes that make the group's members exactly `wanted`.
async fn set_members(
    ctx: &Call,
    g: &Group,
    wanted: Vec<Uuid>,
    changes: &mut Vec<Change>,
) -> Result<(), ScimError> {
    let current: HashSet<Uuid> = ctx.directory.store().group_member_ids(g.id).await?.into_iter().collect();
    let wanted_set: HashSet<Uuid> = wanted.iter().copied().collect();
    let add: Vec<Uuid> = wanted.into_iter().filter(|id| !current.contains(id)).collect();
    let remove: Vec<Uuid> = current.into_iter().filter(|id| !wanted_set.contains(id)).collect();
    if !add.is_empty() {
        changes.push(Change::AddGroupMembers { id: g.id, members: add });
    }
    if !remove.is_empty() {
        changes.push(Change::RemoveGroupMembers { id: g.id, members: remove });
    }
    Ok(())
}

/// Applies the changes and returns the group as it is now (its members only if asked: a
/// large group's list is not sent back after every change).
async fn finish(ctx: &Call, g: &Group, changes: Vec<Change>, with_members: bool) -> Result<Value, ScimError> {
    if !changes.is_empty() {
        ctx.directory.apply(&ctx.client.actor, changes).await?;
    }
    let g = ctx
        .directory
        .store()
        .group(g.id)
        .await?
        .ok_or_else(|| ScimError::not_found("group", &g.id.to_string()))?;
    to_scim(ctx, &g, with_members).await
}

pub async fn replace_group(
    ctx: &Call,
    id: &str,
    body: Value,
    headers: &HeaderMap,
) -> Result<Value, ScimError> {
    let g = load(ctx, id).await?;
    check_if_match(headers, g.version)?;
    let v = lower_keys(body);
    check_schemas(&v, &[GROUP])?;
    let name = display_name(&v)?.ok_or_else(|| invalid("displayName is required"))?;
    let anchor = v["externalid"].as_str().map(str::to_owned);
    let mut changes = Vec::new();
    if name != g.name || anchor != g.anchor {
        let anchor = (anchor != g.anchor).then_some(anchor);
        changes.push(Change::UpdateGroup { id: g.id, name: Some(name), owner_id: None, anchor });
    }
    set_members(ctx, &g, member_ids(&v["members"])?, &mut changes).await?;
    finish(ctx, &g, changes, true).await
}

/// PATCH on a group: member operations become add/remove changes for just those members.
/// Returns the group without its members (the handler answers 204 with the new ETag).
pub async fn patch_group(ctx: &Call, id: &str, body: Value, headers: &HeaderMap) -> Result<Value, ScimError> {
    let g = load(ctx, id).await?;
    check_if_match(headers, g.version)?;
    let mut changes = Vec::new();
    for op in parse_ops(&body)? {
        let value = lower_keys(op.value.clone());
        let Some(path) = &op.path else {
            // Path-less: {"displayName": ..., "members": [...]}.
            let Value::Object(fields) = &value else {
                return Err(invalid("without a path, value must be an object"));
            };
            for (k, v) in fields {
                match k.as_str() {
                    "displayname" => changes.push(rename(&g, v)?),
                    "members" if op.kind == OpKind::Add => {
                        changes.push(Change::AddGroupMembers { id: g.id, members: member_ids(v)? });
                    }
                    "members" => set_members(ctx, &g, member_ids(v)?, &mut changes).await?,
                    "externalid" => {
                        let anchor = v.as_str().map(str::to_owned);
                        changes.push(Change::UpdateGroup {
                            id: g.id,
                            name: None,
                            owner_id: None,
                            anchor: Some(anchor),
                        })
                    }
                    "id" | "schemas" | "meta" => {}
                    other => {
                        return Err(ScimError::bad(
                            "invalidPath",
                            format!("groups have no attribute {other}"),
                        ));
                    }
                }
            }
            continue;
        };
        match (path.attr.attr.to_lowercase().as_str(), &path.filter, op.kind) {
            ("displayname", None, OpKind::Add | OpKind::Replace) => changes.push(rename(&g, &value)?),
            ("members", None, OpKind::Add) => {
                changes.push(Change::AddGroupMembers { id: g.id, members: member_ids(&value)? })
            }
            ("members", None, OpKind::Replace) => {
                set_members(ctx, &g, member_ids(&value)?, &mut changes).await?
            }
            // With a value list, remove just those (Entra ID); without, all of them (RFC 7644).
            ("members", None, OpKind::Remove) if !value.is_null() => {
                changes.push(Change::RemoveGroupMembers { id: g.id, members: member_ids(&value)? })
            }
            ("members", None, OpKind::Remove) => set_members(ctx, &g, Vec::new(), &mut changes).await?,
            ("members", Some(filter), OpKind::Remove) => {
                let ids = filtered_members(ctx, &g, filter).await?;
                changes.push(Change::RemoveGroupMembers { id: g.id, members: ids });
            }
            ("members", Some(_), _) => {
                return Err(ScimError::bad("invalidPath", "members can be added by value, not by filter"));
            }
            ("id" | "meta", _, _) => return Err(ScimError::bad("mutability", "id and meta are read-only")),
            ("externalid", None, OpKind::Remove) => {
                changes.push(Change::UpdateGroup { id: g.id, name: None, owner_id: None, anchor: Some(None) })
            }
            ("externalid", None, _) => {
                let anchor = value.as_str().ok_or_else(|| invalid("externalId must be a string"))?;
                changes.push(Change::UpdateGroup {
                    id: g.id,
                    name: None,
                    owner_id: None,
                    anchor: Some(Some(anchor.to_owned())),
                })
            }
            (other, _, _) => {
                return Err(ScimError::bad("invalidPath", format!("groups have no attribute {other}")));
            }
        }
    }
    finish(ctx, &g, changes, false).await
}

/// Members a `members[value eq "..."]` filter selects. Equality on value (what clients send)
/// is answered without loading the group; anything else is evaluated member by member.
async fn filtered_members(
    ctx: &Call,
    g: &Group,
    filter: &super::filter::Filter,
) -> Result<Vec<Uuid>, ScimError> {
    use super::filter::{CompareOp, Filter, Value as FVal};
    if let Filter::Compare(p, CompareOp::Eq, FVal::String(v)) = filter
        && p.attr.eq_ignore_ascii_case("value")
    {
        return Ok(Uuid::parse_str(v).map(|id| vec![id]).unwrap_or_default());
    }
    let ids = ctx.directory.store().group_member_ids(g.id).await?;
    Ok(ids
        .into_iter()
        .filter(|id| matches(filter, &json!({ "value": id.to_string(), "type": "User" })))
        .collect())
}

fn rename(g: &Group, v: &Value) -> Result<Change, ScimError> {
    let name = v.as_str().ok_or_else(|| invalid("displayName must be a string"))?;
    Ok(Change::UpdateGroup { id: g.id, name: Some(name.to_owned()), owner_id: None, anchor: None })
}

pub async fn delete_group(ctx: &Call, id: &str, headers: &HeaderMap) -> Result<(), ScimError> {
    let g = load(ctx, id).await?;
    check_if_match(headers, g.version)?;
    ctx.directory.apply_one(&ctx.client.actor, Change::DeleteGroup { id: g.id }).await?;
    Ok(())
}

async fn run_list(ctx: &Call, p: ListParams) -> Result<Response, ScimError> {
    let (q, start) = list_query(&p, Resource::Group, ctx.client.source(), ctx.cfg.max_results)?;
    let page = ctx.directory.store().search_groups(&q).await?;
    let with_members = wants_members(&Projection {
        attributes: p.attributes.clone(),
        excluded_attributes: p.excluded_attributes.clone(),
    });
    let mut out = Vec::with_capacity(page.items.len());
    for g in &page.items {
        let r = to_scim(ctx, g, with_members).await?;
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

pub async fn get(
    ctx: Call,
    Path(id): Path<String>,
    Query(p): Query<Projection>,
) -> Result<Response, ScimError> {
    let g = load(&ctx, &id).await?;
    let r = to_scim(&ctx, &g, wants_members(&p)).await?;
    Ok(resource(StatusCode::OK, project(r, p.attributes.as_deref(), p.excluded_attributes.as_deref())))
}

pub async fn create(ctx: Call, headers: HeaderMap, body: Bytes) -> Result<Response, ScimError> {
    let (status, r) = create_group(&ctx, json_body(&headers, &body)?).await?;
    Ok(resource(status, r))
}

pub async fn replace(
    ctx: Call,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ScimError> {
    Ok(resource(StatusCode::OK, replace_group(&ctx, &id, json_body(&headers, &body)?, &headers).await?))
}

pub async fn patch(
    ctx: Call,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ScimError> {
    let g = patch_group(&ctx, &id, json_body(&headers, &body)?, &headers).await?;
    let mut r = resource(StatusCode::NO_CONTENT, g);
    *r.body_mut() = axum::body::Body::empty();
    r.headers_mut().remove(axum::http::header::CONTENT_TYPE);
    Ok(r)
}

pub async fn delete(ctx: Call, Path(id): Path<String>, headers: HeaderMap) -> Result<StatusCode, ScimError> {
    delete_group(&ctx, &id, &headers).await?;
    Ok(StatusCode::NO_CONTENT)
}
