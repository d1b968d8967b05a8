//! SCIM 2.0 (RFC 7643/7644) under `/scim/v2`, for identity providers (Entra ID, Okta, OneLogin,
//! Feishu) to provision members, groups and org units.
//!
//! An adapter: it translates SCIM resources into directory change sets and applies them through
//! [`DirectoryService`]; reads go through the store's search. Each bearer token is one
//! provisioning client and one source (`scim:<token name>`).
//!
//! Layout: [`filter`] parses filters and PATCH paths; [`query`] turns filters into directory
//! searches; [`user`], [`group`] and [`orgunit`] map resources; [`patch`] applies PATCH
//! operations; [`bulk`] runs Bulk requests through the same operations; [`schemas`] is discovery.

pub mod bulk;
pub mod filter;
pub mod group;
pub mod orgunit;
pub mod patch;
pub mod query;
pub mod schemas;
pub mod user;

use std::sync::{Arc, OnceLock};

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::access::Access;
use crate::config::ScimConfig;
use crate::directory::model::{Actor, Source};
use crate::directory::{ChangeError, DirectoryError, DirectoryService};

pub const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE_USER: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const ROSTER_USER: &str = "urn:roster:params:scim:schemas:extension:roster:2.0:User";
pub const ORG_UNIT: &str = "urn:roster:params:scim:schemas:core:2.0:OrgUnit";
pub const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
pub const BULK_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:BulkResponse";
pub const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

pub const CONTENT_TYPE: &str = "application/scim+json";

/// SCIM's state: its settings, and the services once the store is ready.
#[derive(Clone)]
pub struct Scim {
    pub ready: Arc<OnceLock<Ready>>,
    pub cfg: Arc<ScimConfig>,
    pub max_body_bytes: usize,
}

/// What SCIM works with once the store is up.
pub struct Ready {
    pub directory: DirectoryService,
    /// Authenticates the clients' bearer tokens.
    pub access: Access,
}

/// The SCIM error form, for answers the HTTP middleware gives before SCIM runs
/// ([`crate::http::ErrorForm`]).
pub fn error_form(status: StatusCode, message: &str) -> Response {
    ScimError::new(status, None, message).into_response()
}

/// The SCIM routes, with token authentication. Mounted at `/scim/v2` by [`crate::app`].
pub fn router(state: Scim) -> Router {
    Router::new()
        .route("/ServiceProviderConfig", get(schemas::service_provider_config))
        .route("/ResourceTypes", get(schemas::resource_types))
        .route("/ResourceTypes/{name}", get(schemas::resource_type))
        .route("/Schemas", get(schemas::schemas))
        .route("/Schemas/{id}", get(schemas::schema))
        .route("/Users", get(user::list).post(user::create))
        .route("/Users/.search", post(user::search))
        .route("/Users/{id}", get(user::get).put(user::replace).patch(user::patch).delete(user::delete))
        .route("/Groups", get(group::list).post(group::create))
        .route("/Groups/.search", post(group::search))
        .route("/Groups/{id}", get(group::get).put(group::replace).patch(group::patch).delete(group::delete))
        .route("/OrgUnits", get(orgunit::list).post(orgunit::create))
        .route(
            "/OrgUnits/{id}",
            get(orgunit::get).put(orgunit::replace).patch(orgunit::patch).delete(orgunit::delete),
        )
        .route("/Bulk", post(bulk::bulk))
        .route("/.search", post(root_search))
        .fallback(|| async { ScimError::new(StatusCode::NOT_FOUND, None, "no such SCIM endpoint") })
        .layer(middleware::from_fn_with_state(state, authenticate))
        .layer(middleware::map_response(scim_errors_for_plain_responses))
}

/// The provisioning client behind a request: its token name, its source, its settings.
#[derive(Debug, Clone)]
pub struct Client {
    pub actor: Actor,
    pub adopt_existing: bool,
}

impl Client {
    pub fn source(&self) -> &Source {
        &self.actor.source
    }
}

