//! Roster's LDAP server against real clients (`ldapsearch`, `ldapwhoami`, `ldappasswd`,
//! `ldapmodify` from Debian's ldap-utils; ejabberd with `auth_method: ldap`), the sign-in
//! policy over binds and the sign-in API, the login log, and what bad input gets.

use roster::access::login::LoginFilter;
use roster::access::store::TokenLimits;
use roster::directory::model::MemberState;
use roster::directory::{Change, MemberPatch, NewGroup, NewMember};
use roster::secret::Secret;
use uuid::Uuid;

use crate::common::{Backend, console, create_member, create_unit, member, on_both_stores};

pub const PW: &str = "Correct-Horse-9";
const BASE: &str = "dc=example,dc=com";

/// A running rosterd with its LDAP server on, a service account `im` (whole tree) and `sales`
/// (the Sales subtree), and a few members.
pub struct Directory {
    pub c: crate::admin::Console,
    pub ldap_port: u16,
    pub im_secret: String,
    pub sign_in: roster::access::signin::SignIn,
    pub units: [Uuid; 3],
    /// ann (Sales), bob (Sales/East), carl (Engineering), dora (suspended, Sales)
    pub numbers: [i64; 4],
    pub sales_secret: String,
    pub group: Uuid,
}

impl Directory {
    pub async fn start(backend: Backend, tune: impl FnOnce(&mut roster::config::Config)) -> Directory {
        let ldap_port = crate::daemon::free_port();
        let c = crate::admin::Console::start(backend, |cfg| {
            cfg.enterprise.mail_domain = "example.com".into();
            cfg.ldap_server.enabled = true;
            cfg.ldap_server.listen = format!("127.0.0.1:{ldap_port}");
            cfg.ldap_server.size_limit = 6;
            tune(cfg)
        })
        .await;
        let d = &c.directory;
        let root = create_unit(d, None, "Example").await;
        let sales = create_unit(d, Some(root), "Sales").await;
        let east = create_unit(d, Some(sales), "East, Coast").await;
        let eng = create_unit(d, Some(root), "Engineering").await;
        let mut numbers = [0; 4];
        for (i, (login, unit)) in
            [("ann", sales), ("bob", east), ("carl", eng), ("dora", sales)].into_iter().enumerate()
        {
            let m = create_member(
                d,
                &console(),
                NewMember {
                    password: Some(Secret(PW.into())),
                    primary_org_unit_id: Some(unit),
                    given_name: Some(login.to_uppercase()),
                    ..member(login)
                },
            )
            .await;
            numbers[i] = m.account_number;
            if login == "dora" {
                let patch = MemberPatch { state: Some(MemberState::Suspended), ..Default::default() };
                d.apply_one(&console(), Change::UpdateMember { id: m.id, patch }).await.unwrap();
            }
        }
        let ann = d.store().member_by_number(numbers[0]).await.unwrap().unwrap();
        let carl = d.store().member_by_number(numbers[2]).await.unwrap().unwrap();
        let group = match d
            .apply_one(
                &console(),
                Change::CreateGroup(NewGroup {
                    name: "On call".into(),
                    members: vec![ann.id, carl.id],
                    ..Default::default()
                }),
            )
            .await
            .unwrap()
        {
            roster::directory::Applied::Group(g) => g.id,
            other => panic!("{other:?}"),
        };
        let im_secret =
            d.access().create_ldap_client(&console(), "im", &TokenLimits::default()).await.unwrap();
        let sales_limits =
            TokenLimits { scope_unit_id: Some(sales), size_limit: Some(100), time_limit_secs: None };
        let sales_secret = d.access().create_ldap_client(&console(), "sales", &sales_limits).await.unwrap();
        let cfg = &c._db.cfg;
        let sign_in = d.0.sign_in(cfg, &d.0.sync(cfg));
        Directory {
            c,
            ldap_port,
            im_secret,
            sign_in,
            units: [sales, east, eng],
            numbers,
            sales_secret,
            group,
        }
    }

    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.ldap_port)
    }

    /// Runs an ldap-utils tool against the server: (exit code, stdout, stderr).
    pub async fn tool(&self, tool: &str, args: &[&str]) -> (i32, String, String) {
        let out = tokio::process::Command::new(tool)
            .arg("-H")
            .arg(self.url())
            .args(["-x", "-o", "nettimeout=10"])
            .args(args)
            .env("LDAPTLS_REQCERT", "never")
            .output()
            .await
            .unwrap_or_else(|e| panic!("run {tool} (ldap-utils): {e}"));
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into(),
            String::from_utf8_lossy(&out.stderr).into(),
        )
    }

    /// `ldapsearch` bound as the `im` service account; (exit code, output).
    pub async fn search(&self, args: &[&str]) -> (i32, String) {
        let dn = format!("cn=im,ou=services,{BASE}");
        let mut all = vec!["-D", &dn, "-w", &self.im_secret, "-b", BASE, "-LLL"];
        all.extend_from_slice(args);
        let (code, out, err) = self.tool("ldapsearch", &all).await;
        (code, format!("{out}{err}"))
    }
}

/// The DNs in ldapsearch's LDIF output.
fn dns(ldif: &str) -> Vec<String> {
    unwrapped(ldif).lines().filter_map(|l| l.strip_prefix("dn: ")).map(str::to_owned).collect()
}

/// LDIF with folded lines joined.
fn unwrapped(ldif: &str) -> String {
    ldif.replace("\n ", "")
}

on_both_stores!(real_clients_read_the_tree_and_bind_as_members);

