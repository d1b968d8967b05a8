//! Discovery (RFC 7644 §4): ServiceProviderConfig, ResourceTypes and Schemas, describing what
//! this server really supports.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::{Call, ENTERPRISE_USER, GROUP, ORG_UNIT, ROSTER_USER, ScimError, USER, list_response, scim_json};

pub async fn service_provider_config(ctx: Call) -> Response {
    scim_json(
        StatusCode::OK,
        &json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "documentationUri": "https://github.com/roster/roster#scim",
            "patch": { "supported": true },
            "bulk": { "supported": true, "maxOperations": ctx.cfg.max_operations, "maxPayloadSize": ctx.max_payload },
            "filter": { "supported": true, "maxResults": ctx.cfg.max_results },
            "changePassword": { "supported": true },
            "sort": { "supported": true },
            "etag": { "supported": true },
            "authenticationSchemes": [{
                "type": "oauthbearertoken",
                "name": "Bearer token",
                "description": "A token from `rosterd token create --name CLIENT`, sent as `Authorization: Bearer TOKEN`",
                "primary": true,
            }],
            "meta": { "resourceType": "ServiceProviderConfig", "location": format!("{}/ServiceProviderConfig", ctx.base) },
        }),
    )
}

fn resource_type_list(base: &str) -> Vec<Value> {
    let rt = |id: &str, endpoint: &str, schema: &str, extensions: Value| {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": id, "name": id, "endpoint": endpoint, "schema": schema,
            "schemaExtensions": extensions,
            "meta": { "resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/{id}") },
        })
    };
    vec![
        rt(
            "User",
            "/Users",
            USER,
            json!([{ "schema": ENTERPRISE_USER, "required": false }, { "schema": ROSTER_USER, "required": false }]),
        ),
        rt("Group", "/Groups", GROUP, json!([])),
        rt("OrgUnit", "/OrgUnits", ORG_UNIT, json!([])),
    ]
}

pub async fn resource_types(ctx: Call) -> Response {
    let all = resource_type_list(&ctx.base);
    list_response(all.len() as i64, 1, all)
}

pub async fn resource_type(ctx: Call, Path(name): Path<String>) -> Result<Response, ScimError> {
    resource_type_list(&ctx.base)
        .into_iter()
        .find(|r| r["id"].as_str().is_some_and(|id| id.eq_ignore_ascii_case(&name)))
        .map(|r| scim_json(StatusCode::OK, &r))
        .ok_or_else(|| ScimError::not_found("resource type", &name))
}

/// One attribute definition (RFC 7643 §7).
fn attr(
    name: &str,
    kind: &str,
    multi: bool,
    mutability: &str,
    case_exact: bool,
    uniqueness: &str,
    sub: Vec<Value>,
) -> Value {
    let mut a = json!({
        "name": name, "type": kind, "multiValued": multi, "required": name == "userName" || name == "displayName",
        "caseExact": case_exact, "mutability": mutability,
        "returned": if name == "password" { "never" } else { "default" }, "uniqueness": uniqueness,
    });
    if !sub.is_empty() {
        a["subAttributes"] = json!(sub);
    }
    a
}

fn s(name: &str) -> Value {
    attr(name, "string", false, "readWrite", false, "none", vec![])
}

fn schema_list(base: &str) -> Vec<Value> {
    let schema = |id: &str, name: &str, attributes: Vec<Value>| {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
            "id": id, "name": name, "attributes": attributes,
            "meta": { "resourceType": "Schema", "location": format!("{base}/Schemas/{id}") },
        })
    };
    let multi = |name: &str, value_kind: &str| {
        attr(
            name,
            "complex",
            true,
            "readWrite",
            false,
            "none",
            vec![
                attr("value", value_kind, false, "readWrite", false, "none", vec![]),
                s("type"),
                attr("primary", "boolean", false, "readWrite", false, "none", vec![]),
            ],
        )
    };
    let reference = |name: &str, multi_valued: bool, mutability: &str| {
        attr(
            name,
            "complex",
            multi_valued,
            mutability,
            false,
            "none",
            vec![
                attr("value", "string", false, mutability, true, "none", vec![]),
                s("display"),
                attr("$ref", "reference", false, mutability, true, "none", vec![]),
            ],
        )
    };
    vec![
        schema(
            USER,
            "User",
            vec![
                attr("userName", "string", false, "readWrite", false, "server", vec![]),
                attr("externalId", "string", false, "readWrite", true, "none", vec![]),
                attr(
                    "name",
                    "complex",
                    false,
                    "readWrite",
                    false,
                    "none",
                    vec![s("formatted"), s("givenName"), s("familyName")],
                ),
                s("displayName"),
                s("title"),
                attr("active", "boolean", false, "readWrite", false, "none", vec![]),
                attr("password", "string", false, "writeOnly", true, "none", vec![]),
                multi("emails", "string"),
                multi("phoneNumbers", "string"),
            ],
        ),
        schema(
            ENTERPRISE_USER,
            "EnterpriseUser",
            vec![
                s("employeeNumber"),
                s("department"),
                s("organization"),
                s("division"),
                s("costCenter"),
                reference("manager", false, "readWrite"),
            ],
        ),
        schema(
            ROSTER_USER,
            "RosterUser",
            vec![
                attr("accountNumber", "integer", false, "readOnly", false, "server", vec![]),
                reference("orgUnits", true, "readWrite"),
                attr("mailbox", "string", false, "readOnly", false, "server", vec![]),
            ],
        ),
        schema(
            GROUP,
            "Group",
            vec![
                s("displayName"),
                attr("externalId", "string", false, "readWrite", true, "none", vec![]),
                reference("members", true, "readWrite"),
            ],
        ),
        schema(
            ORG_UNIT,
            "OrgUnit",
            vec![
                s("displayName"),
                attr("externalId", "string", false, "readWrite", true, "none", vec![]),
                reference("parent", false, "readWrite"),
                attr("position", "integer", false, "readWrite", false, "none", vec![]),
                attr("path", "string", false, "readOnly", false, "none", vec![]),
            ],
        ),
    ]
}

pub async fn schemas(ctx: Call) -> Response {
    let all = schema_list(&ctx.base);
    list_response(all.len() as i64, 1, all)
}

pub async fn schema(ctx: Call, Path(id): Path<String>) -> Result<Response, ScimError> {
    schema_list(&ctx.base)
        .into_iter()
        .find(|s| s["id"].as_str().is_some_and(|s| s.eq_ignore_ascii_case(&id)))
        .map(|s| scim_json(StatusCode::OK, &s))
        .ok_or_else(|| ScimError::not_found("schema", &id))
}