/// What every SCIM operation needs: the directory, the settings, the client, and the base URL
/// for `meta.location`.
#[derive(Clone)]
pub struct Call {
    pub directory: DirectoryService,
    pub cfg: Arc<ScimConfig>,
    pub client: Client,
    pub base: String,
    /// The largest request body accepted (`http.max_body_bytes`), advertised as maxPayloadSize.
    pub max_payload: usize,
}

impl<S: Send + Sync> FromRequestParts<S> for Call {
    type Rejection = ScimError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Call, ScimError> {
        parts
            .extensions
            .get::<Call>()
            .cloned()
            .ok_or_else(|| ScimError::new(StatusCode::UNAUTHORIZED, None, "authentication required"))
    }
}

async fn authenticate(State(state): State<Scim>, mut req: Request, next: Next) -> Response {
    let Some(ready) = state.ready.get() else {
        return ScimError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            "the directory is starting; try again shortly",
        )
        .into_response();
    };
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return unauthorized("a bearer token is required (rosterd token create --name NAME)");
    };
    let info = match ready.access.authenticate_token(token).await {
        // Only a SCIM client's token: an archive token provisions nothing.
        Ok(Some(info)) if info.kind == crate::access::store::TokenKind::Scim => info,
        Ok(Some(_)) => return unauthorized("the bearer token is not a SCIM client's token"),
        Ok(None) => return unauthorized("the bearer token is not valid or has been revoked"),
        Err(e) => return ScimError::from(e).into_response(),
    };
    let source = Source::parse(&format!("scim:{}", info.name)).expect("token names are valid source names");
    let host =
        req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost").to_owned();
    let ctx = Call {
        directory: ready.directory.clone(),
        cfg: state.cfg.clone(),
        client: Client { actor: Actor::new(source, info.name), adopt_existing: info.adopt_existing },
        base: format!("http://{host}/scim/v2"),
        max_payload: state.max_body_bytes,
    };
    req.extensions_mut().insert(ctx);
    next.run(req).await
}

fn unauthorized(detail: &str) -> Response {
    let mut r = ScimError::new(StatusCode::UNAUTHORIZED, None, detail).into_response();
    r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"roster\""));
    r
}

/// Limits and timeouts answer before any SCIM code runs; give those answers the SCIM error form
/// too, so clients can parse every error the same way.
async fn scim_errors_for_plain_responses(r: Response) -> Response {
    let status = r.status();
    let is_scim = r
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(CONTENT_TYPE.as_bytes()));
    if is_scim || !(status.is_client_error() || status.is_server_error()) {
        return r;
    }
    let detail = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "the request body is larger than maxPayloadSize".to_owned(),
        StatusCode::REQUEST_TIMEOUT => "the request took too long".to_owned(),
        StatusCode::METHOD_NOT_ALLOWED => "this method is not supported on this endpoint".to_owned(),
        other => other.canonical_reason().unwrap_or("error").to_owned(),
    };
    let mut out = ScimError::new(status, None, detail).into_response();
    if let Some(id) = r.headers().get("x-request-id") {
        out.headers_mut().insert("x-request-id", id.clone());
    }
    out
}

async fn root_search(ctx: Call, body: Bytes) -> Result<Response, ScimError> {
    let _ = (ctx, body);
    Err(ScimError::new(
        StatusCode::FORBIDDEN,
        None,
        "search across resource types is not supported; POST to /Users/.search or /Groups/.search",
    ))
}

/// A SCIM error (RFC 7644 §3.12): status, optional `scimType`, and a detail for people.
#[derive(Debug)]
pub struct ScimError {
    pub status: StatusCode,
    pub scim_type: Option<&'static str>,
    pub detail: String,
}

impl ScimError {
    pub fn new(status: StatusCode, scim_type: Option<&'static str>, detail: impl Into<String>) -> ScimError {
        ScimError { status, scim_type, detail: detail.into() }
    }
    pub fn bad(scim_type: &'static str, detail: impl Into<String>) -> ScimError {
        ScimError::new(StatusCode::BAD_REQUEST, Some(scim_type), detail)
    }
    pub fn not_found(what: &str, id: &str) -> ScimError {
        ScimError::new(StatusCode::NOT_FOUND, None, format!("{what} {id} not found"))
    }