async fn real_clients_read_the_tree_and_bind_as_members(backend: Backend) {
    let t = Directory::start(backend, |_| {}).await;
    let [ann, bob, carl, dora] = t.numbers;

    // The root DSE.
    let (code, out) = t.search(&["-b", "", "-s", "base", "+", "*"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("namingContexts: {BASE}")), "{out}");
    assert!(out.contains("supportedControl: 1.2.840.113556.1.4.319"), "{out}");
    assert!(out.contains("supportedExtension: 1.3.6.1.4.1.4203.1.11.3"), "{out}");

    // Search by uid (the account number): one entry, with the org path and groups.
    let (code, out) = t.search(&[&format!("(uid={ann})")]).await;
    assert_eq!(code, 0, "{out}");
    let out = unwrapped(&out);
    assert_eq!(dns(&out), vec![format!("uid={ann},ou=people,{BASE}")], "{out}");
    assert!(out.contains("objectClass: inetOrgPerson"), "{out}");
    assert!(out.contains("rosterLoginName: ann@example.com"), "{out}");
    assert!(out.contains("rosterOrgPath: /Example/Sales"), "{out}");
    assert!(out.contains(&format!("memberOf: cn={},ou=groups,{BASE}", t.group)), "{out}");
    assert!(!out.contains("entryUUID"), "operational attributes only when asked: {out}");
    assert!(!out.to_lowercase().contains("userpassword"), "{out}");

    // Suspended members are not in the tree.
    let (code, out) = t.search(&[&format!("(uid={dora})")]).await;
    assert_eq!((code, dns(&out)), (0, vec![]), "{out}");

    // Filters: and/or/not, substrings, presence, ordering, approx; attribute selection.
    let people = format!("ou=people,{BASE}");
    let (code, out) = t
        .search(&[
            "-b",
            &people,
            &format!("(&(objectClass=rosterPerson)(|(cn=ann*)(cn=*arl*))(!(uid={bob})))"),
            "1.1",
        ])
        .await;
    assert_eq!(code, 0, "{out}");
    let mut found = dns(&out);
    found.sort();
    assert_eq!(found, vec![format!("uid={ann},{people}"), format!("uid={carl},{people}")]);
    assert!(!out.contains("cn:"), "1.1 asks for no attributes: {out}");
    let (_, out) = t.search(&["-b", &people, &format!("(&(uid>={bob})(uid<={carl}))"), "uid"]).await;
    assert_eq!(dns(&out).len(), 2, "{out}");
    let (_, out) = t.search(&["-b", &people, "(givenName~=b o b)", "uid", "+"]).await;
    assert_eq!(dns(&out), vec![format!("uid={bob},{people}")], "{out}");
    assert!(out.contains("entryUUID: "), "+ brings operational attributes: {out}");

    // The org tree: units under ou=units, a unit's members by filter.
    let (code, out) = t
        .search(&["-b", &format!("ou=units,{BASE}"), "-s", "sub", "(objectClass=organizationalUnit)", "ou"])
        .await;
    assert_eq!(code, 0, "{out}");
    let units = dns(&out);
    assert!(
        units.contains(&format!("ou=East\\2C Coast,ou=Sales,ou=Example,ou=units,{BASE}"))
            || units.contains(&format!("ou=East\\, Coast,ou=Sales,ou=Example,ou=units,{BASE}")),
        "{units:?}"
    );
    let (_, out) = t.search(&["-b", &people, &format!("(rosterOrgUnitId={})", t.units[0]), "uid"]).await;
    assert_eq!(dns(&out), vec![format!("uid={ann},{people}")], "direct members of Sales: {out}");
    let (_, out) = t.search(&["-b", &people, "(rosterOrgPath=/Example/Sales*)", "uid"]).await;
    assert_eq!(dns(&out).len(), 2, "Sales and below (dora is suspended): {out}");

    // Groups: groupOfNames with member DNs.
    let (_, out) = t.search(&["-b", &format!("ou=groups,{BASE}"), "(cn=On call)"]).await;
    let out = unwrapped(&out);
    assert!(out.contains(&format!("member: uid={ann},{people}")), "{out}");
    assert!(out.contains(&format!("member: uid={carl},{people}")), "{out}");
    assert!(out.contains("objectClass: groupOfNames"), "{out}");

    // The size limit (6 here) without paging; paging reads everything.
    let (code, out) = t.search(&["(objectClass=*)", "1.1"]).await;
    assert_eq!(code, 4, "size limit exceeded: {out}");
    let (code, out) = t.search(&["-E", "pr=2/noprompt", "(objectClass=*)", "1.1"]).await;
    assert_eq!(code, 0, "{out}");
    let all = dns(&out);
    // base, 4 containers, 4 units, 1 group, 3 active members
    assert_eq!(all.len(), 13, "{all:?}");
    let mut unique = all.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), all.len(), "no entry twice across pages");

    // A scoped service account sees its subtree only.
    let sales_dn = format!("cn=sales,ou=services,{BASE}");
    let (code, out, err) = t
        .tool(
            "ldapsearch",
            &["-D", &sales_dn, "-w", &t.sales_secret, "-b", &people, "-LLL", "(objectClass=person)", "uid"],
        )
        .await;
    assert_eq!(code, 0, "{out}{err}");
    let mut seen = dns(&out);
    seen.sort();
    assert_eq!(seen, vec![format!("uid={ann},{people}"), format!("uid={bob},{people}")]);

    // Binds as a member: by DN, number, login name, number@domain; whoami says who.
    for who in [
        format!("uid={bob},{people}"),
        bob.to_string(),
        "bob".into(),
        "bob@example.com".into(),
        format!("{bob}@example.com"),
    ] {
        let (code, out, err) = t.tool("ldapwhoami", &["-D", &who, "-w", PW]).await;
        assert_eq!(code, 0, "{who}: {out}{err}");
        assert_eq!(out.trim(), format!("dn:uid={bob},{people}"), "{who}");
    }
    // Wrong password, suspended member, empty password, anonymous: refused.
    let (code, _, err) = t.tool("ldapwhoami", &["-D", &bob.to_string(), "-w", "nope"]).await;
    assert_eq!(code, 49, "{err}");
    let (code, _, err) = t.tool("ldapwhoami", &["-D", &dora.to_string(), "-w", PW]).await;
    assert_eq!(code, 49, "suspended: {err}");
    let (code, _, err) = t.tool("ldapwhoami", &["-D", &bob.to_string(), "-w", ""]).await;
    assert_ne!(code, 0, "an empty password is never a success: {err}");
    let (code, _, err) = t.tool("ldapwhoami", &["-D", "", "-w", ""]).await;
    assert_eq!(code, 48, "anonymous binds are off: {err}");
    // A revoked service account cannot bind.
    let (code, _, _) = t.tool("ldapwhoami", &["-D", &sales_dn, "-w", &t.sales_secret]).await;
    assert_eq!(code, 0);
    t.c.directory.access().revoke_token(&console(), "sales").await.unwrap();
    // (Another process revoked it: the server's token cache forgets within its TTL.)
    tokio::time::sleep(roster::access::tokens::CACHE_TTL + std::time::Duration::from_millis(200)).await;
    let (code, _, _) = t.tool("ldapwhoami", &["-D", &sales_dn, "-w", &t.sales_secret]).await;
    assert_eq!(code, 49);

    // Read-only.
    let ldif = format!("dn: uid={ann},{people}\nchangetype: modify\nreplace: cn\ncn: Mallory\n");
    let path = std::env::temp_dir().join(format!("roster-ldif-{}", Uuid::new_v4()));
    std::fs::write(&path, ldif).unwrap();
    let im_dn = format!("cn=im,ou=services,{BASE}");
    let (code, _, err) =
        t.tool("ldapmodify", &["-D", &im_dn, "-w", &t.im_secret, "-f", path.to_str().unwrap()]).await;
    assert_eq!(code, 53, "unwilling to perform: {err}");
    assert!(err.contains("read-only"), "{err}");
    let _ = std::fs::remove_file(&path);

    // ldappasswd: a member changes their own password.
    let (code, out, err) =
        t.tool("ldappasswd", &["-D", &carl.to_string(), "-w", PW, "-a", PW, "-s", "New-Horse-77"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, _) = t.tool("ldapwhoami", &["-D", &carl.to_string(), "-w", "New-Horse-77"]).await;
    assert_eq!(code, 0, "the new password works");
    let (code, _, _) = t.tool("ldapwhoami", &["-D", &carl.to_string(), "-w", PW]).await;
    assert_eq!(code, 49, "the old one does not");

    // Every bind is in the login log.
    let log = t.sign_in.log(&LoginFilter { limit: 100, ..Default::default() }).await.unwrap();
    let bob_id = t.c.directory.store().member_by_number(bob).await.unwrap().unwrap().id;
    let bobs: Vec<_> = log.iter().filter(|e| e.member_id == Some(bob_id)).collect();
    assert_eq!(bobs.iter().filter(|e| e.outcome == "success").count(), 5, "{bobs:?}");
    assert_eq!(
        bobs.iter().filter(|e| e.outcome == "failed").count(),
        2,
        "wrong and empty password: {bobs:?}"
    );
    assert!(bobs.iter().all(|e| e.client == "ldap"));
    assert!(log.iter().any(|e| e.outcome == "inactive" && e.typed == dora.to_string()), "{log:?}");
    assert!(
        log.iter().any(|e| e.app == "sales" && e.outcome == "failed"),
        "the revoked account's bind: {log:?}"
    );
}

