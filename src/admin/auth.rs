//! Console sign-in, sessions, CSRF and permissions.
//!
//! - The session cookie holds a random secret; the store keeps only its SHA-256, with the
//!   principal, the CSRF token, and idle and absolute expiry times. The cookie is HttpOnly,
//!   SameSite=Strict and (by default) Secure.
//! - Every state-changing request under `/admin` must carry the session's CSRF token (form
//!   field `_csrf`, or the `X-CSRF-Token` header htmx sends); the sign-in form carries a
//!   token of its own, bound to a short-lived cookie.
//! - Failed sign-ins count per login name and per client address; too many within the
//!   window lock sign-in for a while. Every sign-in, failure, lockout and refusal is audited.
//! - [`Principal`] answers "may this person do that, there?" for every route and action.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::Form;
use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::i18n::Lang;
use super::views::{self, Chrome};
use super::{Failure, directory};
use crate::directory::DirectoryService;
use crate::directory::model::{Actor, Member, MemberState, Permission, Permissions, Source};
use crate::http::AppState;
use crate::store::{AdminSession, SignInFailures};

pub const SESSION_COOKIE: &str = "roster_session";
const LOGIN_COOKIE: &str = "roster_login";

/// Who is signed in.
#[derive(Debug, Clone, PartialEq)]
pub enum Who {
    SuperAdmin,
    Member { id: Uuid, login_name: String, display_name: String },
}

/// One role grant as the permission checks see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub permissions: Permissions,
    /// `None`: the whole directory.
    pub scope: Option<Uuid>,
}

/// The signed-in person and what their roles allow.
#[derive(Debug, Clone)]
pub struct Principal {
    pub who: Who,
    pub grants: Vec<Grant>,
    pub csrf: String,
    pub lang: Lang,
    session_hash: String,
}

impl Principal {
    pub fn is_super(&self) -> bool {
        self.who == Who::SuperAdmin
    }

    /// How the audit log names them.
    pub fn actor(&self) -> Actor {
        match &self.who {
            Who::SuperAdmin => Actor::new(Source::console(), "super-admin"),
            Who::Member { login_name, .. } => Actor::new(Source::console(), login_name.clone()),
        }
    }

    pub fn name(&self) -> String {
        match &self.who {
            Who::SuperAdmin => "super-admin".into(),
            Who::Member { display_name, login_name, .. } => format!("{display_name} ({login_name})"),
        }
    }

    /// Holds `p` somewhere (for menus and pages that list what is in scope).
    pub fn has(&self, p: Permission) -> bool {
        self.is_super()
            || self.grants.iter().any(|g| g.permissions.contains(p) && (p.scopable() || g.scope.is_none()))
    }

    /// Holds `p` over the whole directory.
    pub fn has_everywhere(&self, p: Permission) -> bool {
        self.is_super() || self.grants.iter().any(|g| g.permissions.contains(p) && g.scope.is_none())
    }

    /// The subtrees `p` is held over; `None` when it is held everywhere.
    pub fn scopes(&self, p: Permission) -> Option<Vec<Uuid>> {
        if self.has_everywhere(p) {
            return None;
        }
        Some(self.grants.iter().filter(|g| g.permissions.contains(p)).filter_map(|g| g.scope).collect())
    }

    /// Holds `p` at a unit whose ancestors (nearest first, the unit itself included) are
    /// `path`. A unit-less object (`path` empty) needs `p` everywhere.
    pub fn has_at(&self, p: Permission, path: &[Uuid]) -> bool {
        match self.scopes(p) {
            None => true,
            Some(scopes) => scopes.iter().any(|s| path.contains(s)),
        }
    }

    /// Holds `p` at the unit `unit` (reads its ancestors).
    pub async fn has_at_unit(
        &self,
        d: &DirectoryService,
        p: Permission,
        unit: Option<Uuid>,
    ) -> Result<bool, Failure> {
        if self.has_everywhere(p) {
            return Ok(true);
        }
        let Some(unit) = unit else { return Ok(false) };
        let path = d.store().org_unit_ancestors(unit).await?;
        Ok(self.has_at(p, &path))
    }

