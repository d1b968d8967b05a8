//! The holes a security review found (issue 13), each shown closed over real HTTP against a
//! running rosterd, on both stores where a store is involved: no admin takeover through SCIM,
//! no source takeover through a reused token name, a sign-in lockout that holds under load,
//! one answer for every failed sign-in, bounded metrics, scoped lists over deep trees, and
//! secrets kept out of what rosterd prints.

use reqwest::{Method, StatusCode};
use roster::directory::model::Permission;
use roster::directory::{Applied, Change, MemberPatch};
use serde_json::{Value, json};

use crate::admin::{Console, MEMBER_PW, SUPER_PW};
use crate::common::{Backend, console, on_both_stores};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// One SCIM request with `token` against the console's daemon.
async fn scim(
    c: &Console,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req =
        crate::common::http().request(method, format!("{}/scim/v2{path}", c.base)).bearer_auth(token);
    if let Some(b) = body {
        req = req.header("content-type", "application/scim+json").body(b.to_string());
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn scim_user(name: &str, password: &str) -> Value {
    json!({
        "schemas": [USER],
        "externalId": format!("ext-{name}"),
        "userName": format!("{name}@example.com"),
        "displayName": format!("{name} Example"),
        "active": true,
        "password": password,
    })
}

async fn grant(c: &Console, member: uuid::Uuid, perms: &[Permission]) {
    let role =
        roster::directory::NewRole { id: None, name: format!("r-{member}"), permissions: perms.to_vec() };
    let Applied::Role(r) = c.directory.apply_one(&console(), Change::CreateRole(role)).await.unwrap() else {
        panic!()
    };
    let g = Change::GrantRole { role_id: r.id, member_id: member, scope_unit_id: None };
    c.directory.apply_one(&console(), g).await.unwrap();
}

/// The super admin sets boss's password on the member's form, the other fields as they are.
async fn set_password_on_form(
    admin: &mut crate::admin::Session,
    id: uuid::Uuid,
    display_name: &str,
    password: &str,
) {
    let form = admin.get(&format!("/admin/members/{id}/edit")).await;
    let i = form.body.find("name=\"version\" value=\"").unwrap() + 22;
    let version = form.body[i..i + form.body[i..].find('"').unwrap()].to_owned();
    let fields = [
        ("login_name", "boss@example.com"),
        ("display_name", display_name),
        ("password", password),
        ("version", &version),
    ];
    let p = admin.post(&format!("/admin/members/{id}"), &fields).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
}

/// Item 1: a SCIM client cannot choose the console password of anyone who holds a role, cannot
/// adopt them, and a password it chose before a role was granted does not survive the grant.
async fn scim_never_sets_an_admins_password(b: Backend) {
    let c = Console::start(b, |_| {}).await;
    let token = c.directory.create_token(&console(), "entra", true).await.unwrap();
    const CHOSEN: &str = "chosen-by-the-idp-1";

    // The IdP creates a member with a password; the member holds no role yet.
    let (st, body) = scim(&c, &token, Method::POST, "/Users", Some(scim_user("boss", CHOSEN))).await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    let id: uuid::Uuid = body["id"].as_str().unwrap().parse().unwrap();

    // A role is granted: the password the IdP chose is cleared, and audited.
    grant(&c, id, &[Permission::ManageMembers]).await;
    assert_eq!(c.audit_count("member.password_cleared").await, 1);
    let mut s = c.session();
    assert_eq!(
        s.sign_in("boss", CHOSEN).await.status,
        StatusCode::UNAUTHORIZED,
        "the IdP's password is gone"
    );

    // The super admin sets one in the console; boss signs in with it.
    let mut admin = c.super_admin().await;
    set_password_on_form(&mut admin, id, "boss Example", "set-by-the-super-admin").await;
    let mut boss = c.session();
    assert_eq!(boss.sign_in("boss", "set-by-the-super-admin").await.status, StatusCode::SEE_OTHER);
    assert_eq!(boss.get("/admin").await.status, StatusCode::OK);

    // A full-profile PUT carrying a password goes through without it (an IdP must still be
    // able to rename or deprovision an admin); the refusal is audited.
    let path = format!("/Users/{id}");
    let mut put = scim_user("boss", CHOSEN);
    put["displayName"] = json!("Renamed by the IdP");
    let (st, body) = scim(&c, &token, Method::PUT, &path, Some(put)).await;
    assert_eq!(st, StatusCode::OK, "PUT: {body}");
    assert_eq!(c.audit_count("member.password_refused").await, 1);
    assert_eq!(
        s.sign_in("boss", CHOSEN).await.status,
        StatusCode::UNAUTHORIZED,
        "the PUT's password was not set"
    );
    // A write that only sets the password is refused with 403, however it is sent.
    let ops = json!({ "schemas": [PATCH], "Operations": [{ "op": "replace", "path": "password", "value": CHOSEN }] });
    let (st, body) = scim(&c, &token, Method::PATCH, &path, Some(ops)).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "PATCH: {body}");
    let bulk = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
        "Operations": [{ "method": "PATCH", "path": path, "data": {
            "schemas": [PATCH], "Operations": [{ "op": "replace", "value": { "password": CHOSEN } }] } }],
    });
    let (st, body) = scim(&c, &token, Method::POST, "/Bulk", Some(bulk)).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["Operations"][0]["status"], "403", "Bulk: {body}");
    assert!(
        body["Operations"][0]["response"]["detail"].as_str().unwrap().contains("holds a console role"),
        "{body}"
    );
    let m = c.directory.store().member(id).await.unwrap().unwrap();
    assert_eq!(m.display_name, "Renamed by the IdP", "the PUT's other changes were applied");
    assert_eq!(s.sign_in("boss", CHOSEN).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(boss.get("/admin").await.status, StatusCode::OK, "boss's session is untouched");

    // Other attributes still flow for boss when the IdP sends no password.
    let mut put = scim_user("boss", "");
    put.as_object_mut().unwrap().remove("password");
    put["displayName"] = json!("Boss Renamed");
    let (st, body) = scim(&c, &token, Method::PUT, &path, Some(put)).await;
    assert_eq!(st, StatusCode::OK, "{body}");

    // Adoption never takes over a member who holds a role (here one made in the console).
    let admin2 = c.member_with("admin2", None, &[(&[Permission::ViewAudit], None)]).await;
    let (st, body) = scim(&c, &token, Method::POST, "/Users", Some(scim_user("admin2", CHOSEN))).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "adoption: {body}");
    let after = c.directory.store().member(admin2.id).await.unwrap().unwrap();
    assert_eq!(after.source.as_str(), "console");
    let mut a2 = c.session();
    assert_eq!(a2.sign_in("admin2", MEMBER_PW).await.status, StatusCode::SEE_OTHER);

    // A password set by any source ends the member's sessions: the super admin resets boss's.
    set_password_on_form(&mut admin, id, "Boss Renamed", "another-new-password").await;
    assert_eq!(boss.get("/admin").await.status, StatusCode::SEE_OTHER, "boss's old session ended");

    // A member without a role: the IdP may set the password, and that ends their sessions too
    // (in the same transaction: the audit row says how many).
    let (st, body) = scim(&c, &token, Method::POST, "/Users", Some(scim_user("plain", CHOSEN))).await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    let plain = body["id"].as_str().unwrap().to_owned();
    let ops = json!({ "schemas": [PATCH], "Operations": [{ "op": "replace", "path": "password", "value": "a-newer-password" }] });
    let (st, body) = scim(&c, &token, Method::PATCH, &format!("/Users/{plain}"), Some(ops)).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert!(c.audit_count("member.password_set").await >= 2);
}