on_both_stores!(sign_in_policies_decide_binds_and_api_calls);

async fn sign_in_policies_decide_binds_and_api_calls(backend: Backend) {
    use roster::access::policy::{RuleSpec, Who};
    let t = Directory::start(backend, |_| {}).await;
    let [ann, bob, carl, _] = t.numbers;
    let token =
        t.c.directory
            .access()
            .create_token_of(&console(), "chat", roster::access::store::TokenKind::SignIn, false)
            .await
            .unwrap();
    let http = crate::common::http();
    let api = |account: String, password: &str, ip: &str, kind: &str| {
        let body = serde_json::json!({ "account": account, "password": password, "client_ip": ip, "client_kind": kind });
        let req = http.post(format!("{}/api/v1/sign-in", t.c.base)).bearer_auth(&token).json(&body);
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.json::<serde_json::Value>().await.unwrap_or_default())
        }
    };
    // No rules: the default (allow) decides.
    let (status, body) = api(ann.to_string(), PW, "10.1.2.3", "xmpp").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["account_number"], ann);
    assert_eq!(body["login_name"], "ann@example.com");
    // Wrong password and unknown account: one answer.
    let (s1, b1) = api(ann.to_string(), "nope", "10.1.2.3", "xmpp").await;
    let (s2, b2) = api("999999".into(), "nope", "10.1.2.3", "xmpp").await;
    assert_eq!((s1, s2), (401, 401));
    assert_eq!(b1, b2);
    // Bad input: a clear error by field.
    let (s, b) = api(ann.to_string(), PW, "not-an-ip", "xmpp").await;
    assert_eq!(s, 400, "{b}");
    assert!(b["message"].as_str().unwrap().contains("client_ip"), "{b}");
    let wrong_kind = http
        .post(format!("{}/api/v1/sign-in", t.c.base))
        .bearer_auth(&t.im_secret)
        .json(&serde_json::json!({"account": "ann", "password": PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_kind.status().as_u16(), 403, "an LDAP service account's secret is not a sign-in token");

    // Rules, written through another SignIn on the same store (as another node would): the
    // server sees them within a second.
    let admin = console();
    let err = t
        .sign_in
        .save_rule(
            &admin,
            None,
            Who::Enterprise,
            &RuleSpec { networks: vec!["10.0.0.0/33".into()], ..Default::default() },
        )
        .await
        .unwrap_err();
    assert!(err.to_string().starts_with("networks[0]"), "{err}");
    let err = t
        .sign_in
        .save_rule(
            &admin,
            None,
            Who::Enterprise,
            &RuleSpec { windows: vec!["mon-fri 9:00-25:00".into()], ..Default::default() },
        )
        .await
        .unwrap_err();
    assert!(err.to_string().starts_with("windows[0]"), "{err}");
    // 1. Engineering may not bind over LDAP through any app.
    let no_ldap = t
        .sign_in
        .save_rule(
            &admin,
            None,
            Who::Unit(t.units[2]),
            &RuleSpec { allow: false, clients: vec!["ldap".into()], ..Default::default() },
        )
        .await
        .unwrap();
    // 2. The API only from the office network.
    let office = t
        .sign_in
        .save_rule(
            &admin,
            None,
            Who::Enterprise,
            &RuleSpec {
                allow: true,
                networks: vec!["10.0.0.0/8".into()],
                clients: vec!["api".into()],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let outside = t
        .sign_in
        .save_rule(
            &admin,
            None,
            Who::Enterprise,
            &RuleSpec { allow: false, clients: vec!["api".into()], ..Default::default() },
        )
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (code, _, err) = t.tool("ldapwhoami", &["-D", &carl.to_string(), "-w", PW]).await;
    assert_eq!(code, 49, "Engineering is refused over LDAP: {err}");
    assert!(err.contains(&no_ldap.to_string()), "the deciding rule is named: {err}");
    let (code, _, _) = t.tool("ldapwhoami", &["-D", &bob.to_string(), "-w", PW]).await;
    assert_eq!(code, 0, "Sales is not");
    let (s, b) = api(bob.to_string(), PW, "10.9.9.9", "xmpp").await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = api(bob.to_string(), PW, "192.168.1.1", "xmpp").await;
    assert_eq!(s, 403, "{b}");
    assert_eq!(b["error"], "denied_by_policy");
    assert_eq!(b["rule"], outside.to_string());
    // A wrong password outside the office is still 401: the policy speaks only to those who
    // know the password.
    let (s, _) = api(bob.to_string(), "nope", "192.168.1.1", "xmpp").await;
    assert_eq!(s, 401);

    // 3. A time window: ann may bind only in a window that is not now.
    let now = chrono::Utc::now();
    let later = (now + chrono::Duration::hours(3)).format("%H:%M").to_string();
    let later2 = (now + chrono::Duration::hours(4)).format("%H:%M").to_string();
    let ann_m = t.c.directory.store().member_by_number(ann).await.unwrap().unwrap();
    let window = t
        .sign_in
        .save_rule(
            &admin,
            None,
            Who::Member(ann_m.id),
            &RuleSpec {
                allow: true,
                windows: vec![format!("mon-sun {later}-{later2}")],
                clients: vec!["ldap".into()],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let closed = t
        .sign_in
        .save_rule(
            &admin,
            None,
            Who::Member(ann_m.id),
            &RuleSpec { allow: false, clients: vec!["ldap".into()], ..Default::default() },
        )
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (code, _, err) = t.tool("ldapwhoami", &["-D", &ann.to_string(), "-w", PW]).await;
    assert_eq!(code, 49, "outside her window: {err}");
    assert!(err.contains(&closed.to_string()), "{err}");
    // What-if: at a time inside the window, the window rule decides.
    let inside = now + chrono::Duration::hours(3) + chrono::Duration::minutes(30);
    let d = t
        .sign_in
        .what_if(&ann_m, None, inside, &roster::access::policy::Client::Ldap("im".into()))
        .await
        .unwrap();
    assert_eq!((d.allow, d.rule), (true, Some(window)));

    // The login log has every attempt with its outcome and deciding rule.
    let log = t.sign_in.log(&LoginFilter { limit: 100, ..Default::default() }).await.unwrap();
    assert!(
        log.iter().any(|e| e.outcome == "denied" && e.rule_id == Some(no_ldap) && e.client == "ldap"),
        "{log:?}"
    );
    assert!(
        log.iter().any(|e| e.outcome == "denied"
            && e.rule_id == Some(outside)
            && e.client == "api"
            && e.ip.as_deref() == Some("192.168.1.1")
            && e.app == "chat/xmpp"),
        "{log:?}"
    );
    assert!(log.iter().any(|e| e.outcome == "success" && e.rule_id == Some(office)), "{log:?}");
    assert!(log.iter().any(|e| e.outcome == "failed" && e.typed == "999999"), "{log:?}");
    // Filters: by member, by unit (Sales and below), by outcome, by time.
    let bob_id = t.c.directory.store().member_by_number(bob).await.unwrap().unwrap().id;
    let by_member =
        t.sign_in.log(&LoginFilter { member: Some(bob_id), limit: 100, ..Default::default() }).await.unwrap();
    assert!(!by_member.is_empty() && by_member.iter().all(|e| e.member_id == Some(bob_id)));
    let by_unit = t
        .sign_in
        .log(&LoginFilter { unit: Some(t.units[0]), limit: 100, ..Default::default() })
        .await
        .unwrap();
    let members: std::collections::HashSet<_> = by_unit.iter().filter_map(|e| e.member_id).collect();
    assert!(members.contains(&bob_id) && members.contains(&ann_m.id) && members.len() == 2, "{by_unit:?}");
    let denied = t
        .sign_in
        .log(&LoginFilter {
            outcome: Some(roster::access::login::Outcome::Denied),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(denied.len() >= 3 && denied.iter().all(|e| e.outcome == "denied"));
    let future = t
        .sign_in
        .log(&LoginFilter { from: Some(now + chrono::Duration::hours(1)), limit: 100, ..Default::default() })
        .await
        .unwrap();
    assert!(future.is_empty());
    // Paging by cursor: two at a time, newest first, nothing twice.
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = t.sign_in.log(&LoginFilter { before, limit: 2, ..Default::default() }).await.unwrap();
        if page.is_empty() {
            break;
        }
        before = page.last().map(|e| e.id);
        seen.extend(page.into_iter().map(|e| e.id));
    }
    assert_eq!(seen.len(), log.len());
    assert!(seen.windows(2).all(|w| w[0] > w[1]));
}

/// One LDAP message over a raw connection, and what comes back until the server stops
/// answering or closes.
async fn raw_exchange(port: u16, bytes: &[u8]) -> Vec<ldap3_proto::proto::LdapMsg> {
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut framed = tokio_util::codec::Framed::new(stream, ldap3_proto::LdapCodec::new(Some(4 << 20), None));
    let mut out = Vec::new();
    while let Ok(Some(Ok(m))) = tokio::time::timeout(std::time::Duration::from_secs(5), framed.next()).await {
        let last = matches!(
            m.op,
            ldap3_proto::proto::LdapOp::SearchResultDone(_) | ldap3_proto::proto::LdapOp::BindResponse(_)
        ) || m.msgid == 0;
        out.push(m);
        if last {
            break;
        }
    }
    out
}

fn encode(msg: ldap3_proto::proto::LdapMsg) -> Vec<u8> {
    use tokio_util::codec::Encoder;
    let mut buf = tokio_util::bytes::BytesMut::new();
    ldap3_proto::LdapCodec::default().encode(msg, &mut buf).unwrap();
    buf.to_vec()
}

/// BER: tag, length (long form when needed), content.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 128 {
        out.push(n as u8);
    } else {
        let bytes: Vec<u8> = n.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

fn notice_text(msgs: &[ldap3_proto::proto::LdapMsg]) -> String {
    match msgs.last().map(|m| &m.op) {
        Some(ldap3_proto::proto::LdapOp::ExtendedResponse(r)) => {
            assert_eq!(r.name.as_deref(), Some("1.3.6.1.4.1.1466.20036"), "a notice of disconnection");
            r.res.message.clone()
        }
        other => panic!("expected a notice of disconnection, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_ldap_input_gets_a_clear_answer_and_nothing_breaks() {
    use ldap3_proto::proto::*;
    let t = Directory::start(Backend::Sqlite, |cfg| cfg.ldap_server.binds_per_second = 5).await;
    let port = t.ldap_port;
    let search = |filter: LdapFilter| {
        LdapMsg::new(
            2,
            LdapOp::SearchRequest(LdapSearchRequest {
                base: BASE.into(),
                scope: LdapSearchScope::Subtree,
                aliases: LdapDerefAliases::Never,
                sizelimit: 0,
                timelimit: 0,
                typesonly: false,
                filter,
                attrs: vec![],
            }),
        )
    };
    // Not LDAP at all.
    // (An HTTP request with its headers: the first bytes claim a 69-byte element.)
    let http = format!("GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: {}\r\n\r\n", "curl/8".repeat(20));
    let got = raw_exchange(port, http.as_bytes()).await;
    assert!(notice_text(&got).contains("not a valid LDAP message"), "{got:?}");
    // A 1 MB filter.
    let huge = search(LdapFilter::Equality("cn".into(), "x".repeat(1 << 20)));
    let got = raw_exchange(port, &encode(huge)).await;
    assert!(notice_text(&got).contains("larger than"), "{got:?}");
    // A filter nested 10,000 deep (built as raw BER: no encoder recursion in the test).
    let mut filter = tlv(0x87, b"objectClass");
    for _ in 0..10_000 {
        filter = tlv(0xA2, &filter);
    }
    let mut op = Vec::new();
    op.extend(tlv(0x04, BASE.as_bytes()));
    op.extend(tlv(0x0A, &[2]));
    op.extend(tlv(0x0A, &[0]));
    op.extend(tlv(0x02, &[0]));
    op.extend(tlv(0x02, &[0]));
    op.extend(tlv(0x01, &[0]));
    op.extend(filter);
    op.extend(tlv(0x30, &[]));
    let mut msg = tlv(0x02, &[3]);
    msg.extend(tlv(0x63, &op));
    let got = raw_exchange(port, &tlv(0x30, &msg)).await;
    let text = notice_text(&got);
    assert!(text.contains("not a valid LDAP message") || text.contains("larger than"), "{text}");
    // A search with no bind.
    let got = raw_exchange(port, &encode(search(LdapFilter::Present("objectClass".into())))).await;
    match &got.last().unwrap().op {
        LdapOp::SearchResultDone(r) => assert_eq!(r.code, LdapResultCode::InsufficentAccessRights),
        other => panic!("{other:?}"),
    }
    // A SASL bind and an LDAPv2 bind.
    let sasl = LdapMsg::new(
        1,
        LdapOp::BindRequest(LdapBindRequest {
            version: 3,
            dn: String::new(),
            cred: LdapBindCred::SASL(SaslCredentials { mechanism: "PLAIN".into(), credentials: vec![] }),
        }),
    );
    match &raw_exchange(port, &encode(sasl)).await.last().unwrap().op {
        LdapOp::BindResponse(r) => assert_eq!(r.res.code, LdapResultCode::AuthMethodNotSupported),
        other => panic!("{other:?}"),
    }
    // The server still answers real clients.
    let (code, out) = t.search(&[&format!("(uid={})", t.numbers[0]), "uid"]).await;
    assert_eq!((code, dns(&out).len()), (0, 1), "{out}");

    // A flood of binds from one address (5 a second here): delayed, then refused as busy;
    // never evaluated faster than the limit.
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..30 {
        let dn = format!("cn=nobody,ou=services,{BASE}");
        tasks.push(tokio::spawn(async move {
            let bind = LdapMsg::new(
                1,
                LdapOp::BindRequest(LdapBindRequest {
                    version: 3,
                    dn,
                    cred: LdapBindCred::Simple("guess".into()),
                }),
            );
            match &raw_exchange(port, &encode(bind)).await.last().unwrap().op {
                LdapOp::BindResponse(r) => r.res.code.clone(),
                other => panic!("{other:?}"),
            }
        }));
    }
    let mut codes = Vec::new();
    for task in tasks {
        codes.push(task.await.unwrap());
    }
    let refused = codes.iter().filter(|c| **c == LdapResultCode::InvalidCredentials).count();
    let busy = codes.iter().filter(|c| **c == LdapResultCode::Busy).count();
    assert_eq!(refused + busy, 30, "{codes:?}");
    assert!(busy > 0, "some were turned away: {codes:?}");
    assert!(
        refused <= 5 * (started.elapsed().as_secs_f64().ceil() as usize + 1),
        "{refused} evaluated in {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() >= std::time::Duration::from_secs(1), "the rest waited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ejabberd_signs_members_in_through_roster() {
    use crate::fixtures::ejabberd::{Ejabberd, LdapAuth};
    use roster::access::policy::{RuleSpec, Who};
    let t = Directory::start(Backend::Sqlite, |_| {}).await;
    let [ann, bob, carl, dora] = t.numbers;
    let carl_m = t.c.directory.store().member_by_number(carl).await.unwrap().unwrap();
    // Carl may sign in to the IM only in a window that is not now.
    let now = chrono::Utc::now();
    let from = (now + chrono::Duration::hours(5)).format("%H:%M").to_string();
    let to = (now + chrono::Duration::hours(6)).format("%H:%M").to_string();
    t.sign_in
        .save_rule(
            &console(),
            None,
            Who::Member(carl_m.id),
            &RuleSpec { allow: true, windows: vec![format!("mon-sun {from}-{to}")], ..Default::default() },
        )
        .await
        .unwrap();
    let closed = t
        .sign_in
        .save_rule(&console(), None, Who::Member(carl_m.id), &RuleSpec { allow: false, ..Default::default() })
        .await
        .unwrap();
    let auth = LdapAuth {
        port: t.ldap_port,
        rootdn: format!("cn=im,ou=services,{BASE}"),
        password: t.im_secret.clone(),
        base: BASE.into(),
    };
    let ejabberd = Ejabberd::start_ldap(&auth).await;
    // A member signs in to the IM by account number.
    let mut bob_client =
        ejabberd.try_client(&bob.to_string(), PW).await.unwrap_or_else(|e| panic!("{e}\n{}", ejabberd.log()));
    // A wrong password, a suspended member, and a member outside their window are refused.
    assert!(ejabberd.try_client(&ann.to_string(), "wrong").await.is_err());
    assert!(ejabberd.try_client(&dora.to_string(), PW).await.is_err(), "suspended");
    assert!(ejabberd.try_client(&carl.to_string(), PW).await.is_err(), "outside the window");
    // The org tree is the contact list: bob's roster has the units as groups.
    let roster = bob_client.roster().await;
    assert!(
        roster.contains(&format!("jid='{ann}@localhost'"))
            || roster.contains(&format!("jid=\"{ann}@localhost\"")),
        "{roster}\n{}",
        ejabberd.log()
    );
    assert!(roster.contains("<group>Sales</group>"), "{roster}");
    assert!(roster.contains("name='ann (test)'") || roster.contains("name=\"ann (test)\""), "{roster}");

    // The login log shows each attempt, through the service account the IM server uses.
    let log = t.sign_in.log(&LoginFilter { limit: 200, ..Default::default() }).await.unwrap();
    let outcome = |n: i64| -> Vec<String> {
        log.iter()
            .filter(|e| e.typed == n.to_string() || e.typed.starts_with(&format!("uid={n},")))
            .map(|e| e.outcome.clone())
            .collect()
    };
    assert!(outcome(bob).contains(&"success".to_owned()), "{log:?}");
    assert!(outcome(ann).contains(&"failed".to_owned()), "{log:?}");
    assert!(outcome(dora).contains(&"inactive".to_owned()), "{log:?}");
    assert!(log.iter().any(|e| e.outcome == "denied" && e.rule_id == Some(closed)), "{log:?}");
    assert!(
        log.iter().any(|e| e.app == "im" && e.outcome == "success" && e.member_id.is_none()),
        "the service account's bind: {log:?}"
    );
}

/// The console's login management: rules with field errors, the what-if form, a console
/// sign-in the policy refuses, the login log's filters and CSV, a scoped holder's view, and a
/// member's own sign-ins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_login_management() {
    use crate::admin::MEMBER_PW;
    use roster::directory::model::Permission;
    let t = Directory::start(Backend::Sqlite, |_| {}).await;
    let c = &t.c;
    let [sales, _east, eng] = t.units;
    let mut s = c.super_admin().await;
    let page = s.get("/admin/sign-in").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.has("id=\"rule-form\""));
    // A bad CIDR and a bad window: errors by field, by line, the form kept.
    let bad = s
        .post(
            "/admin/sign-in/rules",
            &[
                ("effect", "deny"),
                ("who_kind", "unit"),
                ("who", "Example / Engineering"),
                ("networks", "10.0.0.0/8\n300.1.1.1/8"),
                ("windows", ""),
                ("clients", "console"),
            ],
        )
        .await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.has("id=\"networks-error\""), "{}", bad.body);
    assert!(bad.has("line 2"), "{}", bad.body);
    assert!(bad.has("300.1.1.1/8"), "what was typed stays");
    let bad = s
        .post(
            "/admin/sign-in/rules",
            &[("effect", "deny"), ("who_kind", "enterprise"), ("windows", "mon-fri 9-5")],
        )
        .await;
    assert!(bad.has("id=\"windows-error\""), "{}", bad.body);
    let bad =
        s.post("/admin/sign-in/rules", &[("effect", "deny"), ("who_kind", "unit"), ("who", "Nowhere")]).await;
    assert!(bad.has("id=\"who-error\""), "{}", bad.body);
    // Engineering may not use the console from outside 10.0.0.0/8 (the test client is 127.0.0.1).
    let ok = s
        .post(
            "/admin/sign-in/rules",
            &[
                ("effect", "allow"),
                ("who_kind", "unit"),
                ("who", "Example / Engineering"),
                ("networks", "10.0.0.0/8"),
                ("clients", "console"),
            ],
        )
        .await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    let ok = s
        .post(
            "/admin/sign-in/rules",
            &[
                ("effect", "deny"),
                ("who_kind", "unit"),
                ("who", "Example / Engineering"),
                ("clients", "console"),
                ("note", "office only"),
            ],
        )
        .await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    let page = s.get("/admin/sign-in?done=signin.saved").await;
    assert!(page.has("office only") && page.has("10.0.0.0/8"), "{}", page.body);
    let (_, rules) = t.sign_in.rules().await.unwrap();
    assert_eq!(rules.len(), 2);
    let deny_rule = rules[1].id;
    // What-if: from inside the office network the first rule allows; from elsewhere the second denies.
    let carl = t.numbers[2];
    let page = s.get(&format!("/admin/sign-in?account={carl}&ip=10.1.1.1&client=console")).await;
    assert!(page.has("id=\"what-if-answer\"") && page.has("allowed"), "{}", page.body);
    let page = s.get(&format!("/admin/sign-in?account={carl}&ip=192.168.1.1&client=console")).await;
    assert!(page.has("denied") && page.has(&deny_rule.to_string()), "{}", page.body);
    let page = s.get(&format!("/admin/sign-in?account={carl}&ip=nope")).await;
    assert_eq!(page.status, 400);
    // A console sign-in the policy refuses: an Engineering admin.
    let eve = c.member_with("eve", Some(eng), &[(&[Permission::ViewAudit], None)]).await;
    let mut e = c.session();
    let p = e.sign_in("eve", MEMBER_PW).await;
    assert_eq!(p.status, 403, "{}", p.body);
    assert!(p.has("sign-in policy"), "{}", p.body);
    // A Sales admin with a scoped login-policy grant: signs in, sees Sales' log only, not the rules.
    c.member_with("sam", Some(sales), &[(&[Permission::ManageLoginPolicy], Some(sales))]).await;
    let mut m = c.session();
    assert_eq!(m.sign_in("sam", MEMBER_PW).await.status, 303);
    assert_eq!(m.get("/admin/sign-in").await.status, 403, "the rules need an unscoped grant");
    let log = m.get("/admin/sign-in/log").await;
    assert_eq!(log.status, 200, "{}", log.body);
    assert!(log.has("sam (test)"), "{}", log.body);
    assert!(!log.has("eve (test)"), "Engineering is outside sam's scope: {}", log.body);
    // The super admin sees everything, filters by outcome and member, and exports CSV.
    let log = s.get("/admin/sign-in/log?outcome=denied").await;
    assert!(log.has("eve (test)") && !log.has("sam (test)"), "{}", log.body);
    let log = s.get("/admin/sign-in/log?member=sam").await;
    assert!(log.has("sam (test)") && !log.has("eve (test)"), "{}", log.body);
    let log = s.get("/admin/sign-in/log?since=not-a-date").await;
    assert_eq!(log.status, 400);
    assert!(log.has("id=\"since-error\""));
    let (status, _, csv) = s.get_bytes("/admin/sign-in/log.csv?outcome=denied", &[]).await;
    assert_eq!(status, 200);
    let csv = String::from_utf8(csv).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("id,at,member_id,account"), "{csv}");
    assert!(lines.len() >= 2 && lines[1..].iter().all(|l| l.contains(",denied,")), "{csv}");
    assert!(csv.contains(&eve.id.to_string()) && csv.contains(&deny_rule.to_string()), "{csv}");
    // A member sees their own sign-ins.
    let mine = m.get("/admin/sign-in/mine").await;
    assert_eq!(mine.status, 200);
    assert!(mine.has("Signed in") && !mine.has("eve (test)"), "{}", mine.body);
    // Rule changes are audited.
    assert!(c.audit_count("sign_in_rule.create").await >= 2);
    assert!(c.audit_count("sign_in.log_export").await >= 1);
}

on_both_stores!(attendance_from_punches_and_sign_ins);

/// Shifts through the console, punches through the API (idempotent, bad ones refused one by
/// one), results by thresholds, final days that never change, the month views and CSV.
async fn attendance_from_punches_and_sign_ins(backend: Backend) {
    let t = Directory::start(backend, |_| {}).await;
    let c = &t.c;
    let [ann, bob, _carl, _] = t.numbers;
    let mut s = c.super_admin().await;
    s.get("/admin/attendance").await;
    let bad = s
        .post(
            "/admin/attendance/shifts",
            &[("name", "Office"), ("time_zone", "Asia/Shanghai"), ("start", "9am"), ("end", "18:00")],
        )
        .await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.has("id=\"start-error\""), "{}", bad.body);
    let ok = s
        .post(
            "/admin/attendance/shifts",
            &[
                ("name", "Office"),
                ("time_zone", "Asia/Shanghai"),
                ("start", "09:00"),
                ("end", "18:00"),
                ("late_after", "5"),
                ("serious_after", "30"),
                ("absent_after", "120"),
                ("rest_days", "sat sun"),
            ],
        )
        .await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    let (shifts, _) = c.directory.0.attendance.shifts().await.unwrap();
    let shift = shifts[0].id.to_string();
    let ok = s.post("/admin/attendance/assign", &[("unit", "Example / Sales"), ("shift", &shift)]).await;
    assert_eq!(ok.status, 303, "{}", ok.body);

    let token = c
        .directory
        .access()
        .create_token_of(&console(), "lobby", roster::access::store::TokenKind::Attendance, false)
        .await
        .unwrap();
    let http = crate::common::http();
    let post = |body: serde_json::Value, token: String| {
        let req = http.post(format!("{}/api/v1/attendance/punches", c.base)).bearer_auth(token).json(&body);
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.json::<serde_json::Value>().await.unwrap_or_default())
        }
    };
    // Monday 2026-11-30 in Shanghai: ann on time, bob 40 minutes late.
    let punches = serde_json::json!({"punches": [
        {"id": "p1", "account": ann.to_string(), "at": "2026-11-30T08:55:00+08:00", "device": "lobby"},
        {"id": "p2", "account": ann.to_string(), "at": "2026-11-30T18:10:00+08:00"},
        {"id": "p3", "account": "bob", "at": "2026-11-30T09:40:00+08:00"},
        {"id": "p4", "account": bob.to_string(), "at": "2026-11-30T18:01:00+08:00"},
        {"id": "p5", "account": "nobody", "at": "2026-11-30T09:00:00+08:00"},
        {"id": "p6", "account": ann.to_string(), "at": "yesterday"},
    ]});
    let (status, body) = post(punches.clone(), token.clone()).await;
    assert_eq!(status, 200, "{body}");
    let outcomes: Vec<String> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{}{}",
                r["status"].as_str().unwrap(),
                r["code"].as_str().map(|c| format!(":{c}")).unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        ["stored", "stored", "stored", "stored", "refused:unknown_account", "refused:invalid_time"]
    );
    // A retry is a duplicate, never a second punch.
    let (_, body) = post(punches, token.clone()).await;
    assert!(body["results"].as_array().unwrap()[..4].iter().all(|r| r["status"] == "duplicate"), "{body}");
    let (status, _) = post(serde_json::json!({"punches": []}), t.im_secret.clone()).await;
    assert_eq!(status, 403, "an LDAP service account's secret is not an attendance token");
    let (status, body) = post(serde_json::json!({"nope": 1}), token.clone()).await;
    assert_eq!(status, 400, "{body}");
    // Each request is one audit row, with its counts.
    assert_eq!(c.audit_count("attendance.punches").await, 2);

    let a = &c.directory.0.attendance;
    let store = c.directory.store();
    let ann_m = store.member_by_number(ann).await.unwrap().unwrap();
    let bob_m = store.member_by_number(bob).await.unwrap().unwrap();
    let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
    let at = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&chrono::Utc);
    let now = at("2026-12-01T12:00:00+08:00");
    let status_of = |m: &roster::directory::model::Member| {
        let m = m.clone();
        async move { a.member_days(&m, day, day, now).await.unwrap()[0].clone() }
    };
    let ann_day = status_of(&ann_m).await;
    assert_eq!((ann_day.status.as_str(), ann_day.final_), ("normal", true));
    let bob_day = status_of(&bob_m).await;
    assert_eq!((bob_day.status.as_str(), bob_day.late_minutes), ("seriously_late", 40));
    // Before the window and the grace have passed, the day is provisional.
    let early = a.member_days(&ann_m, day, day, at("2026-11-30T20:00:00+08:00")).await.unwrap();
    assert!(!early[0].final_);
    // The job stores final results; a late punch cannot change a final day.
    a.settle(now, 2).await.unwrap();
    let late_punch = serde_json::json!({"punches": [{"id": "p7", "account": bob.to_string(), "at": "2026-11-30T08:59:00+08:00"}]});
    assert_eq!(post(late_punch, token.clone()).await.0, 200);
    assert_eq!(status_of(&bob_m).await.status.as_str(), "seriously_late", "a final day stays as it was");
    // Saturday is a rest day.
    let sat = chrono::NaiveDate::from_ymd_opt(2026, 11, 28).unwrap();
    assert_eq!(a.member_days(&ann_m, sat, sat, now).await.unwrap()[0].status.as_str(), "rest");

    // The console: the unit's month, a member's month, CSV.
    let page = s.get("/admin/attendance?unit=Example%20%2F%20Sales&month=2026-11").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.has("ann (test)") && page.has("bob (test)") && !page.has("carl (test)"), "{}", page.body);
    let page = s.get(&format!("/admin/attendance/members/{}?month=2026-11", bob_m.id)).await;
    assert!(page.has("2026-11-30") && page.has("Seriously late"), "{}", page.body);
    let (status, _, csv) =
        s.get_bytes("/admin/attendance.csv?unit=Example%20%2F%20Sales&month=2026-11", &[]).await;
    assert_eq!(status, 200);
    let csv = String::from_utf8(csv).unwrap();
    assert!(
        csv.lines().any(|l| l.contains(&ann_m.id.to_string()) && l.contains("2026-11-30,normal")),
        "{csv}"
    );
    assert!(
        csv.lines().any(|l| l.contains(&bob_m.id.to_string()) && l.contains("2026-11-30,seriously_late")),
        "{csv}"
    );
    let bad = s.get("/admin/attendance?unit=Nowhere").await;
    assert_eq!(bad.status, 400);
    // A shift is edited in the same form, and deleted with its assignments.
    let form = s.get(&format!("/admin/attendance?shift={shift}")).await;
    assert!(form.has("value=\"Office\"") && form.has(&format!("value=\"{shift}\"")), "{}", form.body);
    let ok = s
        .post(
            "/admin/attendance/shifts",
            &[
                ("id", &shift),
                ("name", "Office 2"),
                ("time_zone", "Asia/Shanghai"),
                ("start", "10:00"),
                ("end", "19:00"),
            ],
        )
        .await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    let (shifts, assignments) = a.shifts().await.unwrap();
    assert_eq!(
        (shifts.len(), shifts[0].spec.name.as_str(), shifts[0].spec.start.as_str()),
        (1, "Office 2", "10:00")
    );
    assert_eq!(assignments.len(), 1, "the assignment stays with the edited shift");
    assert_eq!(s.post(&format!("/admin/attendance/shifts/{shift}/delete"), &[]).await.status, 303);
    let (shifts, assignments) = a.shifts().await.unwrap();
    assert!(shifts.is_empty() && assignments.is_empty());
    assert_eq!(c.audit_count("attendance.shift_delete").await, 1);
}

