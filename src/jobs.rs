//! ONE scheduler: every scheduled job, each under a leader lease.
//!
//! A job is a name, a cron schedule and what to run: each LDAP source's `incremental` and
//! `full` syncs, delivery dispatch, the mailbox push and reconcile, and the purge of ended
//! sessions and old sign-in failures. [`spawn`] starts one loop a job on every node. A loop
//! renews (or tries to take) the job's lease in the shared database every third of
//! `jobs.lease_secs`, and runs the job at its scheduled times only while it holds the lease:
//! with several `rosterd` on one PostgreSQL each job runs on one node at a time, and when that
//! node dies its lease runs out and another node takes the job over within one lease period.
//! A node that stops cleanly gives its leases up at once.
//!
//! The lease is a row a job ([`LeaseStore`], table `job_leases`), taken or renewed in one
//! statement, so it works the same on SQLite (one node) and PostgreSQL (several).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::directory::store::Result;

/// The scheduler's leader leases (one row a job in the shared database).
#[async_trait]
pub trait LeaseStore: Send + Sync + 'static {
    /// Takes the lease on `job` for `holder` until `until`, or renews it when `holder` has it;
    /// `None` when another holder's lease is live at `now`. With the lease comes the last due time
    /// any holder ran the job for ([`Self::job_ran`]), so a new holder can catch up a run the old
    /// one missed.
    async fn job_lease(
        &self,
        job: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<Held>>;
    /// Records that `holder` ran `job` for its due time `due`.
    async fn job_ran(&self, job: &str, holder: &str, due: DateTime<Utc>) -> Result<()>;
    /// Gives the lease up (a node that stops cleanly hands its jobs over at once).
    async fn job_lease_release(&self, job: &str, holder: &str) -> Result<()>;
    /// `(job, holder, expires_at)` of every lease (the tests read them).
    async fn job_leases(&self) -> Result<Vec<(String, String, DateTime<Utc>)>>;
}

/// A lease just taken or renewed.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Held {
    /// The due time the job last ran for, on whichever node (`None`: never).
    pub last_due: Option<DateTime<Utc>>,
}

/// What a job does when it is due.
pub type Run = Arc<dyn Fn() -> Pending + Send + Sync>;

/// Why a run failed (for the log; the job runs again on schedule).
pub type Failure = Box<dyn std::error::Error + Send + Sync>;

/// A job's run in progress.
pub type Pending =
    std::pin::Pin<Box<dyn std::future::Future<Output = std::result::Result<(), Failure>> + Send>>;

/// One scheduled job.
pub struct Job {
    /// Unique across the deployment: `sync:<source>:incremental`, `delivery:dispatch`, ...
    pub name: String,
    pub schedule: cron::Schedule,
    pub run: Run,
}

impl Job {
    pub fn new<F, Fut>(name: impl Into<String>, schedule: cron::Schedule, run: F) -> Job
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = std::result::Result<(), Failure>> + Send + 'static,
    {
        Job { name: name.into(), schedule, run: Arc::new(move || Box::pin(run())) }
    }
}

/// This node's name in the lease table: host, process, and a random part (two processes on
/// one host are two nodes).
pub fn holder() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}:{}:{}", host.trim(), std::process::id(), &uuid::Uuid::new_v4().simple().to_string()[..8])
}

/// Starts one loop a job; each ends at `shutdown`, giving its lease up.
pub fn spawn(
    tracker: &TaskTracker,
    leases: Arc<dyn LeaseStore>,
    lease: Duration,
    jobs: Vec<Job>,
    shutdown: CancellationToken,
) {
    let holder = holder();
    for job in jobs {
        tracing::info!(job = %job.name, "scheduled");
        tracker.spawn(run_job(leases.clone(), holder.clone(), lease, job, shutdown.clone()));
    }
}

