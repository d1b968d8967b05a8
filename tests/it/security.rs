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
    let form = admin.get(&format!("/admin/members/{id}/edit")).await;
    let version = {
        let i = form.body.find("name=\"version\" value=\"").unwrap() + 22;
        form.body[i..i + form.body[i..].find('"').unwrap()].to_owned()
    };
    let p = admin
        .post(
            &format!("/admin/members/{id}"),
            &[
                ("login_name", "boss@example.com"),
                ("display_name", "boss Example"),
                ("password", "set-by-the-super-admin"),
                ("version", &version),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let mut boss = c.session();
    assert_eq!(boss.sign_in("boss", "set-by-the-super-admin").await.status, StatusCode::SEE_OTHER);
    assert_eq!(boss.get("/admin").await.status, StatusCode::OK);

    // Every SCIM way of setting it is refused with 403, and nothing about boss changes.
    let path = format!("/Users/{id}");
    let mut put = scim_user("boss", CHOSEN);
    put["displayName"] = json!("Renamed by the IdP");
    let (st, body) = scim(&c, &token, Method::PUT, &path, Some(put)).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "PUT: {body}");
    assert!(body["detail"].as_str().unwrap().contains("holds a console role"), "{body}");
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
    let m = c.directory.store().member(id).await.unwrap().unwrap();
    assert_eq!(m.display_name, "boss Example", "the refused PUT changed nothing");
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
    let form = admin.get(&format!("/admin/members/{id}/edit")).await;
    let version = {
        let i = form.body.find("name=\"version\" value=\"").unwrap() + 22;
        form.body[i..i + form.body[i..].find('"').unwrap()].to_owned()
    };
    let p = admin
        .post(
            &format!("/admin/members/{id}"),
            &[
                ("login_name", "boss@example.com"),
                ("display_name", "Boss Renamed"),
                ("password", "another-new-password"),
                ("version", &version),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
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