/// StartTLS on the LDAP port and LDAPS on its own, with a certificate from `openssl`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_tls_and_ldaps() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let out = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tls_port = crate::daemon::free_port();
    let (c2, k2) = (cert.to_str().unwrap().to_owned(), key.to_str().unwrap().to_owned());
    let t = Directory::start(Backend::Sqlite, |cfg| {
        cfg.ldap_server.tls.cert_file = c2;
        cfg.ldap_server.tls.key_file = k2;
        cfg.ldap_server.listen_tls = format!("127.0.0.1:{tls_port}");
    })
    .await;
    let bob = t.numbers[1].to_string();
    // StartTLS (-ZZ: required), trusting the test certificate.
    let out = tokio::process::Command::new("ldapwhoami")
        .args(["-x", "-ZZ", "-H", &t.url(), "-D", &bob, "-w", PW])
        .env("LDAPTLS_CACERT", &cert)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with(&format!("dn:uid={bob},")));
    // The root DSE offers StartTLS.
    let (_, dse) = t.search(&["-b", "", "-s", "base", "supportedExtension"]).await;
    assert!(dse.contains("1.3.6.1.4.1.1466.20037"), "{dse}");
    // LDAPS.
    let out = tokio::process::Command::new("ldapwhoami")
        .args(["-x", "-H", &format!("ldaps://127.0.0.1:{tls_port}"), "-D", &bob, "-w", PW])
        .env("LDAPTLS_CACERT", &cert)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // A client that does not trust the certificate is refused by its own TLS check.
    let out = tokio::process::Command::new("ldapwhoami")
        .args(["-x", "-ZZ", "-H", &t.url(), "-D", &bob, "-w", PW])
        .env("LDAPTLS_REQCERT", "demand")
        .env("LDAPTLS_CACERT", "/dev/null")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
}

