//! Real directories are messy (issue 14): users who share a mobile number or an e-mail address
//! with a colleague are provisioned all the same, the colliding value kept aside until the
//! conflict is gone; against a real slapd and a running rosterd.

use reqwest::{Method, StatusCode};
use roster::sync::{RunOptions, SyncService};
use serde_json::{Value, json};

use crate::admin::Console;
use crate::common::{Backend, console, on_both_stores};
use crate::slapd::{SUFFIX, Slapd, base_ldif, generate};

/// A user of the test tree with the given mobile and mail.
fn user(uid: &str, mobile: &str, mail: &str) -> String {
    format!(
        "dn: uid={uid},ou=people,{SUFFIX}\nobjectClass: top\nobjectClass: person\nobjectClass: organizationalPerson\n\
         objectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\nsn: {uid}\nmail: {mail}\nmobile: {mobile}\n\n"
    )
}

async fn full(sync: &SyncService) -> roster::sync::Report {
    let opts = RunOptions { full: true, trigger: "test".into(), ..Default::default() };
    sync.run("corp", opts).await.unwrap()
}

/// Who holds `value` in `field` (`mobile` or `email`), and who has it kept aside.
async fn holders(c: &Console, field: &str, value: &str) -> (Vec<String>, Vec<String>) {
    let store = c.directory.store();
    let mut holding = Vec::new();
    let mut kept = Vec::new();
    let q = roster::directory::query::Query { filter: None, sort: None, offset: 0, limit: 1000 };
    for m in store.search_members(&q).await.unwrap().items {
        let has = match field {
            "mobile" => m.mobile.as_deref() == Some(value),
            _ => m.emails.iter().any(|e| e.address == value),
        };
        if has {
            holding.push(m.login_name.clone());
        }
        if store.member_quarantine(m.id).await.unwrap().iter().any(|q| q.field == field && q.value == value) {
            kept.push(m.login_name.clone());
        }
    }
    (holding, kept)
}

/// Two users share user000003's mobile; one shares user000004's e-mail. Everybody is provisioned;
/// each value goes to one member and is kept aside for the others; the run report, the member's
/// page and /metrics say so; once the holder changes or leaves, the next run stores the value.
async fn colliding_values_are_kept_aside(b: Backend) {
    let shared_mobile = "+1 555 000 0003";
    let ldif = format!(
        "{}{}{}{}",
        base_ldif(),
        generate(2, 20, 0),
        user("dup1", shared_mobile, "user000004@example.com"),
        user("dup2", shared_mobile, "dup2@example.com"),
    );
    // dup2 also has a desk phone (telephoneNumber): kept as a work number.
    let ldif = ldif
        .replace("mail: dup2@example.com\n", "mail: dup2@example.com\ntelephoneNumber: +1 555 0100 x42\n");
    let ldap = Slapd::start(&ldif);
    let src = crate::sync::source(ldap.url());
    let c = Console::start(b, |cfg| cfg.sync.ldap = vec![src.clone()]).await;
    let sync = SyncService::new(c.directory.0.directory.clone(), c.directory.0.runs.clone(), vec![src]);

    let report = full(&sync).await;
    assert_eq!(report.outcome, roster::sync::Outcome::Applied, "{report:?}");
    assert!(report.errors.is_empty(), "nobody is skipped: {:?}", report.errors);
    assert_eq!(c.directory.store().counts().await.unwrap().members, 22, "all 22 users exist");
    assert_eq!(report.counts["quarantined"], 3, "{report:?}");
    let dup2 = c.directory.store().member_by_login("dup2@example.com").await.unwrap().unwrap();
    let desk: Vec<(&str, &str)> = dup2.phones.iter().map(|p| (p.number.as_str(), p.kind.as_str())).collect();
    assert_eq!(desk, vec![("+1 555 0100 x42", "work")]);
    assert!(report.message.contains("3 values kept aside"), "{}", report.message);
    let mobile = "+15550000003";
    let (holding, kept) = holders(&c, "mobile", mobile).await;
    assert_eq!(holding.len(), 1, "one member holds the mobile: {holding:?}");
    assert_eq!(kept.len(), 2, "the other two have it kept aside: {kept:?}");
    let (holding, kept) = holders(&c, "email", "user000004@example.com").await;
    assert_eq!((holding.len(), kept.len()), (1, 1), "{holding:?} {kept:?}");
    let email_loser = kept[0].clone();

    // The member's page shows what was kept aside, and /metrics counts it.
    let loser = c.directory.store().member_by_login(&email_loser).await.unwrap().unwrap();
    let mut s = c.super_admin().await;
    let page = s.get(&format!("/admin/members/{}", loser.id)).await;
    assert!(page.has("id=\"quarantined\"") && page.has("user000004@example.com"), "{}", page.body);
    let metrics =
        crate::common::http().get(format!("{}/metrics", c.base)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("roster_quarantined_values{field=\"mobile\"} 2"), "{metrics}");
    assert!(metrics.contains("roster_quarantined_values{field=\"email\"} 1"), "{metrics}");

    // Nothing changed: the next run still counts them, plans nothing and writes nothing.
    let audit = c.directory.store().audit_count().await.unwrap();
    let again = full(&sync).await;
    assert_eq!(again.counts["quarantined"], 3, "{again:?}");
    assert!(again.errors.is_empty(), "{:?}", again.errors);
    assert!(again.plan.is_empty(), "a value kept aside is not planned again: {:?}", again.plan);
    assert_eq!(c.directory.store().audit_count().await.unwrap(), audit);

    // The mobile's holder gets a number of their own, and the e-mail's holder leaves.
    let (mobile_holder, _) = holders(&c, "mobile", mobile).await;
    let (email_holder, _) = holders(&c, "email", "user000004@example.com").await;
    let uid_of = |login: &str| login.split('@').next().unwrap().to_owned();
    let dn = |uid: &str| {
        if uid.starts_with("dup") {
            format!("uid={uid},ou=people,{SUFFIX}")
        } else {
            let n: usize = uid[4..].parse().unwrap();
            format!("uid={uid},ou=dept{:04},ou=people,{SUFFIX}", (n - 1) % 2 + 1)
        }
    };
    ldap.modify(&format!(
        "dn: {}\nchangetype: modify\nreplace: mobile\nmobile: +1 555 999 0001\n\n",
        dn(&uid_of(&mobile_holder[0]))
    ));
    ldap.modify(&format!("dn: {}\nchangetype: delete\n\n", dn(&uid_of(&email_holder[0]))));
    let third = full(&sync).await;
    assert!(third.errors.is_empty(), "{:?}", third.errors);
    let (holding, kept) = holders(&c, "mobile", mobile).await;
    assert_eq!((holding.len(), kept.len()), (1, 1), "one of the two waiting got it: {holding:?} {kept:?}");
    let (holding, kept) = holders(&c, "email", "user000004@example.com").await;
    assert_eq!(holding, vec![email_loser.clone()], "the e-mail went to the one waiting for it");
    assert!(kept.is_empty());
    assert_eq!(third.counts["quarantined"], 1, "{third:?}");
    assert!(c.audit_count("member.quarantine").await >= 3);

    // The last one waiting gets a number of its own in the directory: the kept one is let go.
    let (_, kept) = holders(&c, "mobile", mobile).await;
    let waiter = uid_of(&kept[0]);
    ldap.modify(&format!(
        "dn: {}\nchangetype: modify\nreplace: mobile\nmobile: +1 555 999 0002\n\n",
        dn(&waiter)
    ));
    let fourth = full(&sync).await;
    assert!(fourth.errors.is_empty(), "{:?}", fourth.errors);
    assert!(fourth.counts.get("quarantined").is_none(), "nothing kept aside any more: {fourth:?}");
    let (holding, kept) = holders(&c, "mobile", mobile).await;
    assert_eq!((holding.len(), kept.len()), (1, 0), "{holding:?} {kept:?}");
}

