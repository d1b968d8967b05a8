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
