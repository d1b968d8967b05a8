//! The console in a real headless Chromium, as an admin uses it: sign in as the super admin,
//! create a department, add a member and see the consecutive account number, suspend the
//! member, dry-run a sync and read its plan, grant a scoped role, sign in as that member and be
//! refused outside the scope, switch the language. Screenshots of the main pages are taken on
//! every run; with `ROSTER_UPDATE_SCREENSHOTS=1` they replace the checked-in ones in
//! `docs/screenshots/` (shown in the README), else they go to the test target's temp dir.

use std::path::PathBuf;

use crate::admin::{Console, MEMBER_PW, SUPER_PW};
use crate::browser::Browser;
use crate::common::{Backend, create_unit};
use crate::slapd::{Slapd, base_ldif, generate};

fn shot(name: &str) -> PathBuf {
    let dir = if std::env::var_os("ROSTER_UPDATE_SCREENSHOTS").is_some() {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots")
    } else {
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots")
    };
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{name}.png"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_day_in_the_console() {
    let ldap = Slapd::start(&format!("{}{}", base_ldif(), generate(3, 12, 2)));
    let c = Console::start(Backend::Sqlite, |cfg| {
        cfg.sync.ldap = vec![crate::sync::source(ldap.url())];
    })
    .await;
    let support = create_unit(&c.directory, None, "Support").await;
    let outsider = c.member_with("outsider", Some(support), &[]).await;
    let b = Browser::start().await;
    let base = &c.base;

    // Not signed in: the console sends us to sign in, and comes back afterwards.
    b.goto(&format!("{base}/admin/org")).await;
    b.find("#account").await.send_keys(&c.enterprise_id).await;
    b.find("#password").await.send_keys("not the password").await;
    b.find("#sign-in").await.click().await;
    b.wait_for_text("#login-error", "Wrong account or password").await;
    b.screenshot(shot("sign-in")).await;
    b.find("#password").await.send_keys(SUPER_PW).await;
    b.find("#sign-in").await.click().await;
    b.wait_for_text("h1", "Organization").await;

    // A department at the top of the tree.
    b.find("#root-name").await.send_keys("Engineering").await;
    b.find("#new-root-unit button").await.click().await;
    b.wait_for_text(".flash", "Unit created").await;
    b.wait_for_text("#unit-name", "Engineering").await;

    // A member in it: the account number is the next of the block.
    b.find("#add-member").await.click().await;
    b.find("#login_name").await.send_keys("grace").await;
    b.find("#display_name").await.send_keys("Grace Hopper").await;
    b.find("#mobile").await.send_keys("12").await;
    b.find("#save-member").await.click().await;
    // A bad mobile number: the error is by the field, and what was typed is still there.
    b.wait_for_text("#mobile-error", "not a phone number").await;
    assert_eq!(b.find("#display_name").await.prop("value").await, "Grace Hopper");
    b.screenshot(shot("member-form-error")).await;
    let mobile = b.find("#mobile").await;
    mobile.clear().await;
    mobile.send_keys("+8613800000042").await;
    b.find("#save-member").await.click().await;
    b.wait_for_text(".flash", "Member created").await;
    let number = b.find("#account-number").await.text().await;
    assert_eq!(number.trim(), "1001", "the outsider has 1000; Grace gets the next number");
    b.screenshot(shot("member")).await;

    // Suspend her.
    b.find("#suspend-member").await.click().await;
    b.wait_for_text("#member-state", "Suspended").await;

    // The org page with the member list.
    b.find("#member-state").await;
    b.goto(&format!("{base}/admin/org")).await;
    b.find("a[href^='/admin/org?unit=']").await;
    let eng = b.execute(
        "return [...document.querySelectorAll('.tree a')].find(a => a.textContent === 'Engineering').getAttribute('href')",
        vec![],
    )
    .await;
    b.goto(&format!("{base}{}", eng.as_str().unwrap())).await;
    b.wait_for_text("#unit-members", "grace@example.com").await;
    b.screenshot(shot("org")).await;

    // A dry-run sync of the LDAP source: its plan, and nothing changed.
    let members_before = c.directory.store().counts().await.unwrap().members;
    b.goto(&format!("{base}/admin/sync")).await;
    b.find("#run-now-corp").await.click().await;
    b.wait_for_text("#dry-run-report", "dry_run").await;
    let plan = b.find("#plan").await.text().await;
    assert!(plan.contains("user000001"), "the plan names the users it would create: {plan}");
    assert_eq!(c.directory.store().counts().await.unwrap().members, members_before);
    b.screenshot(shot("sync-dry-run")).await;

    // A role for Engineering's lead, scoped to Engineering.
    c.member_with("lead", None, &[]).await;
    b.goto(&format!("{base}/admin/roles")).await;
    b.find("#role-name").await.send_keys("Engineering lead").await;
    b.find("input[name=perm][value=manage_members]").await.click().await;
    b.find("#create-role").await.click().await;
    b.wait_for_text(".flash", "Role saved").await;
    b.find("#grant-member").await.send_keys("lead").await;
    b.find("#grant-scope").await.send_keys("Engineering").await;
    b.find("#grant-role button").await.click().await;
    b.wait_for_text("table", "lead (test)").await;
    b.screenshot(shot("roles")).await;

    b.goto(&format!("{base}/admin")).await;
    b.wait_for_text("#count-members", "").await;
    b.screenshot(shot("home")).await;
    b.goto(&format!("{base}/admin/audit")).await;
    b.wait_for_text("#audit", "role.grant").await;
    b.screenshot(shot("audit")).await;

    // Sign out; sign in as the lead: Grace is in scope, the outsider is not.
    b.find("#sign-out").await.click().await;
    b.find("#account").await.send_keys("lead").await;
    b.find("#password").await.send_keys(MEMBER_PW).await;
    b.find("#sign-in").await.click().await;
    b.wait_for_text("#who", "lead").await;
    let menu = b.find("#nav").await.text().await;
    assert!(menu.contains("Members") && !menu.contains("Roles") && !menu.contains("Audit"), "{menu}");
    let grace = c.directory.store().member_by_login("grace@example.com").await.unwrap().unwrap();
    b.goto(&format!("{base}/admin/members/{}", grace.id)).await;
    b.wait_for_text("#login-name", "grace@example.com").await;
    b.goto(&format!("{base}/admin/members/{}", outsider.id)).await;
    b.wait_for_text("#error-message", "You do not have permission").await;
    b.screenshot(shot("refused")).await;
    let denied = roster::directory::store::AuditFilter {
        action: Some("console.denied".into()),
        limit: 10,
        ..Default::default()
    };
    assert_eq!(c.directory.store().audit_search(&denied).await.unwrap().len(), 1);

    // Switch to Chinese: the choice sticks for the next pages.
    b.goto(&format!("{base}/admin/members")).await;
    b.find("#lang-switch").await.click().await;
    b.wait_for_text("#nav", "成员").await;
    b.goto(&format!("{base}/admin")).await;
    b.wait_for_text("h1", "帐号中心").await;
    b.screenshot(shot("home-zh")).await;

    // On a phone-sized screen the menu folds behind a button.
    b.set_window_size(390, 844).await;
    b.goto(&format!("{base}/admin/members")).await;
    assert!(!b.find("#nav").await.is_displayed().await);
    b.find("#menu-toggle").await.click().await;
    assert!(b.find("#nav").await.is_displayed().await);
    b.screenshot(shot("phone")).await;

    // The pages keep to their Content Security Policy (no inline script or style): the browser
    // reported no violation on any page of the day, the enterprise and import pages included.
    b.set_window_size(1280, 900).await;
    for page in ["/admin/enterprise", "/admin/import", "/admin/audit"] {
        b.goto(&format!("{base}{page}")).await;
    }
    let log = b.console_log().await;
    let violations: Vec<&String> = log.iter().filter(|l| l.contains("Content Security Policy")).collect();
    assert!(violations.is_empty(), "CSP violations: {violations:#?}");
    b.quit().await;
}