    pub fn body(&self) -> Value {
        let mut v =
            json!({ "schemas": [ERROR], "status": self.status.as_u16().to_string(), "detail": self.detail });
        if let Some(t) = self.scim_type {
            v["scimType"] = json!(t);
        }
        v
    }
}

impl From<DirectoryError> for ScimError {
    fn from(e: DirectoryError) -> ScimError {
        let detail = e.to_string();
        match e {
            DirectoryError::Invalid { .. } => ScimError::bad("invalidValue", detail),
            DirectoryError::NotFound { .. } => ScimError::new(StatusCode::NOT_FOUND, None, detail),
            DirectoryError::Conflict { .. } => {
                ScimError::new(StatusCode::CONFLICT, Some("uniqueness"), detail)
            }
            DirectoryError::Cycle { .. } | DirectoryError::NotEmpty { .. } => {
                ScimError::new(StatusCode::CONFLICT, None, detail)
            }
            DirectoryError::NumberUnavailable { .. } | DirectoryError::NumbersExhausted { .. } => {
                ScimError::new(StatusCode::CONFLICT, None, detail)
            }
            DirectoryError::NotOwner { .. } | DirectoryError::Protected { .. } => {
                ScimError::new(StatusCode::FORBIDDEN, None, detail)
            }
            DirectoryError::Stale { .. } => ScimError::new(StatusCode::PRECONDITION_FAILED, None, detail),
            DirectoryError::NoEnterprise => ScimError::new(StatusCode::SERVICE_UNAVAILABLE, None, detail),
            DirectoryError::Store(inner) => {
                // The store's text may name tables: log it, tell the client only what it needs.
                tracing::error!(error = %inner, "SCIM: store error");
                ScimError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    None,
                    "the directory store is not available; nothing was changed",
                )
            }
        }
    }
}

impl From<ChangeError> for ScimError {
    fn from(e: ChangeError) -> ScimError {
        e.error.into()
    }
}

impl From<crate::directory::store::StoreError> for ScimError {
    fn from(e: crate::directory::store::StoreError) -> ScimError {
        DirectoryError::Store(e).into()
    }
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        scim_json(self.status, &self.body())
    }
}

/// A SCIM JSON response.
pub fn scim_json(status: StatusCode, body: &Value) -> Response {
    let mut r = (status, Json(body)).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    r
}

/// A resource response with its `ETag` and, for 201, its `Location`.
pub fn resource(status: StatusCode, body: Value) -> Response {
    let mut r = scim_json(status, &body);
    if let Some(v) = body["meta"]["version"].as_str().and_then(|v| HeaderValue::from_str(v).ok()) {
        r.headers_mut().insert(header::ETAG, v);
    }
    if status == StatusCode::CREATED
        && let Some(l) = body["meta"]["location"].as_str().and_then(|v| HeaderValue::from_str(v).ok())
    {
        r.headers_mut().insert(header::LOCATION, l);
    }
    r
}

/// Parses a request body as a JSON object (`application/scim+json` or `application/json`),
/// with SCIM errors for everything else.
pub fn json_body(headers: &HeaderMap, body: &[u8]) -> Result<Value, ScimError> {
    if let Some(ct) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
        let ct = ct.to_ascii_lowercase();
        if !(ct.starts_with(CONTENT_TYPE) || ct.starts_with("application/json")) {
            return Err(ScimError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                None,
                format!("content type {ct} is not accepted; send application/scim+json"),
            ));
        }
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ScimError::bad("invalidSyntax", format!("the body is not valid JSON: {e}")))?;
    if !v.is_object() {
        return Err(ScimError::bad("invalidSyntax", "the body must be a JSON object"));
    }
    Ok(v)
}

/// The version a resource is at, as an ETag (`W/"3"`).
pub fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

/// Checks `If-Match` against the current version: 412 when the client's copy is stale.
pub fn check_if_match(headers: &HeaderMap, version: i64) -> Result<(), ScimError> {
    let Some(want) = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()) else { return Ok(()) };
    let current = etag(version);
    let strong = format!("\"{version}\"");
    if want.split(',').map(str::trim).any(|t| t == "*" || t == current || t == strong) {
        return Ok(());
    }
    Err(ScimError::new(
        StatusCode::PRECONDITION_FAILED,
        None,
        format!("the resource has changed (now at version {current}); fetch it again"),
    ))
}

