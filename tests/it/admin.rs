//! The admin console over real HTTP against a running rosterd: sign-in, sessions, CSRF and
//! lockout; every page against every role (permissions are enforced on the server, and each
//! refusal is audited); the forms' bad input; CSV import; sync from the console.

use std::collections::HashMap;

use reqwest::StatusCode;
use roster::directory::model::{Member, Permission};
use roster::directory::{Applied, Change, NewMember, NewRole};
use roster::secret::Secret;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::common::{Backend, TestDb, console, create_unit, on_both_stores};

pub const SUPER_PW: &str = "super-secret-password";

/// The super admin as the console names them in the audit log (and as `password_set_by`).
pub fn super_admin() -> roster::directory::model::Actor {
    roster::directory::model::Actor::new(roster::directory::model::Source::console(), "super-admin")
}
pub const MEMBER_PW: &str = "member-password-1";

/// A running rosterd with the console, its super-admin password set.
pub struct Console {
    pub base: String,
    pub directory: crate::common::Opened,
    pub enterprise_id: String,
    pub _db: TestDb,
    stop: CancellationToken,
}

impl Drop for Console {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Console {
    pub async fn start(backend: Backend, tune: impl FnOnce(&mut roster::config::Config)) -> Console {
        Console::start_inner(backend, tune, false).await.0
    }

    /// As on a first start: the super admin has only the one-time password (returned).
    pub async fn first_start(backend: Backend) -> (Console, String) {
        let (c, pw) = Console::start_inner(backend, |_| {}, true).await;
        (c, pw.unwrap())
    }

    async fn start_inner(
        backend: Backend,
        tune: impl FnOnce(&mut roster::config::Config),
        one_time: bool,
    ) -> (Console, Option<String>) {
        let mut db = TestDb::new(backend);
        db.cfg.admin.secure_cookie = false;
        tune(&mut db.cfg);
        let directory = crate::common::Opened(roster::app::open_migrated(&db.cfg).await.unwrap());
        let password = directory.ensure_enterprise(&db.cfg.enterprise.seed()).await.unwrap();
        if !one_time {
            directory
                .set_super_password(&console(), &db.cfg.enterprise.seed(), SUPER_PW, None)
                .await
                .unwrap();
        }
        let enterprise_id = directory.store().enterprise().await.unwrap().unwrap().enterprise_id;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let stop = CancellationToken::new();
        tokio::spawn(roster::app::run(listener, db.cfg.clone(), stop.clone()));
        let c = Console { base, directory, enterprise_id, _db: db, stop };
        let http = crate::common::http();
        for _ in 0..100 {
            if let Ok(r) = http.get(format!("{}/readyz", c.base)).send().await
                && r.status() == StatusCode::OK
            {
                return (c, password);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("rosterd did not become ready");
    }

    pub fn session(&self) -> Session {
        Session::at(&self.base)
    }

    /// A signed-in session as the super admin.
    pub async fn super_admin(&self) -> Session {
        let mut s = self.session();
        let r = s.sign_in(&self.enterprise_id, SUPER_PW).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        s
    }

    /// A member with a console password and the given roles (`(permissions, scope)`).
    pub async fn member_with(
        &self,
        login: &str,
        unit: Option<Uuid>,
        roles: &[(&[Permission], Option<Uuid>)],
    ) -> Member {
        let n = NewMember {
            login_name: login.into(),
            display_name: format!("{login} (test)"),
            primary_org_unit_id: unit,
            password: Some(Secret(MEMBER_PW.into())),
            ..Default::default()
        };
        // As the super admin does it in the console: a password they set survives their grants.
        let m = match self.directory.apply_one(&super_admin(), Change::CreateMember(n)).await.unwrap() {
            Applied::Member(m) => m,
            other => panic!("{other:?}"),
        };
        for (i, (perms, scope)) in roles.iter().enumerate() {
            let role = NewRole { id: None, name: format!("{login}-role-{i}"), permissions: perms.to_vec() };
            let Applied::Role(r) =
                self.directory.apply_one(&super_admin(), Change::CreateRole(role)).await.unwrap()
            else {
                panic!()
            };
            let grant = Change::GrantRole { role_id: r.id, member_id: m.id, scope_unit_id: *scope };
            self.directory.apply_one(&super_admin(), grant).await.unwrap();
        }
        m
    }

    pub async fn audit_count(&self, action: &str) -> usize {
        let f = roster::directory::store::AuditFilter {
            action: Some(action.into()),
            limit: 10_000,
            ..Default::default()
        };
        self.directory.store().audit_search(&f).await.unwrap().len()
    }
}

/// A browser-like client: keeps cookies, picks up the CSRF token from each page.
#[derive(Clone)]
pub struct Session {
    base: String,
    http: reqwest::Client,
    cookies: HashMap<String, String>,
    csrf: String,
    /// Sent with every request (e.g. `X-Forwarded-For`).
    pub headers: Vec<(String, String)>,
}

#[derive(Debug)]
pub struct Page {
    pub status: StatusCode,
    pub body: String,
    pub location: Option<String>,
    pub set_cookies: Vec<String>,
}

impl Page {
    pub fn has(&self, needle: &str) -> bool {
        self.body.contains(needle)
    }
}

impl Session {
    /// A new browser-like client for the console at `base` (`http://host:port`).
    pub fn at(base: &str) -> Session {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Session {
            base: base.to_owned(),
            http,
            cookies: HashMap::new(),
            csrf: String::new(),
            headers: Vec::new(),
        }
    }

    /// The same browser, talking to another node behind the load balancer.
    pub fn moved_to(&self, base: &str) -> Session {
        Session { base: base.to_owned(), ..self.clone() }
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    async fn finish(&mut self, r: reqwest::Response) -> Page {
        let status = r.status();
        let location = r.headers().get("location").map(|v| v.to_str().unwrap().to_owned());
        let set_cookies: Vec<String> =
            r.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
        for c in &set_cookies {
            let (kv, attrs) = c.split_once(';').unwrap_or((c, ""));
            let (k, v) = kv.split_once('=').unwrap();
            if attrs.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), v.to_owned());
            }
        }
        let body = r.text().await.unwrap();
        if let Some(i) = body.find("name=\"_csrf\" value=\"") {
            let rest = &body[i + 20..];
            self.csrf = rest[..rest.find('"').unwrap()].to_owned();
        }
        Page { status, body, location, set_cookies }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.finish(r).await
    }

    /// A GET with extra headers (e.g. `Range`), answered as raw bytes.
    pub async fn get_bytes(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
        let mut req = self.http.get(format!("{}{path}", self.base)).header("cookie", self.cookie_header());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = req.send().await.unwrap();
        let (status, h) = (r.status(), r.headers().clone());
        (status, h, r.bytes().await.unwrap().to_vec())
    }

    /// Posts a form with the session's CSRF token.
    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let mut all: Vec<(&str, &str)> = vec![("_csrf", self.csrf.as_str())];
        all.extend_from_slice(fields);
        let all: Vec<(String, String)> = all.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
        self.post_raw(path, &all).await
    }

    pub async fn post_raw(&mut self, path: &str, fields: &[(String, String)]) -> Page {
        let mut req = self.http.post(format!("{}{path}", self.base)).header("cookie", self.cookie_header());
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        let r = req.form(fields).send().await.unwrap();
        self.finish(r).await
    }

