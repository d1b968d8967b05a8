//! `rosterd backup` and `rosterd restore` (SQLite): an online backup while the daemon serves
//! and writes, restored into an empty data directory, compared table by table; and what a
//! damaged backup, a non-empty target, a PostgreSQL store get.

use sqlx::Row;

use crate::common::{Backend, console, create_member, member};
use crate::daemon::{rosterd, run, text};

/// Every table's rows (FTS5 virtual tables through their shadow tables), each as text.
async fn tables(file: &std::path::Path) -> Vec<(String, Vec<String>)> {
    let url = format!("sqlite://{}?mode=ro", file.display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let names: Vec<String> = sqlx::query(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND sql NOT LIKE 'CREATE VIRTUAL%' ORDER BY name",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
    .iter()
    .map(|r| r.get::<String, _>(0))
    .collect();
    let mut out = Vec::new();
    for t in names {
        let cols: Vec<String> = sqlx::query("SELECT name FROM pragma_table_info(?1)")
            .bind(t.clone())
            .fetch_all(&pool)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<String, _>(0))
            .collect();
        let expr = cols.iter().map(|c| format!("quote(\"{c}\")")).collect::<Vec<_>>().join(" || '|' || ");
        // Names from the database's own catalogue, not input.
        let sql = sqlx::AssertSqlSafe(format!("SELECT {expr} FROM \"{t}\""));
        let mut rows: Vec<String> = sqlx::query(sql)
            .fetch_all(&pool)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<Option<String>, _>(0).unwrap_or_default())
            .collect();
        rows.sort();
        out.push((t, rows));
    }
    pool.close().await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_while_serving_then_restore_into_an_empty_directory() {
    // A serving daemon (in process) with members, an archive message and its blob, audit rows.
    let c = crate::archive::Server::start(Backend::Sqlite, |_| {}).await;
    for i in 0..50 {
        create_member(&c.db, &console(), member(&format!("user{i}"))).await;
    }
    let (a, b) = ("1000".to_owned(), "1001".to_owned());
    let (status, _) =
        c.post(&[crate::archive::line("m1", [&a, &b], &a, "2026-11-01T10:00:00Z", "备份 hello")]).await;
    assert_eq!(status, 200);
    let cfg = &c.console._db.cfg;
    let work = tempfile::tempdir().unwrap();
    let backup_dir = work.path().join("backup");
    // Writes go on while the backup runs.
    let writer = {
        let d = c.db.clone();
        tokio::spawn(async move {
            for i in 50..150 {
                create_member(&d, &console(), member(&format!("user{i}"))).await;
            }
        })
    };
    let out = run(rosterd(work.path())
        .env("ROSTER_DATABASE__URL", &cfg.database.url)
        .arg("backup")
        .arg(&backup_dir));
    assert!(out.status.success(), "{}", text(&out.stderr));
    writer.await.unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(backup_dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["file"], "roster.db");
    // The backup is one consistent moment: its member count is what the audit log says.
    let backed = tables(&backup_dir.join("roster.db")).await;
    let rows = |t: &[(String, Vec<String>)], name: &str| {
        t.iter().find(|(n, _)| n == name).map(|(_, r)| r.len()).unwrap()
    };
    let members = rows(&backed, "members");
    assert!((50..=150).contains(&members), "{members}");
    assert_eq!(rows(&backed, "archive_blobs"), 0, "no blob was posted");
    assert_eq!(rows(&backed, "archive_messages"), 1);

    // A second backup into the same (non-empty) directory is refused.
    let out = run(rosterd(work.path())
        .env("ROSTER_DATABASE__URL", &cfg.database.url)
        .arg("backup")
        .arg(&backup_dir));
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("not empty"), "{}", text(&out.stderr));

    // Restore into an empty data directory: every table equal to the backup.
    let target = work.path().join("restored/roster.db");
    let url = format!("sqlite://{}", target.display());
    let out = run(rosterd(work.path()).env("ROSTER_DATABASE__URL", &url).arg("restore").arg(&backup_dir));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let restored = tables(&target).await;
    assert_eq!(restored.len(), backed.len());
    for ((n1, r1), (n2, r2)) in backed.iter().zip(&restored) {
        assert_eq!(n1, n2);
        assert_eq!(r1, r2, "table {n1} differs");
    }
    // Restoring over a database is refused, and the database is left as it was.
    let before = std::fs::read(&target).unwrap();
    let out = run(rosterd(work.path()).env("ROSTER_DATABASE__URL", &url).arg("restore").arg(&backup_dir));
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("exists"), "{}", text(&out.stderr));
    assert_eq!(std::fs::read(&target).unwrap(), before);
    // A damaged backup is refused before anything is written.
    let mut bytes = std::fs::read(backup_dir.join("roster.db")).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(backup_dir.join("roster.db"), bytes).unwrap();
    let fresh = work.path().join("fresh/roster.db");
    let out = run(rosterd(work.path())
        .env("ROSTER_DATABASE__URL", format!("sqlite://{}", fresh.display()))
        .arg("restore")
        .arg(&backup_dir));
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("damaged"), "{}", text(&out.stderr));
    assert!(!fresh.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_of_postgres_says_pg_dump() {
    let db = crate::common::TestDb::new(Backend::Postgres);
    let work = tempfile::tempdir().unwrap();
    let out = run(rosterd(work.path())
        .env("ROSTER_DATABASE__URL", &db.cfg.database.url)
        .arg("backup")
        .arg(work.path().join("b")));
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("pg_dump"), "{}", text(&out.stderr));
}

