//! Both migration sets stay in step.

use std::collections::BTreeSet;

fn versions(dir: &str) -> BTreeSet<String> {
    std::fs::read_dir(format!("{}/migrations/{dir}", env!("CARGO_MANIFEST_DIR")))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".sql"))
        .map(|n| n.split('_').next().unwrap().to_owned())
        .collect()
}

#[test]
fn sqlite_and_postgres_have_the_same_migration_versions() {
    let sqlite = versions("sqlite");
    let postgres = versions("postgres");
    assert!(!sqlite.is_empty());
    assert_eq!(sqlite, postgres, "every migration needs a twin with the same version number");
}

#[test]
fn unique_constraints_have_the_same_names_in_both() {
    let names = |dir: &str| -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for e in std::fs::read_dir(format!("{}/migrations/{dir}", env!("CARGO_MANIFEST_DIR"))).unwrap() {
            let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
            for word in text.split_whitespace().collect::<Vec<_>>().windows(2) {
                if word[0] == "CONSTRAINT" || word[0] == "INDEX" {
                    out.insert(word[1].to_owned());
                }
            }
        }
        out
    };
    assert_eq!(names("sqlite"), names("postgres"));
}

/// New SQLite databases get 16 KiB pages; a file made with SQLite's default 4 KiB (by an earlier
/// rosterd) opens, migrates and works as it is.
#[tokio::test]
async fn sqlite_files_get_16_kib_pages_and_older_ones_keep_theirs() {
    use sqlx::ConnectOptions;
    use std::str::FromStr;
    async fn page_size(url: &str) -> i64 {
        let mut c = sqlx::sqlite::SqliteConnectOptions::from_str(url).unwrap().connect().await.unwrap();
        let (size,): (i64,) = sqlx::query_as("PRAGMA page_size").fetch_one(&mut c).await.unwrap();
        size
    }
    let fresh = crate::common::TestDb::new(crate::common::Backend::Sqlite);
    fresh.open().await;
    assert_eq!(page_size(&fresh.cfg.database.url).await, 16384);

    let old = crate::common::TestDb::new(crate::common::Backend::Sqlite);
    {
        let opts = sqlx::sqlite::SqliteConnectOptions::from_str(&old.cfg.database.url)
            .unwrap()
            .create_if_missing(true)
            .page_size(4096)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal);
        let mut c = opts.connect().await.unwrap();
        sqlx::query("CREATE TABLE made_before (x INTEGER)").execute(&mut c).await.unwrap();
    }
    let d = old.open().await;
    crate::common::create_member(&d, &crate::common::console(), crate::common::member("after")).await;
    assert_eq!(d.store().counts().await.unwrap().members, 1);
    assert_eq!(page_size(&old.cfg.database.url).await, 4096);
}
