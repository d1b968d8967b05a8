//! The OrgUnit resource (Roster's own schema), so a provisioning client can push the
//! department tree: `displayName`, `parent.value` (the parent's id), `position`, `externalId`;
//! `path` (`Sales/East`) is read-only.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};
use uuid::Uuid;

use super::user::check_schemas;
use super::{
    Call, ListParams, ORG_UNIT, ScimError, check_if_match, etag, json_body, list_response, lower_keys,
    resource,
};
use crate::directory::model::OrgUnit;
use crate::directory::{Applied, Change, NewOrgUnit};

fn invalid(detail: impl Into<String>) -> ScimError {
    ScimError::bad("invalidValue", detail)
}

fn path_of(unit: &OrgUnit, all: &HashMap<Uuid, OrgUnit>) -> String {
    let mut names = vec![unit.name.clone()];
    let mut next = unit.parent_id;
    while let Some(id) = next {
        match all.get(&id) {
            Some(p) if names.len() < 64 => {
                names.push(p.name.clone());
                next = p.parent_id;
            }
            _ => break,
        }
    }
    names.reverse();
    names.join("/")
}

fn to_scim(ctx: &Call, u: &OrgUnit, all: &HashMap<Uuid, OrgUnit>) -> Value {
    let mut r = json!({
        "schemas": [ORG_UNIT],
        "id": u.id,
        "displayName": u.name,
        "position": u.position,
        "path": path_of(u, all),
        "meta": {
            "resourceType": "OrgUnit",
            "created": u.created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "lastModified": u.updated_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "location": format!("{}/OrgUnits/{}", ctx.base, u.id),
            "version": etag(u.version),
        },
    });
    if let Some(p) = u.parent_id {
        r["parent"] = json!({ "value": p, "$ref": format!("{}/OrgUnits/{p}", ctx.base) });
    }
    if u.source == *ctx.client.source()
        && let Some(a) = &u.anchor
    {
        r["externalId"] = json!(a);
    }
    r
}

async fn all_units(ctx: &Call) -> Result<HashMap<Uuid, OrgUnit>, ScimError> {
    Ok(ctx.directory.store().org_units_all().await?.into_iter().map(|u| (u.id, u)).collect())
}

struct Input {
    name: String,
    parent: Option<Uuid>,
    position: Option<i64>,
    anchor: Option<String>,
}

fn parse(body: Value) -> Result<Input, ScimError> {
    let v = lower_keys(body);
    check_schemas(&v, &[ORG_UNIT])?;
    let name = v["displayname"].as_str().ok_or_else(|| invalid("displayName is required"))?.to_owned();
    let parent = match &v["parent"] {
        Value::Null => None,
        Value::Object(p) => match p.get("value") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => {
                Some(Uuid::parse_str(s).map_err(|_| invalid(format!("parent {s} is not an org unit id")))?)
            }
            Some(_) => return Err(invalid("parent.value must be an org unit id")),
        },
        _ => return Err(invalid("parent must be an object with a value")),
    };
    let position = match &v["position"] {
        Value::Null => None,
        p => Some(p.as_i64().ok_or_else(|| invalid("position must be an integer"))?),
    };
    Ok(Input { name, parent, position, anchor: v["externalid"].as_str().map(str::to_owned) })
}

async fn load(ctx: &Call, id: &str) -> Result<OrgUnit, ScimError> {
    let uuid = Uuid::parse_str(id).map_err(|_| ScimError::not_found("org unit", id))?;
    ctx.directory.store().org_unit(uuid).await?.ok_or_else(|| ScimError::not_found("org unit", id))
}

pub async fn create_unit(ctx: &Call, body: Value) -> Result<(StatusCode, Value), ScimError> {
    let i = parse(body)?;
    let change = Change::CreateOrgUnit(NewOrgUnit {
        id: None,
        parent_id: i.parent,
        name: i.name,
        position: i.position,
        anchor: i.anchor,
    });
    let Applied::OrgUnit(u) = ctx.directory.apply_one(&ctx.client.actor, change).await? else {
        unreachable!("creating an org unit returns it")
    };
    Ok((StatusCode::CREATED, to_scim(ctx, &u, &all_units(ctx).await?)))
}