/// Every table's row count, through PostgreSQL's or SQLite's catalogue.
async fn pg_counts(url: &str) -> std::collections::BTreeMap<String, i64> {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema() \
         AND table_type = 'BASE TABLE' AND table_name <> '_sqlx_migrations'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut out = std::collections::BTreeMap::new();
    for t in names {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM \"{t}\"")))
            .fetch_one(&pool)
            .await
            .unwrap();
        out.insert(t, n);
    }
    pool.close().await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_store_copies_sqlite_into_an_empty_postgres() {
    use roster::directory::change::{Applied, Change, NewOrgUnit};
    // A SQLite store with what years leave: nested units, managers, a deleted member (tombstone,
    // quarantined number), audit and outbox rows, a token, an archive message.
    let c = crate::archive::Server::start(Backend::Sqlite, |_| {}).await;
    let mut parent = None;
    let mut units = Vec::new();
    for name in ["总部", "Sales", "East", "Shanghai"] {
        let n = NewOrgUnit { id: None, parent_id: parent, name: name.into(), position: None, anchor: None };
        let Applied::OrgUnit(u) = c.db.apply_one(&console(), Change::CreateOrgUnit(n)).await.unwrap() else {
            panic!()
        };
        parent = Some(u.id);
        units.push(u.id);
    }
    let mut manager = None;
    let mut members = Vec::new();
    for i in 0..60 {
        let mut m = member(&format!("m{i}"));
        m.primary_org_unit_id = Some(units[i % units.len()]);
        m.manager_id = manager;
        let m = create_member(&c.db, &console(), m).await;
        if i % 10 == 0 {
            manager = Some(m.id);
        }
        members.push(m);
    }
    let gone = members.pop().unwrap();
    c.db.apply_one(&console(), Change::DeleteMember { id: gone.id, reason: "left".into() }).await.unwrap();
    c.db.create_token(&console(), "okta", false).await.unwrap();
    let (a, b) = (members[0].account_number.to_string(), members[1].account_number.to_string());
    let (status, _) = c
        .post(&[crate::archive::line("m1", [&a, &b], &a, "2026-11-01T10:00:00Z", "迁移 migration day")])
        .await;
    assert_eq!(status, 200);
    let sqlite_url = c.console._db.cfg.database.url.clone();
    let work = tempfile::tempdir().unwrap();
    let pg = crate::pg::fresh_database();

    let out = run(rosterd(work.path())
        .env("ROSTER_DATABASE__URL", &sqlite_url)
        .env("ROSTER_MIGRATE_TO", &pg)
        .arg("migrate-store"));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("every count and checksum matches") && stderr.contains("database.url"),
        "{stderr}"
    );
    let line = stdout.lines().find(|l| l.starts_with("members ")).expect(&stdout);
    assert!(line.split_whitespace().nth(1) == Some("59"), "{line}");
    assert!(stdout.contains("tombstones") && stdout.contains("audit_log"), "{stdout}");

    // Every table has the same rows as the source (the FTS5 index is SQLite's own).
    let pgc = pg_counts(&pg).await;
    let lite = tables(&crate::backup::sqlite_file(&sqlite_url)).await;
    for (name, rows) in &lite {
        if name.starts_with("archive_text") || name.starts_with("sqlite_") || name == "_sqlx_migrations" {
            continue;
        }
        assert_eq!(pgc.get(name).copied(), Some(rows.len() as i64), "table {name}");
    }
    assert_eq!(pgc["members"], 59);
    assert_eq!(pgc["tombstones"], 1);

    // rosterd on PostgreSQL serves what was copied and goes on from there: same ids and numbers,
    // the next number after the copied counter, new audit rows after the copied ones, and the
    // archive's search finds the message by its PostgreSQL index.
    let mut cfg = c.console._db.cfg.clone();
    cfg.database.url = pg.clone();
    let on_pg = roster::app::open(&cfg).await.unwrap();
    let read = on_pg.directory.store();
    for m in &members {
        let got = read.member(m.id).await.unwrap().expect("copied member");
        assert_eq!(
            (got.account_number, &got.login_name, got.manager_id),
            (m.account_number, &m.login_name, m.manager_id)
        );
    }
    assert!(read.member(gone.id).await.unwrap().is_none());
    let next = create_member(&on_pg.directory, &console(), member("after")).await;
    assert!(
        next.account_number > gone.account_number,
        "{} after {}",
        next.account_number,
        gone.account_number
    );
    assert!(on_pg.access.authenticate_token("not-a-token").await.unwrap().is_none());
    let pool = sqlx::PgPool::connect(&pg).await.unwrap();
    let found: i64 = sqlx::query_scalar("SELECT count(*) FROM archive_messages WHERE grams @> $1")
        .bind(roster::archive::grams::query_terms("迁移"))
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(found, 1);
    pool.close().await;
    on_pg.store.close().await;

    // A second copy into the now used database is refused, and changes nothing.
    let before = pg_counts(&pg).await;
    let out = run(rosterd(work.path())
        .env("ROSTER_DATABASE__URL", &sqlite_url)
        .env("ROSTER_MIGRATE_TO", &pg)
        .arg("migrate-store"));
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("not empty") && err.contains("nothing was committed"), "{err}");
    assert_eq!(pg_counts(&pg).await, before);
    // An unreachable server is a clear error; the password never reaches the output.
    let out = run(rosterd(work.path()).env("ROSTER_DATABASE__URL", &sqlite_url).args([
        "migrate-store",
        "--to",
        "postgres://roster:s3cr3t-pw@127.0.0.1:1/roster",
    ]));
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("unavailable") || err.contains("refused"), "{err}");
    assert!(!err.contains("s3cr3t-pw") && !text(&out.stdout).contains("s3cr3t-pw"), "{err}");
}

pub fn sqlite_file(url: &str) -> std::path::PathBuf {
    roster::store::sqlite_database_file(url).unwrap()
}