/// Lower-cases every object key, recursively: SCIM attribute names are case-insensitive.
pub fn lower_keys(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (k.to_lowercase(), lower_keys(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(lower_keys).collect()),
        other => other,
    }
}

/// `attributes` / `excludedAttributes` (RFC 7644 §3.4.2.5) applied to one resource. `id`,
/// `schemas` and `meta` are always returned.
pub fn project(mut resource: Value, attributes: Option<&str>, excluded: Option<&str>) -> Value {
    let names = |list: &str| -> Vec<(String, Option<String>)> {
        list.split(',')
            .map(|a| a.trim().to_lowercase())
            .filter(|a| !a.is_empty())
            .map(|a| {
                // Strip a schema URN prefix, keeping the attribute (and sub-attribute).
                let a = if a.starts_with("urn:") { a.rsplit(':').next().unwrap_or("").to_owned() } else { a };
                match a.split_once('.') {
                    Some((p, c)) => (p.to_owned(), Some(c.to_owned())),
                    None => (a, None),
                }
            })
            .collect()
    };
    let Some(obj) = resource.as_object_mut() else { return resource };
    let always = ["id", "schemas", "meta"];
    if let Some(list) = attributes {
        let keep = names(list);
        let extension_keys: Vec<String> = obj.keys().filter(|k| k.starts_with("urn:")).cloned().collect();
        obj.retain(|k, _| {
            always.contains(&k.as_str())
                || k.starts_with("urn:")
                || keep.iter().any(|(p, _)| p.eq_ignore_ascii_case(k))
        });
        for k in extension_keys {
            if let Some(ext) = obj.get_mut(&k).and_then(Value::as_object_mut) {
                ext.retain(|ek, _| keep.iter().any(|(p, _)| p.eq_ignore_ascii_case(ek)));
                if ext.is_empty() {
                    obj.remove(&k);
                }
            }
        }
        for (p, sub) in &keep {
            if let Some(sub) = sub {
                let key = obj.keys().find(|k| k.eq_ignore_ascii_case(p)).cloned();
                if let Some(Value::Object(inner)) = key.and_then(|k| obj.get_mut(&k)) {
                    inner.retain(|ik, _| ik.eq_ignore_ascii_case(sub));
                }
            }
        }
    }
    if let Some(list) = excluded {
        for (p, sub) in names(list) {
            if always.contains(&p.as_str()) {
                continue;
            }
            let targets: Vec<String> = obj.keys().cloned().collect();
            for k in targets {
                if k.starts_with("urn:") {
                    if let Some(ext) = obj.get_mut(&k).and_then(Value::as_object_mut) {
                        ext.retain(|ek, _| !ek.eq_ignore_ascii_case(&p));
                    }
                } else if k.eq_ignore_ascii_case(&p) {
                    match &sub {
                        None => {
                            obj.remove(&k);
                        }
                        Some(sub) => {
                            if let Some(Value::Object(inner)) = obj.get_mut(&k) {
                                inner.retain(|ik, _| !ik.eq_ignore_ascii_case(sub));
                            }
                        }
                    }
                }
            }
        }
    }
    resource
}

/// Paging and projection parameters of a list or search (query string or `.search` body).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListParams {
    pub filter: Option<String>,
    pub sort_by: Option<String>,
    pub sort_order: Option<String>,
    pub start_index: Option<i64>,
    pub count: Option<i64>,
    pub attributes: Option<String>,
    pub excluded_attributes: Option<String>,
}

