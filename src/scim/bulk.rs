//! Bulk (RFC 7644 §3.7): operations run in order through the same code as single requests;
//! `bulkId:<id>` references are replaced by the ids created earlier in the request, and
//! `failOnErrors` stops the run after that many errors.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use super::{BULK_REQUEST, BULK_RESPONSE, Call, ScimError, group, json_body, orgunit, scim_json, user};

/// A `bulkId:<id>` that no earlier operation of the request defined.
#[derive(Debug, thiserror::Error)]
#[error("bulkId {0} is not defined by an earlier operation")]
struct UnknownBulkId(String);

/// Replaces `"bulkId:<id>"` strings (anywhere in `v`) with the created resource ids.
fn resolve(v: &mut Value, ids: &HashMap<String, String>) -> Result<(), UnknownBulkId> {
    match v {
        Value::String(s) => {
            if let Some(key) = s.strip_prefix("bulkId:") {
                *s = ids.get(key).cloned().ok_or_else(|| UnknownBulkId(key.to_owned()))?;
            }
            Ok(())
        }
        Value::Array(items) => items.iter_mut().try_for_each(|i| resolve(i, ids)),
        Value::Object(map) => map.values_mut().try_for_each(|i| resolve(i, ids)),
        _ => Ok(()),
    }
}

/// Runs one operation; returns its status and, for creates and updates, the resource.
async fn run_one(
    ctx: &Call,
    method: &Method,
    path: &str,
    data: Value,
    version: Option<&str>,
) -> Result<(StatusCode, Option<Value>), ScimError> {
    let mut headers = HeaderMap::new();
    if let Some(v) = version.and_then(|v| HeaderValue::from_str(v).ok()) {
        headers.insert(header::IF_MATCH, v);
    }
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let kind = parts.first().map(|p| p.to_ascii_lowercase()).unwrap_or_default();
    match (method.as_str(), kind.as_str(), parts.get(1)) {
        ("POST", "users", None) => user::create_user(ctx, data).await.map(|(s, r)| (s, Some(r))),
        ("POST", "groups", None) => group::create_group(ctx, data).await.map(|(s, r)| (s, Some(r))),
        ("POST", "orgunits", None) => orgunit::create_unit(ctx, data).await.map(|(s, r)| (s, Some(r))),
        ("PUT", "users", Some(id)) => {
            user::replace_user(ctx, id, data, &headers).await.map(|r| (StatusCode::OK, Some(r)))
        }
        ("PUT", "groups", Some(id)) => {
            group::replace_group(ctx, id, data, &headers).await.map(|r| (StatusCode::OK, Some(r)))
        }
        ("PUT", "orgunits", Some(id)) => {
            orgunit::replace_unit(ctx, id, data, &headers).await.map(|r| (StatusCode::OK, Some(r)))
        }
        ("PATCH", "users", Some(id)) => {
            user::patch_user(ctx, id, data, &headers).await.map(|r| (StatusCode::OK, Some(r)))
        }
        ("PATCH", "orgunits", Some(id)) => {
            orgunit::patch_unit(ctx, id, data, &headers).await.map(|r| (StatusCode::OK, Some(r)))
        }
        ("PATCH", "groups", Some(id)) => {
            group::patch_group(ctx, id, data, &headers).await.map(|r| (StatusCode::OK, Some(r)))
        }
        ("DELETE", "users", Some(id)) => {
            user::delete_user(ctx, id, &headers).await.map(|()| (StatusCode::NO_CONTENT, None))
        }
        ("DELETE", "groups", Some(id)) => {
            group::delete_group(ctx, id, &headers).await.map(|()| (StatusCode::NO_CONTENT, None))
        }
        ("DELETE", "orgunits", Some(id)) => {
            orgunit::delete_unit(ctx, id, &headers).await.map(|()| (StatusCode::NO_CONTENT, None))
        }
        _ => Err(ScimError::bad(
            "invalidPath",
            format!("{method} {path} is not a bulk operation this server supports"),
        )),
    }
}