/// PUT: rename, re-anchor and move in one transaction.
pub async fn replace_unit(
    ctx: &Call,
    id: &str,
    body: Value,
    headers: &HeaderMap,
) -> Result<Value, ScimError> {
    let u = load(ctx, id).await?;
    check_if_match(headers, u.version)?;
    let i = parse(body)?;
    let changes = vec![
        Change::UpdateOrgUnit { id: u.id, name: Some(i.name), anchor: Some(i.anchor) },
        Change::MoveOrgUnit { id: u.id, parent_id: i.parent, position: i.position },
    ];
    ctx.directory.apply(&ctx.client.actor, changes).await?;
    let all = all_units(ctx).await?;
    let now = all.get(&u.id).ok_or_else(|| ScimError::not_found("org unit", id))?;
    Ok(to_scim(ctx, now, &all))
}

/// PATCH: the operations apply to the unit's SCIM form, written like a PUT.
pub async fn patch_unit(ctx: &Call, id: &str, body: Value, headers: &HeaderMap) -> Result<Value, ScimError> {
    let u = load(ctx, id).await?;
    check_if_match(headers, u.version)?;
    let ops = super::patch::parse_ops(&body)?;
    let before = lower_keys(to_scim(ctx, &u, &all_units(ctx).await?));
    let after = super::patch::apply_to_user(before.clone(), &ops)?;
    if after == before {
        return Ok(to_scim(ctx, &u, &all_units(ctx).await?));
    }
    replace_unit(ctx, id, after, &HeaderMap::new()).await
}

pub async fn delete_unit(ctx: &Call, id: &str, headers: &HeaderMap) -> Result<(), ScimError> {
    let u = load(ctx, id).await?;
    check_if_match(headers, u.version)?;
    ctx.directory.apply_one(&ctx.client.actor, Change::DeleteOrgUnit { id: u.id }).await?;
    Ok(())
}

// --- HTTP handlers -------------------------------------------------------------------------

/// Lists units (the tree is at most some ten thousand units, so filters run in memory here).
pub async fn list(ctx: Call, Query(p): Query<ListParams>) -> Result<Response, ScimError> {
    let all = all_units(&ctx).await?;
    let filter = p
        .filter
        .as_deref()
        .map(|f| super::filter::parse(f).map_err(|e| ScimError::bad("invalidFilter", e.to_string())))
        .transpose()?;
    let mut units: Vec<&OrgUnit> = all.values().collect();
    units.sort_by_key(|u| (u.created_at, u.id));
    let matching: Vec<Value> = units
        .into_iter()
        .map(|u| to_scim(&ctx, u, &all))
        .filter(|r| filter.as_ref().is_none_or(|f| super::patch::matches(f, &lower_keys(r.clone()))))
        .collect();
    let (offset, limit, start) = p.window(ctx.cfg.max_results);
    let total = matching.len() as i64;
    let page = matching.into_iter().skip(offset as usize).take(limit as usize).collect();
    Ok(list_response(total, start, page))
}

pub async fn get(ctx: Call, Path(id): Path<String>) -> Result<Response, ScimError> {
    let u = load(&ctx, &id).await?;
    Ok(resource(StatusCode::OK, to_scim(&ctx, &u, &all_units(&ctx).await?)))
}

pub async fn create(ctx: Call, headers: HeaderMap, body: Bytes) -> Result<Response, ScimError> {
    let (status, r) = create_unit(&ctx, json_body(&headers, &body)?).await?;
    Ok(resource(status, r))
}

pub async fn replace(
    ctx: Call,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ScimError> {
    Ok(resource(StatusCode::OK, replace_unit(&ctx, &id, json_body(&headers, &body)?, &headers).await?))
}

pub async fn patch(
    ctx: Call,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ScimError> {
    Ok(resource(StatusCode::OK, patch_unit(&ctx, &id, json_body(&headers, &body)?, &headers).await?))
}

pub async fn delete(ctx: Call, Path(id): Path<String>, headers: HeaderMap) -> Result<StatusCode, ScimError> {
    delete_unit(&ctx, &id, &headers).await?;
    Ok(StatusCode::NO_CONTENT)
}
