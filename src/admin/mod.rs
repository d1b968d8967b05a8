//! The admin plugin: the account center under `/admin`.
//!
//! Server-rendered pages (askama templates in `templates/`, htmx for partial updates), every
//! asset embedded in the binary. Each request passes [`auth`]: a session cookie names the
//! principal (the super admin or a member with roles), every form carries a CSRF token, and
//! each handler asks [`auth::Principal`] for the permission its action needs, on the server.
//! Changes go through [`DirectoryService`] like every other adapter's.

pub mod auth;
pub mod i18n;
pub(crate) mod pages;
mod views;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use std::sync::{Arc, OnceLock};

use crate::access::Access;
use crate::config::{AdminConfig, Config};
use crate::delivery::store::DeliveryStore;
use crate::directory::{DirectoryError, DirectoryService};
use crate::sync::SyncService;
use crate::sync::store::RunStore;
pub use auth::Principal;

/// The console's state: its settings, and the services once the store is ready.
#[derive(Clone)]
pub struct Console {
    pub ready: Arc<OnceLock<Ready>>,
    pub admin: Arc<AdminConfig>,
    /// The whole configuration, for the console's overview pages.
    pub config: Arc<Config>,
    pub max_body_bytes: usize,
}

impl Console {
    pub fn new(cfg: &Config) -> Console {
        Console {
            ready: Default::default(),
            admin: Arc::new(cfg.admin.clone()),
            config: Arc::new(cfg.clone()),
            max_body_bytes: cfg.http.max_body_bytes,
        }
    }
}

/// What the console works with once the store is up: the directory and the other owners.
pub struct Ready {
    pub directory: DirectoryService,
    pub access: Access,
    pub delivery: Arc<dyn DeliveryStore>,
    pub runs: Arc<dyn RunStore>,
    /// Runs the console starts ("run now", approving a held plan).
    pub sync: SyncService,
    /// Signing in (passwords, limits, the sign-in policy, the login log).
    pub sign_in: crate::access::signin::SignIn,
    /// Office attendance.
    pub attendance: crate::access::attendance::Attendance,
    /// The message record archive (*Message records*).
    pub archive: crate::archive::Archive,
}

