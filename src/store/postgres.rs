//! PostgreSQL: for companies that outgrow one machine; several rosterd nodes share it.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};

use super::StoreError;
use crate::config::DatabaseConfig;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// PostgreSQL store: one pool serves reads and writes.
pub struct PgStore {
    read: PgPool,
    write: PgPool,
}

/// One PostgreSQL transaction (READ COMMITTED; the number counter's row lock serialises
/// allocators, unique constraints catch the rest).
pub struct PgTx {
    tx: sqlx::Transaction<'static, Postgres>,
}

fn err(e: sqlx::Error) -> StoreError {
    super::classify(e, |db| {
        let code = db.code().unwrap_or_default();
        match code.as_ref() {
            "23505" => Some(StoreError::Unique(db.constraint().unwrap_or("unknown").to_owned())),
            "25006" => Some(StoreError::ReadOnly(db.message().to_owned())),
            "53100" => Some(StoreError::DiskFull(db.message().to_owned())),
            c if c.starts_with("08") || c.starts_with("57P") || c == "53300" => {
                Some(StoreError::Unavailable(db.message().to_owned()))
            }
            _ => None,
        }
    })
}

impl PgStore {
    pub async fn open(cfg: &DatabaseConfig) -> Result<PgStore, StoreError> {
        let opts: PgConnectOptions =
            cfg.url.parse().map_err(|e| StoreError::Other(format!("database.url: {e}")))?;
        let pool = PgPoolOptions::new()
            .max_connections(cfg.max_connections.max(2))
            .acquire_timeout(Duration::from_secs(cfg.connect_timeout_secs))
            .connect_with(opts.application_name("rosterd"))
            .await
            .map_err(err)?;
        Ok(PgStore { read: pool.clone(), write: pool })
    }

    fn backend_name() -> &'static str {
        "postgres"
    }

    async fn begin_tx(&self) -> Result<sqlx::Transaction<'static, Postgres>, StoreError> {
        self.write.begin().await.map_err(err)
    }

    async fn run_migrations(&self) -> Result<(), StoreError> {
        // The migrator holds an advisory lock, so nodes starting together migrate once.
        MIGRATOR.run(&self.write).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => err(e),
            other => StoreError::Migration(other.to_string()),
        })
    }

    async fn schema_state_impl(&self) -> Result<super::SchemaState, StoreError> {
        let (exists,): (bool,) = sqlx::query_as("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
            .fetch_one(&self.read)
            .await
            .map_err(err)?;
        let applied: Vec<(i64,)> = if exists {
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
    COALESCE((SELECT json_agg(json_build_array(address, kind, is_primary) ORDER BY position) \
     FROM member_emails WHERE member_emails.member_id = members.id)::text, '[]') AS emails_json, \
    COALESCE((SELECT json_agg(org_unit_id) \
     FROM member_org_units WHERE member_org_units.member_id = members.id)::text, '[]') AS units_json";

/// A source's member keys as JSON arrays `[id, anchor, login name, digest]` (see the SQLite store).
const MEMBER_KEYS: &str = "SELECT json_agg(json_build_array(id, anchor, login_name, sync_digest))::text \
    FROM members WHERE source = $1";

/// A source's groups' member ids, one JSON array a group.
const GROUP_MEMBERSHIPS: &str = "SELECT gm.group_id, json_agg(gm.member_id)::text \
    FROM group_members gm JOIN groups g ON g.id = gm.group_id WHERE g.source = $1 GROUP BY gm.group_id";

shared_sql!(Postgres, PgStore, PgTx, err, MEMBER_CHILDREN, MEMBER_KEYS, GROUP_MEMBERSHIPS);