    /// Holds `p` over a member: at its primary unit or any further unit.
    pub async fn has_for_member(
        &self,
        d: &DirectoryService,
        p: Permission,
        m: &Member,
    ) -> Result<bool, Failure> {
        if self.has_everywhere(p) {
            return Ok(true);
        }
        for unit in m.primary_org_unit_id.iter().chain(&m.org_unit_ids) {
            if self.has_at_unit(d, p, Some(*unit)).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Refuses unless `allowed`: the refusal is audited and answered with the 403 page.
    pub async fn require(&self, d: &DirectoryService, allowed: bool, what: &str) -> Result<(), Failure> {
        if allowed {
            return Ok(());
        }
        let _ = d.record(&self.actor(), "console.denied", "console", None, json!({ "action": what })).await;
        tracing::info!(who = %self.actor().who, action = what, "console: permission denied");
        Err(Failure::Forbidden)
    }

    pub fn chrome(&self, title: &str) -> Chrome {
        Chrome::new(self, title)
    }
}

/// Every console page except sign-in takes a [`Principal`]: signed in, session not expired,
/// member still active. Touches the session (idle expiry) at most once a minute.
impl FromRequestParts<AppState> for Principal {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Principal, Failure> {
        let next = original_uri(&parts.extensions, &parts.uri);
        let sign_in = || Failure::SignIn { next: next.clone() };
        let d = directory(state)?;
        let Some(secret) = cookie(&parts.headers, SESSION_COOKIE) else { return Err(sign_in()) };
        let hash = crate::access::tokens::hash(&secret);
        let Some(session) = d.store().session(&hash).await? else { return Err(sign_in()) };
        let now = Utc::now();
        let cfg = &state.admin;
        let absolute = session.created_at + Duration::hours(cfg.max_session_hours);
        if session.expires_at <= now || absolute <= now {
            d.store().session_delete(&hash).await?;
            return Err(sign_in());
        }
        let (who, grants) = match session.member_id {
            None => (Who::SuperAdmin, Vec::new()),
            Some(id) => {
                let Some(m) = d.store().member(id).await? else {
                    d.store().session_delete(&hash).await?;
                    return Err(sign_in());
                };
                if m.state != MemberState::Active {
                    d.store().session_delete(&hash).await?;
                    return Err(sign_in());
                }
                (
                    Who::Member { id, login_name: m.login_name, display_name: m.display_name },
                    grants_of(d, id).await?,
                )
            }
        };
        if now - session.last_seen_at > Duration::seconds(60) {
            let expires = (now + Duration::minutes(cfg.idle_minutes)).min(absolute);
            d.store().session_touch(&hash, now, expires).await?;
        }
        Ok(Principal {
            who,
            grants,
            csrf: session.csrf,
            lang: Lang::from_headers(&parts.headers),
            session_hash: hash,
        })
    }
}

async fn grants_of(d: &DirectoryService, member: Uuid) -> Result<Vec<Grant>, Failure> {
    let mut out = Vec::new();
    let mut roles = HashMap::new();
    for g in d.store().member_grants(member).await? {
        if !roles.contains_key(&g.role_id)
            && let Some(r) = d.store().role(g.role_id).await?
        {
            roles.insert(g.role_id, r.permissions);
        }
        if let Some(p) = roles.get(&g.role_id) {
            out.push(Grant { permissions: p.clone(), scope: g.scope_unit_id });
        }
    }
    Ok(out)
}

/// The path and query as the client sent them (the nested router sees them without `/admin`).
fn original_uri(ext: &axum::http::Extensions, uri: &axum::http::Uri) -> String {
    let uri = ext.get::<axum::extract::OriginalUri>().map(|o| &o.0).unwrap_or(uri);
    uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default()
}

/// A cookie's value from the request.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

fn set_cookie(name: &str, value: &str, max_age: Option<i64>, secure: bool) -> String {
    let mut c = format!("{name}={value}; Path=/admin; HttpOnly; SameSite=Strict");
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    if secure {
        c.push_str("; Secure");
    }
    c
}

fn random_token() -> String {
    crate::access::tokens::generate().0
}

/// Refuses a state-changing request without the right CSRF token (403), and one whose
/// `Origin` is another site. The sign-in form's token is checked by [`login`] itself.
pub async fn csrf_guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    if let (Some(origin), Some(host)) = (
        req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok()),
        req.headers().get(header::HOST).and_then(|v| v.to_str().ok()),
    ) && origin != "null"
        && origin.split_once("://").map(|(_, h)| h) != Some(host)
    {
        return Failure::Bad("cross-site request refused".into()).into_response();
    }
    if req.uri().path().ends_with("/login") {
        return next.run(req).await;
    }
    let Some(d) = state.directory.get() else { return Failure::Unavailable.into_response() };
    let expected = match cookie(req.headers(), SESSION_COOKIE) {
        Some(secret) => match d.store().session(&crate::access::tokens::hash(&secret)).await {
            Ok(Some(s)) => s.csrf,
            Ok(None) => {
                let next = original_uri(req.extensions(), req.uri());
                return Failure::SignIn { next }.into_response();
            }
            Err(e) => return Failure::from(e).into_response(),
        },
        None => return Failure::SignIn { next: original_uri(req.extensions(), req.uri()) }.into_response(),
    };
    let header_token = req.headers().get("x-csrf-token").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let query_token = req.uri().query().and_then(|q| form_value(q, "_csrf"));
    let (req, token) = match header_token.or(query_token) {
        Some(t) => (req, Some(t)),
        None => {
            // Read the urlencoded body for `_csrf`, then hand the body on unchanged.
            let (parts, body) = req.into_parts();
            let bytes = match axum::body::to_bytes(body, state.max_body_bytes).await {
                Ok(b) => b,
                Err(_) => return Failure::Bad("the form is too large".into()).into_response(),
            };
            let token = std::str::from_utf8(&bytes).ok().and_then(|b| form_value(b, "_csrf"));
            (Request::from_parts(parts, Body::from(bytes)), token)
        }
    };
    if token.as_deref().is_none_or(|t| !constant_time_eq(t, &expected)) {
        return Failure::Bad(
            "the form has expired or did not come from this console; reload the page and try again".into(),
        )
        .into_response();
    }
    next.run(req).await
}