/// Item 2: a revoked token's name is never handed out again; rotation keeps the source.
async fn token_names_are_never_reused(b: Backend) {
    let c = Console::start(b, |_| {}).await;
    let old = c.directory.create_token(&console(), "entra", false).await.unwrap();
    let (st, body) = scim(&c, &old, Method::POST, "/Users", Some(scim_user("ann", "ann-password-1"))).await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    let ann = body["id"].as_str().unwrap().to_owned();

    // A manager with only "manage SCIM" revokes entra and tries to create it again.
    c.member_with("scimmer", None, &[(&[Permission::ManageScim], None)]).await;
    let mut m = c.session();
    assert_eq!(m.sign_in("scimmer", MEMBER_PW).await.status, StatusCode::SEE_OTHER);
    m.get("/admin/scim").await;
    assert_eq!(m.post("/admin/scim/entra/revoke", &[]).await.status, StatusCode::SEE_OTHER);
    let p = m.post("/admin/scim", &[("name", "entra")]).await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", p.body);
    assert!(p.has("never reused"), "{}", p.body);
    let err = c.directory.create_token(&console(), "entra", false).await.unwrap_err();
    assert!(err.to_string().contains("already in use"), "{err}");
    // The manager may not rotate either: only the super admin hands a source a new secret.
    let p = m.post("/admin/scim/entra/rotate", &[]).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert!(!p.has("rst_"));

    // The super admin rotates: the source and its members stay; the old secret is dead.
    let mut s = c.super_admin().await;
    s.get("/admin/scim").await;
    let p = s.post("/admin/scim/entra/rotate", &[]).await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    let i = p.body.find("id=\"token-secret\">").unwrap() + 18;
    let new = p.body[i..i + p.body[i..].find('<').unwrap()].to_owned();
    assert_ne!(new, old);
    let (st, _) = scim(&c, &old, Method::GET, &format!("/Users/{ann}"), None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let ops = json!({ "schemas": [PATCH], "Operations": [{ "op": "replace", "path": "displayName", "value": "Ann R." }] });
    let (st, body) = scim(&c, &new, Method::PATCH, &format!("/Users/{ann}"), Some(ops)).await;
    assert_eq!(st, StatusCode::OK, "the rotated client still owns its members: {body}");
    let tokens = c.directory.store().tokens().await.unwrap();
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    assert!(tokens[0].rotated_at.is_some() && tokens[0].revoked_at.is_none());
    assert_eq!(c.audit_count("token.rotate").await, 1);
    assert!(c.audit_count("console.denied").await >= 1);
    let _ = (SUPER_PW, MemberPatch::default());
}

on_both_stores!(scim_never_sets_an_admins_password, token_names_are_never_reused);

/// Item 4: many parallel wrong passwords for one account; no more than `max_failures` of them
/// are ever evaluated, and the account is locked after.
async fn lockout_holds_under_parallel_attempts(b: Backend) {
    let c = Console::start(b, |cfg| {
        cfg.admin.max_failures = 5;
        cfg.admin.max_failures_per_address = 10_000;
    })
    .await;
    c.member_with("carl", None, &[(&[Permission::ViewAudit], None)]).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..60 {
        let mut s = c.session();
        tasks.spawn(async move { s.sign_in("carl", &format!("wrong-password-{i}")).await.status });
    }
    let mut statuses = Vec::new();
    while let Some(st) = tasks.join_next().await {
        statuses.push(st.unwrap());
    }
    assert!(statuses.iter().all(|s| *s == StatusCode::UNAUTHORIZED || *s == StatusCode::TOO_MANY_REQUESTS));
    let evaluated = c.audit_count("console.sign_in_failed").await;
    assert_eq!(evaluated, 5, "{evaluated} of 60 parallel guesses were evaluated; {statuses:?}");
    assert_eq!(c.audit_count("console.sign_in_locked").await, 60 - evaluated, "the rest were turned away");
    let mut s = c.session();
    assert_eq!(s.sign_in("carl", MEMBER_PW).await.status, StatusCode::TOO_MANY_REQUESTS, "carl is locked");
}

/// The page a failed sign-in answers with, with what differs by request taken out (the form's
/// token and the account as typed).
fn failure_shape(p: &crate::admin::Page, typed: &str) -> String {
    let mut body = p.body.replace(typed, "ACCOUNT");
    while let Some(i) = body.find("rst_") {
        body.replace_range(i..i + 68, "TOKEN");
    }
    format!("{} {body}", p.status)
}

/// Item 5: a wrong password, a right password without a role, a suspended member and an unknown
/// account all get the same answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failed_sign_in_looks_the_same() {
    let c = Console::start(Backend::Sqlite, |cfg| cfg.admin.max_failures = 100).await;
    c.member_with("admin1", None, &[(&[Permission::ViewAudit], None)]).await;
    c.member_with("norole", None, &[]).await;
    let gone = c.member_with("gone", None, &[(&[Permission::ViewAudit], None)]).await;
    let patch =
        MemberPatch { state: Some(roster::directory::model::MemberState::Suspended), ..Default::default() };
    c.directory.apply_one(&console(), Change::UpdateMember { id: gone.id, patch }).await.unwrap();
    let mut shapes = Vec::new();
    for (account, password) in
        [("admin1", "wrong-password-1"), ("norole", MEMBER_PW), ("gone", MEMBER_PW), ("nobody", MEMBER_PW)]
    {
        let mut s = c.session();
        let p = s.sign_in(account, password).await;
        assert!(p.set_cookies.iter().all(|c| !c.starts_with("roster_session=")), "{account}: no session");
        shapes.push((account, failure_shape(&p, account)));
    }
    for (account, shape) in &shapes[1..] {
        assert_eq!(shape, &shapes[0].1, "{account} answers differently from a wrong password");
    }
    assert!(shapes[0].1.starts_with("401 "));
    // The audit log, for the admins, says why.
    let f = roster::directory::store::AuditFilter {
        action: Some("console.sign_in_failed".into()),
        limit: 10,
        ..Default::default()
    };
    let rows = c.directory.store().audit_search(&f).await.unwrap();
    let reasons: Vec<String> = rows.iter().map(|r| r.after.as_ref().unwrap()["reason"].to_string()).collect();
    assert_eq!(reasons.iter().filter(|r| r.contains("no role")).count(), 2, "{reasons:?}");
}

