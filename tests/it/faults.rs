//! Faults: a read-only store, and signals in the middle of a write. Each shows the error the
//! user sees and that stored data is intact.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::daemon::{Daemon, rosterd, run, text};

/// Marks a file immutable (even root cannot write it) until dropped.
struct Immutable<'a>(&'a Path);

impl<'a> Immutable<'a> {
    fn new(path: &'a Path) -> Immutable<'a> {
        let out = Command::new("chattr").arg("+i").arg(path).output().expect("chattr (e2fsprogs)");
        assert!(out.status.success(), "chattr +i: {}", text(&out.stderr));
        Immutable(path)
    }
}

impl Drop for Immutable<'_> {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(self.0).status();
    }
}

fn sha(path: &Path) -> String {
    roster::access::tokens::hash(&String::from_utf8_lossy(&std::fs::read(path).unwrap()))
}

#[tokio::test]
async fn a_read_only_store_file_is_a_clear_error_and_stays_intact() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(rosterd(dir.path()).args(["token", "create", "--name", "before"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let db = dir.path().join("data/roster.db");
    assert!(!dir.path().join("data/roster.db-wal").exists(), "a clean exit checkpoints the WAL");
    let before = sha(&db);
    let _guard = Immutable::new(&db);

    let out = run(rosterd(dir.path()).args(["token", "create", "--name", "after"]));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("read-only") && err.contains("permissions"), "{err}");

    // The daemon refuses to start rather than fail at the first write.
    let mut d = Daemon::start(dir.path(), &[]);
    assert_eq!(d.wait_exit(Duration::from_secs(20)), Some(1));
    assert!(d.log().contains("read-only"), "{}", d.log());

    assert_eq!(sha(&db), before, "the store file is untouched");
    drop(_guard);
    let list = run(rosterd(dir.path()).args(["token", "list"]));
    assert!(text(&list.stdout).contains("before") && !text(&list.stdout).contains("after"));
}

async fn counts(dir: &Path) -> (i64, i64, i64) {
    let mut cfg = roster::config::Config::default();
    cfg.database.url = format!("sqlite://{}", dir.join("data/roster.db").display());
    let store = roster::store::open(&cfg.database).await.unwrap();
    let members = store.counts().await.unwrap().members;
    // One audit row per change plus the enterprise's creation; one outbox row per member.
    let audit = store.audit_count().await.unwrap() - 1;
    let outbox = store.outbox_pending(1_000_000).await.unwrap().len() as i64;
    (members, audit, outbox)
}

/// Starts importing 3000 members in batches of 100 and sends `sig` once some are in.
async fn interrupt_import(sig: Signal) -> (tempfile::TempDir, std::process::Output) {
    let dir = tempfile::tempdir().unwrap();
    let migrate = run(rosterd(dir.path()).arg("migrate"));
    assert!(migrate.status.success());
    let lines: Vec<String> = (0..3000)
        .map(|i| format!(r#"{{"op":"create_member","login_name":"s{i}","display_name":"S {i}"}}"#))
        .collect();
    std::fs::write(dir.path().join("big.jsonl"), lines.join("\n")).unwrap();
    let child = rosterd(dir.path())
        .args(["import", "big.jsonl", "--batch", "100"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while counts(dir.path()).await.0 == 0 {
        assert!(start.elapsed() < Duration::from_secs(60), "the import wrote nothing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).unwrap();
    let out = child.wait_with_output().unwrap();
    (dir, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_an_import_stops_between_transactions() {
    let (dir, out) = interrupt_import(Signal::SIGTERM).await;
    let err = text(&out.stderr);
    let (members, audit, outbox) = counts(dir.path()).await;
    assert!(members < 3000, "the signal came too late to test anything: {err}");
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("interrupted: applied {members} of 3000 changes")), "{err}");
    assert_eq!(members % 100, 0, "whole batches only");
    assert_eq!((audit, outbox), (members, members), "rows, audit and outbox agree");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_an_import_leaves_no_half_transaction() {
    let (dir, out) = interrupt_import(Signal::SIGKILL).await;
    assert_eq!(out.status.code(), None, "killed by the signal");
    let (members, audit, outbox) = counts(dir.path()).await;
    assert!(members > 0 && members < 3000, "{members}");
    assert_eq!(members % 100, 0, "whole batches only");
    assert_eq!((audit, outbox), (members, members));
    // The store is usable afterwards and numbering carries on without a gap.
    std::fs::write(
        dir.path().join("one.jsonl"),
        r#"{"op":"create_member","login_name":"next","display_name":"Next"}"#,
    )
    .unwrap();
    let more = run(rosterd(dir.path()).args(["import", "one.jsonl"]));
    assert!(more.status.success(), "{}", text(&more.stderr));
    let mut cfg = roster::config::Config::default();
    cfg.database.url = format!("sqlite://{}", dir.path().join("data/roster.db").display());
    let store = roster::store::open(&cfg.database).await.unwrap();
    let next = store.member_by_login("next@example.com").await.unwrap().unwrap();
    assert_eq!(next.account_number, cfg.numbers.first + members);
}

#[tokio::test]
async fn a_schema_from_a_newer_rosterd_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    assert!(run(rosterd(dir.path()).arg("migrate")).status.success());
    let mut cfg = roster::config::Config::default();
    cfg.database.url = format!("sqlite://{}", dir.path().join("data/roster.db").display());
    {
        let pool = sqlx::SqlitePool::connect(&cfg.database.url).await.unwrap();
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (99991231000000, 'from the future', TRUE, X'00', 0)",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    }
    let out = run(rosterd(dir.path()).arg("migrate"));
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("newer than this rosterd"), "{}", text(&out.stderr));
    let mut d = Daemon::start(dir.path(), &[]);
    assert_eq!(
        d.wait_exit(Duration::from_secs(20)),
        Some(1),
        "the daemon does not serve a schema it does not know"
    );
}

/// A tmpfs of a fixed size, unmounted on drop.
struct TinyDisk(tempfile::TempDir);

impl TinyDisk {
    fn new(size: &str) -> TinyDisk {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "mount tmpfs: {}", text(&out.stderr));
        TinyDisk(dir)
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

/// (6 MiB: an empty store takes about 2 MiB in 16 KiB pages, its WAL as much again while the
/// migrations run; the import fills the rest.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_a_clear_error_and_loses_nothing() {
    let disk = TinyDisk::new("6m");
    let dir = disk.0.path();
    assert!(run(rosterd(dir).arg("migrate")).status.success());
    let lines: Vec<String> = (0..20_000)
        .map(|i| {
            format!(
                r#"{{"op":"create_member","login_name":"f{i}","display_name":"Filler {i} {}"}}"#,
                "x".repeat(60)
            )
        })
        .collect();
    // The change file lives elsewhere: only the store fills the disk.
    let input = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(input.path(), lines.join("\n")).unwrap();
    let out = run(rosterd(dir).args(["import", input.path().to_str().unwrap(), "--batch", "100"]));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("disk is full") && err.contains("store_full"), "{err}");
    let (members, audit, outbox) = counts(dir).await;
    assert!(members > 0 && members < 20_000, "{members}");
    assert_eq!(members % 100, 0, "whole batches only");
    assert_eq!((audit, outbox), (members, members), "rows, audit and outbox agree");
    assert!(err.contains(&format!("applied {members} of 20000")), "{err}");
}

/// Fills what is left of the file system under `dir` with a file (64 KiB at a time until ENOSPC),
/// then gives `spare` bytes back; returns the file, whose removal frees the space.
fn fill(dir: &Path, spare: u64) -> std::path::PathBuf {
    use std::io::Write as _;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.flush();
    let len = f.metadata().unwrap().len();
    f.set_len(len.saturating_sub(spare)).unwrap();
    path
}

/// The disk fills while a sync applies 2,000 users: the run fails saying the disk is full, what
/// was applied is whole batches (each member with its audit row), and once space returns the
/// next run completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_disk_fills_during_a_sync_then_space_returns() {
    use roster::sync::{Outcome, RunOptions, SyncService};
    let disk = TinyDisk::new("16m");
    let ldap = crate::slapd::Slapd::start(&format!(
        "{}{}",
        crate::slapd::base_ldif(),
        crate::slapd::generate(3, 2000, 0)
    ));
    let mut src = crate::sync::source(ldap.url());
    src.page_size = 500;
    src.groups = None;
    let mut db = crate::common::TestDb::new(crate::common::Backend::Sqlite);
    db.cfg.database.url = format!("sqlite://{}", disk.0.path().join("roster.db").display());
    db.cfg.numbers.last = 99_999;
    db.cfg.sync.ldap = vec![src];
    let d = db.open().await;
    let sync = SyncService::new(d.0.directory.clone(), d.0.runs.clone(), db.cfg.sync.ldap.clone());
    let filler = fill(disk.0.path(), 256 * 1024);

    let opts = || RunOptions { full: true, trigger: "test".into(), ..Default::default() };
    let said = match sync.run("corp", opts()).await {
        Ok(r) => {
            assert_eq!(r.outcome, Outcome::Failed, "{r:?}");
            r.message
        }
        Err(e) => e.to_string(),
    };
    eprintln!("the sync on a full disk: {said}");
    assert!(said.contains("disk is full"), "{said}");
    let members = d.store().counts().await.unwrap().members;
    let audit = d.store().audit_count().await.unwrap();
    assert!(members < 2000, "{members}");
    // The enterprise's creation, the units, then one row per member: no member without its row.
    let units = d.store().counts().await.unwrap().org_units;
    assert_eq!(audit - 1 - units, members, "members and audit rows agree");

    std::fs::remove_file(filler).unwrap();
    let r = sync.run("corp", opts()).await.unwrap();
    assert_eq!(r.outcome, Outcome::Applied, "{r:?}");
    let after = d.store().counts().await.unwrap().members;
    eprintln!(
        "FIGURE disk_full sync users=2000 applied_before_full={members} without_audit=0 after_space_returned={after}"
    );
    assert_eq!(after, 2000);
    d.store().close().await;
}

/// The disk fills while the outbox is dispatched: `rosterd outbox dispatch` fails saying so and
/// nothing is lost; once space returns every member gets one SMS, charged once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_disk_fills_during_delivery_then_space_returns() {
    use crate::delivery::{Gateway, delivery_config, new_hire};
    let gw = Gateway::start().await;
    let disk = TinyDisk::new("16m");
    let mut db = crate::common::TestDb::new(crate::common::Backend::Sqlite);
    db.cfg.database.url = format!("sqlite://{}", disk.0.path().join("roster.db").display());
    let d = db.open().await;
    roster::delivery::desk::top_up(d.0.delivery.as_ref(), &crate::common::console(), 100, None)
        .await
        .unwrap();
    let hires: Vec<_> = (0..30).map(|i| new_hire(&format!("d{i}"), &format!("+8613700003{i:03}"))).collect();
    d.apply(&crate::common::console(), hires).await.unwrap();
    d.store().close().await;
    let mut cfg = db.cfg.clone();
    cfg.delivery = delivery_config(crate::daemon::free_port(), &gw);
    cfg.delivery.smtp = None;
    cfg.delivery.lease_secs = 1;
    let config = db.dir.path().join("rosterd.toml");
    std::fs::write(&config, toml::to_string(&cfg).unwrap()).unwrap();
    let dispatch = || {
        run(rosterd(db.dir.path()).args([
            "--config",
            config.to_str().unwrap(),
            "outbox",
            "dispatch",
            "--json",
        ]))
    };

    let filler = fill(disk.0.path(), 0);
    let out = dispatch();
    let err = text(&out.stderr);
    eprintln!("dispatch on a full disk: {}", err.trim());
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("disk is full"), "{err}");
    assert!(gw.received.lock().unwrap().is_empty());

    // Room to open the store but not for the dispatch's writes: it fails part-way.
    std::fs::remove_file(&filler).unwrap();
    let filler = fill(disk.0.path(), 256 * 1024);
    let out = dispatch();
    let err = text(&out.stderr);
    let part = gw.received.lock().unwrap().len();
    eprintln!("dispatch filling the disk after {part} SMS: {}", err.trim());
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("disk is full"), "{err}");

    // Space returns. What was sent but could not be recorded is sent again once its claim runs
    // out, with the same idempotency key (the gateway de-duplicates).
    std::fs::remove_file(filler).unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let out = dispatch();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let got = gw.received.lock().unwrap().clone();
    let keys: std::collections::BTreeSet<&str> = got.iter().map(|v| v["key"].as_str().unwrap()).collect();
    assert_eq!(keys.len(), 30, "every member's SMS went out");
    assert!(got.len() - 30 <= part, "repeats only of what was sent unrecorded: {} after {part}", got.len());
    eprintln!(
        "FIGURE disk_full delivery messages=30 delivered={} repeats_same_key={}",
        keys.len(),
        got.len() - keys.len()
    );
    let d = db.open().await;
    assert_eq!(d.store().deliveries_list(Some("sent"), 100).await.unwrap().len(), 30);
    assert_eq!(d.store().sms_balance().await.unwrap(), 70, "each charged once");
}
