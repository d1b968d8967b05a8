//! LDAP sync against a real slapd: first sync, changes picked up, limits, dry runs, outages, TLS.

use roster::config::{LdapSearch, LdapSource, SyncLimits};
use roster::directory::model::MemberState;
use roster::sync::{Outcome, ReadMode, RunOptions, SyncService};

use crate::common::{Backend, TestDb};
use crate::slapd::{SUFFIX, SYNC_DN, SYNC_PW, Slapd, base_ldif, generate};

pub(crate) fn source(url: String) -> LdapSource {
    LdapSource {
        name: "corp".into(),
        preset: Default::default(),
        url,
        starttls: false,
        allow_insecure: false,
        ca_file: None,
        bind_dn: Some(SYNC_DN.into()),
        bind_password: Some(SYNC_PW.into()),
        bind_password_file: None,
        users: LdapSearch { base_dn: format!("ou=people,{SUFFIX}"), filter: None },
        groups: Some(LdapSearch { base_dn: format!("ou=groups,{SUFFIX}"), filter: None }),
        org_units: Some(LdapSearch { base_dn: format!("ou=people,{SUFFIX}"), filter: None }),
        department_path: None,
        anchor: None,
        attributes: Default::default(),
        suspended_filter: Some("(employeeType=disabled)".into()),
        schedule: Default::default(),
        limits: SyncLimits { max_deletes: 500, max_delete_percent: 10.0 },
        page_size: 7,
        timeout_secs: 10,
    }
}

struct Setup {
    ldap: Slapd,
    db: TestDb,
    sync: SyncService,
    directory: crate::common::Opened,
}

async fn setup(
    b: Backend,
    units: usize,
    users: usize,
    groups: usize,
    tune: impl FnOnce(&mut LdapSource),
) -> Setup {
    let ldap = Slapd::start(&format!("{}{}", base_ldif(), generate(units, users, groups)));
    let mut src = source(ldap.url());
    tune(&mut src);
    let mut db = TestDb::new(b);
    db.cfg.sync.ldap = vec![src];
    let directory = db.open().await;
    let sync =
        SyncService::new(directory.0.directory.clone(), directory.0.runs.clone(), db.cfg.sync.ldap.clone());
    Setup { ldap, db, sync, directory }
}

async fn run(s: &Setup) -> roster::sync::Report {
    s.sync.run("corp", RunOptions { full: true, trigger: "test".into(), ..Default::default() }).await.unwrap()
}

async fn incremental(s: &Setup) -> roster::sync::Report {
    s.sync
        .run("corp", RunOptions { full: false, trigger: "test".into(), ..Default::default() })
        .await
        .unwrap()
}

fn uid_dn(n: usize, unit_dn: &str) -> String {
    format!("uid=user{n:06},{unit_dn}")
}