/// Counts the TCP connections made to a loopback port (where an LDAP server would be): which
/// sign-ins reached for the directory at all. Each connection is closed at once.
async fn connection_counter() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ldap://{}", listener.local_addr().unwrap());
    let n = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = n.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(sock);
        }
    });
    (url, n)
}

async fn ldap_member(c: &Console, login: &str, anchor: &str, role: bool) {
    let actor = roster::directory::model::Actor::new(
        roster::directory::model::Source::parse("ldap:corp").unwrap(),
        "sync",
    );
    let n = roster::directory::NewMember {
        login_name: login.into(),
        display_name: login.into(),
        anchor: Some(anchor.into()),
        ..Default::default()
    };
    let Applied::Member(m) = c.directory.apply_one(&actor, Change::CreateMember(n)).await.unwrap() else {
        panic!()
    };
    if role {
        grant(c, m.id, &[Permission::ViewAudit]).await;
    }
}

/// Items 5 and 12: pass-through sign-in never sends a password over cleartext ldap:// unless
/// the admin allowed it; members without a role and addresses over their limit never reach the
/// directory at all (no AD lockouts to trip by spraying).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pass_through_is_guarded() {
    let (url, connections) = connection_counter().await;
    let count = || connections.load(std::sync::atomic::Ordering::SeqCst);
    let src = crate::sync::source(url.clone());
    let c = Console::start(Backend::Sqlite, |cfg| cfg.sync.ldap = vec![src.clone()]).await;
    ldap_member(&c, "dave", "a1", true).await;
    ldap_member(&c, "erin", "a2", false).await;
    let mut s = c.session();
    let p = s.sign_in("dave", "dave-password").await;
    assert_eq!(p.status, StatusCode::SERVICE_UNAVAILABLE, "cleartext refused: {}", p.body);
    assert_eq!(count(), 0, "nothing was sent to the directory");
    let p = s.sign_in("erin", "erin-password").await;
    assert_eq!(p.status, StatusCode::UNAUTHORIZED, "no role: {}", p.body);
    assert_eq!(count(), 0);
    drop(c);

    // Allowed explicitly: dave's sign-in reaches for the directory (which hangs up: 503).
    let src = roster::config::LdapSource { allow_insecure: true, ..src };
    let c = Console::start(Backend::Sqlite, |cfg| {
        cfg.sync.ldap = vec![src];
        cfg.admin.max_failures_per_address = 3;
    })
    .await;
    ldap_member(&c, "dave", "a1", true).await;
    ldap_member(&c, "erin", "a2", false).await;
    let mut s = c.session();
    assert_eq!(s.sign_in("dave", "dave-password").await.status, StatusCode::SERVICE_UNAVAILABLE);
    let reached = count();
    assert!(reached >= 1, "the directory was asked");
    assert_eq!(s.sign_in("erin", "erin-password").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(count(), reached, "a member without a role is never checked against the directory");
    // The address spends its third attempt (dave's unanswered one counted too: probing which
    // accounts sign in through a directory is not free); then dave's sign-in stops before any
    // bind.
    assert_eq!(s.sign_in("nobody", "x-password-1").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(s.sign_in("dave", "dave-password").await.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(count(), reached, "the per-address limit applies before any LDAP bind");
}

/// Item 12: a bind DN without a password is a configuration error, not an anonymous bind.
#[test]
fn bind_dn_without_password_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("r.toml"),
        "[[sync.ldap]]\nname = \"corp\"\nurl = \"ldaps://dc.example.com\"\nbind_dn = \"cn=sync,dc=example,dc=com\"\n\
         [sync.ldap.users]\nbase_dn = \"dc=example,dc=com\"\n",
    )
    .unwrap();
    let out =
        crate::daemon::run(crate::daemon::rosterd(dir.path()).args(["check-config", "--config", "r.toml"]));
    assert_eq!(out.status.code(), Some(2), "{}", crate::daemon::text(&out.stdout));
    let err = crate::daemon::text(&out.stderr);
    assert!(err.contains("bind_password") && err.contains("anonymous bind"), "{err}");
}