/// *Message records* in a real browser: search, page a conversation, see an image record as a
/// thumbnail (served inline because its bytes are a PNG), queue an export and watch the table
/// poll until it is ready; no page breaks the Content Security Policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_records_in_the_browser() {
    use roster::access::store::TokenKind;
    use sha2::Digest;
    let c = Console::start(Backend::Sqlite, |_| {}).await;
    let d = &c.directory;
    let alice =
        crate::common::create_member(d, &crate::common::console(), crate::common::member("alice")).await;
    let bob = crate::common::create_member(d, &crate::common::console(), crate::common::member("bob")).await;
    let token = d
        .access()
        .create_token_of(&crate::common::console(), "chat", TokenKind::Archive, false)
        .await
        .unwrap();
    let http = crate::common::http();
    let base = c.base.trim_end_matches('/').to_owned();
    let png = crate::archive::png();
    let sha = hex::encode(sha2::Sha256::digest(&png));
    http.put(format!("{base}/api/v1/archive/blobs/{sha}"))
        .bearer_auth(&token)
        .body(png.clone())
        .send()
        .await
        .unwrap();
    let (a, bn) = (alice.account_number.to_string(), bob.account_number.to_string());
    let mut lines: Vec<serde_json::Value> = (0..60)
        .map(|i| {
            crate::archive::line(
                &format!("m{i}"),
                [&a, &bn],
                &a,
                &format!("2026-11-01T10:00:{:02}Z", i % 60),
                &format!("新用户 hello {i}"),
            )
        })
        .collect();
    lines.push(serde_json::json!({"id": "img", "conversation": {"direct": [a, bn]}, "from": bn, "sent_at": "2026-11-02T10:00:00Z",
        "kind": "image", "text": "", "attachments": [{"sha256": sha, "mime": "image/png", "size": png.len(), "name": "dot.png"}]}));
    let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let r = http
        .post(format!("{base}/api/v1/archive/messages"))
        .bearer_auth(&token)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let b = Browser::start().await;
    b.goto(&format!("{base}/admin/records")).await;
    b.find("#account").await.send_keys(&c.enterprise_id).await;
    b.find("#password").await.send_keys(SUPER_PW).await;
    b.find("#sign-in").await.click().await;
    b.wait_for_text("h1", "Message records").await;
    b.find("#member").await.send_keys(&a).await;
    b.find("#q").await.send_keys("用户").await;
    b.find("#records-go").await.click().await;
    b.wait_for_text("#records", "新用户 hello 0").await;
    b.find("#records-next").await.click().await;
    b.wait_for_text("#records", "新用户 hello 50").await;
    b.find("#records tr.record a").await.click().await;
    b.wait_for_text("h1", "alice (test)").await;
    b.find("#records-next").await.click().await;
    b.wait_for_text("#records", "新用户 hello 59").await;
    let width = b.find("img.thumb").await.prop("naturalWidth").await;
    assert_eq!(width, serde_json::json!(1), "the thumbnail loaded");
    b.screenshot(shot("records")).await;

    b.goto(&format!("{base}/admin/records")).await;
    b.find("#ex-member").await.send_keys(&a).await;
    b.find("#export-go").await.click().await;
    b.wait_for_text(".flash", "Export queued").await;
    // The scheduler's job writes it within 5 s; the table polls every 2 s.
    b.wait_for_text("#exports-table", "ready").await;
    assert!(b.try_find("#exports-table a.download").await.is_some());
    let log = b.console_log().await;
    let violations: Vec<&String> = log.iter().filter(|l| l.contains("Content Security Policy")).collect();
    assert!(violations.is_empty(), "CSP violations: {violations:#?}");
    b.quit().await;
}

