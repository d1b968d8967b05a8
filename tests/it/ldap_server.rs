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