on_both_stores!(lockout_holds_under_parallel_attempts);

/// Item 3: invented methods and paths do not grow the metrics; the directory is not counted once
/// per scrape. (A rosterd process of its own: the recorder is process-wide.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_stay_bounded() {
    use crate::daemon::Daemon;
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    d.wait_for("/readyz", 200, std::time::Duration::from_secs(30)).await;
    let http = crate::common::http();
    let scrape = || async { http.get(d.url("/metrics")).send().await.unwrap().text().await.unwrap() };
    let series = |text: &str| text.lines().filter(|l| l.starts_with("roster_http_requests_total{")).count();
    let before = series(&scrape().await);
    for i in 0..200 {
        let method = Method::from_bytes(format!("XFOO{i}").as_bytes()).unwrap();
        let r = http.request(method, d.url(&format!("/made-up/{i}"))).send().await.unwrap();
        assert!(r.status().is_client_error());
        http.get(d.url(&format!("/scim/v2/Users/{i}?x={i}"))).send().await.unwrap();
    }
    let mut text = String::new();
    for _ in 0..20 {
        text = scrape().await;
    }
    assert!(!text.contains("XFOO") && !text.contains("made-up"), "raw methods or paths in labels:\n{text}");
    assert!(text.contains("method=\"other\""), "{text}");
    assert!(text.contains("route=\"unmatched\""), "{text}");
    assert!(text.contains("route=\"/scim/v2/Users/{id}\""), "routes are labelled as matched: {text}");
    assert!(series(&text) <= before + 6, "{} series after 400 odd requests, {before} before", series(&text));
    let counted: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("roster_metrics_counts_total "))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0.0);
    assert_eq!(counted, 1.0, "21 scrapes counted the directory {counted} times");
}