    /// Follows a redirect answer.
    pub async fn follow(&mut self, p: &Page) -> Page {
        let to = p.location.clone().unwrap_or_else(|| panic!("not a redirect: {} {}", p.status, p.body));
        self.get(&to).await
    }

    pub async fn sign_in(&mut self, account: &str, password: &str) -> Page {
        self.get("/admin/login").await;
        self.post("/admin/login", &[("account", account), ("password", password)]).await
    }
}

/// The id in a `/admin/members/{id}?...` location.
pub fn id_in(location: &str, prefix: &str) -> Uuid {
    let rest = &location[location.find(prefix).unwrap() + prefix.len()..];
    Uuid::parse_str(&rest[..36]).unwrap()
}

async fn sign_in_sessions_and_lockout(b: Backend) {
    let c = Console::start(b, |cfg| cfg.admin.max_failures = 3).await;
    // Not signed in: every page sends to the sign-in page.
    let mut s = c.session();
    let p = s.get("/admin/members").await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert_eq!(p.location.as_deref(), Some("/admin/login?next=/admin/members"));

    // Wrong password: 401, the form keeps the account, nothing about which part was wrong.
    let p = s.sign_in(&c.enterprise_id, "wrong-password-here").await;
    assert_eq!(p.status, StatusCode::UNAUTHORIZED);
    assert!(p.has("Wrong account or password"), "{}", p.body);
    assert!(p.has(&format!("value=\"{}\"", c.enterprise_id)));
    // An unknown account says the same.
    let p = s.sign_in("nobody", "wrong-password-here").await;
    assert_eq!(p.status, StatusCode::UNAUTHORIZED);
    assert!(p.has("Wrong account or password"));
    // Failures count per account, however it is typed: a member's number with leading zeros
    // or a plus, or the login name with or without the domain, is the same account.
    c.member_with("carl", None, &[(&[Permission::ViewAudit], None)]).await;
    let carl = c.directory.store().member_by_login("carl@example.com").await.unwrap().unwrap();
    let n = carl.account_number.to_string();
    for typed in [format!("00{n}"), format!("+{n}"), "CARL@example.com".to_owned()] {
        assert_eq!(s.sign_in(&typed, "wrong-password-9").await.status, StatusCode::UNAUTHORIZED);
    }
    let p = s.sign_in("carl", MEMBER_PW).await;
    assert_eq!(p.status, StatusCode::TOO_MANY_REQUESTS, "carl is locked after three failures: {}", p.body);
    // The third failure for the same account locks it, and then even the right password waits.
    s.sign_in(&c.enterprise_id, "wrong-password-2").await;
    s.sign_in(&format!(" {} ", c.enterprise_id), "wrong-password-3").await;
    let p = s.sign_in(&c.enterprise_id, SUPER_PW).await;
    assert_eq!(p.status, StatusCode::TOO_MANY_REQUESTS, "{}", p.body);
    assert!(p.has("Too many failed sign-ins"));
    assert!(c.audit_count("console.sign_in_failed").await >= 3);
    assert_eq!(c.audit_count("console.sign_in_locked").await, 2, "carl, then the super admin");
    // ("console.sign_in" as a prefix also counts the failures and lockouts.)
    assert_eq!(
        c.audit_count("console.sign_in").await,
        c.audit_count("console.sign_in_").await,
        "no sign-in succeeded"
    );

    // The sign-in form without its token (or with another's) is refused.
    let mut other = c.session();
    let p = other
        .post_raw(
            "/admin/login",
            &[
                ("account".into(), "x".into()),
                ("password".into(), "y".into()),
                ("_csrf".into(), "forged".into()),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert!(p.has("expired"));
}

async fn session_cookie_csrf_and_sign_out(b: Backend) {
    let c = Console::start(b, |cfg| cfg.admin.secure_cookie = true).await;
    let mut s = c.session();
    let p = s.sign_in(&c.enterprise_id, SUPER_PW).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert_eq!(p.location.as_deref(), Some("/admin"));
    let cookie = p.set_cookies.iter().find(|c| c.starts_with("roster_session=")).unwrap();
    for flag in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/admin"] {
        assert!(cookie.contains(flag), "{cookie} lacks {flag}");
    }
    assert_eq!(c.audit_count("console.sign_in").await, 1);
    let home = s.get("/admin").await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(home.has(&c.enterprise_id) && home.has("Example Corp"));
    // The headers that keep the console out of frames and scripts out of pages.
    let r = crate::common::http().get(format!("{}/admin/login", c.base)).send().await.unwrap();
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    let csp = r.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("base-uri 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(r.headers()["strict-transport-security"], "max-age=31536000", "HSTS with Secure cookies");

    // A form without the CSRF token, or with a wrong one, changes nothing.
    let before = c.directory.store().counts().await.unwrap().org_units;
    let p = s.post_raw("/admin/org/units", &[("name".into(), "Forged".into())]).await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST);
    assert!(p.has("did not come from this console"), "{}", p.body);
    let p = s
        .post_raw("/admin/org/units", &[("name".into(), "Forged".into()), ("_csrf".into(), "0".repeat(43))])
        .await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST);
    // Another site's form is refused by its Origin even with a token.
    let r = crate::common::http()
        .post(format!("{}/admin/org/units", c.base))
        .header("cookie", s.cookie_header())
        .header("origin", "https://evil.example")
        .form(&[("name", "Forged"), ("_csrf", s.csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(c.directory.store().counts().await.unwrap().org_units, before);
    // With the token it works.
    let p = s.post("/admin/org/units", &[("name", "Sales"), ("parent", "")]).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert_eq!(c.directory.store().counts().await.unwrap().org_units, before + 1);

    // Sign-out ends the session on the server: the old cookie no longer works.
    let old = s.cookie_header();
    let p = s.post("/admin/logout", &[]).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    let r =
        crate::common::http().get(format!("{}/admin", c.base)).header("cookie", old).send().await.unwrap();
    assert!(r.url().path().starts_with("/admin/login"), "{}", r.url());
}

async fn first_sign_in_must_change_the_password(b: Backend) {
    let (c, one_time) = Console::first_start(b).await;
    let mut s = c.session();
    let p = s.sign_in(&c.enterprise_id, &one_time).await;
    assert_eq!(p.location.as_deref(), Some("/admin/password"), "the one-time password must be changed first");
    let p = s.get("/admin/password").await;
    assert!(p.has("Choose a new super-admin password"));
    // Until it is changed, every other page leads back there.
    for page in ["/admin", "/admin/org", "/admin/roles"] {
        let p = s.get(page).await;
        assert_eq!(p.location.as_deref(), Some("/admin/password"), "{page}");
    }
    let super_pw = one_time.as_str();
    let p = s.post("/admin/password", &[("current", "not-it-at-all"), ("new", "x"), ("confirm", "x")]).await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(p.has("current-error"));
    let p = s.post("/admin/password", &[("current", super_pw), ("new", "short"), ("confirm", "short")]).await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(p.has("new-error") && p.has("at least 12"), "{}", p.body);
    let p = s
        .post(
            "/admin/password",
            &[("current", super_pw), ("new", "a-new-long-password"), ("confirm", "another-one-here")],
        )
        .await;
    assert!(p.has("confirm-error"));
    // A second session of the super admin ends when the password changes.
    let mut second = c.session();
    assert_eq!(second.sign_in(&c.enterprise_id, super_pw).await.status, StatusCode::SEE_OTHER);
    let p = s
        .post(
            "/admin/password",
            &[("current", super_pw), ("new", "a-new-long-password"), ("confirm", "a-new-long-password")],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert_eq!(second.get("/admin").await.status, StatusCode::SEE_OTHER);
    assert_eq!(s.get("/admin").await.status, StatusCode::OK);
    let mut fresh = c.session();
    assert_eq!(fresh.sign_in(&c.enterprise_id, super_pw).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(fresh.sign_in(&c.enterprise_id, "a-new-long-password").await.status, StatusCode::SEE_OTHER);
    assert_eq!(c.audit_count("enterprise.password_reset").await, 1);
    // Signed in with the new password, the console no longer asks for a change.
    let p = fresh.get("/admin/password").await;
    assert!(!p.has("Choose a new super-admin password"));
}

/// Each role against each page: what the menu shows is what the server allows.
async fn every_role_against_every_page(b: Backend) {
    let c = Console::start(b, |_| {}).await;
    let pages = [
        "/admin",
        "/admin/org",
        "/admin/members",
        "/admin/import",
        "/admin/accounts",
        "/admin/roles",
        "/admin/sync",
        "/admin/scim",
        "/admin/delivery",
        "/admin/audit",
        "/admin/records",
        "/admin/enterprise",
        "/admin/password",
        "/admin/sign-in",
        "/admin/sign-in/log",
        "/admin/sign-in/mine",
    ];
    let allowed = |perm: Option<Permission>, page: &str| -> bool {
        page == "/admin"
            || page == "/admin/password"
            || page == "/admin/sign-in/mine"
            || match perm {
                None => false,
                Some(Permission::ManageOrg) => page == "/admin/org",
                Some(Permission::ManageMembers) => {
                    ["/admin/org", "/admin/members", "/admin/import", "/admin/accounts"].contains(&page)
                }
                Some(Permission::SendSms) => page == "/admin/delivery",
                Some(Permission::ManageSync) => page == "/admin/sync",
                Some(Permission::ManageScim) => page == "/admin/scim",
                Some(Permission::ViewAudit) => page == "/admin/audit",
                Some(Permission::ViewMessages) => page == "/admin/records",
                Some(Permission::ManageLoginPolicy) => {
                    ["/admin/sign-in", "/admin/sign-in/log"].contains(&page)
                }
            }
    };
    let mut cases: Vec<Option<Permission>> = vec![None];
    cases.extend(Permission::ALL.iter().copied().map(Some));
    let mut denied = 0;
    for (i, perm) in cases.iter().enumerate() {
        let login = format!("role{i}");
        let roles: Vec<(&[Permission], Option<Uuid>)> = match perm {
            Some(p) => vec![(std::slice::from_ref(p), None)],
            None => vec![],
        };
        c.member_with(&login, None, &roles).await;
        let mut s = c.session();
        let p = s.sign_in(&login, MEMBER_PW).await;
        if perm.is_none() {
            // Without a role there is nothing to do in the console: sign-in fails, looking
            // just like a wrong password (no oracle); the audit log says why.
            assert_eq!(p.status, StatusCode::UNAUTHORIZED, "{login}: {}", p.body);
            assert!(p.has("Wrong account or password"));
            assert_eq!(c.audit_count("console.sign_in_failed").await, 1);
            assert_eq!(s.get("/admin").await.status, StatusCode::SEE_OTHER);
            continue;
        }
        assert_eq!(p.status, StatusCode::SEE_OTHER, "{login}: {}", p.body);
        for page in pages {
            let p = s.get(page).await;
            let expect = if allowed(*perm, page) { StatusCode::OK } else { StatusCode::FORBIDDEN };
            assert_eq!(p.status, expect, "{perm:?} on {page}");
            if expect == StatusCode::FORBIDDEN {
                denied += 1;
                assert!(p.has("You do not have permission"));
            }
            // The menu offers exactly the pages that open.
            let home = s.get("/admin").await;
            if page != "/admin/password" && page != "/admin" {
                assert_eq!(
                    home.has(&format!("href=\"{page}\"")),
                    allowed(*perm, page),
                    "{perm:?}: menu entry {page}"
                );
            }
        }
        // Actions are refused on the server too, not only hidden.
        if *perm != Some(Permission::ManageOrg) {
            let p = s.post("/admin/org/units", &[("name", "Nope"), ("parent", "")]).await;
            assert_eq!(p.status, StatusCode::FORBIDDEN, "{perm:?}");
            denied += 1;
        }
        if *perm != Some(Permission::ManageScim) {
            let p = s.post("/admin/scim", &[("name", "nope")]).await;
            assert_eq!(p.status, StatusCode::FORBIDDEN, "{perm:?}");
            denied += 1;
        }
    }
    assert_eq!(c.audit_count("console.denied").await, denied);
    assert!(c.directory.store().tokens().await.unwrap().is_empty());
    // The super admin opens every page.
    let mut s = c.super_admin().await;
    for page in pages {
        assert_eq!(s.get(page).await.status, StatusCode::OK, "super admin on {page}");
    }
}

/// A role scoped to a subtree reaches members and units inside it and nothing outside.
async fn scoped_roles_stop_at_their_subtree(b: Backend) {
    let c = Console::start(b, |_| {}).await;
    let d = &c.directory;
    let sales = create_unit(d, None, "Sales").await;
    let east = create_unit(d, Some(sales), "East").await;
    let support = create_unit(d, None, "Support").await;
    c.member_with("lead", Some(east), &[(&[Permission::ManageMembers, Permission::ManageOrg], Some(sales))])
        .await;
    let inside = c.member_with("inside", Some(east), &[]).await;
    let outside = c.member_with("outside", Some(support), &[]).await;

    let mut s = c.session();
    assert_eq!(s.sign_in("lead", MEMBER_PW).await.status, StatusCode::SEE_OTHER);
    let org = s.get("/admin/org").await;
    assert!(org.has("Sales") && !org.has(">Support<"), "the tree starts at the scope");
    assert_eq!(s.get(&format!("/admin/members/{}", inside.id)).await.status, StatusCode::OK);
    assert_eq!(s.get(&format!("/admin/members/{}", outside.id)).await.status, StatusCode::FORBIDDEN);
    assert_eq!(s.get(&format!("/admin/org?unit={support}")).await.status, StatusCode::FORBIDDEN);
    let p = s
        .post(&format!("/admin/members/{}/state", outside.id), &[("state", "suspended"), ("version", "1")])
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert_eq!(d.store().member(outside.id).await.unwrap().unwrap().state.as_str(), "active");
    // Creating a member outside the scope, or a unit at the top, is refused.
    s.get("/admin/members/new").await;
    let p = s
        .post(
            "/admin/members/new",
            &[("login_name", "newbie"), ("display_name", "Newbie"), ("unit_path", "Support")],
        )
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    let p = s.post("/admin/org/units", &[("name", "Rogue"), ("parent", "")]).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    // Inside the scope both work.
    let p = s
        .post(
            "/admin/members/new",
            &[("login_name", "newbie"), ("display_name", "Newbie"), ("unit_path", "Sales/East")],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let p = s.post("/admin/org/units", &[("name", "West"), ("parent", &sales.to_string())]).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    // Moving a member out of the scope is refused (it needs the permission where it goes).
    let edit = s.get(&format!("/admin/members/{}/edit", inside.id)).await;
    assert_eq!(edit.status, StatusCode::OK);
    let p = s
        .post(
            &format!("/admin/members/{}", inside.id),
            &[
                ("login_name", "inside"),
                ("display_name", "Inside"),
                ("unit_path", "Support"),
                ("version", "1"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    // The member search lists only members in scope.
    let list = s.get("/admin/members").await;
    assert!(list.has("inside@example.com") && !list.has("outside@example.com"), "{}", list.body);
    // A member who holds a role is changed by the super admin only, even inside the scope:
    // else the lead could reset a stronger admin's password and sign in as them.
    let boss = c.member_with("boss", Some(east), &[(&[Permission::ManageSync], None)]).await;
    assert_eq!(s.get(&format!("/admin/members/{}", boss.id)).await.status, StatusCode::OK);
    let p = s
        .post(
            &format!("/admin/members/{}", boss.id),
            &[
                ("login_name", "boss"),
                ("display_name", "Boss"),
                ("unit_path", "Sales/East"),
                ("password", "taken-over-12345"),
                ("version", "1"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    for (path, fields) in [("state", vec![("state", "suspended"), ("version", "1")]), ("delete", vec![])] {
        let p = s.post(&format!("/admin/members/{}/{path}", boss.id), &fields).await;
        assert_eq!(p.status, StatusCode::FORBIDDEN, "{path}");
    }
    assert!(d.store().member(boss.id).await.unwrap().is_some());
    // A further unit in the scope gives no power over a member whose primary unit is outside.
    let mut moved = d.store().member(outside.id).await.unwrap().unwrap();
    moved.org_unit_ids = vec![east];
    let patch = roster::directory::MemberPatch { org_unit_ids: Some(vec![east]), ..Default::default() };
    d.apply_one(&console(), Change::UpdateMember { id: outside.id, patch }).await.unwrap();
    assert_eq!(s.get(&format!("/admin/members/{}", outside.id)).await.status, StatusCode::FORBIDDEN);
    // Suspending a member ends their console sessions at once.
    let mut boss_session = c.session();
    assert_eq!(boss_session.sign_in("boss", MEMBER_PW).await.status, StatusCode::SEE_OTHER);
    let mut admin = c.super_admin().await;
    admin.get(&format!("/admin/members/{}", boss.id)).await;
    let p = admin
        .post(&format!("/admin/members/{}/state", boss.id), &[("state", "suspended"), ("version", "1")])
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let p = admin
        .post(&format!("/admin/members/{}/state", boss.id), &[("state", "active"), ("version", "2")])
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert_eq!(
        boss_session.get("/admin").await.status,
        StatusCode::SEE_OTHER,
        "resuming does not revive the session"
    );
    // A stale state change is a conflict, not a silent overwrite.
    let p = admin
        .post(&format!("/admin/members/{}/state", boss.id), &[("state", "suspended"), ("version", "1")])
        .await;
    assert_eq!(p.status, StatusCode::CONFLICT);
    assert!(p.has("changed by someone else"));
    let _ = moved;
    // Roles, audit and sync are not the scoped manager's.
    for page in ["/admin/roles", "/admin/audit", "/admin/sync", "/admin/accounts", "/admin/import"] {
        assert_eq!(s.get(page).await.status, StatusCode::FORBIDDEN, "{page}");
    }
}

/// Create a unit and a member, see the account number, edit, refuse a stale form, suspend,
/// delete; forms keep what was typed and show the error by the field.
async fn org_and_member_forms(b: Backend) {
    let c = Console::start(b, |_| {}).await;
    let mut s = c.super_admin().await;
    s.get("/admin/org").await;
    let p = s.post("/admin/org/units", &[("name", "Engineering"), ("parent", "")]).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    let eng = id_in(p.location.as_deref().unwrap(), "unit=");
    let p = s.follow(&p).await;
    assert!(p.has("Unit created") && p.has("Engineering"));
    // A duplicate name is refused next to the field, with the typed name kept.
    let p = s.post("/admin/org/units", &[("name", "Engineering"), ("parent", "")]).await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(p.has("already in use"), "{}", p.body);

    let p = s.get(&format!("/admin/members/new?unit={eng}")).await;
    assert!(p.has("value=\"Engineering\""));
    let p = s
        .post(
            "/admin/members/new",
            &[
                ("login_name", "ada"),
                ("display_name", "Ada Lovelace"),
                ("mobile", "12"),
                ("unit_path", "Engineering"),
                ("title", "Engineer"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(p.has("mobile-error"), "{}", p.body);
    assert!(p.has("value=\"Ada Lovelace\"") && p.has("value=\"Engineer\""), "typed values are kept");
    assert_eq!(c.directory.store().counts().await.unwrap().members, 0);
    let p = s
        .post(
            "/admin/members/new",
            &[("login_name", "ada"), ("display_name", "Ada Lovelace"), ("unit_path", "Nowhere")],
        )
        .await;
    assert!(p.has("unit_path-error"));
    let p = s
        .post(
            "/admin/members/new",
            &[
                ("login_name", "ada"),
                ("display_name", "Ada Lovelace"),
                ("mobile", "+8613800000001"),
                ("unit_path", "Engineering"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let ada = id_in(p.location.as_deref().unwrap(), "/admin/members/");
    let p = s.follow(&p).await;
    assert!(p.has("Member created"));
    let number = c.directory.store().member(ada).await.unwrap().unwrap().account_number;
    assert_eq!(number, 1000, "the first number of the block");
    assert!(p.has(&format!("<b>{number}</b>")));
    // The next member gets the next number.
    let p = s
        .post(
            "/admin/members/new",
            &[("login_name", "bob"), ("display_name", "Bob"), ("unit_path", "Engineering")],
        )
        .await;
    let bob = id_in(p.location.as_deref().unwrap(), "/admin/members/");
    assert_eq!(c.directory.store().member(bob).await.unwrap().unwrap().account_number, 1001);
    // The unit lists both, searchable.
    let p = s.get(&format!("/admin/org?unit={eng}&q=ada")).await;
    assert!(p.has("ada@example.com") && !p.has("bob@example.com"), "{}", p.body);

    // Two admins open the edit form; the second to save is refused, not overwritten.
    let form = s.get(&format!("/admin/members/{ada}/edit")).await;
    assert!(form.has("name=\"version\" value=\"1\""));
    let mut other = c.super_admin().await;
    other.get(&format!("/admin/members/{ada}/edit")).await;
    let p = other
        .post(
            &format!("/admin/members/{ada}"),
            &[
                ("login_name", "ada"),
                ("display_name", "Ada King"),
                ("unit_path", "Engineering"),
                ("version", "1"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let p = s
        .post(
            &format!("/admin/members/{ada}"),
            &[
                ("login_name", "ada"),
                ("display_name", "Ada Byron"),
                ("unit_path", "Engineering"),
                ("version", "1"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(p.has("changed by someone else"), "{}", p.body);
    assert!(p.has("value=\"Ada Byron\""), "what the user typed is still there");
    assert_eq!(c.directory.store().member(ada).await.unwrap().unwrap().display_name, "Ada King");

    // Suspend, then delete: a tombstone, listed under deleted accounts.
    s.get(&format!("/admin/members/{ada}")).await;
    let p = s.post(&format!("/admin/members/{ada}/state"), &[("state", "suspended"), ("version", "2")]).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let p = s.follow(&p).await;
    assert!(p.has("Suspended"));
    let p = s.post(&format!("/admin/members/{ada}/delete"), &[("reason", "left the company")]).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert!(c.directory.store().tombstone(ada).await.unwrap().is_some());
    let p = s.get("/admin/accounts").await;
    assert!(p.has("left the company") && p.has("1000"), "{}", p.body);
    // The unit cannot go while Bob is in it; the page says why.
    let p = s.post(&format!("/admin/org/units/{eng}/delete"), &[]).await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(p.has("still has members"), "{}", p.body);
    // Every change is in the audit log, by the super admin, through the console.
    let p = s.get("/admin/audit?action=member.").await;
    assert!(p.has("member.create") && p.has("member.delete") && p.has("super-admin"));
}

async fn roles_pages_grant_and_revoke(b: Backend) {
    let c = Console::start(b, |_| {}).await;
    let d = &c.directory;
    let sales = create_unit(d, None, "Sales").await;
    c.member_with("carol", Some(sales), &[]).await;
    let mut s = c.super_admin().await;
    s.get("/admin/roles").await;
    let p = s
        .post_raw(
            "/admin/roles",
            &[
                ("_csrf".into(), s.csrf.clone()),
                ("name".into(), "HR".into()),
                ("perm".into(), "manage_members".into()),
                ("perm".into(), "view_audit".into()),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let role = id_in(p.location.as_deref().unwrap(), "/admin/roles/");
    let r = d.store().role(role).await.unwrap().unwrap();
    assert!(
        r.permissions.contains(Permission::ManageMembers) && r.permissions.contains(Permission::ViewAudit)
    );
    s.get(&format!("/admin/roles/{role}")).await;
    let p = s.post(&format!("/admin/roles/{role}/grants"), &[("member", "nobody"), ("scope", "")]).await;
    assert!(p.has("member-error"));
    let p =
        s.post(&format!("/admin/roles/{role}/grants"), &[("member", "carol"), ("scope", "Nowhere")]).await;
    assert!(p.has("scope-error"));
    let p = s.post(&format!("/admin/roles/{role}/grants"), &[("member", "carol"), ("scope", "Sales")]).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    let p = s.follow(&p).await;
    assert!(p.has("carol (test)") && p.has(">Sales<"), "{}", p.body);
    // The grant takes effect at once for carol; a unit scoped by a grant cannot be deleted.
    let mut carol = c.session();
    carol.sign_in("carol", MEMBER_PW).await;
    assert_eq!(carol.get("/admin/members").await.status, StatusCode::OK);
    // Deleting a role revokes its grants, each one in the audit log.
    let Applied::Role(temp) = d
        .apply_one(
            &console(),
            Change::CreateRole(NewRole { id: None, name: "temp".into(), permissions: vec![] }),
        )
        .await
        .unwrap()
    else {
        panic!()
    };
    let carol_id = d.store().member_by_login("carol@example.com").await.unwrap().unwrap().id;
    d.apply_one(&console(), Change::GrantRole { role_id: temp.id, member_id: carol_id, scope_unit_id: None })
        .await
        .unwrap();
    s.get(&format!("/admin/roles/{}", temp.id)).await;
    let p = s.post(&format!("/admin/roles/{}/delete", temp.id), &[]).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    let revoked = roster::directory::store::AuditFilter {
        action: Some("role.revoke".into()),
        object_id: Some(format!("{}:{carol_id}", temp.id)),
        limit: 10,
        ..Default::default()
    };
    assert_eq!(d.store().audit_search(&revoked).await.unwrap().len(), 1);
    assert_eq!(s.get("/admin/audit?before=garbage").await.status, StatusCode::OK);
    let p = s.post(&format!("/admin/org/units/{sales}/delete"), &[]).await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    s.get(&format!("/admin/roles/{role}")).await;
    let p = s.post(&format!("/admin/roles/{role}/grants/{carol_id}/revoke"), &[]).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    // With her last role gone, carol's session ends at her next request.
    let p = carol.get("/admin/members").await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert!(p.location.unwrap().starts_with("/admin/login"));
    assert_eq!(
        c.audit_count("role.").await,
        7,
        "create, grant, and revoke of HR; create, grant, revoke, delete of temp"
    );
}

/// A CSV with broken rows imports nothing until the admin confirms, then exactly the good rows.
async fn csv_import_shows_a_plan_then_applies_the_good_rows(b: Backend) {
    let c = Console::start(b, |_| {}).await;
    let d = &c.directory;
    c.member_with("taken", None, &[]).await;
    let mut s = c.super_admin().await;
    s.get("/admin/import").await;
    let csv = "login_name,display_name,mobile,email,org_unit\n\
               alice,Alice,+8613800000011,alice@example.com,Sales/East\n\
               bob,\"Bob, Jr.\",,,Sales\n\
               bad name,Broken,,,Sales\n\
               taken,Already There,,,Sales\n\
               carol,Carol,+8613800000011,,Sales/West\n\
               dave,Dave,,,\n";
    let long_unit = format!("erin,Erin,,,Sales/{}\n", "x".repeat(200));
    let csv = format!("{csv}{long_unit}");
    let csv = csv.as_str();
    let p = s.post("/admin/import", &[("csv", csv), ("step", "check")]).await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    assert!(p.has("id=\"plan-members\">3<"), "{}", p.body);
    for line in ["<td>4</td>", "<td>5</td>", "<td>6</td>", "<td>8</td>"] {
        assert!(p.has(line), "row {line} is reported");
    }
    assert!(p.has("already in use") && p.has("appears twice"));
    assert!(p.has("Sales/East"), "the units to create are in the plan");
    assert_eq!(d.store().counts().await.unwrap().members, 1, "checking writes nothing");
    assert_eq!(d.store().counts().await.unwrap().org_units, 0);
    let p = s.post("/admin/import", &[("csv", csv), ("step", "apply")]).await;
    assert!(p.has("Imported: 3"), "{}", p.body);
    let counts = d.store().counts().await.unwrap();
    assert_eq!((counts.members, counts.org_units), (4, 2));
    let bob = d.store().member_by_login("bob@example.com").await.unwrap().unwrap();
    assert_eq!(bob.display_name, "Bob, Jr.");
    assert!(d.store().member_by_login("carol@example.com").await.unwrap().is_none());
    // A file that is not CSV at all imports nothing and says why.
    let p = s.post("/admin/import", &[("csv", "who,what\n1,2\n"), ("step", "apply")]).await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(p.has("unknown column"));
    // The export has what was imported.
    let p = s.get("/admin/export/members.csv").await;
    assert!(p.body.starts_with("account_number,login_name"));
    assert!(p.has("\"Bob, Jr.\"") && p.has("Sales/East"), "{}", p.body);
    // An org-units file (the export's own format) creates the units that are missing.
    let units = s.get("/admin/export/org-units.csv").await.body;
    assert!(units.starts_with("org_unit,id,position,source\nSales,"), "{units}");
    s.get("/admin/import").await;
    let long = "x".repeat(200);
    let file = format!("{units}Support/Level 1\nSupport/Level 2\nSupport/{long}\n");
    let p = s.post("/admin/import", &[("csv", file.as_str()), ("step", "check")]).await;
    assert!(
        p.has("id=\"plan-members\">0<") && p.has("Support/Level 1") && p.has("import-apply"),
        "{}",
        p.body
    );
    assert_eq!(d.store().counts().await.unwrap().org_units, 2, "checking writes nothing");
    let p = s.post("/admin/import", &[("csv", file.as_str()), ("step", "apply")]).await;
    assert!(p.has("Imported: 0") && p.has("New unit: 3"), "{}", p.body);
    assert!(p.has("<td>6</td>"), "the over-long name is reported on its row: {}", p.body);
    assert_eq!(d.store().counts().await.unwrap().org_units, 5);
}

async fn language_is_the_users_choice(b: Backend) {
    let c = Console::start(b, |_| {}).await;
    let mut s = c.super_admin().await;
    let p = s.get("/admin").await;
    assert!(p.has("Organization") && p.has("lang=\"en\""));
    let p = s.get("/admin/lang/zh-CN").await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    let p = s.get("/admin").await;
    assert!(p.has("组织架构") && p.has("lang=\"zh-CN\""), "{}", p.body);
    let mut fresh = c.session();
    let p = fresh.get("/admin/login").await;
    assert!(p.has("Sign in"));
}

async fn scim_tokens_are_shown_once(b: Backend) {
    let c = Console::start(b, |_| {}).await;
    let mut s = c.super_admin().await;
    s.get("/admin/scim").await;
    let p = s.post("/admin/scim", &[("name", "okta")]).await;
    assert_eq!(p.status, StatusCode::OK);
    let i = p.body.find("id=\"token-secret\">").unwrap() + 18;
    let secret = p.body[i..i + p.body[i..].find('<').unwrap()].to_owned();
    assert!(c.directory.authenticate_token(&secret).await.unwrap().is_some());
    let p = s.get("/admin/scim").await;
    assert!(!p.has(&secret) && p.has("okta"));
    let p = s.post("/admin/scim", &[("name", "okta")]).await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    let p = s.post("/admin/scim/okta/revoke", &[]).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    let tokens = c.directory.store().tokens().await.unwrap();
    assert!(tokens.iter().all(|t| t.revoked_at.is_some()), "{tokens:?}");
    let r = crate::common::http()
        .get(format!("{}/scim/v2/Users", c.base))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "the daemon refuses the revoked token at once");
}

on_both_stores!(
    sign_in_sessions_and_lockout,
    session_cookie_csrf_and_sign_out,
    every_role_against_every_page,
    scoped_roles_stop_at_their_subtree,
    org_and_member_forms,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_change() {
    first_sign_in_must_change_the_password(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_pages() {
    roles_pages_grant_and_revoke(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_import() {
    csv_import_shows_a_plan_then_applies_the_good_rows(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn language() {
    language_is_the_users_choice(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_tokens() {
    scim_tokens_are_shown_once(Backend::Sqlite).await
}

/// Sync from the console against a real slapd: a held run is approved from its page; members
/// that came from LDAP sign in with their directory password (pass-through bind).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_pages_and_directory_sign_in() {
    use crate::slapd::{SUFFIX, Slapd, base_ldif, generate};
    let mut ldap = Slapd::start(&format!("{}{}", base_ldif(), generate(2, 20, 1)));
    // Pass-through sign-in over cleartext ldap:// on loopback, said explicitly (SECURITY.md).
    let src = roster::config::LdapSource { allow_insecure: true, ..crate::sync::source(ldap.url()) };
    let c = Console::start(Backend::Sqlite, |cfg| cfg.sync.ldap = vec![src.clone()]).await;
    let sync = roster::sync::SyncService::new(
        c.directory.0.directory.clone(),
        c.directory.0.runs.clone(),
        vec![src],
    );
    let first = sync
        .run("corp", roster::sync::RunOptions { full: true, trigger: "test".into(), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(first.outcome, roster::sync::Outcome::Applied);
    assert_eq!(c.directory.store().counts().await.unwrap().members, 20);

    // Three of twenty leave: over the 10% limit, so the run is held.
    for n in 1..=3 {
        let dn = format!("uid=user{n:06},ou=dept{:04},ou=people,{SUFFIX}", if n % 2 == 1 { 1 } else { 2 });
        ldap.modify(&format!("dn: {dn}\nchangetype: delete\n\n"));
    }
    let mut s = c.super_admin().await;
    s.get("/admin/sync").await;
    // A real run from the console goes on in the background and ends held.
    let p = s.post("/admin/sync/sources/corp/run", &[("full", "1")]).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let mut held = None;
    for _ in 0..100 {
        let runs = c.directory.store().runs_recent(5).await.unwrap();
        if let Some(r) = runs.iter().find(|r| r.status == "held") {
            held = Some(r.id);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let held = held.expect("the console's run is held by the deletion limit");
    let home = s.get("/admin").await;
    assert!(home.has("held sync runs"), "home lists what needs attention");
    let p = s.get(&format!("/admin/sync/runs/{held}")).await;
    assert!(p.has("approve-run") && p.has("3 deleted"), "{}", p.body);
    assert!(p.has("delete member user000001"), "a held run shows the plan it holds: {}", p.body);
    assert_eq!(c.directory.store().counts().await.unwrap().members, 20, "held: nothing deleted");
    let p = s.post(&format!("/admin/sync/runs/{held}/approve"), &[]).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert_eq!(c.directory.store().counts().await.unwrap().members, 17);
    assert_eq!(c.audit_count("sync.approve").await, 1);
    // Approving it again is refused: it is no longer held.
    let p = s.post(&format!("/admin/sync/runs/{held}/approve"), &[]).await;
    assert_eq!(p.status, StatusCode::CONFLICT);
    assert!(p.has("not held"));

    // A member from LDAP signs in with the directory's password; the console keeps none.
    let dn = format!("uid=user000004,ou=dept0002,ou=people,{SUFFIX}");
    ldap.modify(&format!(
        "dn: {dn}\nchangetype: modify\nreplace: userPassword\nuserPassword: ldap-pass-1234\n\n"
    ));
    let user4 = c.directory.store().member_by_login("user000004@example.com").await.unwrap().unwrap();
    let Applied::Role(auditor) = c
        .directory
        .apply_one(
            &console(),
            Change::CreateRole(NewRole {
                id: None,
                name: "auditor".into(),
                permissions: vec![Permission::ViewAudit],
            }),
        )
        .await
        .unwrap()
    else {
        panic!()
    };
    c.directory
        .apply_one(
            &console(),
            Change::GrantRole { role_id: auditor.id, member_id: user4.id, scope_unit_id: None },
        )
        .await
        .unwrap();
    let mut m = c.session();
    assert_eq!(m.sign_in("user000004", "wrong-password").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(m.sign_in("user000004", "").await.status, StatusCode::UNPROCESSABLE_ENTITY);
    let p = m.sign_in("user000004", "ldap-pass-1234").await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    // Their password is the directory's: the console says where to change it.
    let p = m.get("/admin/password").await;
    assert!(p.has("id=\"directory-password\"") && !p.has("id=\"password-form\""), "{}", p.body);
    // With the directory down, sign-in says so instead of "wrong password".
    ldap.kill();
    let mut m = c.session();
    let p = m.sign_in("user000004", "ldap-pass-1234").await;
    assert_eq!(p.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(p.has("directory cannot be reached"), "{}", p.body);
}

/// With the database gone, pages say so plainly (503) and never show the database's own error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_database_is_a_clear_page() {
    let cluster = crate::pg::start(false);
    let url = cluster.url("postgres");
    let c = Console::start(Backend::Sqlite, |cfg| cfg.database.url = url).await;
    let mut s = c.super_admin().await;
    assert_eq!(s.get("/admin/org").await.status, StatusCode::OK);
    drop(cluster);
    for path in ["/admin/org", "/admin", "/admin/login"] {
        let p = s.get(path).await;
        if path == "/admin/login" {
            assert_eq!(p.status, StatusCode::OK, "the sign-in form needs no database");
            continue;
        }
        assert_eq!(p.status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert!(p.has("not available right now; nothing was changed"), "{}", p.body);
        for leak in ["postgres", "connection", "sqlx", "refused", "SELECT"] {
            assert!(
                !p.body.to_lowercase().contains(&leak.to_lowercase()),
                "{path} shows {leak:?}: {}",
                p.body
            );
        }
    }
    let p = s.post("/admin/org/units", &[("name", "Sales"), ("parent", "")]).await;
    assert_eq!(p.status, StatusCode::SERVICE_UNAVAILABLE);
    let p = s.sign_in(&c.enterprise_id, SUPER_PW).await;
    assert_eq!(p.status, StatusCode::SERVICE_UNAVAILABLE);
}

/// Every action (POST route) tried by a member holding each single permission (and none): the
/// server refuses exactly those the permission does not cover, with a 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_against_every_action() {
    let mut dead = crate::sync::source("ldap://127.0.0.1:1".into());
    dead.timeout_secs = 2;
    let c = Console::start(Backend::Sqlite, |cfg| cfg.sync.ldap = vec![dead]).await;
    let d = &c.directory;
    let mut cases: Vec<Option<Permission>> = vec![None];
    cases.extend(Permission::ALL.iter().copied().map(Some));
    for (i, perm) in cases.iter().enumerate() {
        // Fresh objects for each case, so one case's deletes do not turn another's 403 into 404.
        let unit = create_unit(d, None, &format!("Unit {i}")).await;
        let target = c.member_with(&format!("target{i}"), Some(unit), &[]).await;
        let Applied::Role(role) = d
            .apply_one(
                &console(),
                Change::CreateRole(NewRole { id: None, name: format!("r{i}"), permissions: vec![] }),
            )
            .await
            .unwrap()
        else {
            panic!()
        };
        let roles: Vec<(&[Permission], Option<Uuid>)> = match perm {
            Some(p) => vec![(std::slice::from_ref(p), None)],
            None => vec![],
        };
        c.member_with(&format!("actor{i}"), None, &roles).await;
        let mut s = c.session();
        if perm.is_none() {
            // (A member without a role cannot sign in at all; see every_role_against_every_page.)
            assert_eq!(s.sign_in(&format!("actor{i}"), MEMBER_PW).await.status, StatusCode::UNAUTHORIZED);
            continue;
        }
        assert_eq!(s.sign_in(&format!("actor{i}"), MEMBER_PW).await.status, StatusCode::SEE_OTHER);
        s.get("/admin").await;
        let (u, m, r) = (unit.to_string(), target.id.to_string(), role.id.to_string());
        let login = format!("target{i}");
        let name = format!("Renamed {i}");
        let actions: Vec<(String, Vec<(&str, &str)>, Option<Permission>)> = vec![
            ("/admin/org/units".into(), vec![("name", "New"), ("parent", &u)], Some(Permission::ManageOrg)),
            (
                format!("/admin/org/units/{u}/rename"),
                vec![("name", &name), ("version", "1")],
                Some(Permission::ManageOrg),
            ),
            (
                format!("/admin/org/units/{u}/move"),
                vec![("parent_path", ""), ("version", "1")],
                Some(Permission::ManageOrg),
            ),
            (format!("/admin/org/units/{u}/delete"), vec![], Some(Permission::ManageOrg)),
            (
                "/admin/members/new".into(),
                vec![("login_name", "x"), ("display_name", "X")],
                Some(Permission::ManageMembers),
            ),
            (
                format!("/admin/members/{m}"),
                vec![("login_name", &login), ("display_name", "T"), ("version", "1")],
                Some(Permission::ManageMembers),
            ),
            (
                format!("/admin/members/{m}/state"),
                vec![("state", "suspended"), ("version", "2")],
                Some(Permission::ManageMembers),
            ),
            (format!("/admin/members/{m}/delete"), vec![], Some(Permission::ManageMembers)),
            (
                "/admin/accounts/reservations".into(),
                vec![("number", "1999"), ("note", "n")],
                Some(Permission::ManageMembers),
            ),
            ("/admin/accounts/reservations/1999/release".into(), vec![], Some(Permission::ManageMembers)),
            ("/admin/sync/sources/corp/run".into(), vec![("dry_run", "1")], Some(Permission::ManageSync)),
            ("/admin/sync/runs/999/approve".into(), vec![], Some(Permission::ManageSync)),
            ("/admin/scim".into(), vec![("name", "t")], Some(Permission::ManageScim)),
            ("/admin/scim/t/revoke".into(), vec![], Some(Permission::ManageScim)),
            ("/admin/delivery/sms/top-up".into(), vec![("amount", "5")], Some(Permission::SendSms)),
            (
                "/admin/delivery/broadcasts".into(),
                vec![("title", "T"), ("text", "x"), ("email", "1")],
                Some(Permission::SendSms),
            ),
            (format!("/admin/delivery/{}/retry", Uuid::nil()), vec![], Some(Permission::SendSms)),
            ("/admin/roles".into(), vec![("name", "x")], None),
            (format!("/admin/roles/{r}"), vec![("name", "y"), ("version", "1")], None),
            (format!("/admin/roles/{r}/grants"), vec![("member", &login)], None),
            (format!("/admin/roles/{r}/grants/{m}/revoke"), vec![], None),
            (format!("/admin/roles/{r}/delete"), vec![], None),
            ("/admin/enterprise".into(), vec![("name", "X")], None),
        ];
        for (path, fields, needs) in actions {
            let p = s.post(&path, &fields).await;
            let allowed = needs.is_some() && needs == *perm;
            if allowed {
                assert_ne!(p.status, StatusCode::FORBIDDEN, "{perm:?} may {path}: {}", p.body);
            } else {
                assert_eq!(p.status, StatusCode::FORBIDDEN, "{perm:?} may not {path}");
            }
        }
        // Import needs both org and member management over the whole enterprise.
        let p = s.post("/admin/import", &[("csv", "login_name,display_name\n"), ("step", "check")]).await;
        assert_eq!(p.status, StatusCode::FORBIDDEN, "{perm:?} may not import");
    }
    // The refused actions changed nothing: the targets of the cases without the permission
    // are still there, active, with their names.
    let m = d.store().member_by_login("target0@example.com").await.unwrap().unwrap();
    assert_eq!((m.display_name.as_str(), m.state.as_str()), ("target0 (test)", "active"));
    assert!(d.store().roles().await.unwrap().iter().any(|r| r.name == "r0"));
    assert_eq!(d.store().sms_balance().await.unwrap(), 5, "only the send_sms case topped up");
}

/// Behind a trusted reverse proxy the client is the address in `X-Forwarded-For`: one client's
/// failures lock that address, not everybody behind the proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_behind_a_trusted_proxy_are_told_apart() {
    let c = Console::start(Backend::Sqlite, |cfg| {
        cfg.admin.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        cfg.admin.max_failures_per_address = 2;
    })
    .await;
    let mut mallory = c.session();
    mallory.headers.push(("x-forwarded-for".into(), "203.0.113.9, 10.1.1.1".into()));
    for who in ["a", "b"] {
        assert_eq!(mallory.sign_in(who, "guess-guess-guess").await.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(mallory.sign_in(&c.enterprise_id, SUPER_PW).await.status, StatusCode::TOO_MANY_REQUESTS);
    // Another client behind the same proxy signs in.
    let mut alice = c.session();
    alice.headers.push(("x-forwarded-for".into(), "198.51.100.7".into()));
    assert_eq!(alice.sign_in(&c.enterprise_id, SUPER_PW).await.status, StatusCode::SEE_OTHER);
    // The audit log names the client's address (the last one the proxy did not add itself).
    let f = roster::directory::store::AuditFilter {
        action: Some("console.sign_in_failed".into()),
        limit: 10,
        ..Default::default()
    };
    let rows = c.directory.store().audit_search(&f).await.unwrap();
    assert!(rows.iter().all(|r| r.after.as_ref().unwrap()["ip"] == "10.1.1.1"), "{rows:?}");
}

/// Every refused form comes back with what was typed in it and the error next to its field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_forms_keep_what_was_typed() {
    let c = Console::start(Backend::Sqlite, |_| {}).await;
    let d = &c.directory;
    let sales = create_unit(d, None, "Sales").await;
    let east = create_unit(d, Some(sales), "East").await;
    create_unit(d, Some(sales), "West").await;
    let mut s = c.super_admin().await;
    s.get(&format!("/admin/org?unit={east}")).await;
    // Renaming East to West (taken): the error is at the rename field, which keeps "West".
    let p = s.post(&format!("/admin/org/units/{east}/rename"), &[("name", "West"), ("version", "1")]).await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(p.has("id=\"rename-error\"") && !p.has("id=\"new-name-error\""), "{}", p.body);
    assert!(p.has("id=\"unit-rename\" name=\"name\" value=\"West\""), "{}", p.body);
    let p = s
        .post(
            &format!("/admin/org/units/{east}/move"),
            &[("parent_path", "Nowhere/Else"), ("position", "x"), ("version", "1")],
        )
        .await;
    assert!(p.has("id=\"parent-error\"") && p.has("value=\"Nowhere/Else\""), "{}", p.body);
    let p = s
        .post(
            &format!("/admin/org/units/{east}/move"),
            &[("parent_path", "Sales"), ("position", "two"), ("version", "1")],
        )
        .await;
    assert!(p.has("id=\"position-error\"") && p.has("value=\"two\""), "{}", p.body);
    // A role without a name keeps its ticked permissions.
    s.get("/admin/roles").await;
    let p = s
        .post_raw(
            "/admin/roles",
            &[
                ("_csrf".into(), s.csrf.clone()),
                ("name".into(), " ".into()),
                ("perm".into(), "view_audit".into()),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(p.has("value=\"view_audit\" checked") && !p.has("value=\"manage_org\" checked"), "{}", p.body);
    // Top-up, broadcast, reservation and token forms.
    s.get("/admin/delivery").await;
    let p = s.post("/admin/delivery/sms/top-up", &[("amount", "lots"), ("note", "for Q4")]).await;
    assert!(
        p.has("id=\"amount-error\"") && p.has("value=\"lots\"") && p.has("value=\"for Q4\""),
        "{}",
        p.body
    );
    let p = s
        .post(
            "/admin/delivery/broadcasts",
            &[("title", "Fire drill"), ("text", "At 3pm"), ("units", "Sales/North"), ("sms", "1")],
        )
        .await;
    assert!(
        p.has("id=\"units-error\"") && p.has("value=\"Fire drill\"") && p.has(">At 3pm</textarea>"),
        "{}",
        p.body
    );
    assert!(p.has(">Sales/North</textarea>") && p.has("name=\"sms\" value=\"1\" checked"), "{}", p.body);
    assert!(!p.has("name=\"email\" value=\"1\" checked"), "an unticked box stays unticked");
    s.get("/admin/accounts").await;
    let p = s.post("/admin/accounts/reservations", &[("number", "12"), ("note", "VIP")]).await;
    assert!(p.has("id=\"number-error\"") && p.has("value=\"12\"") && p.has("value=\"VIP\""), "{}", p.body);
    s.get("/admin/scim").await;
    let p = s.post("/admin/scim", &[("name", "bad name!")]).await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(p.has("value=\"bad name!\""), "{}", p.body);
    assert_eq!(d.store().counts().await.unwrap().org_units, 3, "nothing was changed");
}

/// The delivery page lists messages and mailbox bindings by state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_lists_by_state() {
    let c = Console::start(Backend::Sqlite, |_| {}).await;
    let mut s = c.super_admin().await;
    let p = s.get("/admin/delivery").await;
    assert!(p.has("Dead messages") && p.has("href=\"/admin/delivery?state=pending\""), "{}", p.body);
    let p = s.get("/admin/delivery?state=pending").await;
    assert!(p.has("Outbox: pending") && p.has("?state=pending\" aria-current=\"true\""), "{}", p.body);
    let p = s.get("/admin/delivery?state=bogus&mailbox=failed").await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(p.has("Dead messages") && p.has("?mailbox=failed\" aria-current=\"true\""), "{}", p.body);
}

/// A member with a console password changes it themselves; their other sessions end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_change_their_own_password() {
    let c = Console::start(Backend::Sqlite, |_| {}).await;
    c.member_with("dana", None, &[(&[Permission::ViewAudit], None)]).await;
    let mut s = c.session();
    assert_eq!(s.sign_in("dana", MEMBER_PW).await.status, StatusCode::SEE_OTHER);
    let mut other = c.session();
    assert_eq!(other.sign_in("dana", MEMBER_PW).await.status, StatusCode::SEE_OTHER);
    let p = s.get("/admin/password").await;
    assert!(p.has("id=\"password-form\""));
    let p = s
        .post(
            "/admin/password",
            &[("current", "not-mine-at-all"), ("new", "dana-new-password"), ("confirm", "dana-new-password")],
        )
        .await;
    assert!(p.has("current-error"));
    let p =
        s.post("/admin/password", &[("current", MEMBER_PW), ("new", "short"), ("confirm", "short")]).await;
    assert!(p.has("new-error"), "{}", p.body);
    let p = s
        .post(
            "/admin/password",
            &[("current", MEMBER_PW), ("new", "dana-new-password"), ("confirm", "dana-new-password")],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert_eq!(s.get("/admin").await.status, StatusCode::OK);
    assert_eq!(other.get("/admin").await.status, StatusCode::SEE_OTHER, "the other session ended");
    let mut fresh = c.session();
    assert_eq!(fresh.sign_in("dana", MEMBER_PW).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(fresh.sign_in("dana", "dana-new-password").await.status, StatusCode::SEE_OTHER);
    // The super password is untouched.
    assert_eq!(c.session().sign_in(&c.enterprise_id, SUPER_PW).await.status, StatusCode::SEE_OTHER);
}