on_both_stores!(colliding_values_are_kept_aside);

/// A SCIM client: a mobile or e-mail another member holds is kept aside (201, the member
/// exists); a userName or externalId another member holds is still a 409 the client must fix.
async fn scim_keeps_conflicting_values_aside(b: Backend) {
    let c = Console::start(b, |_| {}).await;
    let token = c.directory.create_token(&console(), "entra", false).await.unwrap();
    let http = crate::common::http();
    let post = |body: Value| {
        let req = http
            .request(Method::POST, format!("{}/scim/v2/Users", c.base))
            .bearer_auth(&token)
            .header("content-type", "application/scim+json")
            .body(body.to_string());
        async move {
            let r = req.send().await.unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }
    };
    let user = |name: &str, ext: &str, email: &str, mobile: &str| {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": format!("{name}@example.com"), "externalId": ext, "displayName": name,
            "emails": [{ "value": email, "type": "work", "primary": true }],
            "phoneNumbers": [{ "value": mobile, "type": "mobile" }],
        })
    };
    let (st, _) = post(user("ann", "e1", "shared@example.com", "+8613800000001")).await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, body) = post(user("bob", "e2", "shared@example.com", "+8613800000001")).await;
    assert_eq!(st, StatusCode::CREATED, "kept aside, not refused: {body}");
    let bob: uuid::Uuid = body["id"].as_str().unwrap().parse().unwrap();
    let kept = c.directory.store().member_quarantine(bob).await.unwrap();
    let kept: Vec<(&str, &str)> = kept.iter().map(|q| (q.field.as_str(), q.value.as_str())).collect();
    assert_eq!(kept, vec![("email", "shared@example.com"), ("mobile", "+8613800000001")]);
    // A PATCH of something else (as Entra ID sends them) leaves what is kept aside alone.
    let ops = json!({ "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                      "Operations": [{ "op": "replace", "path": "title", "value": "Engineer" }] });
    let r = http
        .patch(format!("{}/scim/v2/Users/{bob}", c.base))
        .bearer_auth(&token)
        .header("content-type", "application/scim+json")
        .body(ops.to_string())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(c.directory.store().member_quarantine(bob).await.unwrap().len(), 2, "still kept aside");
    let (st, body) = post(user("ann", "e3", "ann2@example.com", "+8613800000003")).await;
    assert_eq!(st, StatusCode::CONFLICT, "a userName is the client's to fix: {body}");
    assert_eq!(body["scimType"], "uniqueness");
    let (st, body) = post(user("cat", "e1", "cat@example.com", "+8613800000004")).await;
    assert_eq!(st, StatusCode::CONFLICT, "so is an externalId: {body}");

    // Entra ID's matching filter: a value path followed by a sub-attribute, run in the store.
    let find = |filter: &str| {
        let req = http
            .get(format!(
                "{}/scim/v2/Users?filter={}",
                c.base,
                form_urlencoded::byte_serialize(filter.as_bytes()).collect::<String>()
            ))
            .bearer_auth(&token);
        async move {
            let r = req.send().await.unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }
    };
    let (st, body) = find(r#"emails[type eq "work"].value eq "shared@example.com""#).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["totalResults"], 1, "only ann holds it: {body}");
    assert_eq!(body["Resources"][0]["userName"], "ann@example.com");
    let (st, body) = find(r#"emails[type eq "home"].value eq "shared@example.com""#).await;
    assert_eq!((st, body["totalResults"].clone()), (StatusCode::OK, json!(0)), "{body}");

    // The console's own forms still refuse a value another member holds: an admin can act.
    let mut s = c.super_admin().await;
    s.get("/admin/members/new").await;
    let p = s
        .post(
            "/admin/members/new",
            &[("login_name", "dan"), ("display_name", "Dan"), ("mobile", "+8613800000001")],
        )
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", p.body);
    assert!(p.has("already in use"), "{}", p.body);
}

on_both_stores!(scim_keeps_conflicting_values_aside);

/// SCIM keeps every phone number as sent (value, type, primary), the mobile still the one SMS go
/// to; a PATCH that adds or changes one reads back as sent.
async fn scim_keeps_every_phone_number(b: Backend) {
    let c = Console::start(b, |_| {}).await;
    let token = c.directory.create_token(&console(), "okta", false).await.unwrap();
    let http = crate::common::http();
    let call = |method: Method, path: String, body: Option<Value>| {
        let mut req = http.request(method, format!("{}/scim/v2{path}", c.base)).bearer_auth(&token);
        if let Some(b) = body {
            req = req.header("content-type", "application/scim+json").body(b.to_string());
        }
        async move {
            let r = req.send().await.unwrap();
            (r.status(), r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let body = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "pat@example.com", "displayName": "Pat",
        "phoneNumbers": [
            { "value": "+86 21 5555 0100 ext. 12", "type": "work", "primary": true },
            { "value": "+86 138 0013 8000", "type": "mobile" },
            { "value": "+86 21 5555 0199", "type": "fax" },
        ],
    });
    let (st, created) = call(Method::POST, "/Users".into(), Some(body)).await;
    assert_eq!(st, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let phones = |v: &Value| -> Vec<(String, String, bool)> {
        v["phoneNumbers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["value"].as_str().unwrap().into(),
                    p["type"].as_str().unwrap().into(),
                    p["primary"] == true,
                )
            })
            .collect()
    };
    let (_, got) = call(Method::GET, format!("/Users/{id}"), None).await;
    assert_eq!(
        phones(&got),
        vec![
            ("+8613800138000".to_owned(), "mobile".to_owned(), false),
            ("+86 21 5555 0100 ext. 12".to_owned(), "work".to_owned(), true),
            ("+86 21 5555 0199".to_owned(), "fax".to_owned(), false),
        ],
        "{got}"
    );
    let m = c.directory.store().member(id.parse().unwrap()).await.unwrap().unwrap();
    assert_eq!(m.mobile.as_deref(), Some("+8613800138000"), "SMS still go to the mobile");

    // PATCH: add a home number, change the fax; both read back as sent.
    let ops = json!({ "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [
        { "op": "add", "path": "phoneNumbers", "value": [{ "value": "+86 21 6666 0001", "type": "home" }] },
        { "op": "replace", "path": "phoneNumbers[type eq \"fax\"].value", "value": "+86 21 5555 0198" },
    ]});
    let (st, patched) = call(Method::PATCH, format!("/Users/{id}"), Some(ops)).await;
    assert!(st == StatusCode::OK || st == StatusCode::NO_CONTENT, "{st} {patched}");
    let (_, got) = call(Method::GET, format!("/Users/{id}"), None).await;
    let got = phones(&got);
    assert!(got.contains(&("+86 21 6666 0001".into(), "home".into(), false)), "{got:?}");
    assert!(got.contains(&("+86 21 5555 0198".into(), "fax".into(), false)), "{got:?}");
    assert!(got.contains(&("+86 21 5555 0100 ext. 12".into(), "work".into(), true)), "{got:?}");
    assert_eq!(got.len(), 4, "{got:?}");
}

on_both_stores!(scim_keeps_every_phone_number);
