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
use chrono::{Duration, Utc};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::i18n::Lang;
use super::views::{self, Chrome};
use super::{Failure, ready};
use crate::directory::DirectoryService;
use crate::directory::model::{Actor, Member, MemberState, Permission, Permissions, Source};

use crate::access::policy::Client;
use crate::access::signin::{Attempt, MAX_ACCOUNT, Refused, Signed};
use crate::access::store::AdminSession;
use crate::admin::Console;

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
    /// The signed-in member (`None`: the super admin).
    pub fn member_id(&self) -> Option<Uuid> {
        match &self.who {
            Who::Member { id, .. } => Some(*id),
            Who::SuperAdmin => None,
        }
    }

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

    /// Holds `p` over a member: at its primary unit.
    pub async fn has_for_member(
        &self,
        d: &DirectoryService,
        p: Permission,
        m: &Member,
    ) -> Result<bool, Failure> {
        if self.has_everywhere(p) {
            return Ok(true);
        }
        // The primary unit decides: a further unit gives its managers no power over a member.
        self.has_at_unit(d, p, m.primary_org_unit_id).await
    }

    /// Refuses unless `allowed`: the refusal is audited and answered with the 403 page.
    pub async fn require(&self, d: &DirectoryService, allowed: bool, what: &str) -> Result<(), Failure> {
        if allowed {
            return Ok(());
        }
        // The refusal stands whether or not its audit row can be written.
        audit_or_log(d, &self.actor(), "console.denied", json!({ "action": what })).await;
        tracing::info!(who = %self.actor().who, action = what, "console: permission denied");
        Err(Failure::Forbidden)
    }

    pub fn chrome(&self, title: &str) -> Chrome {
        Chrome::new(self, title)
    }
}