/// Item 6: a manager scoped to a subtree of 5,000 units (a chain 2,000 deep, the rest wide)
/// lists its members; members outside stay out.
async fn scoped_lists_over_a_deep_subtree(b: Backend) {
    use roster::directory::NewOrgUnit;
    let c = Console::start(b, |_| {}).await;
    let root = crate::common::create_unit(&c.directory, None, "Scope").await;
    let outside = crate::common::create_unit(&c.directory, None, "Elsewhere").await;
    let mut changes = Vec::new();
    let mut parent = root;
    let mut deepest = root;
    for i in 0..4_999 {
        let id = uuid::Uuid::now_v7();
        // The first 2,000 form a chain; the rest hang off units along it.
        let under = if i < 2_000 { parent } else { deepest };
        changes.push(Change::CreateOrgUnit(NewOrgUnit {
            id: Some(id),
            parent_id: Some(under),
            name: format!("u{i}"),
            ..Default::default()
        }));
        if i < 2_000 {
            parent = id;
            deepest = id;
        }
    }
    c.directory.apply(&console(), changes).await.unwrap();
    let mut n = crate::common::member("deep");
    n.primary_org_unit_id = Some(deepest);
    crate::common::create_member(&c.directory, &console(), n).await;
    let mut n = crate::common::member("away");
    n.primary_org_unit_id = Some(outside);
    crate::common::create_member(&c.directory, &console(), n).await;
    c.member_with("scoped", Some(root), &[(&[Permission::ManageMembers], Some(root))]).await;
    let mut s = c.session();
    assert_eq!(s.sign_in("scoped", MEMBER_PW).await.status, StatusCode::SEE_OTHER);
    let p = s.get("/admin/members").await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    assert!(p.has("deep@example.com"), "the member 2,000 levels down is listed");
    assert!(p.has("scoped@example.com"));
    assert!(!p.has("away@example.com"), "a member outside the subtree is not");
    let p = s.get("/admin/members?q=deep").await;
    assert!(p.has("deep@example.com"));
}

on_both_stores!(scoped_lists_over_a_deep_subtree);

fn sms_config(url: String, content_type: &str, body: &str) -> roster::config::DeliveryConfig {
    roster::config::DeliveryConfig {
        backoff_secs: 1,
        backoff_max_secs: 2,
        max_attempts: 3,
        lease_secs: 30,
        sms: Some(roster::config::SmsConfig {
            provider: "http".into(),
            http: Some(roster::config::HttpSmsConfig {
                url,
                method: "POST".into(),
                headers: [("Authorization".to_owned(), "Bearer HEADERSECRET".into())].into_iter().collect(),
                body: body.into(),
                content_type: content_type.into(),
                id_pointer: None,
            }),
            twilio: None,
            low_balance: 0,
            quiet_hours: None,
            utc_offset: "+00:00".into(),
            timeout_secs: 2,
            rate_per_sec: None,
        }),
        ..Default::default()
    }
}

async fn broadcast_sms(c: &Console, text: &str) {
    let mut n = crate::common::member("ann");
    n.mobile = Some("+8613800000501".into());
    crate::common::create_member(&c.directory, &console(), n).await;
    c.directory.sms_top_up(&console(), 10, None).await.unwrap();
    let b = roster::delivery::desk::NewBroadcast {
        title: "Notice".into(),
        text: text.into(),
        units: vec![],
        email: false,
        sms: true,
        language: "en".into(),
    };
    c.directory.broadcast(&console(), b).await.unwrap();
}