fn form_value(encoded: &str, key: &str) -> Option<String> {
    encoded.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == key).map(|(_, v)| v.to_owned())
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Debug, Default, Deserialize)]
pub struct LoginQuery {
    #[serde(default)]
    next: Option<String>,
}

/// The sign-in page. Sets a short-lived cookie whose value the form repeats (the sign-in
/// form's CSRF token: there is no session yet).
pub async fn login_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Response {
    let token = random_token();
    let page = views::Login::new(Lang::from_headers(&headers), &token, q.next.as_deref(), "", None);
    login_response(&state, page, &token, axum::http::StatusCode::OK)
}

fn login_response(
    state: &AppState,
    page: views::Login,
    token: &str,
    status: axum::http::StatusCode,
) -> Response {
    let cookie = set_cookie(LOGIN_COOKIE, token, Some(1800), state.admin.secure_cookie);
    (status, [(header::SET_COOKIE, cookie)], views::html(&page)).into_response()
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    account: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    _csrf: String,
}

/// Signs in the super admin (enterprise id + super password) or a member (account number or
/// login name + local or directory password).
pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Result<Response, Failure> {
    let lang = Lang::from_headers(&headers);
    let d = directory(&state)?;
    let retry = |error: &str, status| {
        let token = random_token();
        let page = views::Login::new(lang, &token, f.next.as_deref(), f.account.trim(), Some(lang.t(error)));
        login_response(&state, page, &token, status)
    };
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !constant_time_eq(&f._csrf, &expected) {
        return Ok(retry("login.expired", axum::http::StatusCode::FORBIDDEN));
    }
    let account = f.account.trim().to_lowercase();
    if account.is_empty() || f.password.is_empty() {
        return Ok(retry("login.missing", axum::http::StatusCode::UNPROCESSABLE_ENTITY));
    }
    let now = Utc::now();
    let keys = [format!("login:{account}"), format!("ip:{}", addr.ip())];
    for key in &keys {
        if let Some(f) = d.store().sign_in_failures(key).await?
            && f.locked_until.is_some_and(|t| t > now)
        {
            let actor = Actor::new(Source::console(), account.clone());
            let _ = d
                .record(
                    &actor,
                    "console.sign_in_locked",
                    "console",
                    None,
                    json!({ "ip": addr.ip().to_string() }),
                )
                .await;
            return Ok(retry("login.locked", axum::http::StatusCode::TOO_MANY_REQUESTS));
        }
    }
    let verified = match verify(&state, d, &account, &f.password).await {
        Err(Failure::Unavailable) if d.store().ping().await.is_ok() => {
            // The member's LDAP directory, not our store, could not be asked.
            return Ok(retry("login.directory_down", axum::http::StatusCode::SERVICE_UNAVAILABLE));
        }
        other => other?,
    };
    let Some(member_id) = verified else {
        let locked = count_failure(&state, d, &keys, now).await?;
        let actor = Actor::new(Source::console(), account.clone());
        let _ = d
            .record(
                &actor,
                "console.sign_in_failed",
                "console",
                None,
                json!({ "ip": addr.ip().to_string(), "locked": locked }),
            )
            .await;
        let error = if locked { "login.locked" } else { "login.failed" };
        return Ok(retry(error, axum::http::StatusCode::UNAUTHORIZED));
    };
    d.store().sign_in_failures_clear(&keys[0]).await?;
    let secret = random_token();
    let session = AdminSession {
        id_hash: crate::access::tokens::hash(&secret),
        member_id,
        csrf: random_token(),
        created_at: now,
        expires_at: now + Duration::minutes(state.admin.idle_minutes),
        last_seen_at: now,
        ip: addr.ip().to_string(),
    };
    d.store().session_insert(&session).await?;
    let _ = d.store().sessions_purge(now).await;
    let who = match member_id {
        None => "super-admin".to_owned(),
        Some(_) => account.clone(),
    };
    d.record(
        &Actor::new(Source::console(), who),
        "console.sign_in",
        "console",
        None,
        json!({ "ip": addr.ip().to_string() }),
    )
    .await
    .map_err(|e| Failure::from_directory(&e))?;
    let must_change =
        member_id.is_none() && d.store().enterprise().await?.is_some_and(|e| e.password_must_change);
    let to = if must_change {
        "/admin/password".to_owned()
    } else {
        f.next
            .filter(|n| n.starts_with("/admin") && !n.starts_with("//") && !n.contains("://"))
            .unwrap_or("/admin".into())
    };
    let cookie = set_cookie(SESSION_COOKIE, &secret, None, state.admin.secure_cookie);
    let clear = set_cookie(LOGIN_COOKIE, "", Some(0), state.admin.secure_cookie);
    let mut res = super::see_other(&to);
    res.headers_mut().append(header::SET_COOKIE, cookie.parse().expect("a valid header value"));
    res.headers_mut().append(header::SET_COOKIE, clear.parse().expect("a valid header value"));
    Ok(res)
}