/// Every console page except sign-in takes a [`Principal`]: signed in, session not expired,
/// member still active. Touches the session (idle expiry) at most once a minute.
impl FromRequestParts<Console> for Principal {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, state: &Console) -> Result<Principal, Failure> {
        let next = original_uri(&parts.extensions, &parts.uri);
        let sign_in = || Failure::SignIn { next: next.clone() };
        let r = ready(state)?;
        let (d, a) = (&r.directory, r.access.store());
        let Some(secret) = cookie(&parts.headers, SESSION_COOKIE) else { return Err(sign_in()) };
        let hash = crate::access::tokens::hash(&secret);
        // A state-changing request's session was read by `csrf_guard` already.
        let read = match parts.extensions.get::<AdminSession>() {
            Some(s) if s.id_hash == hash => Some(s.clone()),
            _ => a.session(&hash).await?,
        };
        let Some(session) = read else { return Err(sign_in()) };
        let now = Utc::now();
        let cfg = &state.admin;
        let absolute = session.created_at + Duration::hours(cfg.max_session_hours);
        if session.expires_at <= now || absolute <= now {
            a.session_delete(&hash).await?;
            return Err(sign_in());
        }
        let (who, grants) = match session.member_id {
            None => {
                // The one-time password must be replaced before anything else.
                let path = original_uri(&parts.extensions, &parts.uri);
                let free = ["/admin/password", "/admin/logout", "/admin/lang/", "/admin/assets/"];
                if !free.iter().any(|f| path.starts_with(f))
                    && d.store().enterprise().await?.is_some_and(|e| e.password_must_change)
                {
                    return Err(Failure::Redirect("/admin/password".into()));
                }
                (Who::SuperAdmin, Vec::new())
            }
            Some(id) => {
                let Some(m) = d.store().member(id).await? else {
                    a.session_delete(&hash).await?;
                    return Err(sign_in());
                };
                if m.state != MemberState::Active {
                    a.session_delete(&hash).await?;
                    return Err(sign_in());
                }
                let grants = grants_of(d, id).await?;
                if grants.is_empty() {
                    // Their last role was taken away: the console is no longer theirs.
                    a.session_delete(&hash).await?;
                    return Err(sign_in());
                }
                (Who::Member { id, login_name: m.login_name, display_name: m.display_name }, grants)
            }
        };
        if now - session.last_seen_at > Duration::seconds(60) {
            let expires = (now + Duration::minutes(cfg.idle_minutes)).min(absolute);
            a.session_touch(&hash, now, expires).await?;
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
pub async fn csrf_guard(State(state): State<Console>, req: Request, next: Next) -> Response {
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
    if req.uri().path() == "/login" {
        return next.run(req).await;
    }
    let Some(r) = state.ready.get() else { return Failure::Unavailable.into_response() };
    let a = r.access.store();
    let session = match cookie(req.headers(), SESSION_COOKIE) {
        Some(secret) => match a.session(&crate::access::tokens::hash(&secret)).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                let next = original_uri(req.extensions(), req.uri());
                return Failure::SignIn { next }.into_response();
            }
            Err(e) => return Failure::from(e).into_response(),
        },
        None => return Failure::SignIn { next: original_uri(req.extensions(), req.uri()) }.into_response(),
    };
    let header_token = req.headers().get("x-csrf-token").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (req, token) = match header_token {
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
    if token.as_deref().is_none_or(|t| !constant_time_eq(t, &session.csrf)) {
        return Failure::Bad(
            "the form has expired or did not come from this console; reload the page and try again".into(),
        )
        .into_response();
    }
    // The handler's [`Principal`] takes the session from here instead of reading it again.
    let mut req = req;
    req.extensions_mut().insert(session);
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
    State(state): State<Console>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Response {
    let token = random_token();
    let page = views::Login::new(Lang::from_headers(&headers), &token, q.next.as_deref(), "", None);
    login_response(&state, page, &token, axum::http::StatusCode::OK)
}

fn login_response(
    state: &Console,
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

/// The client's address: the peer's, or behind a trusted proxy the last address in
/// `X-Forwarded-For` that is not a trusted proxy.
fn client_ip(state: &Console, peer: SocketAddr, headers: &HeaderMap) -> std::net::IpAddr {
    let trusted = &state.admin.trusted_proxies;
    if !trusted.contains(&peer.ip()) {
        return peer.ip();
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse::<std::net::IpAddr>().ok())
        .rev()
        .find(|ip| !trusted.contains(ip))
        .unwrap_or(peer.ip())
}

/// Signs in the super admin (enterprise id + super password) or a member holding a role
/// (account number or login name + local or directory password).
pub async fn login(
    State(state): State<Console>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Result<Response, Failure> {
    let lang = Lang::from_headers(&headers);
    let r = ready(&state)?;
    let (d, a) = (&r.directory, r.access.store());
    let typed: String = f.account.trim().chars().take(MAX_ACCOUNT).collect();
    let retry = |error: &str, status| {
        let token = random_token();
        let page = views::Login::new(lang, &token, f.next.as_deref(), &typed, Some(lang.t(error)));
        login_response(&state, page, &token, status)
    };
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !constant_time_eq(&f._csrf, &expected) {
        return Ok(retry("login.expired", axum::http::StatusCode::FORBIDDEN));
    }
    let account = typed.to_lowercase();
    if account.is_empty() || f.password.is_empty() {
        return Ok(retry("login.missing", axum::http::StatusCode::UNPROCESSABLE_ENTITY));
    }
    let ip = client_ip(&state, peer, &headers);
    let now = Utc::now();
    let actor = Actor::new(Source::console(), account.clone());
    let ip_text = ip.to_string();
    let attempt = Attempt {
        account: &account,
        password: &f.password,
        client: Client::Console,
        ip: Some(ip),
        console: true,
    };
    // Whatever goes wrong short of a session looks the same to the client (status, text, one
    // argon2 verification of time): a wrong password, an unknown, suspended or role-less
    // account. Only the audit log and the login log say which.
    let signed = match r.sign_in.attempt(&attempt).await.map_err(|e| Failure::from_directory(&e))? {
        Ok(signed) => signed,
        Err(Refused::Locked) => {
            audit_or_log(d, &actor, "console.sign_in_locked", json!({ "ip": ip_text })).await;
            return Ok(retry("login.locked", axum::http::StatusCode::TOO_MANY_REQUESTS));
        }
        Err(Refused::Busy) => return Ok(retry("login.busy", axum::http::StatusCode::TOO_MANY_REQUESTS)),
        Err(Refused::DirectoryDown) => {
            return Ok(retry("login.directory_down", axum::http::StatusCode::SERVICE_UNAVAILABLE));
        }
        Err(Refused::Failed { locked, reason }) => {
            let detail = json!({ "ip": ip_text, "locked": locked, "reason": reason });
            audit_or_log(d, &actor, "console.sign_in_failed", detail).await;
            let error = if locked { "login.locked" } else { "login.failed" };
            return Ok(retry(error, axum::http::StatusCode::UNAUTHORIZED));
        }
        Err(Refused::Denied(rule)) => {
            let detail = json!({ "ip": ip_text, "rule": rule });
            audit_or_log(d, &actor, "console.sign_in_denied", detail).await;
            return Ok(retry("login.denied", axum::http::StatusCode::FORBIDDEN));
        }
    };
    let member_id = match &signed {
        Signed::Member(m) => Some(m.id),
        Signed::Super => None,
    };
    let ip = ip_text;
    let secret = random_token();
    let session = AdminSession {
        id_hash: crate::access::tokens::hash(&secret),
        member_id,
        csrf: random_token(),
        created_at: now,
        expires_at: now + Duration::minutes(state.admin.idle_minutes),
        last_seen_at: now,
        ip: ip.clone(),
    };
    a.session_insert(&session).await?;
    let who = match &signed {
        Signed::Member(m) => m.login_name.clone(),
        Signed::Super => "super-admin".to_owned(),
    };
    d.record(&Actor::new(Source::console(), who), "console.sign_in", "console", None, json!({ "ip": ip }))
        .await
        .map_err(|e| Failure::from_directory(&e))?;
    let must_change =
        member_id.is_none() && d.store().enterprise().await?.is_some_and(|e| e.password_must_change);
    let to = if must_change {
        "/admin/password".to_owned()
    } else {
        f.next
            .filter(|n| n.starts_with("/admin") && !n.starts_with("//") && !n.contains("://"))
            .filter(|n| !n.chars().any(char::is_control))
            .unwrap_or("/admin".into())
    };
    let cookie = set_cookie(SESSION_COOKIE, &secret, None, state.admin.secure_cookie);
    let clear = set_cookie(LOGIN_COOKIE, "", Some(0), state.admin.secure_cookie);
    let mut res = super::see_other(&to);
    res.headers_mut().append(header::SET_COOKIE, cookie.parse().expect("a valid header value"));
    res.headers_mut().append(header::SET_COOKIE, clear.parse().expect("a valid header value"));
    Ok(res)
}

/// Verifies `password` against `hash` (see [`crate::access::signin::check_hash`]); 429 when no
/// password slot comes free in time.
pub(crate) async fn check_hash(password: &str, hash: String) -> Result<bool, Failure> {
    crate::access::signin::check_hash(password, hash).await.map_err(|_| Failure::Busy)
}

/// Audits a sign-in event; when the audit log cannot be written the sign-in goes on (an
/// attacker must not be able to turn a full disk into a way past the lockout), with an error in
/// the log and `roster_audit_write_failures_total` for the operator.
async fn audit_or_log(d: &DirectoryService, actor: &Actor, action: &str, detail: serde_json::Value) {
    if let Err(e) = d.record(actor, action, "console", None, detail).await {
        tracing::error!(action, error = %e, "audit: the audit row could not be written");
        metrics::counter!("roster_audit_write_failures_total").increment(1);
    }
}

/// Ends the session.
pub async fn logout(State(state): State<Console>, p: Principal) -> Result<Response, Failure> {
    let r = ready(&state)?;
    let (d, a) = (&r.directory, r.access.store());
    a.session_delete(&p.session_hash).await?;
    // The session is gone already: signing out goes on if its audit row cannot be written.
    audit_or_log(d, &p.actor(), "console.sign_out", json!({})).await;
    let mut res = super::see_other("/admin/login");
    let clear = set_cookie(SESSION_COOKIE, "", Some(0), state.admin.secure_cookie);
    res.headers_mut().append(header::SET_COOKIE, clear.parse().expect("a valid header value"));
    Ok(res)
}

impl Principal {
    /// The hash of the session this request came with.
    pub fn session_hash(&self) -> &str {
        &self.session_hash
    }
}