/// Item 10: a form-encoded SMS gateway gets each value whole, whatever characters it holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn form_gateways_get_form_encoded_values() {
    use axum::Form;
    use std::collections::HashMap;
    type Seen = std::sync::Arc<std::sync::Mutex<Vec<HashMap<String, String>>>>;
    let seen: Seen = Default::default();
    let record = seen.clone();
    let app = axum::Router::new().route(
        "/send",
        axum::routing::post(move |Form(form): Form<HashMap<String, String>>| {
            let record = record.clone();
            async move {
                record.lock().unwrap().push(form);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/send", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let c = Console::start(Backend::Sqlite, |_| {}).await;
    const TEXT: &str = "Q&A at 3pm: a=b+c, 100% \"sure\" 你好";
    broadcast_sms(&c, TEXT).await;
    let cfg = sms_config(url, "application/x-www-form-urlencoded", "to={to}&text={text}&ref={key}");
    let round = roster::delivery::Dispatcher::new(c.directory.store().clone(), &cfg)
        .unwrap()
        .run_once()
        .await
        .unwrap();
    assert_eq!(round.sent, 2, "the welcome SMS and the broadcast: {round:?}");
    let got = seen.lock().unwrap().clone();
    let broadcast =
        got.iter().find(|f| f["text"].contains(TEXT)).unwrap_or_else(|| panic!("arrived whole? {got:?}"));
    assert_eq!(broadcast["to"], "+8613800000501");
    assert!(got.iter().all(|f| f.len() == 3), "no value spilled into fields of its own: {got:?}");
}

/// Item 7: credentials in a gateway's URL and headers never reach the stored error, the console's
/// delivery page, `check-config`, or `Debug`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_stay_out_of_errors_and_output() {
    let c = Console::start(Backend::Sqlite, |_| {}).await;
    broadcast_sms(&c, "hello").await;
    let url = format!("http://user:URLPASS@127.0.0.1:{}/send?api_key=TOPSECRET", crate::daemon::free_port());
    let cfg = sms_config(url.clone(), "application/json", r#"{"to": "{to}", "text": "{text}"}"#);
    assert!(!format!("{cfg:?}").contains("HEADERSECRET"), "Debug shows no header value");
    let round = roster::delivery::Dispatcher::new(c.directory.store().clone(), &cfg)
        .unwrap()
        .run_once()
        .await
        .unwrap();
    assert_eq!(round.sent, 0);
    let list = c.directory.store().deliveries_list(None, 10).await.unwrap();
    let error = list[0].last_error.clone().unwrap_or_default();
    assert!(error.contains("cannot connect"), "{error}");
    for secret in ["TOPSECRET", "URLPASS", "HEADERSECRET"] {
        assert!(!error.contains(secret), "stored error: {error}");
    }
    let mut s = c.super_admin().await;
    let page = s.get("/admin/delivery?state=pending").await;
    assert!(page.has("cannot connect"), "{}", page.body);
    assert!(!page.has("TOPSECRET") && !page.has("URLPASS"));

    // check-config: header values, URL credentials and query values are all redacted.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("r.toml"),
        format!(
            "[delivery.sms]\nprovider = \"http\"\n[delivery.sms.http]\nurl = \"{url}\"\n\
             headers = {{ Authorization = \"Bearer HEADERSECRET\" }}\n\
             [mailbox]\nprovider = \"http\"\n[mailbox.http]\nurl = \"https://mail.example.com/push?token=MAILSECRET\"\n\
             headers = {{ X-Api-Key = \"MAILHEADER\" }}\n"
        ),
    )
    .unwrap();
    let out =
        crate::daemon::run(crate::daemon::rosterd(dir.path()).args(["check-config", "--config", "r.toml"]));
    let printed = crate::daemon::text(&out.stdout);
    assert!(out.status.success(), "{}", crate::daemon::text(&out.stderr));
    assert!(printed.contains("api_key=***") && printed.contains("Authorization = \"***\""), "{printed}");
    for secret in ["TOPSECRET", "URLPASS", "HEADERSECRET", "MAILSECRET", "MAILHEADER"] {
        assert!(!printed.contains(secret), "check-config printed {secret}:\n{printed}");
    }
}

/// Item 7: at the most verbose log level, the SMTP conversation (where `AUTH PLAIN` carries the
/// credentials) is not logged by the daemon's dispatcher.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_conversations_are_not_logged() {
    use crate::daemon::{Daemon, rosterd, run, text};
    let smtp = crate::delivery::Smtp::start();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(
        dir.path(),
        &[
            ("ROSTER_LOG__LEVEL", "trace".into()),
            ("ROSTER_DELIVERY__SCHEDULE", "* * * * * *".into()),
            ("ROSTER_DELIVERY__SMTP__URL", format!("smtp://127.0.0.1:{}", smtp.port)),
            ("ROSTER_DELIVERY__SMTP__FROM", "Roster <roster@example.com>".into()),
        ],
    );
    d.wait_for("/readyz", 200, std::time::Duration::from_secs(30)).await;
    let changes = dir.path().join("changes.jsonl");
    std::fs::write(
        &changes,
        r#"{"op":"create_member","login_name":"ann","display_name":"Ann","emails":[{"address":"ann@home.example.org","kind":"work","primary":true}]}"#,
    )
    .unwrap();
    let imported = run(rosterd(dir.path()).arg("import").arg(&changes));
    assert!(imported.status.success(), "{}", text(&imported.stderr));
    let start = std::time::Instant::now();
    while smtp.messages().is_empty() {
        assert!(start.elapsed() < std::time::Duration::from_secs(20), "no mail sent:\n{}", d.log());
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let log = d.log();
    assert!(log.contains("TRACE") || log.contains("DEBUG"), "the log level took: {log}");
    assert!(
        !log.contains("MAIL FROM") && !log.contains("Wrote:"),
        "the SMTP conversation was logged:\n{log}"
    );
}

/// Item 8: a client dribbling its headers is cut off after `header_read_timeout_secs`, and no
/// more than `max_connections` connections are served at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_connections_capped() {
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let c = Console::start(Backend::Sqlite, |cfg| {
        cfg.http.header_read_timeout_secs = 2;
        cfg.http.max_connections = 2;
    })
    .await;
    let addr = c.base.trim_start_matches("http://").to_owned();
    // Slowloris: a header line every half second, never finished.
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let start = Instant::now();
    let mut closed = false;
    for i in 0..20 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if slow.write_all(format!("X-Slow-{i}: y\r\n").as_bytes()).await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(10), slow.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(_)) => {
                // A 408 answer, then the close.
                closed = true;
                break;
            }
            Err(_) => {}
        }
    }
    assert!(closed, "the slow client is still connected after {:?}", start.elapsed());
    assert!(start.elapsed() < Duration::from_secs(5), "cut off after {:?}", start.elapsed());
    drop(slow);

    // Two idle connections take both slots: a third client waits...
    let idle1 = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let idle2 = tokio::net::TcpStream::connect(&addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut third = tokio::net::TcpStream::connect(&addr).await.unwrap();
    third.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let waited = tokio::time::timeout(Duration::from_millis(800), third.read_to_end(&mut answer)).await;
    assert!(waited.is_err(), "a third connection was served while two held the slots: {answer:?}");
    // ...until the idle ones are cut off for sending nothing, and then it is served.
    tokio::time::timeout(Duration::from_secs(6), third.read_to_end(&mut answer))
        .await
        .expect("served once the idle connections were closed")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop((idle1, idle2));
}