/// The console's routes (mounted under `/admin`).
pub fn router(state: Console) -> Router {
    Router::new()
        .route("/", get(pages::home::home))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/lang/{lang}", get(i18n::switch))
        .route("/password", get(pages::enterprise::password_page).post(pages::enterprise::password))
        .route("/enterprise", get(pages::enterprise::profile_page).post(pages::enterprise::profile))
        .route("/org", get(pages::org::org_page))
        .route("/org/tree", get(pages::org::tree_children))
        .route("/org/units", post(pages::org::create_unit))
        .route("/org/units/{id}/rename", post(pages::org::rename_unit))
        .route("/org/units/{id}/move", post(pages::org::move_unit))
        .route("/org/units/{id}/delete", post(pages::org::delete_unit))
        .route("/members", get(pages::members::list))
        .route("/members/new", get(pages::members::new_page).post(pages::members::create))
        .route("/members/{id}", get(pages::members::detail).post(pages::members::update))
        .route("/members/{id}/edit", get(pages::members::edit_page))
        .route("/members/{id}/state", post(pages::members::set_state))
        .route("/members/{id}/delete", post(pages::members::delete))
        .route("/roles", get(pages::roles::list).post(pages::roles::create))
        .route("/roles/{id}", get(pages::roles::detail).post(pages::roles::update))
        .route("/roles/{id}/delete", post(pages::roles::delete))
        .route("/roles/{id}/grants", post(pages::roles::grant))
        .route("/roles/{id}/grants/{member}/revoke", post(pages::roles::revoke))
        .route("/sync", get(pages::sync::overview))
        .route("/sync/runs/{id}", get(pages::sync::run_page))
        .route("/sync/runs/{id}/approve", post(pages::sync::approve))
        .route("/sync/sources/{name}/run", post(pages::sync::run_now))
        .route("/scim", get(pages::scim::tokens).post(pages::scim::create_token))
        .route("/scim/{name}/revoke", post(pages::scim::revoke_token))
        .route("/scim/{name}/rotate", post(pages::scim::rotate_token))
        .route("/delivery", get(pages::delivery::overview))
        .route("/delivery/{id}/retry", post(pages::delivery::retry))
        .route("/delivery/sms/top-up", post(pages::delivery::top_up))
        .route("/delivery/broadcasts", post(pages::delivery::broadcast))
        .route("/audit", get(pages::audit::audit))
        .route("/sign-in", get(pages::sign_in::policy))
        .route("/sign-in/default", post(pages::sign_in::set_default))
        .route("/sign-in/rules", post(pages::sign_in::create))
        .route("/sign-in/rules/{id}", get(pages::sign_in::edit).post(pages::sign_in::update))
        .route("/sign-in/rules/{id}/delete", post(pages::sign_in::delete))
        .route("/sign-in/rules/{id}/move", post(pages::sign_in::move_rule))
        .route("/sign-in/log", get(pages::sign_in::log))
        .route("/sign-in/log.csv", get(pages::sign_in::log_csv))
        .route("/sign-in/mine", get(pages::sign_in::mine))
        .route("/attendance", get(pages::attendance::unit_month))
        .route("/attendance.csv", get(pages::attendance::unit_csv))
        .route("/attendance/members/{id}", get(pages::attendance::member_month))
        .route("/attendance/mine", get(pages::attendance::mine))
        .route("/attendance/shifts", post(pages::attendance::create_shift))
        .route("/attendance/shifts/{id}/delete", post(pages::attendance::delete_shift))
        .route("/attendance/assign", post(pages::attendance::assign))
        .route("/records", get(pages::records::records))
        .route("/records/members/{id}", get(pages::records::member))
        .route("/records/conversations/{id}", get(pages::records::conversation))
        .route("/records/blobs/{sha256}", get(pages::records::blob))
        .route("/records/exports", get(pages::records::exports).post(pages::records::export))
        .route("/records/exports/{id}/download", get(pages::records::download))
        .route("/records/retention", get(pages::records::retention).post(pages::records::set_retention))
        .route("/records/holds", post(pages::records::add_hold))
        .route("/records/holds/{id}/release", post(pages::records::release_hold))
        .route("/accounts", get(pages::accounts::accounts))
        .route("/accounts/reservations", post(pages::accounts::reserve))
        .route("/accounts/reservations/{number}/release", post(pages::accounts::release))
        .route("/import", get(pages::import::import_page).post(pages::import::import))
        .route("/export/members.csv", get(pages::import::export_members))
        .route("/export/org-units.csv", get(pages::import::export_units))
        .route("/assets/{file}", get(asset))
        .layer(middleware::from_fn_with_state(state.clone(), auth::csrf_guard))
        .layer(middleware::from_fn_with_state(state.clone(), security_headers))
        .with_state(state)
}

/// No framing, no sniffing, no referrer leaks; scripts and styles only from `/admin/assets`
/// (no inline script or style at all: htmx's own indicator style is switched off in each
/// page's `htmx-config`); no `<base>` to redirect relative URLs; and, when the cookies are
/// `Secure` (the console is behind HTTPS), HSTS.
async fn security_headers(State(state): State<Console>, req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    if state.admin.secure_cookie {
        h.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000"));
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    // A response with its own, stricter policy (a message's attachment: sandboxed) keeps it.
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: https:; \
                 frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'",
            ),
        );
    }
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

/// The embedded assets.
async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind): (&'static [u8], &str) = match file.as_str() {
        "htmx.min.js" => (include_bytes!("assets/htmx.min.js"), "text/javascript"),
        "console.js" => (include_bytes!("assets/console.js"), "text/javascript"),
        "console.css" => (include_bytes!("assets/console.css"), "text/css"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "public, max-age=3600")], body).into_response()
}

/// The directory, or a "not ready" page while the store is still connecting.
pub(crate) fn directory(state: &Console) -> Result<&DirectoryService, Failure> {
    Ok(&ready(state)?.directory)
}

/// The services, once the store is ready.
pub(crate) fn ready(state: &Console) -> Result<&Ready, Failure> {
    state.ready.get().ok_or(Failure::Unavailable)
}

