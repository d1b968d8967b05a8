//! The embedded default: SQLite in WAL mode, one writer connection and a read pool.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool};

use super::StoreError;
use crate::config::DatabaseConfig;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// SQLite store. All writes go through the single `write` connection, so transactions never
/// contend inside one process; `busy_timeout` covers other processes (the CLI next to the daemon).
pub struct SqliteStore {
    read: SqlitePool,
    write: SqlitePool,
}

/// One SQLite transaction, begun with `BEGIN IMMEDIATE` so it holds the write lock from its first
/// read: a read-then-write transaction can then never fail to upgrade its lock.
pub struct SqliteTx {
    tx: sqlx::Transaction<'static, Sqlite>,
}

fn err(e: sqlx::Error) -> StoreError {
    super::classify(e, |db| {
        let code: i64 = db.code().and_then(|c| c.parse().ok()).unwrap_or(0);
        match code & 0xff {
            // SQLITE_CONSTRAINT with the UNIQUE or PRIMARYKEY extended code.
            19 if db.kind() == sqlx::error::ErrorKind::UniqueViolation => {
                Some(StoreError::Unique(unique_key(db.message())))
            }
            8 => Some(StoreError::ReadOnly(db.message().to_owned())),
            13 => Some(StoreError::DiskFull(db.message().to_owned())),
            5 | 6 | 10 | 14 => Some(StoreError::Unavailable(db.message().to_owned())),
            _ => None,
        }
    })
}

/// "UNIQUE constraint failed: org_units.parent_id, org_units.name" -> "org_units_parent_id_name";
/// "UNIQUE constraint failed: index 'org_units_root_name'" -> "org_units_root_name".
fn unique_key(message: &str) -> String {
    let detail = message.rsplit(": ").next().unwrap_or(message);
    if let Some(index) = detail.strip_prefix("index '") {
        return index.trim_end_matches('\'').to_owned();
    }
    let mut table = "";
    let mut columns = Vec::new();
    for part in detail.split(", ") {
        let (t, c) = part.split_once('.').unwrap_or(("", part));
        table = t;
        columns.push(c);
    }
    format!("{table}_{}", columns.join("_"))
}

impl SqliteStore {
    pub async fn open(cfg: &DatabaseConfig) -> Result<SqliteStore, StoreError> {
        let opts = SqliteConnectOptions::from_str(&cfg.url)
            .map_err(|e| StoreError::Other(format!("database.url: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_millis(cfg.busy_timeout_ms))
            .foreign_keys(true);
        if let Some(dir) = opts.get_filename().parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Unavailable(format!("cannot create {}: {e}", dir.display())))?;
        }
        let timeout = Duration::from_secs(cfg.connect_timeout_secs);
        // A local file does not go stale like a network connection: no ping before each use
        // (it would be one more hand-off to the connection's thread per request).
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .acquire_timeout(timeout)
            .connect_with(opts.clone())
            .await
            .map_err(err)?;
        let read = SqlitePoolOptions::new()
            .max_connections(cfg.max_connections.max(1))
            .test_before_acquire(false)
            .acquire_timeout(timeout)
            .connect_with(opts)
            .await
            .map_err(err)?;
        Ok(SqliteStore { read, write })
    }

    fn backend_name() -> &'static str {
        "sqlite"
    }

    async fn begin_tx(&self) -> Result<sqlx::Transaction<'static, Sqlite>, StoreError> {
        self.write.begin_with("BEGIN IMMEDIATE").await.map_err(err)
    }

    async fn run_migrations(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.write).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => err(e),
            other => StoreError::Migration(other.to_string()),
        })
    }

    async fn schema_state_impl(&self) -> Result<super::SchemaState, StoreError> {
        let (exists,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
        )
        .fetch_one(&self.read)
        .await
        .map_err(err)?;
        let applied: Vec<(i64,)> = if exists > 0 {
            sqlx::query_as("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&self.read)
                .await
                .map_err(err)?
        } else {
            Vec::new()
        };
        Ok(super::schema_state(&MIGRATOR, applied.into_iter().map(|v| v.0)))
    }
}

/// A member's e-mails (in order) and further org units as JSON text next to its row.
const MEMBER_CHILDREN: &str = "\
    (SELECT json_group_array(json_array(address, kind, is_primary) ORDER BY position) \
     FROM member_emails WHERE member_emails.member_id = members.id) AS emails_json, \
    (SELECT json_group_array(lower(hex(org_unit_id))) \
     FROM member_org_units WHERE member_org_units.member_id = members.id) AS units_json";

/// A source's member keys as JSON arrays `[id, anchor, login name, digest]`, a few thousand to a
/// row: sqlx hands SQLite's rows to the async side one at a time, and 100,000 hand-offs took
/// longer than building and parsing the JSON.
const MEMBER_KEYS: &str = "SELECT json_group_array(json_array(lower(hex(id)), anchor, login_name, sync_digest)) \
    FROM members WHERE source = $1 GROUP BY rowid / 4096";

/// A source's groups' member ids, one JSON array a group (for the same reason).
const GROUP_MEMBERSHIPS: &str = "SELECT gm.group_id, json_group_array(lower(hex(gm.member_id))) \
    FROM group_members gm JOIN groups g ON g.id = gm.group_id WHERE g.source = $1 GROUP BY gm.group_id";

shared_sql!(Sqlite, SqliteStore, SqliteTx, err, MEMBER_CHILDREN, MEMBER_KEYS, GROUP_MEMBERSHIPS);

#[cfg(test)]
mod tests {
    use super::unique_key;

    #[test]
    fn unique_keys_match_the_constraint_names() {
        assert_eq!(unique_key("UNIQUE constraint failed: members.login_name"), "members_login_name");
        assert_eq!(
            unique_key("UNIQUE constraint failed: org_units.parent_id, org_units.name"),
            "org_units_parent_id_name"
        );
        assert_eq!(
            unique_key("UNIQUE constraint failed: index 'org_units_root_name'"),
            "org_units_root_name"
        );
    }
}