/// `Some(None)`: the super admin; `Some(Some(id))`: a member; `None`: wrong credentials.
async fn verify(
    state: &AppState,
    d: &DirectoryService,
    account: &str,
    password: &str,
) -> Result<Option<Option<Uuid>>, Failure> {
    let Some(e) = d.store().enterprise().await? else { return Err(Failure::Unavailable) };
    if account == e.enterprise_id {
        let hash = d.store().super_password_hash().await?.unwrap_or_default();
        return Ok(check_hash(password, hash).await.then_some(None));
    }
    let member = match account.parse::<i64>() {
        Ok(n) => d.store().member_by_number(n).await?,
        Err(_) => match crate::directory::validate::login_name(account, &e.mail_domain) {
            Ok(login) => d.store().member_by_login(&login).await?,
            Err(_) => None,
        },
    };
    let Some(m) = member else {
        // Spend the same time as a real check, so timing does not tell who exists.
        check_hash(password, dummy_hash().to_owned()).await;
        return Ok(None);
    };
    if m.state != MemberState::Active {
        return Ok(None);
    }
    if let Some(source) = m.source.as_str().strip_prefix("ldap:")
        && let Some(src) = state.config.sync.ldap.iter().find(|s| s.name == source)
        && let Some(anchor) = &m.anchor
    {
        return match crate::sync::ldap::verify_password(src, anchor, password).await {
            Ok(ok) => Ok(ok.then_some(Some(m.id))),
            Err(e) => {
                tracing::warn!(source, error = %e, "console: directory sign-in could not be checked");
                Err(Failure::Unavailable)
            }
        };
    }
    let hash = d.store().member_password_hash(m.id).await?.unwrap_or_default();
    Ok(check_hash(password, hash).await.then_some(Some(m.id)))
}