pub async fn bulk(ctx: Call, headers: HeaderMap, body: Bytes) -> Result<Response, ScimError> {
    let v = json_body(&headers, &body)?;
    let v = super::lower_keys(v);
    if let Some(schemas) = v["schemas"].as_array()
        && !schemas.iter().any(|s| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(BULK_REQUEST)))
    {
        return Err(ScimError::bad("invalidValue", format!("a Bulk body has the schema {BULK_REQUEST}")));
    }
    let ops = v["operations"]
        .as_array()
        .ok_or_else(|| ScimError::bad("invalidSyntax", "Operations is required"))?;
    if ops.len() > ctx.cfg.max_operations {
        return Err(ScimError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            Some("tooMany"),
            format!("{} operations; maxOperations is {}", ops.len(), ctx.cfg.max_operations),
        ));
    }
    let fail_on_errors = match &v["failonerrors"] {
        Value::Null => None,
        n => Some(
            n.as_u64()
                .filter(|n| *n > 0)
                .ok_or_else(|| ScimError::bad("invalidValue", "failOnErrors must be a positive integer"))?,
        ),
    };
    let mut ids: HashMap<String, String> = HashMap::new();
    let mut results = Vec::with_capacity(ops.len());
    let mut errors = 0;
    for op in ops {
        // Keys were lower-cased above, but data must keep its own names' case only for values;
        // resources read keys case-insensitively anyway.
        let method = op["method"].as_str().unwrap_or("").to_ascii_uppercase();
        let bulk_id = op["bulkid"].as_str().map(str::to_owned);
        let mut path = op["path"].as_str().unwrap_or("").to_owned();
        let mut data = op["data"].clone();
        let outcome = match (
            Method::from_bytes(method.as_bytes()),
            resolve_path(&mut path, &ids),
            resolve(&mut data, &ids),
        ) {
            (Ok(m), Ok(()), Ok(())) if !path.is_empty() => {
                run_one(&ctx, &m, &path, data, op["version"].as_str()).await
            }
            (Err(_), _, _) => {
                Err(ScimError::bad("invalidSyntax", format!("method {method:?} is not supported")))
            }
            (_, Err(e), _) | (_, _, Err(e)) => {
                Err(ScimError::new(StatusCode::CONFLICT, Some("invalidValue"), e.to_string()))
            }
            _ => Err(ScimError::bad("invalidPath", "path is required")),
        };
        let mut result = json!({ "method": method });
        if let Some(b) = &bulk_id {
            result["bulkId"] = json!(b);
        }
        match outcome {
            Ok((status, resource)) => {
                if let Some(r) = &resource {
                    if let (Some(b), Some(id)) = (&bulk_id, r["id"].as_str()) {
                        ids.insert(b.clone(), id.to_owned());
                    }
                    result["location"] = r["meta"]["location"].clone();
                    result["version"] = r["meta"]["version"].clone();
                }
                result["status"] = json!(status.as_u16().to_string());
            }
            Err(e) => {
                errors += 1;
                result["status"] = json!(e.status.as_u16().to_string());
                result["response"] = e.body();
            }
        }
        results.push(result);
        if fail_on_errors.is_some_and(|limit| errors >= limit) {
            break;
        }
    }
    Ok(scim_json(StatusCode::OK, &json!({ "schemas": [BULK_RESPONSE], "Operations": results })))
}

fn resolve_path(path: &mut String, ids: &HashMap<String, String>) -> Result<(), UnknownBulkId> {
    let mut v = Value::String(String::new());
    let resolved: Vec<String> = path
        .split('/')
        .map(|part| {
            v = Value::String(part.to_owned());
            resolve(&mut v, ids).map(|()| v.as_str().unwrap_or_default().to_owned())
        })
        .collect::<Result<_, _>>()?;
    *path = resolved.join("/");
    Ok(())
}