on_both_stores!(the_login_log_forgets_after_its_days);

/// `access:login-log` (run as the scheduler runs it) forgets attempts older than
/// `access.login_log_days` and keeps the rest.
async fn the_login_log_forgets_after_its_days(backend: Backend) {
    use roster::access::login::LoginEntry;
    let db = crate::common::TestDb::new(backend);
    let s = db.open().await;
    let now = chrono::Utc::now();
    let entry = |days_ago: i64, typed: &str| LoginEntry {
        id: 0,
        at: now - chrono::Duration::days(days_ago),
        member_id: None,
        typed: typed.into(),
        client: "ldap".into(),
        app: "im".into(),
        ip: None,
        outcome: "failed".into(),
        rule_id: None,
        reason: String::new(),
        unit_path: String::new(),
    };
    for (days, typed) in [(500, "old"), (401, "just over"), (399, "just under"), (0, "today")] {
        s.0.login.login_log_insert(&entry(days, typed)).await.unwrap();
    }
    let jobs = roster::access::signin::jobs(s.0.login.clone(), 400);
    assert_eq!(jobs[0].name, "access:login-log");
    (jobs[0].run)().await.unwrap();
    let left = s.0.login.login_log(&LoginFilter { limit: 10, ..Default::default() }).await.unwrap();
    let mut kept: Vec<&str> = left.iter().map(|e| e.typed.as_str()).collect();
    kept.sort();
    assert_eq!(kept, ["just under", "today"]);
}