/// Item 11: absurd dates in the audit filter are a 400 naming the field, not a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_dates_out_of_range_are_refused() {
    let c = Console::start(Backend::Sqlite, |_| {}).await;
    let mut s = c.super_admin().await;
    for (q, field) in
        [("until=%2B262143-12-31", "until"), ("since=-262143-01-01", "since"), ("until=0999-01-01", "until")]
    {
        let p = s.get(&format!("/admin/audit?{q}")).await;
        assert_eq!(p.status, StatusCode::BAD_REQUEST, "{q}: {}", p.body);
        assert!(p.has("YYYY-MM-DD, 1970-9999"), "{q} names {field}: {}", p.body);
    }
    let p = s.get("/admin/audit?since=2026-01-01&until=9999-12-31").await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    assert!(p.has("console.sign_in"), "the filter still finds rows");
}

/// Item 14: an audit row that cannot be written is never silence: an export fails with an error
/// the admin sees; a refusal stands and is logged and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_failures_are_never_silent() {
    let c = Console::start(Backend::Sqlite, |_| {}).await;
    c.member_with("viewer", None, &[(&[Permission::ViewAudit], None)]).await;
    let mut admin = c.super_admin().await;
    let mut viewer = c.session();
    assert_eq!(viewer.sign_in("viewer", MEMBER_PW).await.status, StatusCode::SEE_OTHER);
    // From here on the audit log refuses every row.
    let url = c._db.cfg.database.url.clone();
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query(
        "CREATE TRIGGER no_audit BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'audit refused'); END",
    )
    .execute(&pool)
    .await
    .unwrap();
    let p = admin.get("/admin/export/members.csv").await;
    assert_eq!(p.status, StatusCode::SERVICE_UNAVAILABLE, "no unaudited export: {}", p.body);
    assert!(!p.has("login_name,"), "no CSV went out");
    let p = viewer.get("/admin/members").await;
    assert_eq!(p.status, StatusCode::FORBIDDEN, "the refusal stands");
    let metrics =
        crate::common::http().get(format!("{}/metrics", c.base)).send().await.unwrap().text().await.unwrap();
    let failures: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("roster_audit_write_failures_total "))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0.0);
    assert!(failures >= 1.0, "counted: {metrics}");
    pool.close().await;
}