async fn run_job(
    leases: Arc<dyn LeaseStore>,
    holder: String,
    lease: Duration,
    job: Job,
    shutdown: CancellationToken,
) {
    let beat = lease / 3;
    // Renewed every third of a period for two thirds of it: the row is always a third ahead of
    // a live leader, and at most two thirds ahead of a dead one.
    let lease = chrono::Duration::from_std(lease * 2 / 3).unwrap_or(chrono::Duration::seconds(20));
    let mut leader = false;
    let mut next = job.schedule.upcoming(Utc).next();
    loop {
        let now = Utc::now();
        let held = match leases.job_lease(&job.name, &holder, now, now + lease).await {
            Ok(held) => held,
            Err(e) => {
                // Cannot tell: act as if not leader (another node may be).
                tracing::warn!(job = %job.name, error = %e, "job lease could not be renewed");
                None
            }
        };
        if held.is_some() != leader {
            leader = held.is_some();
            metrics::gauge!("roster_job_leader", "job" => job.name.clone()).set(f64::from(u8::from(leader)));
            if leader {
                tracing::info!(job = %job.name, %holder, "job lease taken: this node runs the job");
                // A due time that passed while nobody held the lease (the old leader died) is
                // run now, once, rather than skipped until the next one.
                let missed = held
                    .and_then(|h| h.last_due)
                    .and_then(|last| job.schedule.after(&last).next())
                    .filter(|due| *due <= now);
                if let Some(due) = missed {
                    tracing::info!(job = %job.name, %due, "running a due time the previous holder missed");
                    run_once(&leases, &holder, lease, beat, &job, due).await;
                }
            } else {
                tracing::info!(job = %job.name, "job lease lost: another node runs the job");
            }
        }
        let Some(due) = next else { break };
        if Utc::now() >= due {
            next = job.schedule.after(&Utc::now()).next();
            if leader {
                run_once(&leases, &holder, lease, beat, &job, due).await;
            }
            continue;
        }
        let wait = (due - Utc::now()).to_std().unwrap_or_default().min(beat);
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
        }
    }
    if leader && let Err(e) = leases.job_lease_release(&job.name, &holder).await {
        tracing::warn!(job = %job.name, error = %e, "job lease could not be given up; it runs out by itself");
    }
}

/// Runs the job for its due time `due`, renewing its lease while it runs (a run may take longer
/// than a lease). A run whose lease another node took (this node was cut off from the database
/// for longer than the lease) is stopped, so the job never runs on two nodes at once.
async fn run_once(
    leases: &Arc<dyn LeaseStore>,
    holder: &str,
    lease: chrono::Duration,
    beat: Duration,
    job: &Job,
    due: DateTime<Utc>,
) {
    let started = std::time::Instant::now();
    let run = (job.run)();
    let mut run = std::pin::pin!(run);
    let result = loop {
        tokio::select! {
            r = &mut run => break r,
            _ = tokio::time::sleep(beat) => {
                let now = Utc::now();
                match leases.job_lease(&job.name, holder, now, now + lease).await {
                    Ok(Some(_)) => {}
                    Ok(None) => break Err("the lease was taken by another node; the run was stopped".into()),
                    Err(e) => tracing::warn!(job = %job.name, error = %e, "job lease could not be renewed"),
                }
            }
        }
    };
    if let Err(e) = leases.job_ran(&job.name, holder, due).await {
        tracing::warn!(job = %job.name, error = %e, "could not record the run");
    }
    let secs = started.elapsed().as_secs_f64();
    metrics::histogram!("roster_job_duration_seconds", "job" => job.name.clone()).record(secs);
    match result {
        Ok(()) => {
            metrics::counter!("roster_job_runs_total", "job" => job.name.clone(), "result" => "ok")
                .increment(1);
            tracing::debug!(job = %job.name, secs, "job ran");
        }
        Err(e) => {
            metrics::counter!("roster_job_runs_total", "job" => job.name.clone(), "result" => "error")
                .increment(1);
            tracing::warn!(job = %job.name, error = %e, "job failed; it runs again on schedule");
        }
    }
}