async fn member(s: &Setup, login: &str) -> Option<roster::directory::model::Member> {
    s.directory.store().member_by_login(&format!("{login}@example.com")).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_sync_then_every_kind_of_change() {
    let s = setup(Backend::Sqlite, 4, 30, 2, |_| {}).await;
    let r = run(&s).await;
    assert_eq!(r.outcome, Outcome::Applied, "{r:?}");
    assert_eq!(r.mode, Some(ReadMode::FullSync), "slapd offers content sync");
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let counts = s.directory.store().counts().await.unwrap();
    assert_eq!((counts.members, counts.groups), (30, 2));
    assert!(counts.org_units >= 4);
    let first = member(&s, "user000010").await.expect("synced");
    assert_eq!(first.source.as_str(), "ldap:corp");
    assert!(first.primary_org_unit_id.is_some(), "members land in the OU holding their entry");
    let numbers: std::collections::BTreeSet<i64> =
        s.directory.store().members_page(0, 100).await.unwrap().iter().map(|m| m.account_number).collect();
    assert_eq!(numbers, (1000..1030).collect(), "consecutive numbers");

    // Nothing changed: nothing written.
    let audit = s.directory.store().audit_count().await.unwrap();
    let again = incremental(&s).await;
    assert_eq!(again.outcome, Outcome::Applied);
    assert_eq!(again.mode, Some(ReadMode::Incremental));
    assert!(again.plan.is_empty(), "{:?}", again.plan);
    assert_eq!(s.directory.store().audit_count().await.unwrap(), audit, "an unchanged sync writes nothing");

    // Find where user 1 and 2 live, then change the source in every way.
    let unit_of = |m: &roster::directory::model::Member| m.primary_org_unit_id.unwrap();
    let u1 = member(&s, "user000001").await.unwrap();
    let u2 = member(&s, "user000002").await.unwrap();
    let u3 = member(&s, "user000003").await.unwrap();
    assert!(u1.primary_org_unit_id.is_some() && u2.primary_org_unit_id.is_some());
    let d1 = dn_of_user(&s, "user000001");
    let d2 = dn_of_user(&s, "user000002");
    let d3 = dn_of_user(&s, "user000003");
    let parent_of = |dn: &str| dn.split_once(',').unwrap().1.to_owned();
    let ou_of_d1 = parent_of(&d1);
    let ou_name = ou_of_d1.split(',').next().unwrap().trim_start_matches("ou=").to_owned();
    let other_ou = {
        let ous: Vec<String> =
            s.directory.store().org_units_all().await.unwrap().into_iter().map(|u| u.name).collect();
        ous.into_iter()
            .find(|n| !d2.contains(&format!("ou={n},")) && !d1.contains(&format!("ou={n},")))
            .unwrap()
    };
    let target_ou = dn_of_ou(&s, &other_ou);
    s.ldap.modify(&format!(
        "dn: {d1}\nchangetype: modify\nreplace: title\ntitle: Chief\n-\nreplace: employeeType\nemployeeType: disabled\n\n\
         dn: {d2}\nchangetype: modrdn\nnewrdn: uid=user000002\ndeleteoldrdn: 1\nnewsuperior: {target_ou}\n\n\
         dn: {d3}\nchangetype: delete\n\n\
         dn: {}\nchangetype: add\nobjectClass: inetOrgPerson\nuid: newbie\ncn: New Bie\nsn: Bie\nmail: newbie@example.com\n",
        uid_dn(999_999, &target_ou)
    ));
    let r = incremental(&s).await;
    assert_eq!(r.outcome, Outcome::Applied, "{r:?}");
    assert_eq!(r.mode, Some(ReadMode::Incremental));
    let units = s.directory.store().counts().await.unwrap().org_units as usize;
    // The OU tree (with its base entry) is read whole; of the people only the three that changed.
    assert_eq!(r.entries_read, units + 1 + 3, "an incremental read carries only what changed");
    // Renaming an OU with entries under it: the server may ask for a full refresh; either way
    // the unit is renamed, not replaced.
    s.ldap.modify(&format!(
        "dn: {ou_of_d1}\nchangetype: modrdn\nnewrdn: ou={ou_name} Renamed\ndeleteoldrdn: 1\n"
    ));
    let r = incremental(&s).await;
    assert_eq!(r.outcome, Outcome::Applied, "{r:?}");
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let n1 = member(&s, "user000001").await.unwrap();
    assert_eq!((n1.id, n1.title.as_deref(), n1.state), (u1.id, Some("Chief"), MemberState::Suspended));
    let renamed_unit = s.directory.store().org_unit(unit_of(&u1)).await.unwrap().unwrap();
    assert_eq!(
        renamed_unit.name,
        format!("{ou_name} Renamed"),
        "an OU rename is a rename, not delete+create"
    );
    assert_eq!(unit_of(&n1), unit_of(&u1), "people stay in the renamed OU");
    let n2 = member(&s, "user000002").await.unwrap();
    assert_eq!(n2.id, u2.id, "a moved entry is the same member");
    assert_ne!(unit_of(&n2), unit_of(&u2));
    assert!(member(&s, "user000003").await.is_none());
    assert!(
        s.directory.store().tombstone(u3.id).await.unwrap().is_some(),
        "a deleted entry leaves a tombstone"
    );
    let newbie = member(&s, "newbie").await.unwrap();
    assert_eq!(newbie.account_number, 1030, "the next number");
    // A full read agrees with what the incremental ones did.
    let full = run(&s).await;
    assert_eq!((full.outcome, full.mode), (Outcome::Applied, Some(ReadMode::FullSync)));
    assert!(full.plan.is_empty(), "incremental runs missed something: {:?}", full.plan);
    // Group membership follows anchors: the moved member is still in its groups.
    for (g, ids) in s.directory.store().groups_by_source("ldap:corp").await.unwrap() {
        assert!(!ids.contains(&u3.id), "{} still lists the deleted member", g.name);
    }
}

/// A full sync loads whole only the members whose stored digest differs from what the source
/// says; a member with no digest (a row from before digests were kept) is compared whole, and
/// a difference the digest does not know about is still found and mended.
/// Entries the directory refuses (here: login names console members already hold) are reported
/// one by one, and everything around them lands: the changes before a refused one are applied
/// on their own, then those after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_entries_are_reported_and_the_rest_lands() {
    let s = setup(Backend::Sqlite, 4, 30, 2, |_| {}).await;
    let console = crate::common::console();
    for login in ["user000003", "user000017", "user000018", "user000029"] {
        crate::common::create_member(&s.directory, &console, crate::common::member(login)).await;
    }
    let r = run(&s).await;
    assert_eq!(r.outcome, Outcome::Applied, "{r:?}");
    assert_eq!(r.errors.len(), 4, "{:?}", r.errors);
    for (e, login) in r.errors.iter().zip(["user000003", "user000017", "user000018", "user000029"]) {
        assert!(e.contains(login) && e.ends_with("[conflict]"), "{e}");
    }
    let store = s.directory.store();
    let synced = store.member_keys_by_source("ldap:corp").await.unwrap();
    assert_eq!(synced.len(), 26, "every other user was created");
    assert_eq!(store.counts().await.unwrap().groups, 2);
    // The console's members kept their own data; groups hold synced members only.
    let kept = member(&s, "user000017").await.unwrap();
    assert_eq!(kept.source.as_str(), "console");
    let ids: std::collections::HashSet<_> = synced.iter().map(|k| k.id).collect();
    for (group, members) in store.groups_by_source("ldap:corp").await.unwrap() {
        assert!(!members.is_empty(), "{}", group.name);
        assert!(members.iter().all(|m| ids.contains(m)), "{} holds a member sync did not create", group.name);
    }
    // The next run reports the same four and changes nothing else.
    let audit = store.audit_count().await.unwrap();
    let again = run(&s).await;
    assert_eq!(again.errors.len(), 4, "{:?}", again.errors);
    assert_eq!(store.audit_count().await.unwrap(), audit, "{:?}", again.plan);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digests_skip_unchanged_members_and_hide_no_change() {
    let s = setup(Backend::Sqlite, 3, 20, 1, |_| {}).await;
    let store = s.directory.store().clone();
    let first = run(&s).await;
    assert_eq!((first.outcome, first.compared), (Outcome::Applied, 0), "{first:?}");
    let digests = |keys: Vec<roster::directory::store::MemberKey>| {
        keys.into_iter().map(|k| (k.id, k.digest)).collect::<Vec<_>>()
    };
    let keys = digests(store.member_keys_by_source("ldap:corp").await.unwrap());
    assert_eq!(keys.len(), 20);
    for (id, digest) in &keys {
        let m = store.member(*id).await.unwrap().unwrap();
        assert_eq!(*digest, Some(m.digest()), "the store keeps the digest of what it wrote");
    }
    let unchanged = run(&s).await;
    assert!(unchanged.plan.is_empty(), "{:?}", unchanged.plan);
    assert_eq!(unchanged.compared, 0, "unchanged members are not loaded whole");

    // Rows without digests, one of them changed underneath (as an older release left them).
    let pool = sqlx::SqlitePool::connect(&s.db.cfg.database.url).await.unwrap();
    sqlx::query("UPDATE members SET sync_digest = NULL").execute(&pool).await.unwrap();
    sqlx::query(
        "UPDATE members SET title = 'Changed underneath' WHERE login_name = 'user000004@example.com'",
    )
    .execute(&pool)
    .await
    .unwrap();
    let audit = store.audit_count().await.unwrap();
    let r = run(&s).await;
    assert_eq!(r.compared, 20, "members without a digest are compared whole");
    assert_eq!(r.plan.len(), 1, "{:?}", r.plan);
    assert!(r.plan[0].starts_with("update member user000004"), "{:?}", r.plan);
    assert_eq!(store.audit_count().await.unwrap(), audit + 1, "only the changed member is written");
    assert_ne!(member(&s, "user000004").await.unwrap().title.as_deref(), Some("Changed underneath"));
    let filled = digests(store.member_keys_by_source("ldap:corp").await.unwrap());
    assert!(filled.iter().all(|(_, d)| d.is_some()), "the run stored the missing digests: {filled:?}");
    assert_eq!(run(&s).await.compared, 0);

    // A dry run stores nothing, digests included.
    sqlx::query("UPDATE members SET sync_digest = NULL WHERE login_name = 'user000005@example.com'")
        .execute(&pool)
        .await
        .unwrap();
    let dry = s
        .sync
        .run("corp", RunOptions { full: true, dry_run: true, trigger: "test".into(), ..Default::default() })
        .await
        .unwrap();
    assert_eq!((dry.outcome, dry.compared), (Outcome::DryRun, 1));
    assert_eq!(run(&s).await.compared, 1, "the dry run left the digest unknown");
    assert_eq!(run(&s).await.compared, 0);
}

/// The DN of the first entry matching `filter`, read with ldapsearch as the sync account.
fn dn_where(s: &Setup, filter: &str) -> String {
    let out = std::process::Command::new("ldapsearch")
        .args(["-x", "-LLL", "-H", &s.ldap.url(), "-D", SYNC_DN, "-w", SYNC_PW, "-b", SUFFIX, filter, "dn"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().lines().next().unwrap().trim_start_matches("dn: ").to_owned()
}

fn dn_of_ou(s: &Setup, name: &str) -> String {
    dn_where(s, &format!("(ou={name})"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_over_the_limit_is_held_until_approved() {
    let s = setup(Backend::Postgres, 2, 20, 1, |_| {}).await;
    assert_eq!(run(&s).await.outcome, Outcome::Applied);
    // Five of twenty (25%) go: over the 10% limit.
    let mut ldif = String::new();
    for login in ["user000010", "user000011", "user000012", "user000013", "user000014"] {
        ldif.push_str(&format!("dn: {}\nchangetype: delete\n\n", dn_of_user(&s, login)));
    }
    s.ldap.modify(&ldif);
    let held = run(&s).await;
    assert_eq!(held.outcome, Outcome::Held, "{held:?}");
    assert!(held.message.contains("approve"), "{}", held.message);
    assert_eq!(s.directory.store().counts().await.unwrap().members, 20, "nothing deleted while held");
    let approved = s.sync.approve(held.run_id).await.unwrap();
    assert_eq!(approved.outcome, Outcome::Applied, "{approved:?}");
    assert_eq!(s.directory.store().counts().await.unwrap().members, 15);
    assert_eq!(s.directory.store().run(held.run_id).await.unwrap().unwrap().status, "approved");
    assert!(s.sync.approve(held.run_id).await.is_err(), "a run is approved once");
}

fn dn_of_user(s: &Setup, login: &str) -> String {
    dn_where(s, &format!("(uid={login})"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_changes_nothing() {
    let s = setup(Backend::Sqlite, 2, 10, 1, |_| {}).await;
    let r = s
        .sync
        .run("corp", RunOptions { dry_run: true, trigger: "test".into(), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(r.outcome, Outcome::DryRun);
    assert!(r.plan.iter().any(|p| p.starts_with("create member")), "{:?}", r.plan);
    assert_eq!(s.directory.store().counts().await.unwrap().members, 0);
    assert_eq!(s.directory.store().audit_count().await.unwrap(), 1, "only the enterprise's creation");
}

/// A TCP proxy to `upstream` that drops each connection after passing `cut_after` bytes from
/// the server: a connection lost in the middle of a paged read.
fn cutting_proxy(upstream: u16, cut_after: usize) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { return };
            let Ok(mut server) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else { continue };
            let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c2, &mut s2);
            });
            std::thread::spawn(move || {
                let mut passed = 0;
                let mut buf = [0u8; 4096];
                while let Ok(n) = server.read(&mut buf) {
                    if n == 0 || passed + n > cut_after {
                        break;
                    }
                    passed += n;
                    if client.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = client.shutdown(std::net::Shutdown::Both);
                let _ = server.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_mid_run_loses_and_deletes_nothing() {
    let mut s = setup(Backend::Sqlite, 5, 200, 2, |src| src.page_size = 5).await;
    assert_eq!(run(&s).await.outcome, Outcome::Applied);
    let before = s.directory.store().counts().await.unwrap();
    // The connection drops in the middle of the users' pages.
    let mut cut = source(format!("ldap://127.0.0.1:{}", cutting_proxy(s.ldap.port, 30_000)));
    cut.page_size = 5;
    let through_proxy =
        SyncService::new(s.directory.0.directory.clone(), s.directory.0.runs.clone(), vec![cut]);
    let r = through_proxy
        .run("corp", RunOptions { full: true, trigger: "test".into(), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(r.outcome, Outcome::Failed, "{r:?}");
    assert!(r.message.contains("nothing was deleted"), "{}", r.message);
    assert_eq!(s.directory.store().counts().await.unwrap(), before);
    // The server killed: the same.
    s.ldap.kill();
    let r = run(&s).await;
    assert_eq!(r.outcome, Outcome::Failed);
    assert!(r.message.contains("cannot connect"), "{}", r.message);
    assert_eq!(s.directory.store().counts().await.unwrap(), before);
    s.ldap.restart();
    let r = run(&s).await;
    assert_eq!(r.outcome, Outcome::Applied, "{r:?}");
    assert!(r.plan.is_empty(), "the next run completes and finds nothing to do: {:?}", r.plan);
    let runs = s.directory.store().runs_recent(10).await.unwrap();
    assert_eq!(runs.iter().filter(|r| r.status == "failed").count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldaps_with_the_right_ca_and_not_with_another() {
    let s = setup(Backend::Sqlite, 1, 3, 0, |_| {}).await;
    let mut good = source(s.ldap.ldaps_url());
    good.ca_file = Some(s.ldap.ca_file());
    good.groups = None;
    let mut bad = good.clone();
    bad.name = "wrong".into();
    bad.ca_file = Some(s.ldap.other_ca_file());
    let sync = SyncService::new(s.directory.0.directory.clone(), s.directory.0.runs.clone(), vec![good, bad]);
    let ok = sync.run("corp", RunOptions { trigger: "test".into(), ..Default::default() }).await.unwrap();
    assert_eq!(ok.outcome, Outcome::Applied, "{ok:?}");
    assert_eq!(s.directory.store().counts().await.unwrap().members, 3);
    let refused =
        sync.run("wrong", RunOptions { trigger: "test".into(), ..Default::default() }).await.unwrap();
    assert_eq!(refused.outcome, Outcome::Failed);
    assert!(refused.message.contains("cannot connect"), "{}", refused.message);
    let _ = &s.db;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_reports_with_exit_codes() {
    let s = setup(Backend::Sqlite, 2, 10, 1, |_| {}).await;
    let dir = s.db.dir.path();
    let config = dir.join("sync.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"{}\"\n[numbers]\nfirst = 1000\nlast = 1999\n\n[[sync.ldap]]\nname = \"corp\"\nurl = \"{}\"\nbind_dn = \"{SYNC_DN}\"\nbind_password = \"{SYNC_PW}\"\nusers.base_dn = \"ou=people,{SUFFIX}\"\norg_units.base_dn = \"ou=people,{SUFFIX}\"\ngroups.base_dn = \"ou=groups,{SUFFIX}\"\nlimits.max_delete_percent = 5.0\n",
            s.db.cfg.database.url,
            s.ldap.url()
        ),
    )
    .unwrap();
    let rosterd = |args: &[&str]| {
        crate::daemon::run(crate::daemon::rosterd(dir).arg("--config").arg(&config).args(args))
    };
    let dry = rosterd(&["sync", "--source", "corp", "--dry-run", "--json"]);
    assert_eq!(dry.status.code(), Some(0), "{}", crate::daemon::text(&dry.stderr));
    let report: serde_json::Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(report["outcome"], "dry_run");
    assert_eq!(report["counts"]["members"]["created"], 10);
    let applied = rosterd(&["sync", "--source", "corp"]);
    assert_eq!(applied.status.code(), Some(0), "{}", crate::daemon::text(&applied.stderr));
    s.ldap.modify(&format!("dn: {}\nchangetype: delete\n\n", dn_of_user(&s, "user000004")));
    let held = rosterd(&["sync", "--source", "corp"]);
    assert_eq!(held.status.code(), Some(3), "held by the 5% limit: {}", crate::daemon::text(&held.stdout));
    let status = rosterd(&["sync", "status", "--json"]);
    let runs: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(runs[0]["status"], "held");
    let id = runs[0]["id"].as_i64().unwrap().to_string();
    let approve = rosterd(&["sync", "approve", &id]);
    assert_eq!(approve.status.code(), Some(0), "{}", crate::daemon::text(&approve.stdout));
    let unknown = rosterd(&["sync", "--source", "nope"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(crate::daemon::text(&unknown.stderr).contains("no [[sync.ldap]] source"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_run_per_source_at_a_time() {
    let s = setup(Backend::Postgres, 2, 50, 1, |_| {}).await;
    // A second node: its own service over the same database.
    let other = SyncService::new(
        s.directory.0.directory.clone(),
        s.directory.0.runs.clone(),
        s.db.cfg.sync.ldap.clone(),
    );
    let opts = || RunOptions { full: true, trigger: "test".into(), ..Default::default() };
    let (a, b) = tokio::join!(s.sync.run("corp", opts()), other.run("corp", opts()));
    let busy = [&a, &b].iter().filter(|r| matches!(r, Err(roster::sync::SyncError::Busy(_)))).count();
    let applied = [&a, &b].iter().filter(|r| matches!(r, Ok(rep) if rep.outcome == Outcome::Applied)).count();
    assert_eq!((busy, applied), (1, 1), "{a:?} {b:?}");
    assert_eq!(s.directory.store().counts().await.unwrap().members, 50);
    // The lease is released: the next run goes ahead.
    assert_eq!(other.run("corp", opts()).await.unwrap().outcome, Outcome::Applied);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_runs_the_schedules() {
    let ldap = Slapd::start(&format!("{}{}", base_ldif(), generate(2, 5, 1)));
    let mut db = TestDb::new(Backend::Sqlite);
    let mut src = source(ldap.url());
    src.schedule.incremental = Some("* * * * * *".into());
    db.cfg.sync.ldap = vec![src];
    let directory = db.open().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(roster::app::run(listener, db.cfg.clone(), stop.clone()));
    let mut runs = Vec::new();
    for _ in 0..100 {
        runs = directory.store().runs_recent(10).await.unwrap();
        if runs.iter().filter(|r| r.status == "applied").count() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    stop.cancel();
    server.await.unwrap().unwrap();
    assert!(runs.iter().filter(|r| r.status == "applied").count() >= 2, "{runs:?}");
    assert!(runs.iter().all(|r| r.trigger == "schedule:incremental"));
    assert_eq!(directory.store().counts().await.unwrap().members, 5);
}

/// A directory without an OU per department: the org tree comes from each user's
/// `departmentNumber` path; groups come as groupOfUniqueNames (`uniqueMember`, with the
/// optional `#'…'B` suffix) and posixGroup (`memberUid` login names), also incrementally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn department_paths_unique_members_and_member_uids() {
    let person = |uid: &str, dept: &str| {
        format!(
            "dn: uid={uid},ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\nsn: {uid}\n\
             mail: {uid}@example.com\ndepartmentNumber: {dept}\n\n"
        )
    };
    let mut ldif = base_ldif();
    ldif += &person("ann", "Sales/East");
    ldif += &person("ben", "Sales / West");
    ldif += &person("cat", "Engineering");
    ldif += &format!(
        "dn: cn=leads,ou=groups,{SUFFIX}\nobjectClass: groupOfUniqueNames\ncn: leads\n\
         uniqueMember: uid=ann,ou=people,{SUFFIX}#'0101'B\nuniqueMember: uid=cat,ou=people,{SUFFIX}\n\n\
         dn: cn=staff,ou=groups,{SUFFIX}\nobjectClass: posixGroup\ncn: staff\ngidNumber: 5000\n\
         memberUid: ann\nmemberUid: BEN\n\n"
    );
    let ldap = Slapd::start(&ldif);
    let mut src = source(ldap.url());
    src.org_units = None;
    src.department_path =
        Some(roster::config::DepartmentPath { attribute: "departmentNumber".into(), separator: "/".into() });
    let mut db = TestDb::new(Backend::Sqlite);
    db.cfg.sync.ldap = vec![src];
    let directory = db.open().await;
    let sync =
        SyncService::new(directory.0.directory.clone(), directory.0.runs.clone(), db.cfg.sync.ldap.clone());
    let s = Setup { ldap, db, sync, directory };
    let r = run(&s).await;
    assert_eq!(r.outcome, Outcome::Applied, "{r:?}");
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let store = s.directory.store();
    let units = store.org_units_all().await.unwrap();
    let path_of = |id: Option<uuid::Uuid>| {
        let mut names = Vec::new();
        let mut next = id;
        while let Some(u) = next.and_then(|id| units.iter().find(|u| u.id == id)) {
            names.insert(0, u.name.clone());
            next = u.parent_id;
        }
        names.join("/")
    };
    assert_eq!(units.len(), 4, "Sales, East, West, Engineering: {units:?}");
    assert_eq!(path_of(member(&s, "ann").await.unwrap().primary_org_unit_id), "Sales/East");
    assert_eq!(path_of(member(&s, "ben").await.unwrap().primary_org_unit_id), "Sales/West");
    assert_eq!(path_of(member(&s, "cat").await.unwrap().primary_org_unit_id), "Engineering");
    let groups = store.groups_by_source("ldap:corp").await.unwrap();
    let names_in = |group: &str| {
        let ids = groups.iter().find(|(g, _)| g.name == group).map(|(_, m)| m.clone()).unwrap_or_default();
        async move {
            let mut names = Vec::new();
            for id in ids {
                names.push(store.member(id).await.unwrap().unwrap().login_name.replace("@example.com", ""));
            }
            names.sort();
            names
        }
    };
    assert_eq!(names_in("leads").await, ["ann", "cat"]);
    assert_eq!(names_in("staff").await, ["ann", "ben"], "memberUid matches logins case-insensitively");

    // Incrementally: cat moves department, a new posix member; the other units stay.
    s.ldap.modify(&format!(
        "dn: uid=cat,ou=people,{SUFFIX}\nchangetype: modify\nreplace: departmentNumber\ndepartmentNumber: Sales/East\n\n\
         dn: cn=staff,ou=groups,{SUFFIX}\nchangetype: modify\nadd: memberUid\nmemberUid: cat\n"
    ));
    let r = incremental(&s).await;
    assert_eq!((r.outcome, r.mode), (Outcome::Applied, Some(ReadMode::Incremental)), "{r:?}");
    assert_eq!(path_of(member(&s, "cat").await.unwrap().primary_org_unit_id), "Sales/East");
    assert_eq!(store.org_units_all().await.unwrap().len(), 4, "units of unchanged users are kept");
    let groups = store.groups_by_source("ldap:corp").await.unwrap();
    let staff = groups.iter().find(|(g, _)| g.name == "staff").unwrap();
    assert_eq!(staff.1.len(), 3, "ann and ben (not carried) resolved by login, cat added");
}

/// A source's query changed (here its users filter, narrowed, then widened again): the next run
/// reads in full, whatever the stored cursor says, and its report says why; the users now outside
/// the filter leave (within the deletion limits) and those inside it again come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_query_means_a_full_read() {
    let s = setup(Backend::Sqlite, 2, 20, 0, |_| {}).await;
    assert_eq!(run(&s).await.outcome, Outcome::Applied);
    let again = incremental(&s).await;
    assert_eq!(again.mode, Some(ReadMode::Incremental));
    assert!(!again.query_changed);

    let narrowed = |filter: Option<&str>| {
        let mut src = s.db.cfg.sync.ldap[0].clone();
        src.users.filter = filter.map(str::to_owned);
        SyncService::new(s.directory.0.directory.clone(), s.directory.0.runs.clone(), vec![src])
    };
    let sync = narrowed(Some("(&(objectClass=inetOrgPerson)(!(uid=user000001)))"));
    let r = sync
        .run("corp", RunOptions { full: false, trigger: "test".into(), ..Default::default() })
        .await
        .unwrap();
    assert!(r.query_changed, "{r:?}");
    assert_eq!(r.mode, Some(ReadMode::FullSync), "read in full despite the stored cursor");
    assert!(r.message.contains("query") && r.message.contains("read in full"), "{}", r.message);
    assert_eq!(r.outcome, Outcome::Applied, "{r:?}");
    assert!(member(&s, "user000001").await.is_none(), "outside the narrowed filter: gone");
    assert_eq!(s.directory.store().counts().await.unwrap().members, 19);
    // The same query again: incremental, as before.
    let r = sync
        .run("corp", RunOptions { full: false, trigger: "test".into(), ..Default::default() })
        .await
        .unwrap();
    assert_eq!((r.mode, r.query_changed), (Some(ReadMode::Incremental), false), "{r:?}");

    // Widened back: the user arrives again (a new member: the old one was deleted).
    let sync = narrowed(None);
    let r = sync
        .run("corp", RunOptions { full: false, trigger: "test".into(), ..Default::default() })
        .await
        .unwrap();
    assert!(r.query_changed && r.mode == Some(ReadMode::FullSync), "{r:?}");
    assert!(member(&s, "user000001").await.is_some(), "inside the widened filter: back");
    assert_eq!(s.directory.store().counts().await.unwrap().members, 20);
}