/// Item 9: a change set of many passwords (an import batch) hashes them before its transaction:
/// another client's write goes through while the hashing runs, instead of waiting for the set
/// to commit.
async fn password_hashing_holds_no_writer(b: Backend) {
    let c = Console::start(b, |_| {}).await;
    let token = c.directory.create_token(&console(), "entra", false).await.unwrap();
    let changes: Vec<Change> = (0..150)
        .map(|i| {
            let mut n = crate::common::member(&format!("batch{i}"));
            n.password = Some(roster::secret::Secret(format!("batch-password-{i}")));
            Change::CreateMember(n)
        })
        .collect();
    let started = std::time::Instant::now();
    let actor = roster::directory::model::Actor::new(roster::directory::model::Source::import(), "import");
    let (batch_done, single_done) = tokio::join!(
        async {
            c.directory.apply(&actor, changes).await.unwrap();
            started.elapsed()
        },
        async {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            let body =
                json!({ "schemas": [USER], "userName": "single@example.com", "displayName": "Single" });
            let (st, body) = scim(&c, &token, Method::POST, "/Users", Some(body)).await;
            assert_eq!(st, StatusCode::CREATED, "{body}");
            started.elapsed()
        }
    );
    assert!(
        single_done < batch_done,
        "the single create ({single_done:?}) waited for the batch's transaction ({batch_done:?})"
    );
    assert_eq!(c.directory.store().counts().await.unwrap().members, 151);
}

on_both_stores!(password_hashing_holds_no_writer);

/// Item 1, in the console and from import: a password a manager chose does not survive a role
/// granted by the super admin; one the super admin chose does; `rosterd import`'s source may not
/// set an admin's password.
async fn only_the_granter_or_the_member_keeps_a_password(b: Backend) {
    let c = Console::start(b, |_| {}).await;
    let sales = crate::common::create_unit(&c.directory, None, "Sales").await;
    c.member_with("mgr", Some(sales), &[(&[Permission::ManageMembers], Some(sales))]).await;
    let mut mgr = c.session();
    assert_eq!(mgr.sign_in("mgr", MEMBER_PW).await.status, StatusCode::SEE_OTHER);
    mgr.get(&format!("/admin/members/new?unit={sales}")).await;
    let fields = [
        ("login_name", "pat"),
        ("display_name", "Pat"),
        ("unit_path", "Sales"),
        ("password", "chosen-by-the-manager"),
    ];
    let p = mgr.post("/admin/members/new", &fields).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let pat = crate::admin::id_in(p.location.as_deref().unwrap(), "/admin/members/");
    let mut admin = c.super_admin().await;
    admin.get("/admin/members/new").await;
    let fields = [("login_name", "sam"), ("display_name", "Sam"), ("password", "chosen-by-the-super-admin")];
    let p = admin.post("/admin/members/new", &fields).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let sam = crate::admin::id_in(p.location.as_deref().unwrap(), "/admin/members/");

    let super_admin =
        roster::directory::model::Actor::new(roster::directory::model::Source::console(), "super-admin");
    for (member, name) in [(pat, "pat"), (sam, "sam")] {
        let role = roster::directory::NewRole {
            id: None,
            name: format!("auditor-{name}"),
            permissions: vec![Permission::ViewAudit],
        };
        let Applied::Role(r) = c.directory.apply_one(&super_admin, Change::CreateRole(role)).await.unwrap()
        else {
            panic!()
        };
        let g = Change::GrantRole { role_id: r.id, member_id: member, scope_unit_id: None };
        c.directory.apply_one(&super_admin, g).await.unwrap();
    }
    let mut s = c.session();
    assert_eq!(
        s.sign_in("pat", "chosen-by-the-manager").await.status,
        StatusCode::UNAUTHORIZED,
        "the manager's password went"
    );
    assert_eq!(
        s.sign_in("sam", "chosen-by-the-super-admin").await.status,
        StatusCode::SEE_OTHER,
        "the super admin's stays"
    );
    assert_eq!(c.audit_count("member.password_cleared").await, 1);

    // `rosterd import` is a provisioning source: a password it chose goes at the grant, and it may
    // not set one for a member who holds a role.
    let import = roster::directory::model::Actor::new(roster::directory::model::Source::import(), "import");
    let mut n = crate::common::member("ivy");
    n.password = Some(roster::secret::Secret("from-an-import-file".into()));
    let ivy = crate::common::create_member(&c.directory, &import, n).await.id;
    let role = roster::directory::NewRole {
        id: None,
        name: "auditor-ivy".into(),
        permissions: vec![Permission::ViewAudit],
    };
    let Applied::Role(r) = c.directory.apply_one(&super_admin, Change::CreateRole(role)).await.unwrap()
    else {
        panic!()
    };
    c.directory
        .apply_one(&super_admin, Change::GrantRole { role_id: r.id, member_id: ivy, scope_unit_id: None })
        .await
        .unwrap();
    assert_eq!(c.audit_count("member.password_cleared").await, 2);
    let patch = MemberPatch {
        password: Some(roster::secret::Secret("from-an-import-file".into())),
        ..Default::default()
    };
    let err = c.directory.apply_one(&import, Change::UpdateMember { id: ivy, patch }).await.unwrap_err();
    assert_eq!(err.code(), "protected", "{err}");
}

on_both_stores!(only_the_granter_or_the_member_keeps_a_password);
