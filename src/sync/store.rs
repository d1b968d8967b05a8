//! Sync's persistence: the record of runs, the lease that keeps one run of a source at a time,
//! and each source's cursor.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::directory::store::Result;

text_enum! {
    /// How a sync run stands.
    pub enum RunStatus as "sync run status" {
        Running = "running",
        Applied = "applied",
        /// Its plan deleted more than the limits allow: waits for an admin's approval.
        Held = "held",
        Failed = "failed",
        DryRun = "dry_run",
        /// A held run an admin approved (applied by a later run).
        Approved = "approved",
    }
}

/// One sync run as recorded.
#[derive(Debug, Clone, PartialEq, serde::Serialize, sqlx::FromRow)]
pub struct SyncRun {
    pub id: i64,
    pub source: String,
    /// `cli`, `schedule:incremental`, `schedule:full`, `approve:<run id>`.
    pub trigger: String,
    pub full_read: bool,
    pub dry_run: bool,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    #[sqlx(try_from = "String")]
    pub status: RunStatus,
    #[sqlx(json)]
    pub counts: serde_json::Value,
    #[sqlx(json)]
    pub errors: serde_json::Value,
    pub message: String,
}

#[async_trait]
pub trait RunStore: Send + Sync + 'static {
    /// Records the start of a sync run; returns its id.
    async fn run_start(&self, source: &str, trigger: &str, full_read: bool, dry_run: bool) -> Result<i64>;
    async fn run_finish(
        &self,
        id: i64,
        status: RunStatus,
        counts: &serde_json::Value,
        errors: &serde_json::Value,
        message: &str,
    ) -> Result<()>;
    async fn run(&self, id: i64) -> Result<Option<SyncRun>>;
    /// Keeps a run's plan (its steps as lines) for the console.
    async fn run_set_plan(&self, id: i64, plan: &[String]) -> Result<()>;
    async fn run_plan(&self, id: i64) -> Result<Vec<String>>;
    /// The most recent runs, newest first.
    async fn runs_recent(&self, limit: i64) -> Result<Vec<SyncRun>>;
    /// Takes (or renews) the lease on `source` for `holder` until `until`; false when another
    /// holder's lease is still live.
    async fn lease_acquire(&self, source: &str, holder: &str, until: DateTime<Utc>) -> Result<bool>;
    async fn lease_release(&self, source: &str, holder: &str) -> Result<()>;
    /// Where the source's next incremental read resumes.
    async fn sync_cursor(&self, source: &str) -> Result<Option<String>>;
}
