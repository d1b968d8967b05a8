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
    // The archive's search index is each database's own: an FTS5 table on SQLite, a GIN index
    // on PostgreSQL (see migration 14).
    let mut postgres = names("postgres");
    assert!(postgres.remove("archive_messages_grams"));
    assert_eq!(names("sqlite"), postgres);
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

/// Migration 9 on a store from before it: an admin whose password a SCIM client chose loses it,
/// an admin from the console and a member without a role keep theirs, and a token name revoked
/// and created again keeps only its newest row under the name. On both stores.
async fn upgrade_clears_provisioned_admin_passwords(b: crate::common::Backend) {
    use sqlx::Connection;
    let db = crate::common::TestDb::new(b);
    let url = db.cfg.database.url.clone();
    let (scim_admin, console_admin, scim_plain, role) =
        (uuid::Uuid::now_v7(), uuid::Uuid::now_v7(), uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    let now = chrono::Utc::now();
    macro_rules! seed {
        ($conn:expr, $migrator:expr) => {{
            let conn = &mut $conn;
            $migrator.run_to(20261202000008, &mut *conn).await.unwrap();
            for (i, (id, login, source)) in [
                (scim_admin, "idp-admin", "scim:entra"),
                (console_admin, "console-admin", "console"),
                (scim_plain, "idp-plain", "scim:entra"),
            ]
            .into_iter()
            .enumerate()
            {
                sqlx::query(
                    "INSERT INTO members (id, account_number, login_name, display_name, state, source, version, \
                     created_at, updated_at, password_hash) VALUES ($1, $2, $3, $3, 'active', $4, 1, $5, $5, 'hash')",
                )
                .bind(id)
                .bind(1000 + i as i64)
                .bind(format!("{login}@example.com"))
                .bind(source)
                .bind(now)
                .execute(&mut *conn)
                .await
                .unwrap();
            }
            sqlx::query("INSERT INTO roles (id, name, permissions, version, created_at, updated_at) VALUES ($1, 'r', 'view_audit', 1, $2, $2)")
                .bind(role).bind(now).execute(&mut *conn).await.unwrap();
            for m in [scim_admin, console_admin] {
                sqlx::query("INSERT INTO role_grants (role_id, member_id, granted_at, granted_by) VALUES ($1, $2, $3, 'super-admin')")
                    .bind(role).bind(m).bind(now).execute(&mut *conn).await.unwrap();
            }
            for (revoked, hash) in [(true, "h1"), (false, "h2")] {
                sqlx::query("INSERT INTO api_tokens (name, token_hash, created_at, revoked_at) VALUES ('entra', $1, $2, $3)")
                    .bind(hash).bind(now).bind(revoked.then_some(now)).execute(&mut *conn).await.unwrap();
            }
        }};
    }
    match b {
        crate::common::Backend::Sqlite => {
            let opts: sqlx::sqlite::SqliteConnectOptions = url.parse().unwrap();
            let mut conn = sqlx::SqliteConnection::connect_with(&opts.create_if_missing(true)).await.unwrap();
            seed!(conn, sqlx::migrate!("migrations/sqlite"));
            conn.close().await.unwrap();
        }
        crate::common::Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
            seed!(conn, sqlx::migrate!("migrations/postgres"));
            conn.close().await.unwrap();
        }
    }
    let d = db.open().await;
    let store = d.store();
    let hash = |id| async move { store.member_password_hash(id).await.unwrap() };
    assert_eq!(hash(scim_admin).await, None, "the IdP-chosen admin password is gone");
    assert_eq!(hash(console_admin).await.as_deref(), Some("hash"));
    assert_eq!(hash(scim_plain).await.as_deref(), Some("hash"));
    let tokens = store.tokens().await.unwrap();
    let names: Vec<&str> = tokens.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names.iter().filter(|n| **n == "entra").count(), 1, "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("entra~")), "{names:?}");
    let live = tokens.iter().find(|t| t.name == "entra").unwrap();
    assert!(live.revoked_at.is_none(), "the newest row keeps the name");
}

crate::common::on_both_stores!(upgrade_clears_provisioned_admin_passwords);