/// An argon2 hash of a random password, to spend time on for unknown accounts.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| crate::access::password::hash(&crate::access::password::generate()))
}

async fn check_hash(password: &str, hash: String) -> bool {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || !hash.is_empty() && crate::access::password::verify(&password, &hash))
        .await
        .unwrap_or(false)
}

/// Counts a failure under each key; true when this one locked sign-in.
async fn count_failure(
    state: &AppState,
    d: &DirectoryService,
    keys: &[String],
    now: DateTime<Utc>,
) -> Result<bool, Failure> {
    let cfg = &state.admin;
    let mut locked = false;
    for key in keys {
        let prev = d.store().sign_in_failures(key).await?;
        let fresh = prev
            .as_ref()
            .is_none_or(|p| p.window_start + Duration::minutes(cfg.failure_window_minutes) <= now);
        let (failures, window_start) = match prev {
            Some(p) if !fresh => (p.failures + 1, p.window_start),
            _ => (1, now),
        };
        let locked_until =
            (failures >= cfg.max_failures).then(|| now + Duration::minutes(cfg.lockout_minutes));
        locked |= locked_until.is_some();
        d.store()
            .sign_in_failures_set(&SignInFailures { key: key.clone(), failures, window_start, locked_until })
            .await?;
    }
    Ok(locked)
}

/// Ends the session.
pub async fn logout(State(state): State<AppState>, p: Principal) -> Result<Response, Failure> {
    let d = directory(&state)?;
    d.store().session_delete(&p.session_hash).await?;
    let _ = d.record(&p.actor(), "console.sign_out", "console", None, json!({})).await;
    let mut res = super::see_other("/admin/login");
    let clear = set_cookie(SESSION_COOKIE, "", Some(0), state.admin.secure_cookie);
    res.headers_mut().append(header::SET_COOKIE, clear.parse().expect("a valid header value"));
    Ok(res)
}

impl Principal {
    /// Ends the other sessions of the same person (after a password change).
    pub async fn end_other_sessions(&self, d: &DirectoryService) -> Result<(), Failure> {
        let member = match &self.who {
            Who::SuperAdmin => None,
            Who::Member { id, .. } => Some(*id),
        };
        d.store().sessions_end(member, Some(&self.session_hash)).await?;
        Ok(())
    }
}

impl Failure {
    /// A directory error where no form can show it.
    pub fn from_directory(e: &crate::directory::DirectoryError) -> Failure {
        match e {
            crate::directory::DirectoryError::Store(s) => {
                tracing::error!(error = %s, "console: store error");
                Failure::Unavailable
            }
            crate::directory::DirectoryError::NotFound { .. } => Failure::NotFound,
            other => Failure::Bad(other.to_string()),
        }
    }
}
