//! Persistence: every owner's store trait implemented for SQLite and PostgreSQL.
//!
//! The traits belong to their owners, next to the code that uses them:
//! [`crate::directory::store`] (reads, and the sealed write transaction only the directory core
//! can open), [`crate::delivery::store`], [`crate::sync::store`], [`crate::access::store`] and
//! [`crate::archive::store`] and
//! [`crate::jobs::LeaseStore`]. This module implements them all, knows SQL and nothing of the
//! rules, and adds [`Maintenance`] (migrations, health, shutdown). [`Store`] is the sum of them,
//! for the wiring in [`crate::app`]: each owner gets its own trait object from it.
//!
//! Both backends run the same SQL text (`$1` placeholders, `WITH RECURSIVE`, `RETURNING` work in
//! both); [`sql`] holds it once, a file an owner, and is expanded for each backend, because
//! sqlx's generic bounds over `Database` are too unwieldy to write by hand. Where the dialects
//! differ (connection set-up, migrations, error codes, bulk writes) each backend has its own code.

use async_trait::async_trait;
use std::sync::Arc;
use uuid::Uuid;

use crate::access::attendance::AttendanceStore;
use crate::access::login::LoginStore;
use crate::access::store::AccessStore;
use crate::archive::store::ArchiveStore;
use crate::delivery::store::DeliveryStore;
use crate::directory::model::Member;
use crate::directory::store::DirectoryStore;
pub use crate::directory::store::{Result, StoreError};
use crate::jobs::LeaseStore;
use crate::sync::store::RunStore;

#[macro_use]
mod sql;
pub mod copy;
mod postgres;
mod sqlite;
pub use sqlite::database_file as sqlite_database_file;

pub use postgres::PgStore;

/// Every owner's store trait, for code that holds the whole [`Store`] (the wiring, the tests).
pub mod prelude {
    pub use super::{Maintenance, Store};
    pub use crate::access::store::AccessStore;
    pub use crate::archive::store::{ArchiveRecords, ArchiveStore, ArchiveUpkeep};
    pub use crate::delivery::store::DeliveryStore;
    pub use crate::directory::store::DirectoryRead;
    pub use crate::jobs::LeaseStore;
    pub use crate::sync::store::RunStore;
}
pub use sqlite::SqliteStore;

/// State of the schema compared with the migrations built into this binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaState {
    Current,
    /// Some built-in migrations are not applied yet.
    Behind,
    /// The database has migrations this binary does not know (a newer rosterd ran).
    Ahead,
}

/// The store's own upkeep: migrations, health and shutdown.
#[async_trait]
pub trait Maintenance: Send + Sync + 'static {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;
    /// Applies pending migrations.
    async fn migrate(&self) -> Result<()>;
    async fn schema_state(&self) -> Result<SchemaState>;
    /// A cheap round trip to the database.
    async fn ping(&self) -> Result<()>;
    /// Proves the store takes writes (a write that is rolled back): a read-only file or a
    /// standby server fails here, at start, rather than at the first change.
    async fn probe_write(&self) -> Result<()>;
    /// Closes the connections (SQLite then checkpoints and removes its WAL file).
    async fn close(&self);
    /// Writes a consistent copy of the whole database to the new file `file` while the store
    /// serves (SQLite: `VACUUM INTO`, from one read transaction's snapshot). PostgreSQL: an
    /// error saying to use `pg_dump`.
    async fn backup_into(&self, file: &std::path::Path) -> Result<()>;
}

/// Every owner's store in one: what [`open`] returns and [`crate::app`] hands out, each owner
/// getting only its own trait (`Arc<dyn Store>` coerces to `Arc<dyn DeliveryStore>` and so on).
pub trait Store:
    DirectoryStore
    + DeliveryStore
    + RunStore
    + AccessStore
    + LoginStore
    + AttendanceStore
    + ArchiveStore
    + LeaseStore
    + Maintenance
{
}
impl<T> Store for T where
    T: DirectoryStore
        + DeliveryStore
        + RunStore
        + AccessStore
        + LoginStore
        + AttendanceStore
        + ArchiveStore
        + LeaseStore
        + Maintenance
{
}

/// A member's ordered contact value as its table keeps it: `(member, position, value, kind,
/// primary)`, an e-mail address or a phone number.
pub(crate) type Listed<'a> = (Uuid, i64, &'a str, &'a str, bool);

/// The e-mail and phone rows of members, for the backends' multi-row inserts.
pub(crate) fn listed_children<'a>(ms: &[&'a Member]) -> (Vec<Listed<'a>>, Vec<Listed<'a>>) {
    let emails = ms
        .iter()
        .flat_map(|mb| {
            mb.emails
                .iter()
                .enumerate()
                .map(|(i, e)| (mb.id, i as i64, e.address.as_str(), e.kind.as_str(), e.primary))
        })
        .collect();
    let phones = ms
        .iter()
        .flat_map(|mb| {
            mb.phones
                .iter()
                .enumerate()
                .map(|(i, p)| (mb.id, i as i64, p.number.as_str(), p.kind.as_str(), p.primary))
        })
        .collect();
    (emails, phones)
}

/// Opens the store a `database.url` names, creating an SQLite file (and its directory) on first
/// use. Does not migrate.
pub async fn open(cfg: &crate::config::DatabaseConfig) -> Result<Arc<dyn Store>> {
    let url = cfg.url.as_str();
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open(cfg).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::open(cfg).await?))
    } else {
        Err(StoreError::Other("database.url must start with sqlite: or postgres://".into()))
    }
}

/// Maps a sqlx error to a [`StoreError`]; each backend supplies how to read its error codes.
pub(crate) fn classify(
    err: sqlx::Error,
    db_kind: fn(&dyn sqlx::error::DatabaseError) -> Option<StoreError>,
) -> StoreError {
    match err {
        sqlx::Error::Database(db) => {
            db_kind(db.as_ref()).unwrap_or_else(|| StoreError::Other(db.message().to_owned()))
        }
        sqlx::Error::Io(e) => StoreError::Unavailable(e.to_string()),
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => StoreError::Unavailable(err.to_string()),
        sqlx::Error::Tls(e) => StoreError::Unavailable(e.to_string()),
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) | sqlx::Error::ColumnNotFound(_) => {
            StoreError::Corrupt(err.to_string())
        }
        other => StoreError::Other(other.to_string()),
    }
}

/// Compares the applied migration versions with the ones built in.
pub(crate) fn schema_state(
    migrator: &sqlx::migrate::Migrator,
    applied: impl Iterator<Item = i64>,
) -> SchemaState {
    let known: std::collections::BTreeSet<i64> = migrator.iter().map(|m| m.version).collect();
    let applied: std::collections::BTreeSet<i64> = applied.collect();
    if applied.iter().any(|v| !known.contains(v)) {
        SchemaState::Ahead
    } else if known.iter().any(|v| !applied.contains(v)) {
        SchemaState::Behind
    } else {
        SchemaState::Current
    }
}