/// Why a page could not be served. Renders as a page in the user's language; the store's own
/// error text goes to the log only.
#[derive(Debug)]
pub enum Failure {
    /// Not signed in: to the sign-in page (an htmx request is told to go there).
    SignIn {
        next: String,
    },
    Forbidden,
    NotFound,
    Unavailable,
    /// A request that makes no sense (a bad CSRF token, a malformed id).
    Bad(String),
    /// A change refused because of the object's state (changed meanwhile, not held, owned by
    /// another source).
    Conflict(String),
    /// Somewhere else first (the super admin's one-time password must be changed).
    Redirect(String),
    /// Too many password checks waiting (see `crate::secret::bounded`).
    Busy,
}

impl Failure {
    fn status(&self) -> StatusCode {
        match self {
            Failure::SignIn { .. } => StatusCode::SEE_OTHER,
            Failure::Forbidden => StatusCode::FORBIDDEN,
            Failure::NotFound => StatusCode::NOT_FOUND,
            Failure::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Failure::Bad(_) => StatusCode::BAD_REQUEST,
            Failure::Conflict(_) => StatusCode::CONFLICT,
            Failure::Redirect(_) => StatusCode::SEE_OTHER,
            Failure::Busy => StatusCode::TOO_MANY_REQUESTS,
        }
    }
}

impl Failure {
    /// A directory error where no form can show it.
    pub fn from_directory(e: &DirectoryError) -> Failure {
        match e {
            DirectoryError::Store(s) => {
                tracing::error!(error = %s, "console: store error");
                Failure::Unavailable
            }
            DirectoryError::NotFound { .. } => Failure::NotFound,
            DirectoryError::Invalid { .. } => Failure::Bad(e.to_string()),
            other => Failure::Conflict(other.to_string()),
        }
    }
}

impl From<crate::directory::store::StoreError> for Failure {
    fn from(e: crate::directory::store::StoreError) -> Failure {
        tracing::error!(error = %e, "console: store error");
        Failure::Unavailable
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        if let Failure::Redirect(to) = &self {
            let mut res = Redirect::to(to).into_response();
            if let Ok(v) = HeaderValue::from_str(to) {
                res.headers_mut().insert("HX-Redirect", v);
            }
            return res;
        }
        if let Failure::SignIn { next } = &self {
            let to = format!("/admin/login?next={}", i18n::url_encode(next));
            let mut res = Redirect::to(&to).into_response();
            if let Ok(v) = HeaderValue::from_str(&to) {
                res.headers_mut().insert("HX-Redirect", v);
            }
            return res;
        }
        // The language comes from the request; the error page is rendered by the extractor-
        // free fallback here in English and Chinese both (it has no request at hand).
        let status = self.status();
        let (en, zh) = match &self {
            Failure::Forbidden => ("You do not have permission for this.", "您没有执行此操作的权限。"),
            Failure::NotFound => ("Not found.", "未找到。"),
            Failure::Unavailable => (
                "The directory store is not available right now; nothing was changed. Try again shortly.",
                "目录存储暂时不可用，未做任何更改。请稍后再试。",
            ),
            Failure::Bad(_) => ("The request could not be understood.", "无法理解该请求。"),
            Failure::Conflict(_) => ("The change was refused.", "更改被拒绝。"),
            Failure::Busy => (
                "Too many passwords are being checked right now; try again in a moment.",
                "当前正在校验的密码过多，请稍后再试。",
            ),
            Failure::SignIn { .. } | Failure::Redirect(_) => unreachable!(),
        };
        let detail = match &self {
            Failure::Bad(m) | Failure::Conflict(m) => m.clone(),
            _ => String::new(),
        };
        let page = views::ErrorPage { status: status.as_u16(), en, zh, detail };
        (status, views::html(&page)).into_response()
    }
}

/// Where a form goes back to after a change: the `Referer` path if it is ours.
pub(crate) fn back(headers: &HeaderMap, fallback: &str) -> String {
    headers
        .get(header::REFERER)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.find("/admin").map(|i| r[i..].to_owned()))
        .filter(|p| !p.contains("//") && !p.starts_with("/admin/login"))
        .unwrap_or_else(|| fallback.to_owned())
}

/// A redirect after a successful POST (303, so the browser GETs the next page).
pub(crate) fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}