impl ListParams {
    /// Reads a `.search` body (attribute lists may be arrays there).
    pub fn from_search_body(v: &Value) -> Result<ListParams, ScimError> {
        let v = lower_keys(v.clone());
        let text = |k: &str| -> Result<Option<String>, ScimError> {
            match &v[k] {
                Value::Null => Ok(None),
                Value::String(s) => Ok(Some(s.clone())),
                Value::Array(a) => Ok(Some(a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","))),
                _ => Err(ScimError::bad("invalidSyntax", format!("{k} must be a string"))),
            }
        };
        let int = |k: &str| -> Result<Option<i64>, ScimError> {
            match &v[k] {
                Value::Null => Ok(None),
                Value::Number(n) => n
                    .as_i64()
                    .map(Some)
                    .ok_or_else(|| ScimError::bad("invalidValue", format!("{k} must be an integer"))),
                Value::String(s) => s
                    .parse()
                    .map(Some)
                    .map_err(|_| ScimError::bad("invalidValue", format!("{k} must be an integer"))),
                _ => Err(ScimError::bad("invalidValue", format!("{k} must be an integer"))),
            }
        };
        Ok(ListParams {
            filter: text("filter")?,
            sort_by: text("sortby")?,
            sort_order: text("sortorder")?,
            start_index: int("startindex")?,
            count: int("count")?,
            attributes: text("attributes")?,
            excluded_attributes: text("excludedattributes")?,
        })
    }

    /// `(offset, limit, startIndex)`: startIndex is 1-based and below 1 means 1; count is at
    /// most `max_results` and below 0 means 0 (RFC 7644 §3.4.2.4).
    pub fn window(&self, max_results: i64) -> (i64, i64, i64) {
        let start = self.start_index.unwrap_or(1).max(1);
        let count = self.count.unwrap_or(max_results).clamp(0, max_results);
        (start - 1, count, start)
    }

    pub fn descending(&self) -> Result<bool, ScimError> {
        match self.sort_order.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("ascending") => Ok(false),
            Some("descending") => Ok(true),
            Some(other) => Err(ScimError::bad(
                "invalidValue",
                format!("sortOrder {other:?} is not ascending or descending"),
            )),
        }
    }
}

/// A ListResponse of already-projected resources.
pub fn list_response(total: i64, start: i64, resources: Vec<Value>) -> Response {
    scim_json(
        StatusCode::OK,
        &json!({
            "schemas": [LIST_RESPONSE],
            "totalResults": total,
            "itemsPerPage": resources.len(),
            "startIndex": start,
            "Resources": resources,
        }),
    )
}

/// Reads a boolean the way real clients send it: `true`, or the string `"True"`.
pub fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projection_keeps_the_always_returned_attributes() {
        let r = json!({"schemas": [USER], "id": "1", "userName": "a", "name": {"givenName": "A", "familyName": "B"},
                       "meta": {}, ENTERPRISE_USER: {"employeeNumber": "7", "department": "D"}});
        let p = project(
            r.clone(),
            Some(
                "userName,name.givenName,urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber",
            ),
            None,
        );
        assert_eq!(p["userName"], "a");
        assert_eq!(p["name"], json!({"givenName": "A"}));
        assert_eq!(p[ENTERPRISE_USER], json!({"employeeNumber": "7"}));
        assert_eq!(p["id"], "1");
        let p = project(r, None, Some("name,department"));
        assert!(p.get("name").is_none());
        assert_eq!(p[ENTERPRISE_USER], json!({"employeeNumber": "7"}));
    }

    #[test]
    fn windows_follow_the_rfc() {
        let p = ListParams { start_index: Some(0), count: Some(5000), ..Default::default() };
        assert_eq!(p.window(100), (0, 100, 1));
        let p = ListParams { start_index: Some(11), count: Some(-3), ..Default::default() };
        assert_eq!(p.window(100), (10, 0, 11));
    }

    #[test]
    fn if_match() {
        let mut h = HeaderMap::new();
        assert!(check_if_match(&h, 3).is_ok());
        h.insert(header::IF_MATCH, HeaderValue::from_static("W/\"3\""));
        assert!(check_if_match(&h, 3).is_ok());
        assert_eq!(check_if_match(&h, 4).unwrap_err().status, StatusCode::PRECONDITION_FAILED);
        h.insert(header::IF_MATCH, HeaderValue::from_static("*"));
        assert!(check_if_match(&h, 9).is_ok());
    }
}