/// Login management in a real browser: a rule with a bad line, then a good one, the what-if
/// answer, the login log filtered by outcome, and attendance's month grid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_management_in_the_browser() {
    let t = crate::ldap_server::Directory::start(Backend::Sqlite, |_| {}).await;
    let base = t.c.base.trim_end_matches('/').to_owned();
    let b = Browser::start().await;
    b.goto(&format!("{base}/admin/sign-in")).await;
    b.find("#account").await.send_keys(&t.c.enterprise_id).await;
    b.find("#password").await.send_keys(SUPER_PW).await;
    b.find("#sign-in").await.click().await;
    b.wait_for_text("h1", "Login management").await;
    b.find("#effect").await.send_keys("Deny").await;
    b.find("#networks").await.send_keys("10.0.0.0/8\n10.0.0.0/40").await;
    b.find("#rule-form button[type=submit]").await.click().await;
    b.wait_for_text("#networks-error", "line 2").await;
    b.find("#networks").await.clear().await;
    b.find("#windows").await.send_keys("sat-sun 00:00-24:00").await;
    b.find("#clients").await.send_keys("ldap:im").await;
    b.find("#note").await.send_keys("no weekend binds").await;
    b.find("#rule-form button[type=submit]").await.click().await;
    b.wait_for_text("#rules", "no weekend binds").await;
    // What-if on a Saturday and on a Monday.
    b.find("#wi-account").await.send_keys(&t.numbers[0].to_string()).await;
    b.execute("document.getElementById('wi-at').value = '2026-12-05T10:00';", vec![]).await;
    b.find("#wi-client").await.send_keys("ldap:im").await;
    b.find("#what-if button[type=submit]").await.click().await;
    b.wait_for_text("#what-if-answer", "denied").await;
    b.screenshot(shot("login-management")).await;
    // A bind the rule refuses (if today is a weekend) or allows: either way it is in the log.
    let (_, _, _) = t.tool("ldapwhoami", &["-D", &t.numbers[0].to_string(), "-w", PW_WRONG]).await;
    b.goto(&format!("{base}/admin/sign-in/log?outcome=failed")).await;
    b.wait_for_text("#login-log", "ann (test)").await;
    b.screenshot(shot("login-log")).await;
    b.goto(&format!("{base}/admin/attendance")).await;
    b.wait_for_text("h1", "Attendance").await;
    let log = b.console_log().await;
    let violations: Vec<&String> = log.iter().filter(|l| l.contains("Content Security Policy")).collect();
    assert!(violations.is_empty(), "CSP violations: {violations:#?}");
    b.quit().await;
}

const PW_WRONG: &str = "not-the-password";
