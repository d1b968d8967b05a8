//! Scheduled jobs: each LDAP source's `incremental` and `full` cron schedules.
//!
//! A plain loop per schedule (sleep until the next time, or until shutdown). Every node runs
//! the loops; the source's lease in the store makes sure only one run of a source happens at a
//! time, across all nodes sharing the database.

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::sync::{RunOptions, SyncError, SyncService};

/// Starts the loops for every configured schedule.
pub fn spawn(tracker: &TaskTracker, sync: SyncService, shutdown: CancellationToken) {
    for src in sync.sources() {
        for (kind, expr) in [("incremental", &src.schedule.incremental), ("full", &src.schedule.full)] {
            let Some(expr) = expr else { continue };
            let schedule: cron::Schedule = match expr.parse() {
                Ok(s) => s,
                Err(e) => {
                    // Config validation already refused bad expressions; be safe anyway.
                    tracing::error!(source = %src.name, kind, error = %e, "bad cron expression; schedule disabled");
                    continue;
                }
            };
            tracker.spawn(run_schedule(sync.clone(), src.name.clone(), kind, schedule, shutdown.clone()));
        }
    }
}

async fn run_schedule(
    sync: SyncService,
    name: String,
    kind: &'static str,
    schedule: cron::Schedule,
    shutdown: CancellationToken,
) {
    loop {
        let Some(next) = schedule.upcoming(Utc).next() else { return };
        let wait = (next - Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let opts =
            RunOptions { full: kind == "full", trigger: format!("schedule:{kind}"), ..Default::default() };
        match sync.run(&name, opts).await {
            Ok(_) => {}
            Err(SyncError::Busy(_)) => {
                tracing::debug!(source = %name, "a run is already in progress elsewhere")
            }
            Err(e) => tracing::warn!(source = %name, error = %e, "scheduled sync could not run"),
        }
    }
}
